package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/config"
)

func TestOptionsFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		set     map[string]string
		want    Options
		wantErr string
	}{
		{name: "Flink's defaults: periodic checkpoints off", want: DefaultOptions()},
		{
			name: "every key set",
			set: map[string]string{
				"execution.checkpointing.interval":                     "30 s",
				"execution.checkpointing.timeout":                      "2min",
				"execution.checkpointing.min-pause":                    "500ms",
				"execution.checkpointing.max-concurrent-checkpoints":   "3",
				"execution.checkpointing.tolerable-failed-checkpoints": "5",
				"state.checkpoints.num-retained":                       "4",
			},
			want: Options{Interval: 30 * time.Second, Timeout: 2 * time.Minute, MinPause: 500 * time.Millisecond,
				MaxConcurrent: 3, TolerableFailures: 5, NumRetained: 4},
		},
		{name: "interval below 10ms", set: map[string]string{"execution.checkpointing.interval": "5ms"},
			wantErr: "execution.checkpointing.interval=5ms: below the 10ms minimum"},
		{name: "negative interval", set: map[string]string{"execution.checkpointing.interval": "-1s"},
			wantErr: "execution.checkpointing.interval=-1s: must not be negative; set it to 0"},
		{name: "timeout below 10ms", set: map[string]string{"execution.checkpointing.timeout": "0"},
			wantErr: "execution.checkpointing.timeout=0s: below the 10ms minimum"},
		{name: "negative min pause", set: map[string]string{"execution.checkpointing.min-pause": "-1s"},
			wantErr: "execution.checkpointing.min-pause=-1s"},
		{name: "zero max concurrent", set: map[string]string{"execution.checkpointing.max-concurrent-checkpoints": "0"},
			wantErr: "execution.checkpointing.max-concurrent-checkpoints=0: must be at least 1"},
		{name: "negative tolerable", set: map[string]string{"execution.checkpointing.tolerable-failed-checkpoints": "-1"},
			wantErr: "execution.checkpointing.tolerable-failed-checkpoints=-1"},
		{name: "zero retained", set: map[string]string{"state.checkpoints.num-retained": "0"},
			wantErr: "state.checkpoints.num-retained=0: must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.FromMap(tc.set)
			if err != nil {
				// Range checks refuse most bad values when they are set;
				// the error names the key either way.
				key, _, _ := strings.Cut(tc.wantErr, "=")
				if tc.wantErr == "" || !strings.Contains(err.Error(), key) {
					t.Fatalf("FromMap: %v", err)
				}
				return
			}
			got, err := OptionsFromConfig(c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("OptionsFromConfig: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
