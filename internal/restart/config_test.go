package restart

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/config"
)

func TestFromConfig(t *testing.T) {
	tests := []struct {
		name          string
		set           map[string]string
		checkpointing bool
		want          string // the strategy's String()
		wantErr       string
	}{
		{name: "default without checkpoints: none", want: "none"},
		{name: "default with checkpoints: exponential-delay with Flink's defaults", checkpointing: true,
			want: "exponential-delay (initial 1s, max 1m0s, multiplier 1.5, reset after 1h0m0s, jitter 0.1, attempts before reset unlimited)"},
		{name: "explicit none wins over checkpoints", checkpointing: true,
			set: map[string]string{"restart-strategy.type": "none"}, want: "none"},
		{name: "off", set: map[string]string{"restart-strategy.type": "off"}, want: "none"},
		{name: "disable", set: map[string]string{"restart-strategy.type": "disable"}, want: "none"},
		{name: "fixed-delay defaults", set: map[string]string{"restart-strategy.type": "fixed-delay"},
			want: "fixed-delay (1 attempts, delay 1s)"},
		{name: "fixeddelay alias, mixed case, settings", set: map[string]string{
			"restart-strategy.type":                 " FixedDelay ",
			"restart-strategy.fixed-delay.attempts": "3",
			"restart-strategy.fixed-delay.delay":    "10 s",
		}, want: "fixed-delay (3 attempts, delay 10s)"},
		{name: "failure-rate defaults", set: map[string]string{"restart-strategy.type": "failure-rate"},
			want: "failure-rate (1 failures per 1m0s, delay 1s)"},
		{name: "failurerate with settings", set: map[string]string{
			"restart-strategy.type":                                   "failurerate",
			"restart-strategy.failure-rate.max-failures-per-interval": "3",
			"restart-strategy.failure-rate.failure-rate-interval":     "5 min",
			"restart-strategy.failure-rate.delay":                     "10s",
		}, want: "failure-rate (3 failures per 5m0s, delay 10s)"},
		{name: "exponential-delay with settings", set: map[string]string{
			"restart-strategy.type":                                            "exponentialdelay",
			"restart-strategy.exponential-delay.initial-backoff":               "10 s",
			"restart-strategy.exponential-delay.max-backoff":                   "2 min",
			"restart-strategy.exponential-delay.backoff-multiplier":            "1.4",
			"restart-strategy.exponential-delay.reset-backoff-threshold":       "10 min",
			"restart-strategy.exponential-delay.jitter-factor":                 "0",
			"restart-strategy.exponential-delay.attempts-before-reset-backoff": "10",
		}, want: "exponential-delay (initial 10s, max 2m0s, multiplier 1.4, reset after 10m0s, jitter 0, attempts before reset 10)"},

		{name: "unknown type", set: map[string]string{"restart-strategy.type": "sometimes"},
			wantErr: `config restart-strategy.type="sometimes": unknown restart strategy; use none, fixed-delay, exponential-delay or failure-rate`},
		{name: "negative fixed attempts", set: map[string]string{
			"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "-1"},
			wantErr: `config restart-strategy.fixed-delay.attempts="-1": must not be negative (for restart-strategy.type fixed-delay)`},
		{name: "negative fixed delay", set: map[string]string{
			"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.delay": "-1s"},
			wantErr: `config restart-strategy.fixed-delay.delay="-1s": must not be negative`},
		{name: "zero failures per interval", set: map[string]string{
			"restart-strategy.type": "failure-rate", "restart-strategy.failure-rate.max-failures-per-interval": "0"},
			wantErr: `config restart-strategy.failure-rate.max-failures-per-interval="0": must be at least 1`},
		{name: "zero failure-rate interval", set: map[string]string{
			"restart-strategy.type": "failure-rate", "restart-strategy.failure-rate.failure-rate-interval": "0"},
			wantErr: `config restart-strategy.failure-rate.failure-rate-interval="0": must be positive`},
		{name: "multiplier not a number", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.backoff-multiplier": "twice"},
			wantErr: `config restart-strategy.exponential-delay.backoff-multiplier="twice": not a number; write e.g. 1.5`},
		{name: "multiplier 1", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.backoff-multiplier": "1"},
			wantErr: `config restart-strategy.exponential-delay.backoff-multiplier="1": must be a number greater than 1, e.g. 1.5 (for restart-strategy.type exponential-delay)`},
		{name: "jitter above 1", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.jitter-factor": "1.5"},
			wantErr: `config restart-strategy.exponential-delay.jitter-factor="1.5": must be between 0 and 1`},
		{name: "jitter not a number", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.jitter-factor": "10%"},
			wantErr: `config restart-strategy.exponential-delay.jitter-factor="10%": not a number; write e.g. 0.1`},
		{name: "initial above max", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.initial-backoff": "2min"},
			wantErr: `config restart-strategy.exponential-delay.initial-backoff="2min": must not exceed the max backoff 1m0s`},
		{name: "zero reset threshold", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.reset-backoff-threshold": "0"},
			wantErr: `config restart-strategy.exponential-delay.reset-backoff-threshold="0": must be at least 1ms`},
		{name: "zero attempts before reset", checkpointing: true, set: map[string]string{
			"restart-strategy.exponential-delay.attempts-before-reset-backoff": "0"},
			wantErr: `config restart-strategy.exponential-delay.attempts-before-reset-backoff="0": must be at least 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.FromMap(tc.set)
			if err != nil {
				t.Fatalf("FromMap: %v", err)
			}
			st, err := FromConfig(c, tc.checkpointing)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant one containing %q", err, tc.wantErr)
				}
				if st != nil {
					t.Fatalf("strategy %#v returned with the error", st)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromConfig: %v", err)
			}
			if got := st.String(); got != tc.want {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
		})
	}
}
