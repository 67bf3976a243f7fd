package stream_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/stream"
)

// End-to-end tests of process functions on the embedded executor, with an
// in-memory source and a collecting sink defined here.

// launchQuietly runs the test's jobs with parallelism p and no progress lines.
func launchQuietly(t *testing.T, p int) {
	t.Helper()
	launch.Set(&launch.Settings{Parallelism: p, Quiet: true, Context: context.Background()})
	t.Cleanup(func() { launch.Set(nil) })
}

// checkNoLeaks fails the test if it leaves goroutines behind.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// timedSource emits vals with the timestamps ts gives them (none if ts is
// nil); subtask i of p emits vals[i], vals[i+p], … so that each subtask's
// timestamps rise when vals are sorted by time. Every pauseEvery reads (0:
// never) a reader reports NothingAvailable, letting time pass so that
// periodic watermarks interleave with the records.
type timedSource[T any] struct {
	vals       []T
	ts         func(T) int64
	batch      int
	pauseEvery int
}

func (s timedSource[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	return &timedReader[T]{src: s, i: ctx.Subtask, step: ctx.Parallelism}, nil
}

type timedReader[T any] struct {
	src     timedSource[T]
	i, step int
	reads   int
}

func (r *timedReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	r.reads++
	if r.src.pauseEvery > 0 && r.reads%r.src.pauseEvery == 0 {
		return connector.NothingAvailable, nil
	}
	for n := 0; n < max(r.src.batch, 1) && r.i < len(r.src.vals); n++ {
		v := r.src.vals[r.i]
		if r.src.ts != nil {
			out.CollectWithTimestamp(v, r.src.ts(v))
		} else {
			out.Collect(v)
		}
		r.i += r.step
	}
	if r.i >= len(r.src.vals) {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *timedReader[T]) Close() error { return nil }

// stamped is a record as the sink received it.
type stamped[T any] struct {
	V  T
	TS int64
}

// gatherSink collects every record with its timestamp.
type gatherSink[T any] struct {
	mu   sync.Mutex
	recs []stamped[T]
}

func (g *gatherSink[T]) Open(connector.SinkContext) (connector.SinkWriter[T], error) { return g, nil }
func (g *gatherSink[T]) Write(v T, ts int64) error {
	g.mu.Lock()
	g.recs = append(g.recs, stamped[T]{v, ts})
	g.mu.Unlock()
	return nil
}
func (g *gatherSink[T]) Finish() error { return nil }
func (g *gatherSink[T]) Close() error  { return nil }

func (g *gatherSink[T]) values() []T {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]T, len(g.recs))
	for i, r := range g.recs {
		out[i] = r.V
	}
	return out
}

// click is a keyed event with an event time.
type click struct {
	User string
	TS   int64
}

// windowCount is what windowCounter emits: the number of a user's clicks in
// the 100 ms window ending at End, or (End == -1) the user's total.
type windowCount struct {
	User string
	End  int64
	N    int
}

// windowCounter counts clicks per user and 100 ms window with an event-time
// timer per window, and emits each user's total from a timer at the end of
// input. It keeps its state handles in fields: every subtask has its own
// copy of the struct.
type windowCounter struct {
	perWindow stream.MapState[int64, int]
	total     stream.ValueState[int]
}

func (c *windowCounter) Open(rc *stream.RuntimeContext) (err error) {
	if c.perWindow, err = stream.MapStateOf[int64, int](rc, "per-window"); err != nil {
		return err
	}
	c.total, err = stream.ValueStateOf[int](rc, "total")
	return err
}

func (c *windowCounter) ProcessElement(ctx *stream.KeyedContext[string, windowCount], e click) error {
	end := e.TS/100*100 + 99
	if wm := ctx.TimerService().CurrentWatermark(); wm >= end {
		return fmt.Errorf("click at %d is late: the watermark is already %d", e.TS, wm)
	}
	if ctx.Key() != e.User || ctx.Timestamp() != e.TS {
		return fmt.Errorf("context says key %q at %d for a click of %q at %d", ctx.Key(), ctx.Timestamp(), e.User, e.TS)
	}
	n, _ := c.perWindow.Get(end)
	c.perWindow.Put(end, n+1)
	ctx.TimerService().RegisterEventTimeTimer(end)
	total, ok := c.total.Value()
	if !ok {
		ctx.TimerService().RegisterEventTimeTimer(stream.MaxWatermark)
	}
	c.total.Update(total + 1)
	return nil
}

