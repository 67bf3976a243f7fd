package minicluster

import (
	"testing"
	"time"

	"github.com/weirstream/weir/internal/config"
)

func TestBufferTimeoutSemantics(t *testing.T) {
	for _, tc := range []struct {
		value   string
		timeout time.Duration
		batch   int
	}{
		{"100ms", 100 * time.Millisecond, 512},
		{"0", 0, 1},    // every record at once
		{"-1", 0, 512}, // full batches only
	} {
		cfg := config.New()
		if err := cfg.Set(config.BufferTimeout.Name, tc.value); err != nil {
			t.Fatal(err)
		}
		o := Options(cfg)
		if o.BufferTimeout != tc.timeout || o.BatchSize != tc.batch {
			t.Errorf("execution.buffer-timeout=%s: timeout %v batch %d, want %v and %d", tc.value, o.BufferTimeout, o.BatchSize, tc.timeout, tc.batch)
		}
	}
}
