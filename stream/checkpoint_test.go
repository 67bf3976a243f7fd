package stream

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/runtime"
)

// Jobs with checkpoints, end to end on the executor: a job runs to a point
// in its input, takes a checkpoint, runs on and is canceled; a new job,
// perhaps with another parallelism, restores from the checkpoint and runs
// to the end. An exactly-once sink keeps what the first job's checkpoint
// covered and all of the second's output; that must be exactly the output
// of a failure-free run, computed independently.

// ckRec is an input record, or with WM set a watermark at TS: the
// punctuate operator turns it into one, so that watermarks sit at fixed
// places in the input and the failure-free output is deterministic.
type ckRec struct {
	Key string
	TS  int64
	V   int64
	WM  bool
}

// ckRow is a window's result.
type ckRow struct {
	Key        string
	Start, End int64
	Count, Sum int64
	TS         int64 // the record's timestamp
}

func compareRows(a, b ckRow) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End),
		cmp.Compare(a.Count, b.Count), cmp.Compare(a.Sum, b.Sum), cmp.Compare(a.TS, b.TS))
}

// ckRecords returns n records over keys with timestamps rising by 0–3 ms,
// a fifth of them delayed by up to 80 ms, and a watermark 20 ms behind the
// largest timestamp after every fifth record.
func ckRecords(seed uint64, n, keys int) []ckRec {
	rng := rand.New(rand.NewPCG(seed, 5))
	var recs []ckRec
	base, maxTS := int64(1_000), int64(0)
	for i := range n {
		base += rng.Int64N(4)
		r := ckRec{Key: fmt.Sprintf("k%d", rng.IntN(keys)), TS: base, V: rng.Int64N(100)}
		if rng.IntN(5) == 0 {
			r.TS -= rng.Int64N(81)
		}
		recs = append(recs, r)
		maxTS = max(maxTS, r.TS)
		if i%5 == 4 {
			recs = append(recs, ckRec{WM: true, TS: maxTS - 21})
		}
	}
	return recs
}

// gatedSource emits recs, but only those before the gate, in one subtask;
// its reader stores its position in checkpoints. With pauseEvery set it
// reports that nothing is available after every pauseEvery records, so
// that a job spans many processing-time windows.
type gatedSource struct {
	recs       []ckRec
	gate       *atomic.Int64
	pos        *atomic.Int64 // where the reader is, for the test to watch
	pauseEvery int
}

type gatedReader struct {
	gatedSource
	next int
}

func (s gatedSource) Open(ctx connector.SourceContext) (connector.SourceReader[ckRec], error) {
	r := &gatedReader{gatedSource: s}
	if ctx.Restored != nil {
		if len(ctx.Restored) != 1 || ctx.Parallelism != 1 {
			return nil, errors.New("gatedSource runs in one subtask")
		}
		r.next = int(binary.BigEndian.Uint64(ctx.Restored[0]))
	}
	return r, nil
}

func (r *gatedReader) Read(out connector.SourceOutput[ckRec]) (connector.ReadStatus, error) {
	for n := 0; n < 32; n++ {
		if r.next >= len(r.recs) {
			return connector.EndOfInput, nil
		}
		if int64(r.next) >= r.gate.Load() {
			return connector.NothingAvailable, nil
		}
		out.CollectWithTimestamp(r.recs[r.next], r.recs[r.next].TS)
		r.next++
		r.pos.Store(int64(r.next))
		if r.pauseEvery > 0 && r.next%r.pauseEvery == 0 {
			return connector.NothingAvailable, nil
		}
	}
	return connector.MoreAvailable, nil
}

func (r *gatedReader) SnapshotState() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(r.next)), nil
}

func (r *gatedReader) Close() error { return nil }

// punctuator turns the WM records into watermarks.
type punctuator struct{ out runtime.Output[ckRec] }