func (c *windowCounter) OnTimer(ctx *stream.KeyedContext[string, windowCount], ts int64, domain stream.TimeDomain) error {
	if domain != stream.EventTime {
		return fmt.Errorf("unexpected %s timer", domain)
	}
	if ts == stream.MaxWatermark {
		total, _ := c.total.Value()
		ctx.CollectWithTimestamp(windowCount{ctx.Key(), -1, total}, 0)
		return nil
	}
	n, ok := c.perWindow.Get(ts)
	if !ok {
		return fmt.Errorf("timer for window %d of %q fired, but the window holds nothing (fired twice?)", ts, ctx.Key())
	}
	c.perWindow.Remove(ts)
	ctx.Collect(windowCount{ctx.Key(), ts, n})
	return nil
}

func clicks(n int) []click {
	out := make([]click, n)
	for i := range out {
		out[i] = click{User: fmt.Sprint("u", (i*7)%11), TS: int64(i * 3)}
	}
	return out
}

// TestKeyedProcessWindowCountsMatchIndependentCount counts clicks per user
// and window with event-time timers and compares with a direct count, at
// parallelism 2 and 3, with watermarks interleaved with the records.
func TestKeyedProcessWindowCountsMatchIndependentCount(t *testing.T) {
	events := clicks(4000)
	want := map[windowCount]int{} // (user, end) → count, with N unset
	totals := map[string]int{}
	for _, e := range events {
		want[windowCount{User: e.User, End: e.TS/100*100 + 99}]++
		totals[e.User]++
	}
	for _, p := range []int{2, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			checkNoLeaks(t)
			launchQuietly(t, p)
			env := stream.NewEnvironment()
			if err := env.Configure("pipeline.auto-watermark-interval", "1ms"); err != nil {
				t.Fatal(err)
			}
			src := stream.FromSource(env, "clicks", connector.Source[click](timedSource[click]{
				vals: events, ts: func(c click) int64 { return c.TS }, batch: 20, pauseEvery: 10}))
			counts := stream.Process(stream.KeyBy(src, func(c click) string { return c.User }), "count", &windowCounter{})
			sink := &gatherSink[windowCount]{}
			stream.SinkTo(counts, "out", connector.Sink[windowCount](sink))
			if err := env.Execute("window-count"); err != nil {
				t.Fatal(err)
			}
			got := map[windowCount]int{}
			gotTotals := map[string]int{}
			for _, r := range sink.recs {
				c := r.V
				if c.End == -1 {
					if _, dup := gotTotals[c.User]; dup {
						t.Fatalf("total of %q emitted twice", c.User)
					}
					gotTotals[c.User] = c.N
					continue
				}
				if r.TS != c.End {
					t.Fatalf("window result %+v has timestamp %d, want the timer's time %d", c, r.TS, c.End)
				}
				k := windowCount{User: c.User, End: c.End}
				if _, dup := got[k]; dup {
					t.Fatalf("window %+v emitted twice", k)
				}
				got[k] = c.N
			}
			if !maps.Equal(got, want) {
				t.Fatalf("window counts differ: got %d windows, want %d", len(got), len(want))
			}
			if !maps.Equal(gotTotals, totals) {
				t.Fatalf("totals: got %v, want %v", gotTotals, totals)
			}
		})
	}
}

