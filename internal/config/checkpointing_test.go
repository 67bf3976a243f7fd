package config

import (
	"strings"
	"testing"
	"time"
)

func TestCheckpointingDefaults(t *testing.T) {
	c := New()
	for _, tc := range []struct {
		k    Key
		want time.Duration
	}{
		{CheckpointingInterval, 0},
		{CheckpointingTimeout, 10 * time.Minute},
		{CheckpointingMinPause, 0},
		{FixedDelayDelay, time.Second},
		{ExponentialDelayInitialBackoff, time.Second},
		{ExponentialDelayMaxBackoff, time.Minute},
		{ExponentialDelayResetBackoffThreshold, time.Hour},
		{FailureRateInterval, time.Minute},
		{FailureRateDelay, time.Second},
	} {
		if got := c.Duration(tc.k); got != tc.want {
			t.Errorf("%s default = %v, want %v", tc.k.Name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		k    Key
		want int
	}{
		{MaxConcurrentCheckpoints, 1},
		{TolerableFailedCheckpoints, 0},
		{CheckpointsNumRetained, 1},
		{FixedDelayAttempts, 1},
		{FailureRateMaxFailuresPerInterval, 1},
		{ExponentialDelayAttemptsBeforeResetBackoff, 1<<31 - 1},
	} {
		if got := c.Int(tc.k); got != tc.want {
			t.Errorf("%s default = %d, want %d", tc.k.Name, got, tc.want)
		}
	}
	if c.Bool(IncrementalCheckpoints) {
		t.Errorf("%s defaults to true", IncrementalCheckpoints.Name)
	}
	if got, err := ParseStateBackend(c); err != nil || got != BackendHeap {
		t.Errorf("default backend = %q, %v; want %q", got, err, BackendHeap)
	}
}

func TestCheckpointingKeysAreValidated(t *testing.T) {
	if err := New().Set("execution.checkpointing.interval", "often"); err == nil {
		t.Error("a non-duration interval was accepted")
	}
	err := New().Set("execution.checkpointing.intervall", "1s")
	if err == nil || !strings.Contains(err.Error(), `did you mean "execution.checkpointing.interval"`) {
		t.Errorf("misspelt key: err = %v", err)
	}
}

func TestParseStateBackend(t *testing.T) {
	for _, tc := range []struct {
		value, want, wantErr string
	}{
		{"hashmap", BackendHeap, ""},
		{"heap", BackendHeap, ""},
		{" Pebble ", BackendPebble, ""},
		{"rocksdb", "", `Weir has no RocksDB backend; its LSM backend is "pebble" (set state.backend.type=pebble)`},
		{"forst", "", `state.backend.type="forst": unknown state backend; use "hashmap"`},
	} {
		// A bad value is refused when it is set, with the same message.
		var got string
		c, err := FromMap(map[string]string{"state.backend.type": tc.value})
		if err == nil {
			got, err = ParseStateBackend(c)
		}
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: err = %v, want one containing %q", tc.value, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%q: got %q, %v; want %q", tc.value, got, err, tc.want)
		}
	}
}
