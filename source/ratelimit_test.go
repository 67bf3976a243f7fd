package source

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/connector"
)

// fakeClock is a manual clock: Sleep advances it at once.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(d time.Duration) {
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
}

// runtimeWait is how long the runtime waits after NothingAvailable.
const runtimeWait = 5 * time.Millisecond

type limiterRun struct {
	emitted int
	reads   int
	spins   int // Reads that returned MoreAvailable, emitted nothing and let no time pass
	ended   bool
}

// driveLimited plays the runtime's source loop against r for d of fake time:
// Read, and after NothingAvailable advance the clock by the runtime's wait.
// stall, if set, is called before every Read and may advance the clock to
// model a slow downstream.
func driveLimited[T any](t *testing.T, r connector.SourceReader[T], clk *fakeClock, d time.Duration, stall func(read int)) limiterRun {
	t.Helper()
	var run limiterRun
	end := clk.now.Add(d)
	var out recorder[T]
	for clk.now.Before(end) {
		if stall != nil {
			stall(run.reads)
		}
		before, at := len(out.got), clk.now
		status, err := r.Read(&out)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		run.reads++
		n := len(out.got) - before
		if n > batchSize {
			t.Fatalf("one Read emitted %d records, more than %d", n, batchSize)
		}
		run.emitted += n
		switch status {
		case connector.EndOfInput:
			run.ended = true
			return run
		case connector.NothingAvailable:
			clk.now = clk.now.Add(runtimeWait)
		case connector.MoreAvailable:
			if n == 0 && clk.now.Equal(at) {
				run.spins++
			}
		}
	}
	return run
}

