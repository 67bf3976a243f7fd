package restart

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Rand is the random source of the exponential-delay jitter; *rand.Rand
// from math/rand/v2 implements it, and tests inject a fixed one.
type Rand interface {
	// Int64N returns a number in [0, n); n > 0.
	Int64N(n int64) int64
}

// globalRand draws from math/rand/v2's process-wide source.
type globalRand struct{}

func (globalRand) Int64N(n int64) int64 { return rand.Int64N(n) }

// ExponentialDelayOptions configure an ExponentialDelay strategy; the
// restart-strategy.exponential-delay.* keys of the same names.
type ExponentialDelayOptions struct {
	InitialBackoff time.Duration // first delay; at least 1ms
	MaxBackoff     time.Duration // cap; at least InitialBackoff
	Multiplier     float64       // growth per attempt; greater than 1
	// ResetThreshold: a failure this long after the last restart starts
	// again from InitialBackoff and zero attempts. At least 1ms.
	ResetThreshold time.Duration
	// Jitter in [0, 1]: each delay moves by a uniform random amount within
	// ±Jitter of itself, so jobs hit by one outage do not restart in step.
	Jitter float64
	// AttemptsBeforeReset: restarts allowed before the backoff resets; one
	// more fails the job. At least 1; math.MaxInt32 (Flink's default) is
	// unlimited in practice.
	AttemptsBeforeReset int
	// Rand draws the jitter; nil uses math/rand/v2's global source.
	Rand Rand
}

// ExponentialDelay restarts after a delay that grows by Multiplier with
// each attempt, from InitialBackoff up to MaxBackoff, as Flink's
// ExponentialDelayRestartBackoffTimeStrategy (1.19+, FLIP-364):
//
//   - attempt n (from 0) waits InitialBackoff·Multiplierⁿ ± jitter, clamped
//     to [InitialBackoff, MaxBackoff];
//   - a failure at or before the scheduled restart (another region failing
//     in the same outage) is merged into the current attempt and restarts at
//     the same time;
//   - a failure at least ResetThreshold after the last restart resets the
//     attempts, and so the backoff: the job has been stable;
//   - more than AttemptsBeforeReset attempts without a reset fail the job.
type ExponentialDelay struct {
	opts        ExponentialDelayOptions
	attempt     int       // attempts since the last reset
	nextRestart time.Time // when the current attempt restarts; zero before any failure
}

// NewExponentialDelay checks o and returns the strategy.
func NewExponentialDelay(o ExponentialDelayOptions) (*ExponentialDelay, error) {
	switch {
	case o.InitialBackoff < time.Millisecond:
		return nil, &paramError{"initial backoff", o.InitialBackoff, "must be at least 1ms"}
	case o.MaxBackoff < time.Millisecond:
		return nil, &paramError{"max backoff", o.MaxBackoff, "must be at least 1ms"}
	case o.InitialBackoff > o.MaxBackoff:
		return nil, &paramError{"initial backoff", o.InitialBackoff, fmt.Sprintf("must not exceed the max backoff %v", o.MaxBackoff)}
	case !(o.Multiplier > 1) || math.IsInf(o.Multiplier, 0):
		return nil, &paramError{"backoff multiplier", o.Multiplier, "must be a number greater than 1, e.g. 1.5"}
	case o.ResetThreshold < time.Millisecond:
		return nil, &paramError{"reset backoff threshold", o.ResetThreshold, "must be at least 1ms"}
	case !(o.Jitter >= 0 && o.Jitter <= 1):
		return nil, &paramError{"jitter factor", o.Jitter, "must be between 0 and 1, e.g. 0.1"}
	case o.AttemptsBeforeReset < 1:
		return nil, &paramError{"attempts before reset backoff", o.AttemptsBeforeReset, "must be at least 1"}
	}
	if o.Rand == nil {
		o.Rand = globalRand{}
	}
	return &ExponentialDelay{opts: o}, nil
}

// OnFailure applies the rules in the type's comment.
func (e *ExponentialDelay) OnFailure(now time.Time) Decision {
	if !e.nextRestart.IsZero() && !now.After(e.nextRestart) {
		return Decision{Restart: e.canRestart(), Delay: e.nextRestart.Sub(now), Merged: true}
	}
	if e.nextRestart.IsZero() || now.Sub(e.nextRestart) >= e.opts.ResetThreshold {
		e.attempt = 0
	}
	delay := e.backoff()
	e.nextRestart = now.Add(delay)
	e.attempt++
	return Decision{Restart: e.canRestart(), Delay: delay}
}

func (e *ExponentialDelay) canRestart() bool { return e.attempt <= e.opts.AttemptsBeforeReset }

// backoff is the delay of the current attempt: computed in floating point,
// so a long run of attempts saturates at MaxBackoff instead of overflowing.
func (e *ExponentialDelay) backoff() time.Duration {
	o := e.opts
	lo, hi := float64(o.InitialBackoff), float64(o.MaxBackoff)
	base := lo * math.Pow(o.Multiplier, float64(e.attempt))
	if base*(1-o.Jitter) >= hi || math.IsInf(base, 0) {
		return o.MaxBackoff // even the lowest jitter stays above the cap
	}
	base = min(base, math.MaxInt64/4) // only with jitter 1: keeps 2*offset+1 in int64
	d := base
	if offset := int64(base * o.Jitter); offset > 0 {
		d += float64(o.Rand.Int64N(2*offset+1) - offset)
	}
	return time.Duration(max(lo, min(d, hi)))
}

func (e *ExponentialDelay) String() string {
	o := e.opts
	attempts := fmt.Sprint(o.AttemptsBeforeReset)
	if o.AttemptsBeforeReset >= math.MaxInt32 {
		attempts = "unlimited"
	}
	return fmt.Sprintf("exponential-delay (initial %v, max %v, multiplier %g, reset after %v, jitter %g, attempts before reset %s)",
		o.InitialBackoff, o.MaxBackoff, o.Multiplier, o.ResetThreshold, o.Jitter, attempts)
}