func (p *punctuator) Open(*runtime.OperatorContext) error { return nil }
func (p *punctuator) ProcessElement(r ckRec, ts int64) {
	if r.WM {
		p.out.EmitWatermark(r.TS)
		return
	}
	p.out.Collect(r, ts)
}
func (p *punctuator) ProcessWatermark(_ int, wm int64) { p.out.EmitWatermark(wm) }
func (p *punctuator) EndInput(int)                     {}
func (p *punctuator) Close() error                     { return nil }

func punctuate(d *DataStream[ckRec]) *DataStream[ckRec] {
	f := &runtime.Factory{
		OutType: runtime.TypeOf[ckRec](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[ckRec]()},
		New: func() runtime.Instance {
			p := &punctuator{}
			return runtime.Instance{Op: p, Inputs: []any{runtime.Input[ckRec](p)}, SetOutput: func(o any) { p.out = o.(runtime.Output[ckRec]) }}
		},
	}
	return derive[ckRec, ckRec](d, addNode(d.env, "punctuate", "punctuate", f, d.input()))
}

// txnSink is an exactly-once sink: what a subtask writes becomes visible
// when the checkpoint after it completes. Prepared output lives in the
// sink, which outlives the jobs, as files would.
type txnSink[T any] struct {
	mu        sync.Mutex
	seq       int
	prepared  map[string][]T
	committed map[string]bool
	out       []T
}

type txnWriter[T any] struct {
	s   *txnSink[T]
	sub int
	buf []T
}

func newTxnSink[T any]() *txnSink[T] {
	return &txnSink[T]{prepared: map[string][]T{}, committed: map[string]bool{}}
}

func (s *txnSink[T]) Open(ctx connector.SinkContext) (connector.SinkWriter[T], error) {
	return &txnWriter[T]{s: s, sub: ctx.Subtask}, nil
}

func (w *txnWriter[T]) Write(v T, _ int64) error { w.buf = append(w.buf, v); return nil }
func (w *txnWriter[T]) Finish() error            { return nil }
func (w *txnWriter[T]) Close() error             { return nil }

func (w *txnWriter[T]) PrepareCommit(id int64) ([]byte, error) {
	if len(w.buf) == 0 {
		return nil, nil
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.seq++
	d := fmt.Sprintf("%d/%d/%d", w.sub, id, w.s.seq)
	w.s.prepared[d] = w.buf
	w.buf = nil
	return []byte(d), nil
}

func (w *txnWriter[T]) Commit(ds [][]byte) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, d := range ds {
		if !w.s.committed[string(d)] {
			w.s.committed[string(d)] = true
			w.s.out = append(w.s.out, w.s.prepared[string(d)]...)
		}
	}
	return nil
}

func (s *txnSink[T]) committedOutput() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.out)
}

// acks gathers a job's checkpoint acknowledgements.
type acks struct {
	mu       sync.Mutex
	tasks    int
	byID     map[int64][]runtime.TaskAck
	declined map[int64]error
	finished int
}

func newAcks() *acks { return &acks{byID: map[int64][]runtime.TaskAck{}, declined: map[int64]error{}} }

func (a *acks) Ack(ack runtime.TaskAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byID[ack.Checkpoint] = append(a.byID[ack.Checkpoint], ack)
}

func (a *acks) Decline(id int64, _ runtime.TaskID, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.declined[id] = err
}

func (a *acks) Finished(runtime.TaskID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finished++
}

// await waits until every task acknowledged checkpoint id.
func (a *acks) await(t *testing.T, id int64) []runtime.TaskAck {
	t.Helper()
	var got []runtime.TaskAck
	eventually(t, fmt.Sprintf("checkpoint %d acknowledged by every task", id), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.declined[id]; err != nil {
			t.Fatalf("checkpoint %d declined: %v", id, err)
		}
		got = a.byID[id]
		return len(got) == a.tasks
	})
	return got
}

func (a *acks) setTasks(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tasks = n
}

func (a *acks) allFinished() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.finished == a.tasks
}