func openLimited[T any](t *testing.T, src connector.Source[T], perSecond float64, clk *fakeClock, sub, p int) connector.SourceReader[T] {
	t.Helper()
	r, err := rateLimitedSource[T]{inner: src, perSecond: perSecond, clock: clk}.Open(connector.SourceContext{OperatorName: "limited", Subtask: sub, Parallelism: p})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRateLimitedEmitsAboutTheRate(t *testing.T) {
	tests := []struct {
		perSecond float64
		p         int
		simulated time.Duration
	}{
		{0.5, 1, time.Minute},
		{7, 1, 20 * time.Second},
		{99, 1, 20 * time.Second},
		{1000, 1, 20 * time.Second},
		{1000, 4, 20 * time.Second},
		{25_000, 3, 20 * time.Second},
		{1_000_000, 1, 2 * time.Second},
		{10_000_000, 2, 200 * time.Millisecond},
	}
	for _, tc := range tests {
		simulated := tc.simulated
		total := 0
		for sub := range tc.p {
			clk := newFakeClock()
			gen := Generator(-1, func(i int64) int64 { return i })
			r := openLimited(t, gen, tc.perSecond, clk, sub, tc.p)
			run := driveLimited(t, r, clk, simulated, nil)
			total += run.emitted

			if run.spins > 0 {
				t.Errorf("rate %v p=%d subtask %d: %d Reads returned MoreAvailable without emitting or waiting (busy spin)", tc.perSecond, tc.p, sub, run.spins)
			}
			for _, s := range clk.sleeps {
				if s <= 0 || s > rateStep {
					t.Fatalf("rate %v p=%d: slept %v, want a coarse step in (0, %v]", tc.perSecond, tc.p, s, rateStep)
				}
			}
			// Coarse sleeps: about one per step of time, never one per record.
			if maxSleeps := 2*int(simulated/rateStep) + 2; len(clk.sleeps) > maxSleeps {
				t.Errorf("rate %v p=%d: %d sleeps in %v, want at most %d", tc.perSecond, tc.p, len(clk.sleeps), simulated, maxSleeps)
			}
			r.Close()
		}
		want := tc.perSecond * simulated.Seconds()
		// Loose bounds: the first chunk leaves at once, and the last may
		// leave just after the end.
		perSubtask := tc.perSecond / float64(tc.p)
		slack := float64(tc.p) * (2*max(perSubtask*rateStep.Seconds(), 1) + 1)
		if got := float64(total); got < 0.97*want-slack || got > want+slack {
			t.Errorf("rate %v p=%d: emitted %d in %v, want about %.0f (±%.0f)", tc.perSecond, tc.p, total, simulated, want, slack)
		}
	}
}

func TestRateLimitedCatchesUpBoundedlyAfterStall(t *testing.T) {
	const perSecond = 10_000
	clk := newFakeClock()
	r := openLimited(t, Generator(-1, func(i int64) int64 { return i }), perSecond, clk, 0, 1)
	defer r.Close()
	// Downstream stalls for 5 s before the 100th Read: afterwards the source
	// may burst by the bucket's capacity, not by the 50,000 records it missed.
	stalled := false
	run := driveLimited(t, r, clk, 10*time.Second, func(read int) {
		if read == 100 && !stalled {
			stalled = true
			clk.now = clk.now.Add(5 * time.Second)
		}
	})
	capacity := perSecond * rateBurst.Seconds()
	// 5 s of the 10 s were spent stalled.
	if want := perSecond*5.0 + capacity; math.Abs(float64(run.emitted)-want) > perSecond*0.05 {
		t.Fatalf("emitted %d, want about %.0f (5 s at the rate plus a burst of %.0f)", run.emitted, want, capacity)
	}
}

func TestRateLimitedKeepsOrderTimestampsAndEnd(t *testing.T) {
	vals := make([]int64, 5000)
	for i := range vals {
		vals[i] = int64(i)
	}
	inner := FromSliceWithTimestamps(vals, func(v int64) int64 { return v + 100 })
	clk := newFakeClock()
	// 300/s: the inner reader emits 1024 per Read, far beyond a Read's budget.
	r, err := rateLimitedSource[int64]{inner: inner, perSecond: 300, clock: clk}.Open(connector.SourceContext{OperatorName: "l", Subtask: 0, Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out recorder[int64]
	start := clk.now
	for reads := 0; ; reads++ {
		if reads > 1_000_000 {
			t.Fatal("no end of input")
		}
		before := len(out.got)
		status, err := r.Read(&out)
		if err != nil {
			t.Fatal(err)
		}
		if status == connector.EndOfInput {
			break
		}
		if status == connector.NothingAvailable {
			if len(out.got) != before {
				t.Fatal("a Read emitted records and returned NothingAvailable while more were held")
			}
			clk.now = clk.now.Add(runtimeWait)
		}
	}
	for i, g := range out.got {
		if g.v != int64(i) || g.ts != int64(i)+100 {
			t.Fatalf("record %d = %v, want {%d %d}", i, g, i, i+100)
		}
	}
	if len(out.got) != len(vals) {
		t.Fatalf("got %d records, want %d", len(out.got), len(vals))
	}
	if took := clk.now.Sub(start).Seconds(); took < 16 || took > 17.5 {
		t.Fatalf("5000 records at 300/s took %.1f s of fake time, want about 16.7", took)
	}
}

// idleReader has nothing to read.
type idleReader struct{ reads int }

func (r *idleReader) Read(connector.SourceOutput[int]) (connector.ReadStatus, error) {
	r.reads++
	return connector.NothingAvailable, nil
}
func (r *idleReader) Close() error { return nil }

type idleSource struct{ r *idleReader }

func (s idleSource) Open(connector.SourceContext) (connector.SourceReader[int], error) {
	return s.r, nil
}

func TestRateLimitedPassesNothingAvailableThrough(t *testing.T) {
	inner := &idleReader{}
	clk := newFakeClock()
	r := openLimited[int](t, idleSource{inner}, 1000, clk, 0, 1)
	for range 3 {
		if status, err := r.Read(&recorder[int]{}); err != nil || status != connector.NothingAvailable {
			t.Fatalf("Read of an idle source: %v, %v; want NothingAvailable", status, err)
		}
	}
	if inner.reads != 3 {
		t.Fatalf("inner Reads = %d, want 3: one per Read, no polling loop", inner.reads)
	}
}

func TestRateLimitedUnlimitedAndInvalid(t *testing.T) {
	gen := Generator(10, func(i int64) int64 { return i })
	for _, rate := range []float64{0, math.Inf(1)} {
		r, err := RateLimited(gen, rate).Open(connector.SourceContext{OperatorName: "l", Parallelism: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, limited := r.(*rateLimitedReader[int64]); limited {
			t.Errorf("rate %v: got a limited reader, want the source's own", rate)
		}
	}
	if got := readAll(t, RateLimited(gen, 0), 0, 1); len(got) != 10 {
		t.Errorf("unlimited: got %d records, want 10", len(got))
	}
	for _, rate := range []float64{-1, math.NaN()} {
		_, err := RateLimited(gen, rate).Open(connector.SourceContext{OperatorName: "l", Parallelism: 1})
		if err == nil || !strings.Contains(err.Error(), `source "l"`) || !strings.Contains(err.Error(), "0 for no limit") {
			t.Errorf("rate %v: Open error %v, want one that names the source and the fix", rate, err)
		}
	}
}

func TestRateLimitedBoundedSourceEnds(t *testing.T) {
	clk := newFakeClock()
	r := openLimited(t, FromSlice([]string{"a", "b", "c"}), 2, clk, 0, 1)
	run := driveLimited(t, r, clk, time.Minute, nil)
	if !run.ended || run.emitted != 3 {
		t.Fatalf("got %+v, want 3 records and the end of input", run)
	}
	if took := clk.now.Sub(time.Unix(1_700_000_000, 0)); took < 900*time.Millisecond || took > 1100*time.Millisecond {
		t.Fatalf("3 records at 2/s took %v, want about 1s (the first leaves at once)", took)
	}
	if !slices.Equal([]int{run.spins}, []int{0}) {
		t.Fatalf("%d busy spins", run.spins)
	}
}
