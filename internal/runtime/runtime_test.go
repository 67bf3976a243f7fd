package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/stream"
)

// --- harness -------------------------------------------------------------

// readerFunc is a SourceReader made of one function; the runtime calls it on
// the subtask's goroutine.
type readerFunc[T any] func(out connector.SourceOutput[T]) (connector.ReadStatus, error)

func (r readerFunc[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	return r(out)
}
func (readerFunc[T]) Close() error { return nil }

// sourceFunc opens each subtask's reader with a function of the subtask.
type sourceFunc[T any] func(ctx connector.SourceContext) readerFunc[T]

func (s sourceFunc[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	return s(ctx), nil
}

// rangeSource emits 0..n-1, subtask i taking every p-th number, one number
// per Read so that back-pressure stops it at a record boundary. emitted counts
// the records whose Collect returned.
func rangeSource(n int, emitted *atomic.Int64) connector.Source[int] {
	return sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] {
		next := ctx.Subtask
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			if next >= n {
				return connector.EndOfInput, nil
			}
			out.Collect(next)
			next += ctx.Parallelism
			if emitted != nil {
				emitted.Add(1)
			}
			return connector.MoreAvailable, nil
		}
	})
}

// timestamped stamps each record of a source with its value as event time.
func timestamped(src connector.Source[int]) connector.Source[int] {
	return sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] {
		r, _ := src.Open(ctx)
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			return r.Read(timestampOutput{out})
		}
	})
}

// timestampOutput stamps each record with its value as event time.
type timestampOutput struct{ connector.SourceOutput[int] }

func (o timestampOutput) Collect(v int) { o.CollectWithTimestamp(v, int64(v)) }

// idleSource returns NothingAvailable forever.
func idleSource() readerFunc[int] {
	return func(connector.SourceOutput[int]) (connector.ReadStatus, error) {
		return connector.NothingAvailable, nil
	}
}

// probe is a test operator of one input whose behaviour is given by
// callbacks. With forward set it passes records and watermarks on; otherwise
// it is a sink. Callbacks run on task goroutines of every subtask.
type probe[T any] struct {
	forward   bool
	open      func(ctx *runtime.OperatorContext) error
	element   func(ctx *runtime.OperatorContext, v T, ts int64)
	watermark func(ctx *runtime.OperatorContext, wm int64)
	endInput  func(ctx *runtime.OperatorContext)
}

type probeOp[T any] struct {
	p   *probe[T]
	ctx *runtime.OperatorContext
	out runtime.Output[T]
}

func (p *probe[T]) factory() *runtime.Factory {
	f := &runtime.Factory{
		InTypes: []runtime.TypeInfo{runtime.TypeOf[T]()},
		New: func() runtime.Instance {
			op := &probeOp[T]{p: p}
			inst := runtime.Instance{Op: op, Inputs: []any{op}}
			if p.forward {
				inst.SetOutput = func(o any) { op.out = o.(runtime.Output[T]) }
			}
			return inst
		},
	}
	if p.forward {
		f.OutType = runtime.TypeOf[T]()
	}
	return f
}

func (o *probeOp[T]) Open(ctx *runtime.OperatorContext) error {
	o.ctx = ctx
	if o.p.open != nil {
		return o.p.open(ctx)
	}
	return nil
}

func (o *probeOp[T]) ProcessElement(v T, ts int64) {
	if o.p.element != nil {
		o.p.element(o.ctx, v, ts)
	}
	if o.out != nil {
		o.out.Collect(v, ts)
	}
}

func (o *probeOp[T]) ProcessWatermark(_ int, wm int64) {
	if o.p.watermark != nil {
		o.p.watermark(o.ctx, wm)
	}
	if o.out != nil {
		o.out.EmitWatermark(wm)
	}
}

func (o *probeOp[T]) EndInput(int) {
	if o.p.endInput != nil {
		o.p.endInput(o.ctx)
	}
}

func (o *probeOp[T]) Close() error { return nil }

// collector gathers records from every subtask of a sink.
type collector[T any] struct {
	mu   sync.Mutex
	vals []T
}

func (c *collector[T]) add(v T) {
	c.mu.Lock()
	c.vals = append(c.vals, v)
	c.mu.Unlock()
}

func (c *collector[T]) snapshot() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.vals)
}

// jobBuilder assembles a logical graph of test operators.
type jobBuilder struct{ g graph.Graph }

func (b *jobBuilder) add(uid string, f *runtime.Factory, p int, inputs ...graph.Input) int {
	kind := "test"
	if f.Source {
		kind = "source"
	}
	return b.g.Add(&graph.Node{UID: uid, Name: uid, Kind: kind, Parallelism: p, Factory: f, Inputs: inputs}).ID
}