// eventually polls cond until it holds or a minute has passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// restoreFrom turns a checkpoint's acknowledgements into what a job
// restores from, as the job master does.
func restoreFrom(id int64, cp []runtime.TaskAck, parallelism map[string]int) map[string]*runtime.RestoredState {
	out := map[string]*runtime.RestoredState{}
	for _, a := range cp {
		for uid, snap := range a.Operators {
			r := out[uid]
			if r == nil {
				r = &runtime.RestoredState{Checkpoint: id, Snapshots: make([]*runtime.OperatorSnapshot, parallelism[uid])}
				out[uid] = r
			}
			r.Snapshots[a.Task.Subtask] = snap
		}
	}
	return out
}

// ckJob builds the job: the gated source and punctuate (one subtask), the
// operator under test with parallelism p, an exactly-once sink.
type ckJob[OUT any] struct {
	recs       []ckRec
	pauseEvery int
	sink       *txnSink[OUT]
	// build adds the operator under test, named "op", to the stream.
	build func(d *DataStream[ckRec], p int) *DataStream[OUT]
}

func (j *ckJob[OUT]) plan(t *testing.T, p int, gate, pos *atomic.Int64) *runtime.Job {
	t.Helper()
	env := NewEnvironment()
	env.SetParallelism(1).SetMaxParallelism(128)
	src := FromSource[ckRec](env, "src", gatedSource{recs: j.recs, gate: gate, pos: pos, pauseEvery: j.pauseEvery}, NoWatermarks[ckRec]()).SetParallelism(1)
	out := j.build(punctuate(src).SetParallelism(1), p)
	SinkTo(out, "sink", j.sink).SetParallelism(1)
	jg, factories, err := env.plan("checkpointed")
	if err != nil {
		t.Fatal(err)
	}
	return &runtime.Job{Graph: jg, Factories: factories}
}

