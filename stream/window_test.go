package stream_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/stream"
)

// winRec is an input record: N is 1, so that a reduce summing it counts.
type winRec struct {
	Key string
	TS  int64
	V   int64
	N   int64
}

// winRow is one window's result.
type winRow struct {
	Key        string
	Start, End int64
	Count, Sum int64
	TS         int64 // the record's timestamp
}

// winSource emits recs with their timestamps; subtask i of p takes every
// p-th record from the i-th. With pauseEvery set, it reports that nothing
// is available after every pauseEvery records, which makes the task wait a
// few milliseconds: the job then spans many processing-time windows.
type winSource struct {
	recs       []winRec
	pauseEvery int
}

func (s winSource) Open(ctx connector.SourceContext) (connector.SourceReader[winRec], error) {
	return &winReader{recs: s.recs, i: ctx.Subtask, step: ctx.Parallelism, pauseEvery: s.pauseEvery}, nil
}

type winReader struct {
	recs                []winRec
	i, step             int
	pauseEvery, emitted int
}

func (r *winReader) Read(out connector.SourceOutput[winRec]) (connector.ReadStatus, error) {
	for n := 0; n < 64 && r.i < len(r.recs); n++ {
		out.CollectWithTimestamp(r.recs[r.i], r.recs[r.i].TS)
		r.i += r.step
		r.emitted++
		if r.pauseEvery > 0 && r.emitted%r.pauseEvery == 0 {
			return connector.NothingAvailable, nil
		}
	}
	if r.i >= len(r.recs) {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *winReader) Close() error { return nil }

// winSink collects records with their timestamps from all subtasks.
type winSink[T any] struct {
	mu   sync.Mutex
	recs []winStamped[T]
}

type winStamped[T any] struct {
	V  T
	TS int64
}

func (s *winSink[T]) Open(connector.SinkContext) (connector.SinkWriter[T], error) { return s, nil }
func (s *winSink[T]) Write(v T, ts int64) error {
	s.mu.Lock()
	s.recs = append(s.recs, winStamped[T]{v, ts})
	s.mu.Unlock()
	return nil
}
func (s *winSink[T]) Finish() error { return nil }
func (s *winSink[T]) Close() error  { return nil }

func (s *winSink[T]) rows(f func(T, int64) winRow) []winRow {
	var out []winRow
	for _, r := range s.recs {
		out = append(out, f(r.V, r.TS))
	}
	sortRows(out)
	return out
}

func sortRows(rs []winRow) {
	slices.SortFunc(rs, func(a, b winRow) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End),
			cmp.Compare(a.Count, b.Count), cmp.Compare(a.Sum, b.Sum), cmp.Compare(a.TS, b.TS))
	})
}

func winQuiet(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	launch.Set(&launch.Settings{Quiet: true, Context: ctx})
	t.Cleanup(func() { launch.Set(nil); cancel() })
	return ctx
}

// winRecords returns n records over `keys` keys whose timestamps rise by up
// to 4 ms each, then are disordered by at most `disorder` ms.
func winRecords(seed uint64, n, keys int, disorder int64) []winRec {
	rng := rand.New(rand.NewPCG(seed, 7))
	recs := make([]winRec, n)
	ts := int64(-3000)
	for i := range recs {
		ts += rng.Int64N(5)
		recs[i] = winRec{Key: fmt.Sprintf("key-%d", rng.IntN(keys)), TS: ts, V: rng.Int64N(1000), N: 1}
	}
	// Swap neighbours whose times are close enough; repeated passes give
	// disorder up to the bound, never beyond it.
	for range 3 {
		for i := 1; i < len(recs); i++ {
			if rng.IntN(2) == 0 && absDiff(recs[i].TS, recs[i-1].TS) < disorder/3 {
				recs[i], recs[i-1] = recs[i-1], recs[i]
			}
		}
	}
	return recs
}