// unchained adds an operator that runs as its own task.
func (b *jobBuilder) unchained(uid string, f *runtime.Factory, p int, inputs ...graph.Input) int {
	id := b.add(uid, f, p, inputs...)
	b.g.Nodes[id].Chaining = graph.ChainNever
	return id
}

func from(id int) graph.Input { return graph.Input{Node: id} }

func (b *jobBuilder) job(t testing.TB) *runtime.Job {
	t.Helper()
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{JobName: t.Name(), DefaultParallelism: 1})
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	fs := map[string]*runtime.Factory{}
	for _, n := range b.g.Nodes {
		if !n.Virtual {
			fs[n.UID] = n.Factory
		}
	}
	return &runtime.Job{Graph: jg, Factories: fs}
}

// start runs the job on its own goroutine; the channel yields Execute's result.
func start(ctx context.Context, job *runtime.Job, opts runtime.Options) <-chan error {
	done := make(chan error, 1)
	go func() { done <- runtime.Execute(ctx, job, opts) }()
	return done
}

const patience = 10 * time.Second

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, patience, what, cond)
}

func eventuallyWithin(t *testing.T, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", patience, what)
		}
		<-tick.C
	}
}

// wait returns the job's result, failing the test if it does not end.
func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(patience):
		t.Fatalf("job did not end within %v", patience)
		return nil
	}
}

// --- back-pressure -------------------------------------------------------

// TestBackPressureBoundsSource blocks the sink on its first record and checks
// that the source stops after at most credits × batch size records per
// channel on its way to the sink, then that releasing the sink delivers every
// record exactly once.
func TestBackPressureBoundsSource(t *testing.T) {
	const credits, batch, n = 2, 8, 5000
	tests := []struct {
		name string
		// build wires source → … → sink and returns how many records the
		// exchanges between them can hold.
		build func(b *jobBuilder, src, sink *runtime.Factory) (bound int64)
	}{
		{"source to sink", func(b *jobBuilder, src, sink *runtime.Factory) int64 {
			s := b.add("src", src, 1)
			b.unchained("sink", sink, 1, from(s))
			return credits * batch
		}},
		{"two sources rebalanced to one sink", func(b *jobBuilder, src, sink *runtime.Factory) int64 {
			s := b.add("src", src, 2)
			b.unchained("sink", sink, 1, from(s))
			return 2 * credits * batch
		}},
		{"chained map before the exchange", func(b *jobBuilder, src, sink *runtime.Factory) int64 {
			s := b.add("src", src, 1)
			m := b.add("map", operators.NewMap(func(x int) int { return x }), 1, from(s))
			b.unchained("sink", sink, 1, from(m))
			return credits * batch
		}},
		{"through an intermediate task", func(b *jobBuilder, src, sink *runtime.Factory) int64 {
			s := b.add("src", src, 1)
			m := b.unchained("map", operators.NewMap(func(x int) int { return x }), 1, from(s))
			b.unchained("sink", sink, 1, from(m))
			return 2 * credits * batch
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			var emitted atomic.Int64
			release := make(chan struct{})
			var releaseOnce sync.Once
			defer releaseOnce.Do(func() { close(release) })
			got := &collector[int]{}
			sink := &probe[int]{element: func(ctx *runtime.OperatorContext, v int, _ int64) {
				select {
				case <-release:
				case <-ctx.Cancel.Done():
				}
				got.add(v)
			}}
			src := operators.NewSource[int](rangeSource(n, &emitted), operators.WatermarkStrategy[int]{None: true}, time.Hour)
			b := &jobBuilder{}
			bound := tc.build(b, src, sink.factory())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := start(ctx, b.job(t), runtime.Options{Credits: credits, BatchSize: batch})

			stalled := waitForPlateau(t, &emitted, done)
			if stalled < credits*batch || stalled > bound {
				t.Fatalf("source stalled after %d records; want between %d (one channel's credit) and %d", stalled, credits*batch, bound)
			}
			// Stays bounded while the sink is blocked.
			for range 20 {
				if e := emitted.Load(); e > bound {
					t.Fatalf("source emitted %d records while the sink was blocked; bound %d", e, bound)
				}
				time.Sleep(time.Millisecond)
			}
			releaseOnce.Do(func() { close(release) })
			if err := wait(t, done); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			vals := got.snapshot()
			slices.Sort(vals)
			for i, v := range vals {
				if v != i {
					t.Fatalf("sink got %d records; record %d is %d: lost or duplicated", len(vals), i, v)
				}
			}
			if len(vals) != n {
				t.Fatalf("sink got %d records, want %d", len(vals), n)
			}
		})
	}
}