// runWithRestore runs the job with parallelism p1 until the source has
// emitted the first cut records, checkpoints it, lets it run on and
// cancels it; then restores it with parallelism p2 and runs it to the end.
// check looks at the first checkpoint's state of operator "op".
func (j *ckJob[OUT]) runWithRestore(t *testing.T, p1, p2 int, cut int, check func(t *testing.T, snaps []*runtime.OperatorSnapshot)) {
	t.Helper()
	n := int64(len(j.recs))
	gate, pos := &atomic.Int64{}, &atomic.Int64{}
	gate.Store(int64(cut))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := newAcks()
	r, err := runtime.Start(ctx, j.plan(t, p1, gate, pos), runtime.Options{Checkpoints: first, Credits: 2, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	first.setTasks(len(r.Tasks()))
	eventually(t, "the source to reach the gate", func() bool { return pos.Load() == gate.Load() })
	r.TriggerCheckpoint(1)
	cp := first.await(t, 1)
	r.NotifyCheckpointComplete(1)
	var snaps []*runtime.OperatorSnapshot
	for _, a := range cp {
		if s := a.Operators["op"]; s != nil {
			snaps = append(snaps, s)
		}
	}
	if len(snaps) != p1 {
		t.Fatalf("%d subtasks of the operator under test stored state, want %d", len(snaps), p1)
	}
	check(t, snaps)
	// The first job runs on past the checkpoint, then dies: what it
	// emits from now on must not count.
	gate.Store(min(int64(cut)+n/5, n-1))
	eventually(t, "the source to reach the second gate", func() bool { return pos.Load() == gate.Load() })
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := r.Wait(); !errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("first job: %v", err)
	}

	gate.Store(n)
	second := newAcks()
	restore := restoreFrom(1, cp, map[string]int{"src": 1, "punctuate": 1, "op": p1, "sink": 1})
	r, err = runtime.Start(context.Background(), j.plan(t, p2, gate, pos), runtime.Options{Checkpoints: second, Restore: restore})
	if err != nil {
		t.Fatal(err)
	}
	second.setTasks(len(r.Tasks()))
	eventually(t, "the restored job to finish its input", second.allFinished)
	r.TriggerCheckpoint(2)
	second.await(t, 2)
	r.NotifyCheckpointComplete(2)
	r.Release()
	if err := r.Wait(); err != nil {
		t.Fatalf("restored job: %v", err)
	}
}

// windowModel computes the results of event-time windows directly, as
// Flink defines them: per key, over the records and watermarks in input
// order. A window fires when the watermark reaches its max timestamp, is
// kept until max timestamp + lateness, and a record for a window that has
// fired but is kept fires it again at once; a record all of whose windows
// are past their lateness is dropped. Sessions merge windows that overlap
// or touch.
func windowModel(recs []ckRec, size, slide, gap, lateness int64) []ckRow {
	type win struct {
		start, end int64
		count, sum int64
		fired      bool
	}
	wm := int64(-1 << 63)
	wins := map[string][]*win{}
	var out []ckRow
	emit := func(key string, w *win) {
		out = append(out, ckRow{key, w.start, w.end, w.count, w.sum, w.end - 1})
	}
	cleanup := func(w *win) int64 { return w.end - 1 + lateness }
	for _, r := range recs {
		if r.WM {
			if r.TS <= wm {
				continue
			}
			wm = r.TS
			for key, ws := range wins {
				kept := ws[:0]
				for _, w := range ws {
					if !w.fired && w.end-1 <= wm {
						emit(key, w)
						w.fired = true
					}
					if cleanup(w) > wm {
						kept = append(kept, w)
					}
				}
				wins[key] = kept
			}
			continue
		}
		if gap > 0 {
			nw := &win{start: r.TS, end: r.TS + gap, count: 1, sum: r.V}
			var rest []*win
			merged := false
			for _, w := range wins[r.Key] {
				if w.start <= nw.end && w.end >= nw.start {
					nw.start, nw.end = min(nw.start, w.start), max(nw.end, w.end)
					nw.count += w.count
					nw.sum += w.sum
					merged = true
				} else {
					rest = append(rest, w)
				}
			}
			if !merged && cleanup(nw) <= wm {
				continue // late
			}
			nw.fired = nw.end-1 <= wm
			wins[r.Key] = append(rest, nw)
			if nw.fired {
				emit(r.Key, nw)
			}
			continue
		}
		for start := r.TS - ((r.TS%slide)+slide)%slide; start > r.TS-size; start -= slide {
			var w *win
			for _, x := range wins[r.Key] {
				if x.start == start {
					w = x
				}
			}
			if w == nil {
				w = &win{start: start, end: start + size}
				if cleanup(w) <= wm {
					continue // late
				}
				w.fired = w.end-1 <= wm
				wins[r.Key] = append(wins[r.Key], w)
			}
			w.count++
			w.sum += r.V
			if w.end-1 <= wm {
				emit(r.Key, w)
			}
		}
	}
	for key, ws := range wins { // the final watermark
		for _, w := range ws {
			if !w.fired {
				emit(key, w)
			}
		}
	}
	slices.SortFunc(out, compareRows)
	return out
}

// countSum is the windows' aggregate.
type countSum struct{ N, Sum int64 }

type countSumAgg struct{}

func (countSumAgg) CreateAccumulator() countSum        { return countSum{} }
func (countSumAgg) Add(r ckRec, acc countSum) countSum { return countSum{acc.N + 1, acc.Sum + r.V} }
func (countSumAgg) GetResult(acc countSum) countSum    { return acc }
func (countSumAgg) Merge(a, b countSum) countSum       { return countSum{a.N + b.N, a.Sum + b.Sum} }
func rowOf(key string, w TimeWindow, cs countSum) ckRow {
	return ckRow{key, w.Start, w.End, cs.N, cs.Sum, 0}
}

// windowFlavours build the operator under test, "op", with each kind of
// window function: aggregate, process (buffers the records) and reduce
// (counting through TS).
var windowFlavours = map[string]func(w *WindowedStream[ckRec, string]) *DataStream[ckRow]{
	"aggregate": func(w *WindowedStream[ckRec, string]) *DataStream[ckRow] {
		return WindowAggregateWith(w, "op", countSumAgg{}, func(key string, win TimeWindow, in []countSum, out Collector[ckRow]) error {
			out.Collect(rowOf(key, win, in[0]))
			return nil
		})
	},
	"process": func(w *WindowedStream[ckRec, string]) *DataStream[ckRow] {
		return WindowProcess(w, "op", func(key string, win TimeWindow, in []ckRec, out Collector[ckRow]) error {
			var cs countSum
			for _, r := range in {
				cs = countSumAgg{}.Add(r, cs)
			}
			out.Collect(rowOf(key, win, cs))
			return nil
		})
	},
	"reduce": func(w *WindowedStream[ckRec, string]) *DataStream[ckRow] {
		counted := Map(w.k.in, "count", func(r ckRec) ckRec { r.TS = 1; return r }).SetParallelism(1)
		w = Window(KeyBy(counted, func(r ckRec) string { return r.Key }), w.assigner).AllowedLateness(w.lateness)
		return WindowReduce(w, "op", func(a, b ckRec) ckRec { return ckRec{Key: a.Key, TS: a.TS + b.TS, V: a.V + b.V} },
			func(key string, win TimeWindow, in []ckRec, out Collector[ckRow]) error {
				out.Collect(ckRow{key, win.Start, win.End, in[0].TS, in[0].V, 0})
				return nil
			})
	},
}

// stamped gives each row the timestamp it came with.
func stamped(d *DataStream[ckRow]) *DataStream[ckRow] {
	return derive[ckRow, ckRow](d, addNode(d.env, "stamp", "stamp", stampFactory(), d.input()))
}

type stampOp struct{ out runtime.Output[ckRow] }

func (s *stampOp) Open(*runtime.OperatorContext) error { return nil }
func (s *stampOp) ProcessElement(r ckRow, ts int64)    { r.TS = ts; s.out.Collect(r, ts) }
func (s *stampOp) ProcessWatermark(_ int, wm int64)    { s.out.EmitWatermark(wm) }
func (s *stampOp) EndInput(int)                        {}
func (s *stampOp) Close() error                        { return nil }
func stampFactory() *runtime.Factory {
	return &runtime.Factory{
		OutType: runtime.TypeOf[ckRow](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[ckRow]()},
		New: func() runtime.Instance {
			s := &stampOp{}
			return runtime.Instance{Op: s, Inputs: []any{runtime.Input[ckRow](s)}, SetOutput: func(o any) { s.out = o.(runtime.Output[ckRow]) }}
		},
	}
}

// TestWindowsRestoredFromCheckpointAreExact runs event-time tumbling,
// sliding and session windows with allowed lateness through a checkpoint,
// a crash and a restore with the same and with other parallelisms, and
// compares the committed output with the windows computed directly.
func TestWindowsRestoredFromCheckpointAreExact(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ms := time.Millisecond
	recs := ckRecords(3, 4000, 30)
	for _, c := range []struct {
		name             string
		assigner         WindowAssigner
		size, slide, gap int64
		flavour          string
	}{
		{"tumbling", TumblingEventTimeWindows(50 * ms), 50, 50, 0, "aggregate"},
		{"sliding", SlidingEventTimeWindows(60*ms, 20*ms), 60, 20, 0, "process"},
		{"session", EventTimeSessionWindows(40 * ms), 0, 0, 40, "reduce"},
	} {
		want := windowModel(recs, c.size, c.slide, c.gap, 30)
		// Cut after a watermark that has just fired windows (tumbling,
		// sliding: of the last window end), which now wait for late
		// records.
		cut := len(recs) * 2 / 5
		for !recs[cut-1].WM || c.slide > 0 && (recs[cut-1].TS+1)%c.slide >= 20 {
			cut++
		}
		for _, scale := range [][2]int{{2, 2}, {2, 3}, {3, 1}} {
			t.Run(fmt.Sprintf("%s/%d→%d", c.name, scale[0], scale[1]), func(t *testing.T) {
				j := &ckJob[ckRow]{recs: recs, sink: newTxnSink[ckRow](), build: func(d *DataStream[ckRec], p int) *DataStream[ckRow] {
					w := Window(KeyBy(d, func(r ckRec) string { return r.Key }), c.assigner).AllowedLateness(30 * ms)
					return stamped(windowFlavours[c.flavour](w).SetParallelism(p))
				}}
				j.runWithRestore(t, scale[0], scale[1], cut, func(t *testing.T, snaps []*runtime.OperatorSnapshot) {
					// Windows waiting to fire, and windows that fired and
					// wait for late records: the latter have their cleanup
					// timer pending but not the firing one (at End-1).
					waiting, fired := 0, 0
					for _, s := range snaps {
						firing := map[string]bool{}
						for _, g := range s.Timers.KeyGroups {
							for _, tm := range g.EventTime {
								end := int64(binary.BigEndian.Uint64(tm.Namespace[8:]) ^ 1<<63)
								firing[string(tm.Key)+string(tm.Namespace)] = firing[string(tm.Key)+string(tm.Namespace)] || tm.Timestamp == end-1
							}
						}
						for _, f := range firing {
							if f {
								waiting++
							} else {
								fired++
							}
						}
					}
					if waiting == 0 || fired == 0 {
						t.Fatalf("the checkpoint holds %d windows waiting to fire and %d fired ones: the test proves too little", waiting, fired)
					}
				})
				got := j.sink.committedOutput()
				slices.SortFunc(got, compareRows)
				if !slices.Equal(got, want) {
					t.Fatalf("%d results committed, want %d; first difference:\n%s", len(got), len(want), firstRowDiff(got, want))
				}
			})
		}
	}
}

func firstRowDiff(got, want []ckRow) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = fmt.Sprintf("%+v", got[i])
		}
		if i < len(want) {
			w = fmt.Sprintf("%+v", want[i])
		}
		if g != w {
			return fmt.Sprintf("  at %d: got  %s\n         want %s", i, g, w)
		}
	}
	return "none"
}