// TestProcessUnkeyed runs a non-keyed process function with Open and Close.
func TestProcessUnkeyed(t *testing.T) {
	checkNoLeaks(t)
	launchQuietly(t, 3)
	closedMu.Lock()
	closedCopies = 0
	closedMu.Unlock()
	env := stream.NewEnvironment()
	nums := make([]int, 300)
	for i := range nums {
		nums[i] = i
	}
	src := stream.FromSource(env, "nums", connector.Source[int](timedSource[int]{
		vals: nums, ts: func(v int) int64 { return int64(v) * 10 }, batch: 7}))
	fn := &subtaskTagger{}
	tagged := stream.ProcessUnkeyed(src, "tag", fn)
	sink := &gatherSink[string]{}
	stream.SinkTo(tagged, "out", connector.Sink[string](sink))
	if err := env.Execute("tag"); err != nil {
		t.Fatal(err)
	}
	if len(sink.recs) != len(nums) {
		t.Fatalf("got %d records, want %d", len(sink.recs), len(nums))
	}
	for _, r := range sink.recs {
		var v, sub, par int
		if _, err := fmt.Sscanf(r.V, "%d@%d/%d", &v, &sub, &par); err != nil {
			t.Fatalf("record %q: %v", r.V, err)
		}
		if par != 3 || sub < 0 || sub >= 3 || r.TS != int64(v)*10+1 {
			t.Fatalf("record %q with timestamp %d", r.V, r.TS)
		}
	}
	if fn.opened != 0 {
		t.Fatal("the function given to ProcessUnkeyed was opened itself, not a per-subtask copy")
	}
	closedMu.Lock()
	defer closedMu.Unlock()
	if closedCopies != 3 {
		t.Fatalf("%d copies closed, want one per subtask (3)", closedCopies)
	}
}

var (
	closedMu     sync.Mutex
	closedCopies int
)

// subtaskTagger tags each number with its subtask and shifts its timestamp.
type subtaskTagger struct {
	opened      int
	subtask     int
	parallelism int
}

func (s *subtaskTagger) Open(rc *stream.RuntimeContext) error {
	s.opened++
	s.subtask, s.parallelism = rc.Subtask(), rc.Parallelism()
	if rc.OperatorName() != "tag" || rc.MaxParallelism() < rc.Parallelism() {
		return fmt.Errorf("runtime context: operator %q, max parallelism %d", rc.OperatorName(), rc.MaxParallelism())
	}
	return nil
}

func (s *subtaskTagger) ProcessElement(ctx *stream.Context[string], v int) error {
	if s.opened != 1 {
		return fmt.Errorf("copy opened %d times", s.opened)
	}
	ctx.CollectWithTimestamp(fmt.Sprintf("%d@%d/%d", v, s.subtask, s.parallelism), ctx.Timestamp()+1)
	return nil
}

func (s *subtaskTagger) Close() error {
	closedMu.Lock()
	closedCopies++
	closedMu.Unlock()
	return nil
}