// waitForPlateau waits until the count has not moved for a while (the source
// is blocked) and returns it. A source that is not back-pressured emits
// thousands of records per millisecond, so 50 ms without one means blocked.
func waitForPlateau(t *testing.T, count *atomic.Int64, done <-chan error) int64 {
	t.Helper()
	deadline := time.Now().Add(patience)
	last, still := int64(-1), 0
	for still < 50 {
		select {
		case err := <-done:
			t.Fatalf("job ended (%v) while its sink was blocked", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("source never stalled; emitted %d", count.Load())
		}
		if c := count.Load(); c == last && c > 0 {
			still++
		} else {
			last, still = c, 0
		}
		time.Sleep(time.Millisecond)
	}
	return last
}

// --- watermarks ----------------------------------------------------------

// cmd tells a scripted source subtask what to emit next.
type cmd struct {
	ts  int64
	end bool
}

// scriptedSource emits, per subtask, what the test sends on its channel.
func scriptedSource(cmds []chan cmd) connector.Source[int] {
	return sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] {
		ch := cmds[ctx.Subtask]
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			select {
			case c := <-ch:
				if c.end {
					return connector.EndOfInput, nil
				}
				out.CollectWithTimestamp(int(c.ts), c.ts)
				return connector.MoreAvailable, nil
			default:
				return connector.NothingAvailable, nil
			}
		}
	})
}

// eventLog records what an operator saw, in order.
type eventLog struct {
	mu     sync.Mutex
	events []string
	wm     int64
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *eventLog) watermark(wm int64) {
	l.mu.Lock()
	l.wm = wm
	l.mu.Unlock()
	l.add("wm %d", wm)
}

func (l *eventLog) lastWatermark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wm
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// TestWatermarkValveTakesMinimumOverChannels drives the two subtasks of a
// source step by step and checks that the downstream operator sees the
// minimum of their watermarks, never going back, and MaxWatermark before
// the end of its input.
func TestWatermarkValveTakesMinimumOverChannels(t *testing.T) {
	defer goleak.VerifyNone(t)
	cmds := []chan cmd{make(chan cmd, 4), make(chan cmd, 4)}
	log := &eventLog{wm: runtime.MinWatermark}
	var records atomic.Int64
	sink := &probe[int]{
		element: func(_ *runtime.OperatorContext, v int, ts int64) {
			if int64(v) != ts {
				log.add("record %d with timestamp %d", v, ts)
			}
			records.Add(1)
		},
		watermark: func(_ *runtime.OperatorContext, wm int64) { log.watermark(wm) },
		endInput:  func(*runtime.OperatorContext) { log.add("end") },
	}
	// Monotonous timestamps: a subtask's watermark is its largest timestamp - 1.
	src := operators.NewSource(scriptedSource(cmds), stream.ForMonotonousTimestamps[int](), time.Millisecond)
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	b.add("sink", sink.factory(), 1, from(s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(ctx, b.job(t), runtime.Options{})

	// Each step moves the downstream watermark, so the test can wait for
	// it before the next step and the sequence seen is deterministic.
	steps := []struct {
		subtask int
		ts      int64
		want    int64 // downstream watermark after the step
	}{
		{0, 101, runtime.MinWatermark}, // 100 | -inf: channel 1 holds it back
		{1, 51, 50},                    // 100 | 50
		{1, 201, 100},                  // 100 | 200
		{0, 301, 200},                  // 300 | 200
		{1, 1001, 300},                 // 300 | 1000
		{0, 2001, 1000},                // 2000 | 1000
	}
	for _, st := range steps {
		cmds[st.subtask] <- cmd{ts: st.ts}
		if st.want != runtime.MinWatermark {
			eventually(t, fmt.Sprintf("watermark %d", st.want), func() bool { return log.lastWatermark() == st.want })
		}
	}
	// Subtask 1 ends first: the minimum moves to subtask 0's 2000, and
	// only then does subtask 0 end and release MaxWatermark.
	cmds[1] <- cmd{end: true}
	eventually(t, "watermark 2000", func() bool { return log.lastWatermark() == 2000 })
	cmds[0] <- cmd{end: true}
	if err := wait(t, done); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	want := []string{"wm 50", "wm 100", "wm 200", "wm 300", "wm 1000", "wm 2000", fmt.Sprintf("wm %d", runtime.MaxWatermark), "end"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("downstream saw\n  %v\nwant\n  %v", got, want)
	}
	if got := records.Load(); got != int64(len(steps)) {
		t.Fatalf("downstream got %d records, want %d", got, len(steps))
	}
}

// TestWatermarksMonotoneAcrossParallelConsumers runs a bounded job whose
// source subtasks progress at different event-time speeds into two consumers
// over a rebalance, and checks that each consumer's watermarks only rise and
// that MaxWatermark arrives before EndInput.
func TestWatermarksMonotoneAcrossParallelConsumers(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 20000
	src := operators.NewSource[int](sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] {
		i := 0
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			for range 50 {
				if i >= n {
					return connector.EndOfInput, nil
				}
				// Subtask 1 runs ten times ahead in event time.
				out.CollectWithTimestamp(i, int64(i*(1+9*ctx.Subtask)))
				i++
			}
			return connector.MoreAvailable, nil
		}
	}), stream.ForMonotonousTimestamps[int](), time.Millisecond)
	var mu sync.Mutex
	seen := map[int][]int64{}  // consumer subtask → watermarks
	atEnd := map[int][]int64{} // consumer subtask → watermarks seen when its input ended
	sink := &probe[int]{
		watermark: func(ctx *runtime.OperatorContext, wm int64) {
			mu.Lock()
			seen[ctx.Subtask] = append(seen[ctx.Subtask], wm)
			mu.Unlock()
		},
		endInput: func(ctx *runtime.OperatorContext) {
			mu.Lock()
			atEnd[ctx.Subtask] = slices.Clone(seen[ctx.Subtask])
			mu.Unlock()
		},
	}
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	b.g.Add(&graph.Node{UID: "sink", Name: "sink", Kind: "test", Parallelism: 2, Factory: sink.factory(),
		Inputs: []graph.Input{{Node: s, Partitioning: graph.Rebalance}}})
	if err := runtime.Execute(context.Background(), b.job(t), runtime.Options{BatchSize: 16}); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	for sub := range 2 {
		ws := seen[sub]
		for i := 1; i < len(ws); i++ {
			if ws[i] <= ws[i-1] {
				t.Fatalf("consumer %d: watermark went from %d to %d", sub, ws[i-1], ws[i])
			}
		}
		end := atEnd[sub]
		if len(end) == 0 || end[len(end)-1] != runtime.MaxWatermark || len(end) != len(ws) {
			t.Fatalf("consumer %d: watermarks %v when its input ended, then %v; want MaxWatermark last and before the end", sub, end, ws)
		}
	}
}

