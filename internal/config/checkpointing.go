package config

import (
	"fmt"
	"strings"
)

// Checkpointing, state backend and restart-strategy keys, with Flink's names
// and defaults (Flink 1.19/1.20 docs; Flink 2.0 renamed state.checkpoints.*
// and state.savepoints.dir to execution.checkpointing.*, which Weir does not
// accept yet).
//
// config.go has no floating-point kind, so the two fractional keys of the
// exponential-delay strategy are String keys that package restart parses and
// validates; String keys are not checked by Set, so ParseStateBackend and
// restart.FromConfig report a bad value when the job starts.
var (
	CheckpointingInterval = Declare(Key{"execution.checkpointing.interval", Duration, "0",
		"time between the starts of two periodic checkpoints; 0 (the default) turns periodic checkpoints off. " +
			"At least 10ms when set"})
	CheckpointingTimeout = Declare(Key{"execution.checkpointing.timeout", Duration, "10min",
		"a checkpoint or savepoint that has not completed this long after it was triggered is aborted"})
	CheckpointingMinPause = Declare(Key{"execution.checkpointing.min-pause", Duration, "0",
		"least time between the completion of one checkpoint and the trigger of the next periodic one"})
	MaxConcurrentCheckpoints = Declare(Key{"execution.checkpointing.max-concurrent-checkpoints", Int, "1",
		"most periodic checkpoints in flight at once (savepoints are not limited, as in Flink)"})
	TolerableFailedCheckpoints = Declare(Key{"execution.checkpointing.tolerable-failed-checkpoints", Int, "0",
		"consecutive failed checkpoints (declined, expired or not persisted) the job tolerates; " +
			"one more fails the job, which then restarts by its restart strategy"})
	CheckpointsNumRetained = Declare(Key{"state.checkpoints.num-retained", Int, "1",
		"completed checkpoints kept; older ones are discarded"})
	CheckpointsDir = Declare(Key{"state.checkpoints.dir", String, "",
		"directory (or object-store URI) for checkpoint data and metadata; empty keeps checkpoints in the master's memory"})
	SavepointsDir = Declare(Key{"state.savepoints.dir", String, "",
		"default directory for savepoints when a request names none"})
	StateBackendType = Declare(Key{"state.backend.type", String, "hashmap",
		"keyed state backend: hashmap (or heap) keeps state in Go maps, pebble keeps it in a local Pebble LSM"})
	IncrementalCheckpoints = Declare(Key{"execution.checkpointing.incremental", Bool, "false",
		"checkpoint only what changed since the last checkpoint (pebble backend only)"})

	RestartStrategyType = Declare(Key{"restart-strategy.type", String, "",
		"what to do when a job fails: none (or off, disable), fixed-delay, exponential-delay or failure-rate; " +
			"unset means exponential-delay when checkpoints are on, else none"})
	FixedDelayAttempts = Declare(Key{"restart-strategy.fixed-delay.attempts", Int, "1",
		"restarts before the job is declared failed, for restart-strategy.type fixed-delay"})
	FixedDelayDelay = Declare(Key{"restart-strategy.fixed-delay.delay", Duration, "1s",
		"wait before each restart, for restart-strategy.type fixed-delay"})
	ExponentialDelayInitialBackoff = Declare(Key{"restart-strategy.exponential-delay.initial-backoff", Duration, "1s",
		"wait before the first restart, for restart-strategy.type exponential-delay"})
	ExponentialDelayMaxBackoff = Declare(Key{"restart-strategy.exponential-delay.max-backoff", Duration, "1min",
		"longest wait between restarts, for restart-strategy.type exponential-delay"})
	ExponentialDelayBackoffMultiplier = Declare(Key{"restart-strategy.exponential-delay.backoff-multiplier", String, "1.5",
		"factor (> 1) by which the wait grows after each failure, for restart-strategy.type exponential-delay"})
	ExponentialDelayResetBackoffThreshold = Declare(Key{"restart-strategy.exponential-delay.reset-backoff-threshold", Duration, "1h",
		"a job that runs this long without failing starts again from the initial backoff, for restart-strategy.type exponential-delay"})
	ExponentialDelayJitterFactor = Declare(Key{"restart-strategy.exponential-delay.jitter-factor", String, "0.1",
		"random share (0 to 1) of the wait added or subtracted, so jobs hit by one outage do not restart in lockstep"})
	ExponentialDelayAttemptsBeforeResetBackoff = Declare(Key{"restart-strategy.exponential-delay.attempts-before-reset-backoff", Int, "2147483647",
		"restarts allowed before the backoff resets (2147483647, the default, is unlimited), for restart-strategy.type exponential-delay"})
	FailureRateMaxFailuresPerInterval = Declare(Key{"restart-strategy.failure-rate.max-failures-per-interval", Int, "1",
		"restarts allowed within restart-strategy.failure-rate.failure-rate-interval before the job is declared failed"})
	FailureRateInterval = Declare(Key{"restart-strategy.failure-rate.failure-rate-interval", Duration, "1min",
		"window over which failures are counted, for restart-strategy.type failure-rate"})
	FailureRateDelay = Declare(Key{"restart-strategy.failure-rate.delay", Duration, "1s",
		"wait before each restart, for restart-strategy.type failure-rate"})
)

// State backend names accepted by ParseStateBackend.
const (
	BackendHeap   = "hashmap"
	BackendPebble = "pebble"
)

// ParseStateBackend returns the configured state backend, normalised to
// BackendHeap or BackendPebble. "heap" is accepted for "hashmap". Flink's
// "rocksdb" is refused with a pointer to "pebble", Weir's LSM backend, rather
// than being silently replaced, because the two differ in options and in the
// layout of native checkpoints.
func ParseStateBackend(c *Config) (string, error) {
	v := strings.ToLower(strings.TrimSpace(c.String(StateBackendType)))
	switch v {
	case "hashmap", "heap":
		return BackendHeap, nil
	case "pebble":
		return BackendPebble, nil
	case "rocksdb":
		return "", fmt.Errorf("config %s=%q: Weir has no RocksDB backend; its LSM backend is \"pebble\" "+
			"(set %s=pebble), or use \"hashmap\" to keep state in memory", StateBackendType.Name, v, StateBackendType.Name)
	}
	return "", fmt.Errorf("config %s=%q: unknown state backend; use \"hashmap\" (state in memory) or \"pebble\" (state in a local LSM)",
		StateBackendType.Name, v)
}

func init() {
	AtLeast(CheckpointingInterval, 10, 0)
	AtLeast(CheckpointingTimeout, 10)
	AtLeast(CheckpointingMinPause, 0)
	AtLeast(MaxConcurrentCheckpoints, 1)
	AtLeast(TolerableFailedCheckpoints, 0)
	AtLeast(CheckpointsNumRetained, 1)
	Validate(StateBackendType, func(v string) error {
		c := New()
		c.values[StateBackendType.Name] = v
		_, err := ParseStateBackend(c)
		return err
	})
}