// TestProcessingTimeWindowsRestoredFromCheckpointCountEachRecordOnce runs
// processing-time windows through a checkpoint, a crash and a restore;
// which window a record falls in depends on the clock, but every record
// must be counted in exactly size/slide committed windows.
func TestProcessingTimeWindowsRestoredFromCheckpointCountEachRecordOnce(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ms := time.Millisecond
	recs := ckRecords(4, 3000, 20)
	perKey := map[string]int64{}
	for _, r := range recs {
		if !r.WM {
			perKey[r.Key]++
		}
	}
	for _, c := range []struct {
		name     string
		assigner WindowAssigner
		times    int64 // windows per record
	}{
		{"tumbling", TumblingProcessingTimeWindows(3 * ms), 1},
		{"sliding", SlidingProcessingTimeWindows(6*ms, 2*ms), 3},
		{"session", ProcessingTimeSessionWindows(2 * ms), 1},
	} {
		for _, scale := range [][2]int{{2, 3}, {3, 1}} {
			t.Run(fmt.Sprintf("%s/%d→%d", c.name, scale[0], scale[1]), func(t *testing.T) {
				j := &ckJob[ckRow]{recs: recs, pauseEvery: 50, sink: newTxnSink[ckRow](), build: func(d *DataStream[ckRec], p int) *DataStream[ckRow] {
					return windowFlavours["aggregate"](Window(KeyBy(d, func(r ckRec) string { return r.Key }), c.assigner)).SetParallelism(p)
				}}
				j.runWithRestore(t, scale[0], scale[1], len(recs)*2/5, func(*testing.T, []*runtime.OperatorSnapshot) {})
				got := map[string]int64{}
				for _, r := range j.sink.committedOutput() {
					got[r.Key] += r.Count
				}
				for key, n := range perKey {
					if got[key] != n*c.times {
						t.Errorf("key %s: counted %d times in committed windows, want %d", key, got[key], n*c.times)
					}
				}
			})
		}
	}
}