// timestampedBurst emits timestamps 1..last at once, then keeps the subtask
// active, if asked, by re-emitting timestamp last on every later Read.
func timestampedBurst(last int, stayActive bool, burstDone func()) readerFunc[int] {
	ts := 0
	return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
		if ts < last {
			ts++
			out.CollectWithTimestamp(ts, int64(ts))
			if ts == last && burstDone != nil {
				burstDone()
			}
			return connector.MoreAvailable, nil
		}
		if stayActive {
			out.CollectWithTimestamp(last, int64(last))
		}
		return connector.NothingAvailable, nil
	}
}

// idlenessSource is a two-subtask source with idleness detection after
// 20 ms, reading with the given reader per subtask.
func idlenessSource(readers func(subtask int) readerFunc[int]) *runtime.Factory {
	return operators.NewSource[int](sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] { return readers(ctx.Subtask) }),
		stream.WithIdleness(stream.ForMonotonousTimestamps[int](), 20*time.Millisecond), 2*time.Millisecond)
}

// runUntilWatermark runs the job until the sink's watermark reaches want,
// then cancels it and checks it stops.
func runUntilWatermark(t *testing.T, b *jobBuilder, log *eventLog, want int64, patience time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(ctx, b.job(t), runtime.Options{})
	deadline := time.Now().Add(patience)
	for log.lastWatermark() != want {
		if time.Now().After(deadline) {
			t.Fatalf("sink watermark did not reach %d within %v; it saw %v", want, patience, log.snapshot())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := wait(t, done); !errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("Execute after cancel: %v, want ErrCanceled", err)
	}
}

// TestIdleSubtaskDoesNotHoldBackWatermark: subtask 1 of the source never emits
// and never ends; with idleness it is marked idle and the downstream
// watermark follows subtask 0, which stays active.
func TestIdleSubtaskDoesNotHoldBackWatermark(t *testing.T) {
	defer goleak.VerifyNone(t)
	src := idlenessSource(func(subtask int) readerFunc[int] {
		if subtask == 1 {
			return idleSource()
		}
		return timestampedBurst(100, true, nil)
	})
	log := &eventLog{wm: runtime.MinWatermark}
	sink := &probe[int]{watermark: func(_ *runtime.OperatorContext, wm int64) { log.watermark(wm) }}
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	b.add("sink", sink.factory(), 1, from(s))
	runUntilWatermark(t, b, log, 99, patience)
}

// TestIdlenessPropagatesThroughTask: as above, but with a task between the
// source and the sink. The intermediate subtask fed only by the idle source
// subtask has every input idle, so its own output must be idle too, or it
// holds the sink's watermark at MinWatermark for ever.
func TestIdlenessPropagatesThroughTask(t *testing.T) {
	defer goleak.VerifyNone(t)
	src := idlenessSource(func(subtask int) readerFunc[int] {
		if subtask == 1 {
			return idleSource()
		}
		return timestampedBurst(100, true, nil)
	})
	log := &eventLog{wm: runtime.MinWatermark}
	sink := &probe[int]{watermark: func(_ *runtime.OperatorContext, wm int64) { log.watermark(wm) }}
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	m := b.unchained("map", operators.NewMap(func(x int) int { return x }), 2, from(s))
	b.add("sink", sink.factory(), 1, from(m))
	runUntilWatermark(t, b, log, 99, 3*time.Second)
}

// TestAllIdleChannelsReleaseTheirWatermark: subtask 0 emits up to timestamp
// 100 and goes idle first; subtask 1 emits records without timestamps (active,
// watermark MinWatermark) a while longer, then goes idle too. Once every
// channel is idle none can hold back the others, so the valve should emit
// the largest watermark among them (Flink's StatusWatermarkValve flushes
// the max across channels), not stay at MinWatermark.
func TestAllIdleChannelsReleaseTheirWatermark(t *testing.T) {
	defer goleak.VerifyNone(t)
	var burstAt atomic.Int64
	src := idlenessSource(func(subtask int) readerFunc[int] {
		if subtask == 0 {
			return timestampedBurst(100, false, func() { burstAt.Store(time.Now().UnixNano()) })
		}
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			// Active until well after subtask 0 went idle (20 ms after its burst).
			if at := burstAt.Load(); at == 0 || time.Since(time.Unix(0, at)) < 100*time.Millisecond {
				out.Collect(0)
			}
			return connector.NothingAvailable, nil
		}
	})
	log := &eventLog{wm: runtime.MinWatermark}
	sink := &probe[int]{watermark: func(_ *runtime.OperatorContext, wm int64) { log.watermark(wm) }}
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	b.add("sink", sink.factory(), 1, from(s))
	runUntilWatermark(t, b, log, 99, 3*time.Second)
}

