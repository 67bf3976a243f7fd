package restart

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const s = time.Second

// failure is one failure of a script, at t0+At, and the expected decision.
type failure struct {
	At   time.Duration
	Want Decision
}

func restartAfter(d time.Duration) Decision { return Decision{Restart: true, Delay: d} }
func merged(d time.Duration) Decision       { return Decision{Restart: true, Delay: d, Merged: true} }

var fail = Decision{}

func runScript(t *testing.T, st Strategy, script []failure) {
	t.Helper()
	for i, f := range script {
		if got := st.OnFailure(t0.Add(f.At)); got != f.Want {
			t.Fatalf("failure %d at %v: got %+v, want %+v (%s)", i, f.At, got, f.Want, st)
		}
	}
}

func TestNoRestart(t *testing.T) {
	runScript(t, NoRestart(), []failure{{0, fail}, {time.Hour, fail}})
}

func TestFixedDelay(t *testing.T) {
	tests := []struct {
		name     string
		attempts int
		delay    time.Duration
		script   []failure
	}{
		{"Flink's default: one restart", 1, s, []failure{{0, restartAfter(s)}, {time.Hour, fail}}},
		{"attempts are for the job's lifetime", 2, 5 * s, []failure{
			{0, restartAfter(5 * s)}, {24 * time.Hour, restartAfter(5 * s)}, {48 * time.Hour, fail}}},
		{"zero attempts never restarts", 0, s, []failure{{0, fail}}},
		{"zero delay restarts at once", 3, 0, []failure{{0, restartAfter(0)}, {s, restartAfter(0)}, {2 * s, restartAfter(0)}, {3 * s, fail}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewFixedDelay(tc.attempts, tc.delay)
			if err != nil {
				t.Fatal(err)
			}
			runScript(t, st, tc.script)
		})
	}
	if _, err := NewFixedDelay(-1, s); err == nil || err.Error() != "restart strategy: attempts = -1: must not be negative" {
		t.Errorf("negative attempts: err = %v", err)
	}
	if _, err := NewFixedDelay(1, -s); err == nil {
		t.Error("negative delay accepted")
	}
}

func TestFailureRate(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		script []failure
	}{
		{"Flink's default: one failure per minute", 1, []failure{
			{0, restartAfter(s)}, {30 * s, fail}}},
		{"failures spread out restart", 1, []failure{
			{0, restartAfter(s)}, {61 * s, restartAfter(s)}, {122 * s, restartAfter(s)}}},
		{"exactly one interval apart still fails (strict, as Flink)", 1, []failure{
			{0, restartAfter(s)}, {60 * s, fail}}},
		{"the window slides over the last max+1 failures", 2, []failure{
			{0, restartAfter(s)}, {10 * s, restartAfter(s)}, {61 * s, restartAfter(s)}, {65 * s, fail}}},
		{"three within the interval with max 2", 2, []failure{
			{0, restartAfter(s)}, {10 * s, restartAfter(s)}, {20 * s, fail}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewFailureRate(tc.max, time.Minute, s)
			if err != nil {
				t.Fatal(err)
			}
			runScript(t, st, tc.script)
		})
	}
	for _, bad := range []struct {
		max             int
		interval, delay time.Duration
	}{{0, time.Minute, s}, {1, 0, s}, {1, time.Minute, -s}} {
		if _, err := NewFailureRate(bad.max, bad.interval, bad.delay); err == nil {
			t.Errorf("NewFailureRate(%d, %v, %v) accepted", bad.max, bad.interval, bad.delay)
		}
	}
}

// fixedRand returns the same fraction of every range: 0 is the lowest
// jitter, 1 the highest.
type fixedRand float64

func (f fixedRand) Int64N(n int64) int64 { return int64(float64(n-1) * float64(f)) }

