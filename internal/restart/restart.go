// Package restart holds the restart strategies: after a job (or a failover
// region) fails, whether to restart it and after what delay. They are
// Flink's RestartBackoffTimeStrategy implementations (as of Flink 1.19),
// pure and with time injected: the scheduler calls OnFailure with the time
// of each failure and acts on the Decision; a strategy keeps the history it
// needs (attempts, failure times, the current backoff) and reads no clock.
//
//	failure at now ──▶ Strategy.OnFailure(now) ──▶ Decision{Restart, Delay, Merged}
//	                                                  │
//	                   Restart: restart after Delay ◀─┘─▶ !Restart: the job fails for good
//
// Strategies: NoRestart, FixedDelay, FailureRate and ExponentialDelay;
// FromConfig builds one from restart-strategy.* keys with Flink's names and
// defaults (exponential-delay when checkpoints are on, else none). Which
// failures bypass the strategy (Flink's non-recoverable errors) is the
// scheduler's business.
package restart

import (
	"fmt"
	"time"
)

// Decision is a strategy's answer to one failure.
type Decision struct {
	// Restart is false when the job must fail for good.
	Restart bool
	// Delay is how long to wait, from the failure, before restarting.
	Delay time.Duration
	// Merged is true when the failure came while a restart was already
	// scheduled (exponential-delay only, as in Flink 1.19+: failures of
	// several regions in one outage count as one attempt); Delay then ends
	// at the already scheduled restart.
	Merged bool
}

// Strategy decides restarts. Implementations are not safe for concurrent
// use: the JobMaster's main goroutine owns one per job.
type Strategy interface {
	// OnFailure records a failure at now and decides what follows. Calls
	// must not go back in time.
	OnFailure(now time.Time) Decision
	// String describes the strategy and its settings, for logs and the
	// job's configuration view.
	String() string
}

// paramError names the parameter a constructor refused, so FromConfig can
// name the configuration key instead.
type paramError struct {
	param string
	value any
	rule  string
}

func (e *paramError) Error() string {
	return fmt.Sprintf("restart strategy: %s = %v: %s", e.param, e.value, e.rule)
}

// noRestart never restarts.
type noRestart struct{}

// NoRestart returns the strategy that fails the job on its first failure.
func NoRestart() Strategy { return noRestart{} }

func (noRestart) OnFailure(time.Time) Decision { return Decision{} }
func (noRestart) String() string               { return "none" }

// FixedDelay restarts up to a fixed number of times, each after the same
// delay. The count never resets: the attempts are for the job's lifetime,
// as in Flink.
type FixedDelay struct {
	attempts int
	delay    time.Duration
	failures int
}

// NewFixedDelay returns a FixedDelay strategy allowing attempts restarts
// (0 or more), each delay (0 or more) after its failure.
func NewFixedDelay(attempts int, delay time.Duration) (*FixedDelay, error) {
	if attempts < 0 {
		return nil, &paramError{"attempts", attempts, "must not be negative"}
	}
	if delay < 0 {
		return nil, &paramError{"delay", delay, "must not be negative"}
	}
	return &FixedDelay{attempts: attempts, delay: delay}, nil
}

// OnFailure counts the failure; the job restarts while the failures do not
// exceed the attempts.
func (f *FixedDelay) OnFailure(time.Time) Decision {
	f.failures++
	if f.failures > f.attempts {
		return Decision{}
	}
	return Decision{Restart: true, Delay: f.delay}
}

func (f *FixedDelay) String() string {
	return fmt.Sprintf("fixed-delay (%d attempts, delay %v)", f.attempts, f.delay)
}

// FailureRate restarts unless more than maxFailures failures fall within
// one interval: with maxFailures 3 and interval 1m, the fourth failure
// within a minute of the first fails the job. It keeps the last
// maxFailures+1 failure times, as Flink does.
type FailureRate struct {
	maxFailures int
	interval    time.Duration
	delay       time.Duration
	times       []time.Time // at most maxFailures+1, oldest first
}

// NewFailureRate returns a FailureRate strategy: at most maxFailures (1 or
// more) failures per interval (positive), each restart delay (0 or more)
// after its failure.
func NewFailureRate(maxFailures int, interval, delay time.Duration) (*FailureRate, error) {
	switch {
	case maxFailures < 1:
		return nil, &paramError{"max failures per interval", maxFailures, "must be at least 1"}
	case interval <= 0:
		return nil, &paramError{"failure rate interval", interval, "must be positive"}
	case delay < 0:
		return nil, &paramError{"delay", delay, "must not be negative"}
	}
	return &FailureRate{maxFailures: maxFailures, interval: interval, delay: delay}, nil
}

// OnFailure records the failure and restarts unless the oldest of the last
// maxFailures+1 failures is within interval of now (Flink's test is
// strict: exactly one interval apart still fails).
func (f *FailureRate) OnFailure(now time.Time) Decision {
	if len(f.times) > f.maxFailures {
		f.times = f.times[1:]
	}
	f.times = append(f.times, now)
	if len(f.times) > f.maxFailures && now.Sub(f.times[0]) <= f.interval {
		return Decision{}
	}
	return Decision{Restart: true, Delay: f.delay}
}

func (f *FailureRate) String() string {
	return fmt.Sprintf("failure-rate (%d failures per %v, delay %v)", f.maxFailures, f.interval, f.delay)
}