// --- plan shapes ---------------------------------------------------------

// mergeOp is a two-input operator that forwards both inputs and emits the
// minimum of its inputs' watermarks.
type mergeOp struct {
	out runtime.Output[int]
	wm  [2]int64
	cur int64
}

type mergeInput struct{ m *mergeOp }

func (i mergeInput) ProcessElement(v int, ts int64) { i.m.out.Collect(v, ts) }

func newMerge() *runtime.Factory {
	return &runtime.Factory{
		OutType: runtime.TypeOf[int](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[int](), runtime.TypeOf[int]()},
		New: func() runtime.Instance {
			m := &mergeOp{wm: [2]int64{runtime.MinWatermark, runtime.MinWatermark}, cur: runtime.MinWatermark}
			return runtime.Instance{Op: m, Inputs: []any{mergeInput{m}, mergeInput{m}}, SetOutput: func(o any) { m.out = o.(runtime.Output[int]) }}
		},
	}
}

func (m *mergeOp) Open(*runtime.OperatorContext) error { return nil }
func (m *mergeOp) EndInput(int)                        {}
func (m *mergeOp) Close() error                        { return nil }
func (m *mergeOp) ProcessWatermark(input int, wm int64) {
	m.wm[input] = wm
	if low := min(m.wm[0], m.wm[1]); low > m.cur {
		m.cur = low
		m.out.EmitWatermark(low)
	}
}