// runningSum is an unkeyed process function whose running sum and count
// are checkpointed: after a rescaling, subtask 0 takes over the old
// subtasks' totals.
type runningSum struct {
	sub         int
	n, sum      int64
	restored    bool
	oldSubtasks int
}

type sumRow struct {
	Subtask  int
	Restored bool
	N, Sum   int64
}

func (f *runningSum) Open(rc *RuntimeContext) error { f.sub = rc.Subtask(); return nil }

func (f *runningSum) ProcessElement(ctx *Context[sumRow], r ckRec) error {
	f.n++
	f.sum += r.V
	ctx.Collect(sumRow{f.sub, f.restored, f.n, f.sum})
	return nil
}

func (f *runningSum) SnapshotState(ctx *SnapshotContext) ([]byte, error) {
	if ctx.CheckpointID() <= 0 || ctx.Subtask() != f.sub {
		return nil, fmt.Errorf("snapshot context %+v", *ctx)
	}
	return binary.AppendVarint(binary.AppendVarint(nil, f.n), f.sum), nil
}

func (f *runningSum) RestoreState(ctx *RestoreContext) error {
	f.restored = true
	f.oldSubtasks = ctx.OldParallelism()
	take := func(b []byte) error {
		n, w1 := binary.Varint(b)
		s, w2 := binary.Varint(b[max(w1, 0):])
		if b == nil || w1 <= 0 || w2 <= 0 {
			return fmt.Errorf("corrupt state %x", b)
		}
		f.n += n
		f.sum += s
		return nil
	}
	if !ctx.Rescaled() {
		return take(ctx.Own())
	}
	if ctx.Subtask() != 0 {
		return nil
	}
	for _, b := range ctx.States() {
		if err := take(b); err != nil {
			return err
		}
	}
	return nil
}