func absDiff(a, b int64) int64 { return max(a-b, b-a) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// expectedRows computes every (key, window) result directly from the
// records: sliding and tumbling windows start at multiples of slide, and a
// key's sessions split where the next record comes more than gap after the
// latest record.
func expectedRows(recs []winRec, size, slide, gap int64) []winRow {
	type kw struct {
		key        string
		start, end int64
	}
	sums := map[kw]*winRow{}
	add := func(k kw, r winRec) {
		row := sums[k]
		if row == nil {
			row = &winRow{Key: k.key, Start: k.start, End: k.end, TS: k.end - 1}
			sums[k] = row
		}
		row.Count++
		row.Sum += r.V
	}
	if gap == 0 {
		for _, r := range recs {
			// Starts k*slide with k*slide <= ts < k*slide+size.
			for k := floorDiv(r.TS-size, slide) + 1; k*slide <= r.TS; k++ {
				add(kw{r.Key, k * slide, k*slide + size}, r)
			}
		}
	} else {
		byKey := map[string][]winRec{}
		for _, r := range recs {
			byKey[r.Key] = append(byKey[r.Key], r)
		}
		for key, rs := range byKey {
			slices.SortStableFunc(rs, func(a, b winRec) int { return cmp.Compare(a.TS, b.TS) })
			for i := 0; i < len(rs); {
				j, last := i+1, rs[i].TS
				for j < len(rs) && rs[j].TS <= last+gap {
					last = rs[j].TS
					j++
				}
				for _, r := range rs[i:j] {
					add(kw{key, rs[i].TS, last + gap}, r)
				}
				i = j
			}
		}
	}
	var out []winRow
	for _, r := range sums {
		out = append(out, *r)
	}
	sortRows(out)
	return out
}

type winCountSum struct{ N, Sum int64 }

type winAgg struct{}

func (winAgg) CreateAccumulator() winCountSum { return winCountSum{} }
func (winAgg) Add(r winRec, acc winCountSum) winCountSum {
	return winCountSum{acc.N + 1, acc.Sum + r.V}
}
func (winAgg) GetResult(acc winCountSum) winCountSum { return acc }
func (winAgg) Merge(a, b winCountSum) winCountSum    { return winCountSum{a.N + b.N, a.Sum + b.Sum} }
func winSum(a, b winRec) winRec                      { return winRec{a.Key, max(a.TS, b.TS), a.V + b.V, a.N + b.N} }
func rowOf(key string, w stream.TimeWindow, cs winCountSum) winRow {
	return winRow{key, w.Start, w.End, cs.N, cs.Sum, 0}
}

// TestWindowsMatchDirectComputation runs every window flavour over tumbling,
// sliding and session windows at parallelism 1, 2 and 3 and compares the
// results with a direct computation over the same records.
func TestWindowsMatchDirectComputation(t *testing.T) {
	const disorder = 30
	recs := winRecords(1, 20000, 57, disorder)
	ms := time.Millisecond
	for _, c := range []struct {
		name             string
		assigner         stream.WindowAssigner
		size, slide, gap int64
	}{
		{"tumbling", stream.TumblingEventTimeWindows(100 * ms), 100, 100, 0},
		{"sliding", stream.SlidingEventTimeWindows(100*ms, 25*ms), 100, 25, 0},
		{"session", stream.EventTimeSessionWindows(6 * ms), 0, 0, 6},
	} {
		want := expectedRows(recs, c.size, c.slide, c.gap)
		for _, p := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/p%d", c.name, p), func(t *testing.T) {
				ctx := winQuiet(t)
				env := stream.NewEnvironment().SetParallelism(p)
				if err := env.Configure("pipeline.auto-watermark-interval", "1ms"); err != nil {
					t.Fatal(err)
				}
				src := stream.FromSource(env, "records", connector.Source[winRec](winSource{recs: recs}),
					stream.ForBoundedOutOfOrderness[winRec](disorder*ms))
				keyed := stream.KeyBy(src, func(r winRec) string { return r.Key })
				win := stream.Window(keyed, c.assigner)

				reduced := &winSink[winRec]{}
				stream.SinkTo(win.Reduce("reduce", winSum), "reduce-out", connector.Sink[winRec](reduced))

				reducedWith := &winSink[winRow]{}
				stream.SinkTo(stream.WindowReduce(win, "reduce-with", winSum,
					func(key string, w stream.TimeWindow, in []winRec, out stream.Collector[winRow]) error {
						out.Collect(winRow{key, w.Start, w.End, in[0].N, in[0].V, 0})
						return nil
					}), "reduce-with-out", connector.Sink[winRow](reducedWith))

				aggregated := &winSink[winCountSum]{}
				stream.SinkTo(stream.WindowAggregate(win, "aggregate", winAgg{}), "aggregate-out", connector.Sink[winCountSum](aggregated))

				aggregatedWith := &winSink[winRow]{}
				stream.SinkTo(stream.WindowAggregateWith(win, "aggregate-with", winAgg{},
					func(key string, w stream.TimeWindow, in []winCountSum, out stream.Collector[winRow]) error {
						out.Collect(rowOf(key, w, in[0]))
						return nil
					}), "aggregate-with-out", connector.Sink[winRow](aggregatedWith))

				processed := &winSink[winRow]{}
				stream.SinkTo(stream.WindowProcess(win, "process",
					func(key string, w stream.TimeWindow, in []winRec, out stream.Collector[winRow]) error {
						var cs winCountSum
						for _, r := range in {
							if r.TS < w.Start || r.TS >= w.End || r.Key != key {
								return fmt.Errorf("record %+v in window %v of key %q", r, w, key)
							}
							cs = winCountSum{cs.N + 1, cs.Sum + r.V}
						}
						out.Collect(rowOf(key, w, cs))
						return nil
					}), "process-out", connector.Sink[winRow](processed))

				if err := env.ExecuteContext(ctx, "windows"); err != nil {
					t.Fatal(err)
				}
				withTS := func(r winRow, ts int64) winRow { r.TS = ts; return r }
				for name, got := range map[string][]winRow{
					"Reduce": reduced.rows(func(r winRec, ts int64) winRow {
						// Reduce emits only the value: its window is known by its
						// timestamp for tumbling and sliding windows, and for
						// sessions by the first and last records' times.
						start := ts + 1 - c.size
						if c.gap > 0 {
							start = -1 << 62
						}
						return winRow{r.Key, start, ts + 1, r.N, r.V, ts}
					}),
					"WindowReduce":        reducedWith.rows(withTS),
					"WindowAggregateWith": aggregatedWith.rows(withTS),
					"WindowProcess":       processed.rows(withTS),
				} {
					w := want
					if name == "Reduce" && c.gap > 0 {
						w = slices.Clone(want)
						for i := range w {
							w[i].Start = -1 << 62
						}
						sortRows(w)
					}
					if !slices.Equal(got, w) {
						t.Errorf("%s: %d results, want %d; first difference: %s", name, len(got), len(w), rowDiff(got, w))
					}
				}
				// WindowAggregate emits the bare result: compare counts and sums.
				var gotCS, wantCS []string
				for _, r := range aggregated.recs {
					gotCS = append(gotCS, fmt.Sprintf("%d/%d@%d", r.V.N, r.V.Sum, r.TS))
				}
				for _, r := range want {
					wantCS = append(wantCS, fmt.Sprintf("%d/%d@%d", r.Count, r.Sum, r.TS))
				}
				slices.Sort(gotCS)
				slices.Sort(wantCS)
				if !slices.Equal(gotCS, wantCS) {
					t.Errorf("WindowAggregate: %d results, want %d", len(gotCS), len(wantCS))
				}
			})
		}
	}
}