// TestPlanShapesDeliverEverything runs plans whose shapes the translator
// produces: a DAG chain (a two-input operator fed twice from one chain) and
// a union of a stream with one derived from it (two edges from one vertex
// into one input). Each record must arrive once per path, and the sink's
// input must end after MaxWatermark.
func TestPlanShapesDeliverEverything(t *testing.T) {
	const n = 3000
	tests := []struct {
		name  string
		build func(b *jobBuilder, src, sink *runtime.Factory)
	}{
		{"DAG chain", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			l := b.add("left", operators.NewMap(func(x int) int { return x }), 2, from(s))
			r := b.add("right", operators.NewMap(func(x int) int { return x }), 2, from(s))
			j := b.add("merge", newMerge(), 2, from(l), from(r))
			b.add("sink", sink, 2, from(j))
		}},
		{"DAG chain into a rebalance", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			l := b.add("left", operators.NewMap(func(x int) int { return x }), 2, from(s))
			r := b.add("right", operators.NewMap(func(x int) int { return x }), 2, from(s))
			j := b.add("merge", newMerge(), 2, from(l), from(r))
			b.add("sink", sink, 3, from(j))
		}},
		{"union with a derived stream", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			m := b.add("map", operators.NewMap(func(x int) int { return x }), 2, from(s))
			u := b.g.Add(&graph.Node{Name: "union", Kind: "union", Virtual: true, Inputs: []graph.Input{from(s), from(m)}}).ID
			b.add("sink", sink, 2, from(u))
		}},
		{"two-input operator over exchanges from one vertex", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			j := b.add("merge", newMerge(), 3, from(s), from(s))
			b.add("sink", sink, 3, from(j))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			got := &collector[int]{}
			var mu sync.Mutex
			lastWM := map[int]int64{}
			var bad []string
			sink := &probe[int]{
				element:   func(_ *runtime.OperatorContext, v int, _ int64) { got.add(v) },
				watermark: func(ctx *runtime.OperatorContext, wm int64) { mu.Lock(); lastWM[ctx.Subtask] = wm; mu.Unlock() },
				endInput: func(ctx *runtime.OperatorContext) {
					mu.Lock()
					if lastWM[ctx.Subtask] != runtime.MaxWatermark {
						bad = append(bad, fmt.Sprintf("sink %d ended at watermark %d", ctx.Subtask, lastWM[ctx.Subtask]))
					}
					mu.Unlock()
				},
			}
			src := operators.NewSource(timestamped(rangeSource(n, nil)), stream.ForMonotonousTimestamps[int](), time.Millisecond)
			b := &jobBuilder{}
			tc.build(b, src, sink.factory())
			if err := wait(t, start(context.Background(), b.job(t), runtime.Options{Credits: 2, BatchSize: 8})); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			vals := got.snapshot()
			slices.Sort(vals)
			if len(vals) != 2*n {
				t.Fatalf("sink got %d records, want %d (each record over both paths)", len(vals), 2*n)
			}
			for i, v := range vals {
				if v != i/2 {
					t.Fatalf("record %d of the sorted output is %d, want %d: lost or duplicated", i, v, i/2)
				}
			}
			if len(bad) > 0 {
				t.Fatal(strings.Join(bad, "; "))
			}
		})
	}
}

// --- flushing ------------------------------------------------------------

// TestPartialBatchIsFlushed checks that one record in an otherwise empty
// batch reaches the sink promptly, through a source task and an intermediate
// task, whether the source then waits for input or keeps spinning.
func TestPartialBatchIsFlushed(t *testing.T) {
	tests := []struct {
		name string
		// after the first record the source reports this status forever.
		then    connector.ReadStatus
		timeout time.Duration
	}{
		// Idle tasks flush whatever they hold: no timeout needed.
		{"source waits for input", connector.NothingAvailable, time.Hour},
		// A busy source flushes on the buffer timeout.
		{"source stays busy", connector.MoreAvailable, 5 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			src := operators.NewSource[int](sourceFunc[int](func(connector.SourceContext) readerFunc[int] {
				sent := false
				return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
					if !sent {
						sent = true
						out.Collect(42)
						return connector.MoreAvailable, nil
					}
					return tc.then, nil
				}
			}), operators.WatermarkStrategy[int]{None: true}, time.Hour)
			got := &collector[int]{}
			sink := &probe[int]{element: func(_ *runtime.OperatorContext, v int, _ int64) { got.add(v) }}
			b := &jobBuilder{}
			s := b.add("src", src, 1)
			m := b.unchained("map", operators.NewMap(func(x int) int { return x + 1 }), 1, from(s))
			b.unchained("sink", sink.factory(), 1, from(m))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := start(ctx, b.job(t), runtime.Options{BatchSize: 1024, BufferTimeout: tc.timeout})
			eventually(t, "the record at the sink", func() bool { return len(got.snapshot()) == 1 })
			if v := got.snapshot()[0]; v != 43 {
				t.Fatalf("sink got %d, want 43", v)
			}
			cancel()
			if err := wait(t, done); !errors.Is(err, runtime.ErrCanceled) {
				t.Fatalf("Execute after cancel: %v, want ErrCanceled", err)
			}
		})
	}
}

// --- failure -------------------------------------------------------------

var errBoom = errors.New("boom")