func TestExponentialDelay(t *testing.T) {
	base := ExponentialDelayOptions{
		InitialBackoff:      s,
		MaxBackoff:          10 * s,
		Multiplier:          2,
		ResetThreshold:      60 * s,
		AttemptsBeforeReset: math.MaxInt32,
	}
	tests := []struct {
		name   string
		mod    func(*ExponentialDelayOptions)
		script []failure
	}{
		{
			name: "backoff doubles up to the cap and resets after a stable period",
			script: []failure{
				{0, restartAfter(1 * s)},        // restarts at 1s
				{5 * s, restartAfter(2 * s)},    // at 7s
				{10 * s, restartAfter(4 * s)},   // at 14s
				{20 * s, restartAfter(8 * s)},   // at 28s
				{30 * s, restartAfter(10 * s)},  // 16s capped; at 40s
				{41 * s, restartAfter(10 * s)},  // at 51s
				{110 * s, restartAfter(10 * s)}, // 59s after the restart: not yet stable
				{180 * s, restartAfter(1 * s)},  // 60s after the restart at 120s: reset
				{182 * s, restartAfter(2 * s)},
			},
		},
		{
			name: "failures before the scheduled restart merge into one attempt",
			script: []failure{
				{0, restartAfter(1 * s)},
				{5 * s, restartAfter(2 * s)}, // restart at 7s
				{6 * s, merged(1 * s)},
				{7 * s, merged(0)},            // at the restart itself: still merged
				{8 * s, restartAfter(4 * s)},  // the third attempt
				{9 * s, merged(3 * s)},        // restart at 12s
				{13 * s, restartAfter(8 * s)}, // merged failures did not grow the backoff
			},
		},
		{
			name: "attempts before reset: one more fails the job",
			mod:  func(o *ExponentialDelayOptions) { o.AttemptsBeforeReset = 2 },
			script: []failure{
				{0, restartAfter(1 * s)},
				{5 * s, restartAfter(2 * s)},
				{10 * s, Decision{Restart: false, Delay: 4 * s}},
			},
		},
		{
			name: "attempts count again from zero after a reset",
			mod:  func(o *ExponentialDelayOptions) { o.AttemptsBeforeReset = 2 },
			script: []failure{
				{0, restartAfter(1 * s)},
				{5 * s, restartAfter(2 * s)},     // restarts at 7s
				{67 * s, restartAfter(1 * s)},    // stable for 60s
				{70 * s, restartAfter(2 * s)},    // attempt 2 of 2
				{71 * s, merged(1 * s)},          // merged failures keep the verdict
				{80 * s, Decision{Delay: 4 * s}}, // attempt 3
			},
		},
		{
			name: "a fractional multiplier (Flink's default 1.5)",
			mod:  func(o *ExponentialDelayOptions) { o.Multiplier = 1.5 },
			script: []failure{
				{0, restartAfter(1000 * time.Millisecond)},
				{2 * s, restartAfter(1500 * time.Millisecond)},
				{4 * s, restartAfter(2250 * time.Millisecond)},
				{7 * s, restartAfter(3375 * time.Millisecond)},
			},
		},
		{
			name: "lowest jitter: the delay shrinks by the factor, never below the initial backoff",
			mod:  func(o *ExponentialDelayOptions) { o.Jitter = 0.25; o.Rand = fixedRand(0) },
			script: []failure{
				{0, restartAfter(1 * s)},                       // 0.75s, raised to the initial backoff
				{5 * s, restartAfter(1500 * time.Millisecond)}, // 2s - 0.5s
				{10 * s, restartAfter(3 * s)},                  // 4s - 1s
				{20 * s, restartAfter(6 * s)},                  // 8s - 2s
				{30 * s, restartAfter(10 * s)},                 // 16s - 4s = 12s, capped
			},
		},
		{
			name: "highest jitter: the delay grows by the factor, never above the max backoff",
			mod:  func(o *ExponentialDelayOptions) { o.Jitter = 0.25; o.Rand = fixedRand(1) },
			script: []failure{
				{0, restartAfter(1250 * time.Millisecond)},
				{5 * s, restartAfter(2500 * time.Millisecond)},
				{10 * s, restartAfter(5 * s)},
				{20 * s, restartAfter(10 * s)}, // 8s + 2s
				{31 * s, restartAfter(10 * s)}, // capped
			},
		},
		{
			name: "full jitter and a long run of attempts neither overflow nor escape the bounds",
			mod:  func(o *ExponentialDelayOptions) { o.Jitter = 1; o.Rand = fixedRand(1) },
			script: func() []failure {
				var out []failure
				at := time.Duration(0)
				for range 2000 {
					at += 11 * s
					out = append(out, failure{at, restartAfter(10 * s)})
				}
				out[0].Want = restartAfter(2 * s)
				out[1].Want = restartAfter(4 * s)
				out[2].Want = restartAfter(8 * s)
				return out
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.mod != nil {
				tc.mod(&o)
			}
			st, err := NewExponentialDelay(o)
			if err != nil {
				t.Fatal(err)
			}
			runScript(t, st, tc.script)
		})
	}
}

func TestExponentialDelayJitterIsBounded(t *testing.T) {
	st, err := NewExponentialDelay(ExponentialDelayOptions{
		InitialBackoff: s, MaxBackoff: time.Minute, Multiplier: 2,
		ResetThreshold: time.Hour, Jitter: 0.1, AttemptsBeforeReset: math.MaxInt32,
	})
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	for i := range 12 {
		d := st.OnFailure(at).Delay
		want := float64(s) * math.Pow(2, float64(i))
		lo, hi := min(max(float64(s), want*0.9), float64(time.Minute)), min(float64(time.Minute), want*1.1)
		if float64(d) < lo || float64(d) > hi {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, time.Duration(lo), time.Duration(hi))
		}
		at = at.Add(d + s)
	}
}

func TestNewExponentialDelayRefusesBadOptions(t *testing.T) {
	good := ExponentialDelayOptions{InitialBackoff: s, MaxBackoff: time.Minute, Multiplier: 1.5,
		ResetThreshold: time.Hour, Jitter: 0.1, AttemptsBeforeReset: 1}
	if _, err := NewExponentialDelay(good); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ExponentialDelayOptions)
	}{
		{"initial below 1ms", func(o *ExponentialDelayOptions) { o.InitialBackoff = 0 }},
		{"max below 1ms", func(o *ExponentialDelayOptions) { o.MaxBackoff = time.Microsecond }},
		{"initial above max", func(o *ExponentialDelayOptions) { o.InitialBackoff = 2 * time.Minute }},
		{"multiplier 1", func(o *ExponentialDelayOptions) { o.Multiplier = 1 }},
		{"multiplier NaN", func(o *ExponentialDelayOptions) { o.Multiplier = math.NaN() }},
		{"multiplier Inf", func(o *ExponentialDelayOptions) { o.Multiplier = math.Inf(1) }},
		{"threshold 0", func(o *ExponentialDelayOptions) { o.ResetThreshold = 0 }},
		{"jitter negative", func(o *ExponentialDelayOptions) { o.Jitter = -0.1 }},
		{"jitter above 1", func(o *ExponentialDelayOptions) { o.Jitter = 1.5 }},
		{"jitter NaN", func(o *ExponentialDelayOptions) { o.Jitter = math.NaN() }},
		{"attempts 0", func(o *ExponentialDelayOptions) { o.AttemptsBeforeReset = 0 }},
	} {
		o := good
		tc.mod(&o)
		if _, err := NewExponentialDelay(o); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