// TestProcessFuncAdapters uses plain functions as process functions.
func TestProcessFuncAdapters(t *testing.T) {
	checkNoLeaks(t)
	launchQuietly(t, 2)
	env := stream.NewEnvironment()
	words := []string{"a", "bb", "a", "ccc", "bb", "a"}
	src := stream.FromSource(env, "words", connector.Source[string](timedSource[string]{vals: words, batch: 2}))
	passed := stream.ProcessUnkeyed(src, "pass", stream.ProcessFunc[string, string](func(ctx *stream.Context[string], w string) error {
		if ctx.Timestamp() != stream.NoTimestamp {
			return fmt.Errorf("record without a timestamp has %d", ctx.Timestamp())
		}
		ctx.Collect(w)
		return nil
	}))
	keyed := stream.KeyBy(passed, func(w string) string { return w })
	firsts := stream.Process(keyed, "first", stream.KeyedProcessFunc[string, string, string](func(ctx *stream.KeyedContext[string, string], w string) error {
		ctx.Collect(ctx.Key() + "!")
		return nil
	}))
	sink := &gatherSink[string]{}
	stream.SinkTo(firsts, "out", connector.Sink[string](sink))
	if err := env.Execute("adapters"); err != nil {
		t.Fatal(err)
	}
	got := sink.values()
	slices.Sort(got)
	if want := []string{"a!", "a!", "a!", "bb!", "bb!", "ccc!"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// failingCounter fails on a chosen key, or panics in OnTimer.
type failingCounter struct {
	failKey    string
	panicTimer bool
}

func (f *failingCounter) ProcessElement(ctx *stream.KeyedContext[string, int], w string) error {
	if w == f.failKey {
		return errors.New("this key is cursed")
	}
	ctx.TimerService().RegisterEventTimeTimer(10)
	return nil
}

func (f *failingCounter) OnTimer(ctx *stream.KeyedContext[string, int], ts int64, _ stream.TimeDomain) error {
	if f.panicTimer {
		var m map[string]int
		m[ctx.Key()] = 1 // assignment to entry in nil map
	}
	return nil
}

// TestProcessErrorsFailTheJob checks that errors and panics of process
// functions fail the job with the operator's name and what went wrong.
func TestProcessErrorsFailTheJob(t *testing.T) {
	run := func(t *testing.T, build func(env *stream.Environment, src *stream.DataStream[string])) error {
		checkNoLeaks(t)
		launchQuietly(t, 2)
		env := stream.NewEnvironment()
		src := stream.FromSource(env, "words", connector.Source[string](timedSource[string]{vals: []string{"x", "y", "cursed", "z"}, batch: 1}))
		build(env, src)
		return env.Execute("failing")
	}
	sinkOf := func(d *stream.DataStream[int]) {
		stream.SinkTo(d, "out", connector.Sink[int](&gatherSink[int]{}))
	}
	byWord := func(w string) string { return w }
	t.Run("error", func(t *testing.T) {
		err := run(t, func(env *stream.Environment, src *stream.DataStream[string]) {
			sinkOf(stream.Process(stream.KeyBy(src, byWord), "curse-check", &failingCounter{failKey: "cursed"}))
		})
		for _, want := range []string{`operator "curse-check"`, "key cursed", "this key is cursed"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v does not contain %q", err, want)
			}
		}
	})
	t.Run("panic in OnTimer", func(t *testing.T) {
		err := run(t, func(env *stream.Environment, src *stream.DataStream[string]) {
			sinkOf(stream.Process(stream.KeyBy(src, byWord), "timer-panic", &failingCounter{panicTimer: true}))
		})
		for _, want := range []string{`operator "timer-panic"`, "panicked", "nil map"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v does not contain %q", err, want)
			}
		}
	})
	t.Run("state without a key", func(t *testing.T) {
		err := run(t, func(env *stream.Environment, src *stream.DataStream[string]) {
			sinkOf(stream.ProcessUnkeyed(src, "stateful", &unkeyedStateful{}))
		})
		for _, want := range []string{`operator "stateful"`, `state "n"`, "KeyBy"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v does not contain %q", err, want)
			}
		}
	})
	t.Run("nil function", func(t *testing.T) {
		err := run(t, func(env *stream.Environment, src *stream.DataStream[string]) {
			sinkOf(stream.Process[string, string, int](stream.KeyBy(src, byWord), "nothing", nil))
		})
		if err == nil || !strings.Contains(err.Error(), `"nothing"`) || !strings.Contains(err.Error(), "nil") {
			t.Fatalf("want an error about the nil function, got %v", err)
		}
	})
}

// TestMisspelledOptionalMethodsAreRejected checks that an Open or OnTimer
// with the wrong signature is an error, not silently never called.
func TestMisspelledOptionalMethodsAreRejected(t *testing.T) {
	launchQuietly(t, 1)
	for _, tc := range []struct {
		name  string
		build func(k *stream.KeyedStream[string, string]) *stream.DataStream[int]
		want  string
	}{
		{"open", func(k *stream.KeyedStream[string, string]) *stream.DataStream[int] {
			return stream.Process(k, "open", &wrongOpen{})
		}, "method Open that would never be called: its signature must be Open(rc *stream.RuntimeContext) error"},
		{"on-timer", func(k *stream.KeyedStream[string, string]) *stream.DataStream[int] {
			return stream.Process(k, "on-timer", &wrongOnTimer{})
		}, "OnTimer(ctx *stream.KeyedContext[string, int], timestamp int64, domain stream.TimeDomain) error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := stream.NewEnvironment()
			src := stream.FromSource(env, "words", connector.Source[string](timedSource[string]{vals: []string{"x"}}))
			out := tc.build(stream.KeyBy(src, func(w string) string { return w }))
			stream.SinkTo(out, "out", connector.Sink[int](&gatherSink[int]{}))
			err := env.Execute("misspelled")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
				t.Fatalf("want an error naming %q and containing %q, got %v", tc.name, tc.want, err)
			}
		})
	}
}