// TestFailureCancelsOtherTasks fails one task in several ways and checks that
// Execute returns that failure, attributed to the operator, after the other
// tasks, some of them blocked, were canceled.
func TestFailureCancelsOtherTasks(t *testing.T) {
	endless := sourceFunc[int](func(connector.SourceContext) readerFunc[int] {
		i := 0
		return func(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
			for range 16 {
				out.Collect(i)
				i++
			}
			return connector.MoreAvailable, nil
		}
	})
	failAfter := func(k int, fail func()) *runtime.Factory {
		var seen atomic.Int64
		return (&probe[int]{forward: true, element: func(*runtime.OperatorContext, int, int64) {
			if seen.Add(1) == int64(k) {
				fail()
			}
		}}).factory()
	}
	// stuck blocks on its first record until the job is canceled.
	stuck := func() *runtime.Factory {
		return (&probe[int]{element: func(ctx *runtime.OperatorContext, _ int, _ int64) { <-ctx.Cancel.Done() }}).factory()
	}
	noWM := operators.WatermarkStrategy[int]{None: true}
	tests := []struct {
		name      string
		build     func(b *jobBuilder)
		operator  string
		panicked  bool
		wantInErr string
	}{
		{
			name: "operator fails while a sibling task is blocked",
			build: func(b *jobBuilder) {
				s := b.add("src", operators.NewSource[int](endless, noWM, time.Hour), 2)
				f := b.unchained("boom", failAfter(10, func() { runtime.Fail(errBoom) }), 2, from(s))
				b.unchained("sink", stuck(), 1, from(f))
			},
			operator: "boom",
		},
		{
			name: "operator fails while its producer is back-pressured by another branch",
			build: func(b *jobBuilder) {
				s := b.add("src", operators.NewSource[int](endless, noWM, time.Hour), 1)
				b.unchained("stuck", stuck(), 1, from(s))
				f := b.unchained("boom", failAfter(10, func() { runtime.Fail(errBoom) }), 1, from(s))
				b.unchained("sink", (&probe[int]{}).factory(), 1, from(f))
			},
			operator: "boom",
		},
		{
			name: "operator panics",
			build: func(b *jobBuilder) {
				s := b.add("src", operators.NewSource[int](endless, noWM, time.Hour), 2)
				f := b.unchained("boom", failAfter(10, func() { panic("kaboom") }), 2, from(s))
				b.unchained("sink", stuck(), 1, from(f))
			},
			operator:  "boom",
			panicked:  true,
			wantInErr: "kaboom",
		},
		{
			name: "chained operator fails inside the source task",
			build: func(b *jobBuilder) {
				s := b.add("src", operators.NewSource[int](endless, noWM, time.Hour), 2)
				f := b.add("boom", failAfter(10, func() { runtime.Fail(errBoom) }), 2, from(s))
				b.unchained("sink", stuck(), 1, from(f))
			},
			operator: "boom",
		},
		{
			name: "source read fails",
			build: func(b *jobBuilder) {
				failing := sourceFunc[int](func(ctx connector.SourceContext) readerFunc[int] {
					if ctx.Subtask == 0 {
						return endless(ctx)
					}
					return func(connector.SourceOutput[int]) (connector.ReadStatus, error) { return 0, errBoom }
				})
				s := b.add("boom", operators.NewSource[int](failing, noWM, time.Hour), 2)
				b.unchained("sink", stuck(), 1, from(s))
			},
			operator: "boom",
		},
		{
			name: "sink fails to open",
			build: func(b *jobBuilder) {
				s := b.add("src", operators.NewSource[int](endless, noWM, time.Hour), 2)
				b.unchained("boom", (&probe[int]{open: func(*runtime.OperatorContext) error { return errBoom }}).factory(), 1, from(s))
			},
			operator: "boom",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			b := &jobBuilder{}
			tc.build(b)
			err := wait(t, start(context.Background(), b.job(t), runtime.Options{Credits: 2, BatchSize: 8}))
			if err == nil {
				t.Fatal("Execute succeeded, want the operator's failure")
			}
			if errors.Is(err, runtime.ErrCanceled) {
				t.Fatalf("Execute returned %v: a failure must not look like a cancellation", err)
			}
			var oe *runtime.OperatorError
			if !errors.As(err, &oe) {
				t.Fatalf("Execute returned %T %v, want an *OperatorError", err, err)
			}
			if oe.Operator != tc.operator || oe.UID != tc.operator || oe.Panic != tc.panicked {
				t.Fatalf("failure attributed to %q (uid %q, panic %v), want %q (panic %v): %v", oe.Operator, oe.UID, oe.Panic, tc.operator, tc.panicked, err)
			}
			if !tc.panicked && !errors.Is(err, errBoom) {
				t.Fatalf("Execute returned %v, want it to wrap %v", err, errBoom)
			}
			if tc.wantInErr != "" && !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantInErr)
			}
		})
	}
}