func rowDiff(got, want []winRow) string {
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			var g, w any = "none", "none"
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			return fmt.Sprintf("at %d got %+v, want %+v", i, g, w)
		}
	}
	return "none"
}

// TestProcessingTimeWindowsKeepEveryRecord checks that a bounded job's
// processing-time windows, including the last partial ones fired at the end
// of the input, hold every record exactly once.
func TestProcessingTimeWindowsKeepEveryRecord(t *testing.T) {
	recs := winRecords(2, 30000, 13, 0)
	for _, p := range []int{1, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			ctx := winQuiet(t)
			env := stream.NewEnvironment().SetParallelism(p)
			src := stream.FromSource(env, "records", connector.Source[winRec](winSource{recs: recs, pauseEvery: 1000}))
			keyed := stream.KeyBy(src, func(r winRec) string { return r.Key })
			sink := &winSink[winRow]{}
			rows := stream.WindowAggregateWith(stream.Window(keyed, stream.TumblingProcessingTimeWindows(5*time.Millisecond)), "count", winAgg{},
				func(key string, w stream.TimeWindow, in []winCountSum, out stream.Collector[winRow]) error {
					out.Collect(rowOf(key, w, in[0]))
					return nil
				})
			stream.SinkTo(rows, "out", connector.Sink[winRow](sink))
			if err := env.ExecuteContext(ctx, "processing-time"); err != nil {
				t.Fatal(err)
			}
			var n, sum, wantSum int64
			seen := map[string]bool{}
			for _, r := range sink.recs {
				if r.V.End-r.V.Start != 5 || r.V.Start%5 != 0 || r.TS != r.V.End-1 {
					t.Fatalf("result %+v @%d is not of a 5 ms tumbling window", r.V, r.TS)
				}
				id := fmt.Sprintf("%s@%d", r.V.Key, r.V.Start)
				if seen[id] {
					t.Fatalf("window %s fired twice", id)
				}
				seen[id] = true
				n += r.V.Count
				sum += r.V.Sum
			}
			for _, r := range recs {
				wantSum += r.V
			}
			if starts := len(windowStarts(sink.recs)); starts < 3 {
				t.Errorf("the job spanned %d processing-time windows; the test wants several", starts)
			}
			if n != int64(len(recs)) || sum != wantSum {
				t.Fatalf("windows hold %d records summing to %d, want %d summing to %d", n, sum, len(recs), wantSum)
			}
		})
	}
}