// TestCheckpointedFunctionRestoresWithRescaling checks the user's hook for
// the state of unkeyed functions: after the restore, the totals of the new
// subtasks add up to all records, each counted once.
func TestCheckpointedFunctionRestoresWithRescaling(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	recs := ckRecords(5, 3000, 10)
	var n, sum int64
	for _, r := range recs {
		if !r.WM {
			n++
			sum += r.V
		}
	}
	for _, scale := range [][2]int{{2, 2}, {2, 3}, {3, 1}} {
		t.Run(fmt.Sprintf("%d→%d", scale[0], scale[1]), func(t *testing.T) {
			j := &ckJob[sumRow]{recs: recs, sink: newTxnSink[sumRow](), build: func(d *DataStream[ckRec], p int) *DataStream[sumRow] {
				return ProcessUnkeyed[ckRec, sumRow](d.Rebalance(), "op", &runningSum{}).SetParallelism(p)
			}}
			j.runWithRestore(t, scale[0], scale[1], len(recs)*2/5, func(t *testing.T, snaps []*runtime.OperatorSnapshot) {
				for _, s := range snaps {
					if s.Operator == nil {
						t.Fatal("the function's state is not in the checkpoint")
					}
				}
			})
			final := map[int]sumRow{}
			for _, r := range j.sink.committedOutput() {
				if r.Restored && r.N > final[r.Subtask].N {
					final[r.Subtask] = r
				}
			}
			var gotN, gotSum int64
			for _, r := range final {
				gotN += r.N
				gotSum += r.Sum
			}
			if gotN != n || gotSum != sum {
				t.Fatalf("the restored subtasks end with %d records summing to %d, want %d summing to %d (%v)", gotN, gotSum, n, sum, final)
			}
		})
	}
}