// TestCancelStopsBlockedJob cancels a job whose source is back-pressured by a
// sink that waits for cancellation.
func TestCancelStopsBlockedJob(t *testing.T) {
	defer goleak.VerifyNone(t)
	var emitted atomic.Int64
	src := operators.NewSource[int](rangeSource(1<<30, &emitted), operators.WatermarkStrategy[int]{None: true}, time.Hour)
	sink := &probe[int]{element: func(ctx *runtime.OperatorContext, _ int, _ int64) { <-ctx.Cancel.Done() }}
	b := &jobBuilder{}
	s := b.add("src", src, 2)
	b.unchained("sink", sink.factory(), 2, from(s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(ctx, b.job(t), runtime.Options{Credits: 2, BatchSize: 8})
	waitForPlateau(t, &emitted, done)
	cancel()
	if err := wait(t, done); !errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("Execute after cancel: %v, want ErrCanceled", err)
	}
}

// notAStepper is a source operator without the Step/Finish driver.
type notAStepper struct{}

func (notAStepper) Open(*runtime.OperatorContext) error { return nil }
func (notAStepper) ProcessWatermark(int, int64)         {}
func (notAStepper) EndInput(int)                        {}
func (notAStepper) Close() error                        { return nil }

// TestSourceWithoutDriverIsRejected: a factory flagged Source whose operator
// has no Step method can never emit nor end; the job must be refused, not
// left waiting on an input gate that has no channels.
func TestSourceWithoutDriverIsRejected(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := &runtime.Factory{Source: true, OutType: runtime.TypeOf[int](), New: func() runtime.Instance {
		return runtime.Instance{Op: notAStepper{}, SetOutput: func(any) {}}
	}}
	b := &jobBuilder{}
	s := b.add("src", f, 1)
	b.add("sink", (&probe[int]{}).factory(), 1, from(s))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := runtime.Execute(ctx, b.job(t), runtime.Options{})
	if err == nil || errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("Execute returned %v; want an error naming the source that has no driver", err)
	}
}

// lifecycleOp records Open and Close calls; Open fails if failOpen is set.
type lifecycleOp struct {
	name     string
	failOpen bool
	log      *eventLog
	out      runtime.Output[int]
}

func (o *lifecycleOp) Open(*runtime.OperatorContext) error {
	o.log.add("open %s", o.name)
	if o.failOpen {
		return errors.New("cannot open")
	}
	return nil
}
func (o *lifecycleOp) ProcessElement(v int, ts int64)   { o.out.Collect(v, ts) }
func (o *lifecycleOp) ProcessWatermark(_ int, wm int64) { o.out.EmitWatermark(wm) }
func (o *lifecycleOp) EndInput(int)                     {}
func (o *lifecycleOp) Close() error                     { o.log.add("close %s", o.name); return nil }

func lifecycle(name string, failOpen bool, log *eventLog) *runtime.Factory {
	return &runtime.Factory{
		OutType: runtime.TypeOf[int](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[int]()},
		New: func() runtime.Instance {
			op := &lifecycleOp{name: name, failOpen: failOpen, log: log}
			return runtime.Instance{Op: op, Inputs: []any{op}, SetOutput: func(o any) { op.out = o.(runtime.Output[int]) }}
		},
	}
}

// TestFailedOpenClosesOnlyOpenedOperators: a chain opens from its tail; when
// an operator fails to open, the ones after it are closed and the ones
// before it, never opened, are not.
func TestFailedOpenClosesOnlyOpenedOperators(t *testing.T) {
	log := &eventLog{}
	b := &jobBuilder{}
	s := b.add("src", operators.NewSource(rangeSource(10, nil), stream.NoWatermarks[int](), time.Second), 1)
	first := b.add("first", lifecycle("first", false, log), 1, from(s))
	broken := b.add("broken", lifecycle("broken", true, log), 1, from(first))
	b.add("last", lifecycle("last", false, log), 1, from(broken))
	err := wait(t, start(context.Background(), b.job(t), runtime.Options{}))
	if err == nil || !strings.Contains(err.Error(), "cannot open") || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("got %v, want the open error of operator broken", err)
	}
	got := strings.Join(log.snapshot(), ", ")
	if want := "open last, open broken, close last, close broken"; got != want {
		t.Fatalf("lifecycle calls: %s; want %s", got, want)
	}
}