func windowStarts(rs []winStamped[winRow]) map[int64]bool {
	starts := map[int64]bool{}
	for _, r := range rs {
		starts[r.V.Start] = true
	}
	return starts
}

func TestWindowWithoutTimestampsFails(t *testing.T) {
	ctx := winQuiet(t)
	env := stream.NewEnvironment().SetParallelism(1)
	src := stream.FromSource(env, "records", connector.Source[winRec](untimedSource{}))
	keyed := stream.KeyBy(src, func(r winRec) string { return r.Key })
	out := stream.Window(keyed, stream.TumblingEventTimeWindows(time.Second)).Reduce("sum", winSum)
	stream.SinkTo(out, "out", connector.Sink[winRec](&winSink[winRec]{}))
	err := env.ExecuteContext(ctx, "untimed")
	if err == nil || !strings.Contains(err.Error(), `"sum"`) || !strings.Contains(err.Error(), "no event timestamp") {
		t.Fatalf("got %v, want the window operator to fail for want of timestamps", err)
	}
}

type untimedSource struct{}

func (untimedSource) Open(connector.SourceContext) (connector.SourceReader[winRec], error) {
	return untimedSource{}, nil
}
func (untimedSource) Read(out connector.SourceOutput[winRec]) (connector.ReadStatus, error) {
	out.Collect(winRec{Key: "a"})
	return connector.EndOfInput, nil
}
func (untimedSource) Close() error { return nil }

func TestWindowBuildErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(*stream.WindowedStream[winRec, string])
		a     stream.WindowAssigner
		want  string
	}{
		{"bad assigner", func(w *stream.WindowedStream[winRec, string]) { w.Reduce("r", winSum) },
			stream.SlidingEventTimeWindows(time.Second, 0), "SlidingEventTimeWindows: window slide 0s must be positive"},
		{"bad offset", func(w *stream.WindowedStream[winRec, string]) { w.Reduce("r", winSum) },
			stream.TumblingEventTimeWindows(time.Hour).WithOffset(2 * time.Hour), "offset 2h0m0s must be smaller"},
		{"negative lateness", func(w *stream.WindowedStream[winRec, string]) { w.AllowedLateness(-time.Second).Reduce("r", winSum) },
			stream.TumblingEventTimeWindows(time.Hour), "allowed lateness must not be negative"},
		{"nil reduce", func(w *stream.WindowedStream[winRec, string]) { w.Reduce("r", nil) },
			stream.TumblingEventTimeWindows(time.Hour), `window operator "r": the reduce function is nil`},
		{"nil process", func(w *stream.WindowedStream[winRec, string]) { stream.WindowProcess[winRec, string, int](w, "p", nil) },
			stream.TumblingEventTimeWindows(time.Hour), `window operator "p": the process window function is nil`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := winQuiet(t)
			env := stream.NewEnvironment()
			src := stream.FromSource(env, "records", connector.Source[winRec](winSource{}))
			c.build(stream.Window(stream.KeyBy(src, func(r winRec) string { return r.Key }), c.a))
			err := env.ExecuteContext(ctx, "bad")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