type wrongOpen struct{}

func (*wrongOpen) Open() error { return nil }
func (*wrongOpen) ProcessElement(*stream.KeyedContext[string, int], string) error {
	return nil
}

type wrongOnTimer struct{}

func (*wrongOnTimer) OnTimer(ctx *stream.KeyedContext[string, int], ts int64) error { return nil }
func (*wrongOnTimer) ProcessElement(*stream.KeyedContext[string, int], string) error {
	return nil
}

type unkeyedStateful struct{ n stream.ValueState[int] }

func (u *unkeyedStateful) Open(rc *stream.RuntimeContext) (err error) {
	u.n, err = stream.ValueStateOf[int](rc, "n")
	return err
}

func (u *unkeyedStateful) ProcessElement(*stream.Context[int], string) error { return nil }

// waitingSource emits keys, then waits until done reports true before it
// ends, so that the job stays up for processing time to pass.
type waitingSource struct {
	keys []string
	done func() bool
}

func (w waitingSource) Open(ctx connector.SourceContext) (connector.SourceReader[string], error) {
	return &waitingReader{src: w, emit: ctx.Subtask == 0, deadline: time.Now().Add(20 * time.Second)}, nil
}

type waitingReader struct {
	src      waitingSource
	emit     bool
	deadline time.Time
}

func (r *waitingReader) Read(out connector.SourceOutput[string]) (connector.ReadStatus, error) {
	if r.emit {
		for _, k := range r.src.keys {
			out.Collect(k)
		}
		r.emit = false
	}
	if r.src.done() {
		return connector.EndOfInput, nil
	}
	if time.Now().After(r.deadline) {
		return 0, errors.New("processing-time timers did not fire within 20s")
	}
	return connector.NothingAvailable, nil
}

func (r *waitingReader) Close() error { return nil }

// reminder registers a processing-time timer 20 ms after each key's first
// record and reports the firing.
type reminder struct {
	fired *atomic.Int32
}

func (r *reminder) ProcessElement(ctx *stream.KeyedContext[string, string], k string) error {
	ctx.TimerService().RegisterProcessingTimeTimer(ctx.TimerService().CurrentProcessingTime() + 20)
	return nil
}

func (r *reminder) OnTimer(ctx *stream.KeyedContext[string, string], ts int64, domain stream.TimeDomain) error {
	if domain != stream.ProcessingTime || ctx.Timestamp() != ts || ctx.TimerService().CurrentProcessingTime() < ts {
		return fmt.Errorf("%s timer at %d fired with timestamp %d at processing time %d",
			domain, ts, ctx.Timestamp(), ctx.TimerService().CurrentProcessingTime())
	}
	ctx.Collect(ctx.Key())
	r.fired.Add(1)
	return nil
}

// TestKeyedProcessProcessingTimeTimersOnTheTaskClock fires processing-time
// timers on the task's real clock while the job waits for them.
func TestKeyedProcessProcessingTimeTimersOnTheTaskClock(t *testing.T) {
	checkNoLeaks(t)
	launchQuietly(t, 2)
	keys := []string{"a", "b", "c", "d", "e"}
	fired := new(atomic.Int32)
	env := stream.NewEnvironment()
	src := stream.FromSource(env, "keys", connector.Source[string](waitingSource{keys: keys,
		done: func() bool { return int(fired.Load()) >= len(keys) }}))
	reminders := stream.Process(stream.KeyBy(src, func(k string) string { return k }), "remind", &reminder{fired: fired})
	sink := &gatherSink[string]{}
	stream.SinkTo(reminders, "out", connector.Sink[string](sink))
	if err := env.Execute("reminders"); err != nil {
		t.Fatal(err)
	}
	got := sink.values()
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Fatalf("timers fired for %v, want once for each of %v", got, keys)
	}
	for _, r := range sink.recs {
		if r.TS != stream.NoTimestamp {
			t.Fatalf("processing-time timer output %q has timestamp %d, want none", r.V, r.TS)
		}
	}
}

// sortedBy sorts a copy of s by key.
func sortedBy[T any, K cmp.Ordered](s []T, key func(T) K) []T {
	out := slices.Clone(s)
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return out
}