// coCounter counts the records of both inputs of a CoProcess.
type coCounter struct{ a, b int64 }

func (c *coCounter) ProcessElement1(ctx *Context[string], _ int) error { c.a++; return nil }
func (c *coCounter) ProcessElement2(ctx *Context[string], _ int) error { c.b++; return nil }
func (c *coCounter) SnapshotState(*SnapshotContext) ([]byte, error) {
	return []byte(fmt.Sprintf("%d,%d", c.a, c.b)), nil
}
func (c *coCounter) RestoreState(ctx *RestoreContext) error {
	_, err := fmt.Sscanf(string(ctx.Own()), "%d,%d", &c.a, &c.b)
	return err
}

// TestCoProcessFunctionState checks the hook on a two-input function, and
// that a function that is not a CheckpointedFunction refuses the state of
// one that was.
func TestCoProcessFunctionState(t *testing.T) {
	env := NewEnvironment()
	one := FromSource[int](env, "one", gatedIntSource{})
	two := FromSource[int](env, "two", gatedIntSource{})
	CoProcess[int, int, string](Connect(one, two), "co", &coCounter{})
	CoMap(Connect(one, two), "plain", func(int) string { return "" }, func(int) string { return "" })
	_, factories, err := env.plan("co")
	if err != nil {
		t.Fatal(err)
	}
	open := func(uid string, r *runtime.RestoredState) (runtime.Instance, error) {
		inst := factories[uid].New()
		inst.SetOutput(runtime.Output[string](discard[string]{}))
		return inst, inst.Op.Open(&runtime.OperatorContext{Name: uid, UID: uid, Parallelism: 1, Restored: r, Checkpointing: true})
	}
	inst, err := open("co", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst.Inputs[0].(runtime.Input[int]).ProcessElement(1, 0)
	inst.Inputs[1].(runtime.Input[int]).ProcessElement(2, 0)
	inst.Inputs[1].(runtime.Input[int]).ProcessElement(3, 0)
	snap, err := inst.Op.(runtime.Snapshotter).SnapshotState(4)
	if err != nil {
		t.Fatal(err)
	}
	r := &runtime.RestoredState{Checkpoint: 4, Snapshots: []*runtime.OperatorSnapshot{snap}}
	restored, err := open("co", r)
	if err != nil {
		t.Fatal(err)
	}
	restored.Inputs[0].(runtime.Input[int]).ProcessElement(4, 0)
	again, _ := restored.Op.(runtime.Snapshotter).SnapshotState(5)
	if !strings.HasSuffix(string(again.Operator), "2,2") {
		t.Fatalf("after the restore and one more record, the state ends %q, want 2,2", again.Operator)
	}
	if _, err := open("plain", r); err == nil || !strings.Contains(err.Error(), "no longer stores any") {
		t.Fatalf("a co-map restored from a co-process's state: %v", err)
	}
}

type gatedIntSource struct{}

func (gatedIntSource) Open(connector.SourceContext) (connector.SourceReader[int], error) {
	return nil, errors.New("not run")
}

type discard[T any] struct{}

func (discard[T]) Collect(T, int64)    {}
func (discard[T]) EmitWatermark(int64) {}

// halfCheckpointed has SnapshotState but no RestoreState.
type halfCheckpointed struct{}

func (halfCheckpointed) ProcessElement(*Context[int], int) error        { return nil }
func (halfCheckpointed) SnapshotState(*SnapshotContext) ([]byte, error) { return nil, nil }

func TestHalfCheckpointedFunctionIsRejected(t *testing.T) {
	env := NewEnvironment()
	ProcessUnkeyed[int, int](FromSource[int](env, "src", gatedIntSource{}), "half", halfCheckpointed{})
	_, _, err := env.plan("half")
	if err == nil || !strings.Contains(err.Error(), "needs both") {
		t.Fatalf("plan: %v, want an error saying a CheckpointedFunction needs both methods", err)
	}
}
