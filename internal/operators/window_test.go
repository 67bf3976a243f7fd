package operators

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// Assigners.

func TestWindowStart(t *testing.T) {
	for _, c := range []struct{ ts, offset, size, want int64 }{
		{0, 0, 10, 0},
		{9, 0, 10, 0},
		{10, 0, 10, 10},
		{-1, 0, 10, -10},
		{-10, 0, 10, -10},
		{-11, 0, 10, -20},
		{2, 3, 10, -7},
		{3, 3, 10, 3},
		{12, 3, 10, 3},
		{13, 3, 10, 13},
		{0, -3, 10, -3},
		{7, -3, 10, 7},
		{6, -3, 10, -3},
		{-4, -3, 10, -13},
		{1700000001234, 0, 1000, 1700000001000},
	} {
		if got := WindowStart(c.ts, c.offset, c.size); got != c.want {
			t.Errorf("WindowStart(%d, offset %d, size %d) = %d, want %d", c.ts, c.offset, c.size, got, c.want)
		}
	}
}

func TestAssignWindows(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name string
		a    WindowAssigner
		ts   int64
		want []TimeWindow
	}{
		{"tumbling", TumblingWindows(10*ms, false), 15, []TimeWindow{{10, 20}}},
		{"tumbling negative", TumblingWindows(10*ms, false), -15, []TimeWindow{{-20, -10}}},
		{"tumbling offset", TumblingWindows(10*ms, false).WithOffset(3 * ms), 15, []TimeWindow{{13, 23}}},
		{"tumbling negative offset", TumblingWindows(10*ms, true).WithOffset(-3 * ms), 15, []TimeWindow{{7, 17}}},
		{"sliding", SlidingWindows(10*ms, 5*ms, false), 12, []TimeWindow{{10, 20}, {5, 15}}},
		{"sliding on boundary", SlidingWindows(10*ms, 5*ms, false), 10, []TimeWindow{{10, 20}, {5, 15}}},
		{"sliding negative", SlidingWindows(10*ms, 5*ms, false), -1, []TimeWindow{{-5, 5}, {-10, 0}}},
		{"sliding offset", SlidingWindows(10*ms, 5*ms, false).WithOffset(2 * ms), 12, []TimeWindow{{12, 22}, {7, 17}}},
		{"sliding slide > size", SlidingWindows(5*ms, 10*ms, false), 7, nil},
		{"sliding slide > size hit", SlidingWindows(5*ms, 10*ms, false), 13, []TimeWindow{{10, 15}}},
		{"sliding uneven", SlidingWindows(10*ms, 3*ms, false), 9, []TimeWindow{{9, 19}, {6, 16}, {3, 13}, {0, 10}}},
		{"session", SessionWindows(7*ms, false), -3, []TimeWindow{{-3, 4}}},
	} {
		if err := c.a.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := c.a.AssignWindows(nil, c.ts); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v.AssignWindows(%d) = %v, want %v", c.name, c.a, c.ts, got, c.want)
		}
	}
}

// TestSlidingOverlap checks that every timestamp is in exactly size/slide
// windows, each holding it and aligned to the slide.
func TestSlidingOverlap(t *testing.T) {
	for _, c := range []struct{ size, slide, offset int64 }{{10, 2, 0}, {10000, 2000, 0}, {6, 3, 1}, {8, 1, -0}, {12, 4, -3}, {5, 5, 0}} {
		a := SlidingWindows(time.Duration(c.size)*time.Millisecond, time.Duration(c.slide)*time.Millisecond, false).
			WithOffset(time.Duration(c.offset) * time.Millisecond)
		for ts := int64(-3 * c.size); ts < 3*c.size; ts++ {
			ws := a.AssignWindows(nil, ts)
			if int64(len(ws)) != c.size/c.slide {
				t.Fatalf("%v: ts %d in %d windows, want %d", a, ts, len(ws), c.size/c.slide)
			}
			for _, w := range ws {
				if w.Start > ts || ts >= w.End || w.End-w.Start != c.size || ((w.Start-c.offset)%c.slide+c.slide)%c.slide != 0 {
					t.Fatalf("%v: ts %d assigned to %v", a, ts, w)
				}
			}
		}
	}
}

func TestAssignerErrors(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		a    WindowAssigner
		want string
	}{
		{WindowAssigner{}, "no window assigner"},
		{TumblingWindows(0, false), "size 0s must be positive"},
		{TumblingWindows(1500*time.Microsecond, false), "not a whole number of milliseconds"},
		{SlidingWindows(10*ms, -1, false), "slide -1ns must be positive"},
		{TumblingWindows(10*ms, false).WithOffset(10 * ms), "smaller in absolute value than the window size"},
		{SlidingWindows(10*ms, 5*ms, false).WithOffset(-5 * ms), "than the window slide"},
		{SessionWindows(10*ms, true).WithOffset(ms), "tumbling and sliding windows only"},
		{SessionWindows(-ms, true), "ProcessingTimeSessionWindows: window gap -1ms must be positive"},
	} {
		err := c.a.Err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.a, err, c.want)
		}
	}
}

// Harness.

// winEvent is one thing a window operator emitted: a record or a watermark.
type winEvent[OUT any] struct {
	wm bool
	v  OUT
	ts int64
}

type winOutput[OUT any] struct{ events []winEvent[OUT] }

func (o *winOutput[OUT]) Collect(v OUT, ts int64) {
	o.events = append(o.events, winEvent[OUT]{v: v, ts: ts})
}
func (o *winOutput[OUT]) EmitWatermark(wm int64) {
	o.events = append(o.events, winEvent[OUT]{wm: true, ts: wm})
}

// take returns the records emitted since the last take (watermarks left out).
func (o *winOutput[OUT]) take() []winEvent[OUT] {
	var recs []winEvent[OUT]
	for _, e := range o.events {
		if !e.wm {
			recs = append(recs, e)
		}
	}
	o.events = nil
	return recs
}

// winClock is a manual processing-time service.
type winClock struct {
	now    int64
	seq    int
	timers []winClockTimer
}

type winClockTimer struct {
	ts  int64
	seq int
	cb  func(int64)
}

func (c *winClock) Now() int64 { return c.now }
func (c *winClock) Register(ts int64, cb func(int64)) {
	c.seq++
	c.timers = append(c.timers, winClockTimer{ts, c.seq, cb})
}

// advance moves the clock to now and runs the callbacks due, in order.
func (c *winClock) advance(now int64) {
	c.now = now
	for {
		i := -1
		for j, tm := range c.timers {
			if tm.ts <= now && (i < 0 || tm.ts < c.timers[i].ts || (tm.ts == c.timers[i].ts && tm.seq < c.timers[i].seq)) {
				i = j
			}
		}
		if i < 0 {
			return
		}
		tm := c.timers[i]
		c.timers = slices.Delete(c.timers, i, i+1)
		tm.cb(now)
	}
}

type winHarness[T, OUT any] struct {
	t     testing.TB
	op    runtime.Operator
	in    runtime.Input[T]
	out   *winOutput[OUT]
	clock *winClock
}

const testMaxP = 128

// newWinHarness opens subtask `subtask` of `parallelism` of the operator.
func newWinHarness[T, OUT any](t testing.TB, f *runtime.Factory, parallelism, subtask int) *winHarness[T, OUT] {
	t.Helper()
	inst := f.New()
	h := &winHarness[T, OUT]{t: t, op: inst.Op, in: inst.Inputs[0].(runtime.Input[T]), out: &winOutput[OUT]{}, clock: &winClock{}}
	inst.SetOutput(runtime.Output[OUT](h.out))
	kgs := keygroup.RangeForOperator(testMaxP, parallelism, subtask)
	ctx := &runtime.OperatorContext{
		Name: "window", UID: "window", Subtask: subtask, Parallelism: parallelism, MaxParallelism: testMaxP,
		KeyGroups: kgs, ProcessingTime: h.clock,
		NewKeyedBackend: func() state.Backend { return state.NewHeapBackend(kgs) },
		SetIdle:         func(bool) {},
	}
	if err := h.op.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *winHarness[T, OUT]) element(v T, ts int64) { h.in.ProcessElement(v, ts) }
func (h *winHarness[T, OUT]) watermark(wm int64)    { h.op.ProcessWatermark(0, wm) }
func (h *winHarness[T, OUT]) late() int64           { return h.op.(WindowState).NumLateRecordsDropped() }

// Test records and functions.

type wev struct {
	Key string
	TS  int64
	V   int64
}

type wres struct {
	Key        string
	Start, End int64
	Count, Sum int64
	TS         int64 // the output record's timestamp
}

func (r wres) String() string {
	return fmt.Sprintf("%s[%d,%d) n=%d sum=%d @%d", r.Key, r.Start, r.End, r.Count, r.Sum, r.TS)
}

func wevKeying(t testing.TB) *Keying[wev, string] {
	enc, err := NewKeyEncoder[string]()
	if err != nil {
		t.Fatal(err)
	}
	return &Keying[wev, string]{Select: func(e wev) string { return e.Key }, Encoder: enc}
}

func sumReduce(a, b wev) wev { return wev{Key: a.Key, TS: max(a.TS, b.TS), V: a.V + b.V} }

type countSum struct{ N, Sum int64 }

type countSumAgg struct{}

func (countSumAgg) CreateAccumulator() countSum       { return countSum{} }
func (countSumAgg) Add(in wev, acc countSum) countSum { return countSum{acc.N + 1, acc.Sum + in.V} }
func (countSumAgg) GetResult(acc countSum) countSum   { return acc }
func (countSumAgg) Merge(a, b countSum) countSum      { return countSum{a.N + b.N, a.Sum + b.Sum} }
func toResult(key string, w TimeWindow, cs countSum) wres {
	return wres{key, w.Start, w.End, cs.N, cs.Sum, 0}
}
func withTS(rs []winEvent[wres]) []wres {
	return mapEvents(rs, func(r wres, ts int64) wres { r.TS = ts; return r })
}
func mapEvents[A, B any](es []winEvent[A], f func(A, int64) B) []B {
	var out []B
	for _, e := range es {
		out = append(out, f(e.v, e.ts))
	}
	return out
}

// The three flavours that produce wres, for tests that run all of them.
func resultFactories(t testing.TB, spec WindowSpec) map[string]*runtime.Factory {
	k := wevKeying(t)
	return map[string]*runtime.Factory{
		"reduce": NewWindowReduceProcess(k, spec, func(a, b wev) wev {
			// V counts in the high bits, sums in the low: keep both.
			return wev{Key: a.Key, V: a.V + b.V, TS: a.TS + b.TS}
		}, func(key string, w TimeWindow, in []wev, out Collector[wres]) error {
			if len(in) != 1 {
				return fmt.Errorf("reduce passed %d elements", len(in))
			}
			out.Collect(wres{key, w.Start, w.End, in[0].TS, in[0].V, 0})
			return nil
		}),
		"aggregate": NewWindowAggregateProcess(k, spec, countSumAgg{}, func(key string, w TimeWindow, in []countSum, out Collector[wres]) error {
			out.Collect(toResult(key, w, in[0]))
			return nil
		}),
		"process": NewWindowProcess(k, spec, func(key string, w TimeWindow, in []wev, out Collector[wres]) error {
			var cs countSum
			for _, e := range in {
				if e.Key != key {
					return fmt.Errorf("element of key %q in window of key %q", e.Key, key)
				}
				cs.N++
				cs.Sum += e.V
			}
			out.Collect(toResult(key, w, cs))
			return nil
		}),
	}
}

// countedEvents marks each record for the reduce flavour of
// resultFactories, which counts through TS.
func counted(e wev) wev { e.TS = 1; return e }

// expectWindows computes the windows' results directly: every window each
// record falls in, by enumerating candidate starts (sessions: sorting each
// key's times and splitting where a gap is exceeded).
func expectWindows(evs []wev, kind string, size, slide, gap int64) []wres {
	type kw struct {
		key string
		w   TimeWindow
	}
	acc := map[kw]countSum{}
	switch kind {
	case "tumbling", "sliding":
		for _, e := range evs {
			// Every start k*slide within (ts-size, ts].
			for s := (e.TS/slide - size/slide - 2) * slide; s <= e.TS; s += slide {
				if s <= e.TS && e.TS < s+size {
					c := acc[kw{e.Key, TimeWindow{s, s + size}}]
					acc[kw{e.Key, TimeWindow{s, s + size}}] = countSum{c.N + 1, c.Sum + e.V}
				}
			}
		}
	case "session":
		byKey := map[string][]wev{}
		for _, e := range evs {
			byKey[e.Key] = append(byKey[e.Key], e)
		}
		for key, es := range byKey {
			slices.SortFunc(es, func(a, b wev) int { return cmp.Compare(a.TS, b.TS) })
			var cur TimeWindow
			var cs countSum
			for i, e := range es {
				if i > 0 && e.TS > cur.End { // [ts, ts+gap) touches the session iff ts <= end
					acc[kw{key, cur}] = cs
					cs = countSum{}
					cur = TimeWindow{e.TS, e.TS + gap}
				} else if i == 0 {
					cur = TimeWindow{e.TS, e.TS + gap}
				}
				cur.End = max(cur.End, e.TS+gap)
				cs = countSum{cs.N + 1, cs.Sum + e.V}
			}
			acc[kw{key, cur}] = cs
		}
	}
	var out []wres
	for k, cs := range acc {
		out = append(out, wres{k.key, k.w.Start, k.w.End, cs.N, cs.Sum, k.w.End - 1})
	}
	sortResults(out)
	return out
}

func sortedResults(es []winEvent[wres]) []wres {
	rs := withTS(es)
	sortResults(rs)
	return rs
}

func sortResults(rs []wres) {
	slices.SortFunc(rs, func(a, b wres) int {
		return cmp.Or(cmp.Compare(a.End, b.End), cmp.Compare(a.Start, b.Start), cmp.Compare(a.Key, b.Key), cmp.Compare(a.TS, b.TS))
	})
}

// disorderedEvents returns n records over keys, their times increasing by
// 0..step each but shuffled within windows of `disorder`.
func disorderedEvents(rng *rand.Rand, n, keys int, step, disorder int64) []wev {
	evs := make([]wev, n)
	ts := int64(-5000)
	for i := range evs {
		ts += rng.Int64N(step + 1)
		evs[i] = wev{Key: fmt.Sprintf("k%d", rng.IntN(keys)), TS: ts, V: rng.Int64N(100)}
	}
	// Move each record back by up to `disorder`.
	for i := range evs {
		j := i
		for j > 0 && evs[j-1].TS > evs[i].TS-disorder && rng.IntN(3) == 0 {
			j--
		}
		e := evs[i]
		copy(evs[j+1:i+1], evs[j:i])
		evs[j] = e
	}
	return evs
}

// runBounded feeds records with bounded-out-of-orderness watermarks every
// few records, then the final watermark, and returns all results.
func runBounded(t *testing.T, f *runtime.Factory, evs []wev, disorder int64) []wres {
	h := newWinHarness[wev, wres](t, f, 1, 0)
	maxTS := int64(math.MinInt64)
	for i, e := range evs {
		h.element(counted(e), e.TS)
		maxTS = max(maxTS, e.TS)
		if i%7 == 0 {
			h.watermark(maxTS - disorder - 1)
		}
	}
	h.watermark(runtime.MaxWatermark)
	h.op.EndInput(0)
	if n := h.late(); n != 0 {
		t.Fatalf("%d records dropped as late; none are", n)
	}
	got := withTS(h.out.take())
	sortResults(got)
	return got
}

// Operator behaviour.

// TestWindowsMatchDirectComputation runs tumbling, sliding and session
// windows of every flavour over disordered records and compares the results
// with a direct computation.
func TestWindowsMatchDirectComputation(t *testing.T) {
	ms := time.Millisecond
	rng := rand.New(rand.NewPCG(1, 2))
	evs := disorderedEvents(rng, 5000, 37, 5, 40)
	for _, c := range []struct {
		kind             string
		a                WindowAssigner
		size, slide, gap int64
	}{
		{"tumbling", TumblingWindows(100*ms, false), 100, 100, 0},
		{"sliding", SlidingWindows(100*ms, 20*ms, false), 100, 20, 0},
		{"session", SessionWindows(30*ms, false), 0, 0, 30},
	} {
		want := expectWindows(evs, c.kind, c.size, c.slide, c.gap)
		for flavour, f := range resultFactories(t, WindowSpec{Assigner: c.a}) {
			t.Run(c.kind+"/"+flavour, func(t *testing.T) {
				got := runBounded(t, f, evs, 40)
				if !slices.Equal(got, want) {
					t.Fatalf("%d results, want %d; first difference:\n%s", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}
}

func firstDiff(got, want []wres) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			return fmt.Sprintf("  at %d: got %s\n         want %s", i, g, w)
		}
	}
	return "none"
}

func TestTumblingReduceFiresInOrderBeforeWatermark(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	for _, e := range []wev{{"a", 1, 1}, {"b", 2, 10}, {"a", 12, 100}, {"a", 5, 2}, {"c", 25, 1000}, {"b", 19, 20}} {
		h.element(e, e.TS)
	}
	h.watermark(8) // nothing ends before 9
	h.watermark(19)
	h.watermark(30)
	var got []string
	for _, e := range h.out.events {
		if e.wm {
			got = append(got, fmt.Sprintf("wm %d", e.ts))
		} else {
			got = append(got, fmt.Sprintf("%s=%d@%d", e.v.Key, e.v.V, e.ts))
		}
	}
	// Each watermark follows the windows it completes; windows fire by end;
	// within a window keys of the same key group fire in arrival order.
	want := []string{"wm 8", "a=3@9", "b=10@9", "a=100@19", "b=20@19", "wm 19", "c=1000@29", "wm 30"}
	if !sameWithinWindows(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

// sameWithinWindows compares event logs, allowing records between the same
// two watermarks with the same timestamp to come in any order (their keys'
// key groups decide it).
func sameWithinWindows(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	norm := func(s []string) []string {
		s = slices.Clone(s)
		for i := 0; i < len(s); {
			j := i
			for j < len(s) && !strings.HasPrefix(s[j], "wm") && strings.HasSuffix(s[j], s[i][strings.Index(s[i], "@"):]) {
				j++
			}
			if j == i {
				i++
				continue
			}
			slices.Sort(s[i:j])
			i = j
		}
		return s
	}
	return slices.Equal(norm(got), norm(want))
}

func TestSlidingAggregateEmitsResults(t *testing.T) {
	spec := WindowSpec{Assigner: SlidingWindows(10*time.Millisecond, 5*time.Millisecond, false)}
	h := newWinHarness[wev, countSum](t, NewWindowAggregate(wevKeying(t), spec, countSumAgg{}), 1, 0)
	for _, e := range []wev{{"a", 3, 1}, {"a", 7, 2}, {"a", 12, 4}} {
		h.element(e, e.TS)
	}
	h.watermark(runtime.MaxWatermark)
	got := mapEvents(h.out.take(), func(cs countSum, ts int64) string { return fmt.Sprintf("%d:%d@%d", cs.N, cs.Sum, ts) })
	// [-5,5): 3   [0,10): 3,7   [5,15): 7,12   [10,20): 12
	want := []string{"1:1@4", "2:3@9", "2:6@14", "1:4@19"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestProcessWindowSeesElementsInArrivalOrder(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	f := NewWindowProcess(wevKeying(t), spec, func(key string, w TimeWindow, in []wev, out Collector[string]) error {
		var vs []string
		for _, e := range in {
			vs = append(vs, fmt.Sprint(e.V))
		}
		out.Collect(fmt.Sprintf("%s%v:%s", key, w, strings.Join(vs, ",")))
		return nil
	})
	h := newWinHarness[wev, string](t, f, 1, 0)
	for _, e := range []wev{{"a", 5, 1}, {"a", 1, 2}, {"a", 9, 3}, {"a", 10, 4}} {
		h.element(e, e.TS)
	}
	h.watermark(9)
	got := mapEvents(h.out.take(), func(s string, ts int64) string { return fmt.Sprintf("%s@%d", s, ts) })
	if want := []string{"a[0, 10):1,2,3@9"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestLateRecordsAreDroppedAndCounted(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	h.element(wev{"a", 5, 1}, 5)
	h.watermark(8)
	h.element(wev{"a", 9, 2}, 9) // on time: the window ends at 9 and the watermark is 8
	h.watermark(9)
	if got := h.out.take(); len(got) != 1 || got[0].v.V != 3 || got[0].ts != 9 {
		t.Fatalf("got %v, want one result 3@9", got)
	}
	h.element(wev{"a", 9, 4}, 9) // the window [0,10) is late at watermark 9
	h.element(wev{"b", 0, 4}, 0)
	h.element(wev{"a", 10, 8}, 10)
	if h.late() != 2 {
		t.Fatalf("late count %d, want 2", h.late())
	}
	h.watermark(runtime.MaxWatermark)
	if got := h.out.take(); len(got) != 1 || got[0].v.V != 8 || got[0].ts != 19 {
		t.Fatalf("got %v, want one result 8@19", got)
	}
}

func TestSlidingRecordLateForSomeWindowsIsNotCounted(t *testing.T) {
	spec := WindowSpec{Assigner: SlidingWindows(10*time.Millisecond, 5*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	h.watermark(10)
	h.element(wev{"a", 7, 1}, 7) // [0,10) is late; [5,15) is not
	if h.late() != 0 {
		t.Fatalf("late count %d, want 0", h.late())
	}
	h.watermark(runtime.MaxWatermark)
	if got := h.out.take(); len(got) != 1 || got[0].ts != 14 {
		t.Fatalf("got %v, want one result @14", got)
	}
}

func TestAllowedLatenessRefiresWindow(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false), AllowedLateness: 5 * time.Millisecond}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	h.element(wev{"a", 5, 1}, 5)
	h.watermark(9)
	h.element(wev{"a", 7, 2}, 7)  // late but allowed: fires again at once with everything
	h.element(wev{"b", 3, 10}, 3) // a new key in the fired window fires alone
	h.watermark(12)
	h.element(wev{"a", 1, 4}, 1) // 9+5 > 12: still allowed
	h.watermark(14)              // cleanup time of [0,10)
	h.element(wev{"a", 2, 8}, 2) // dropped
	h.watermark(runtime.MaxWatermark)
	var got []string
	for _, e := range h.out.events {
		if e.wm {
			got = append(got, fmt.Sprintf("wm %d", e.ts))
		} else {
			got = append(got, fmt.Sprintf("%s=%d@%d", e.v.Key, e.v.V, e.ts))
		}
	}
	want := []string{"a=1@9", "wm 9", "a=3@9", "b=10@9", "wm 12", "a=7@9", "wm 14", fmt.Sprintf("wm %d", runtime.MaxWatermark)}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if h.late() != 1 {
		t.Fatalf("late count %d, want 1", h.late())
	}
}

func TestSessionsMergeAndBridge(t *testing.T) {
	spec := WindowSpec{Assigner: SessionWindows(10*time.Millisecond, false)}
	for flavour, f := range resultFactories(t, spec) {
		t.Run(flavour, func(t *testing.T) {
			h := newWinHarness[wev, wres](t, f, 1, 0)
			// Three separate sessions of a: [0,10) [15,25) [30,40); one of b.
			for _, e := range []wev{{"a", 0, 1}, {"a", 30, 2}, {"a", 15, 4}, {"b", 12, 100}} {
				h.element(counted(e), e.TS)
			}
			h.element(counted(wev{"a", 10, 8}), 10)  // [10,20) touches [0,10) and overlaps [15,25)
			h.element(counted(wev{"a", 25, 16}), 25) // [25,35) touches [0,25) and overlaps [30,40): one session
			h.watermark(21)                          // b's [12,22) fires
			if got := withTS(h.out.take()); !slices.Equal(got, []wres{{"b", 12, 22, 1, 100, 21}}) {
				t.Fatalf("at watermark 21: got %v", got)
			}
			h.watermark(38)
			if got := h.out.take(); len(got) != 0 {
				t.Fatalf("at watermark 38: got %v", got)
			}
			h.watermark(39)
			if got := withTS(h.out.take()); !slices.Equal(got, []wres{{"a", 0, 40, 5, 31, 39}}) {
				t.Fatalf("at watermark 39: got %v", got)
			}
		})
	}
}

func TestSessionAllowedLateness(t *testing.T) {
	spec := WindowSpec{Assigner: SessionWindows(10*time.Millisecond, false), AllowedLateness: 20 * time.Millisecond}
	h := newWinHarness[wev, wres](t, resultFactories(t, spec)["aggregate"], 1, 0)
	h.element(wev{"a", 0, 1}, 0)
	h.watermark(9)
	h.element(wev{"a", 5, 2}, 5) // merges into the fired [0,10) -> [0,15), not due yet
	h.element(wev{"a", -8, 4}, -8)
	// [-8,2) merges too, giving [-8,15): still ends after the watermark.
	if got := h.out.take(); !slices.Equal(withTS(got), []wres{{"a", 0, 10, 1, 1, 9}}) {
		t.Fatalf("got %v", withTS(got))
	}
	h.watermark(14)
	h.element(wev{"a", 1, 8}, 1) // within [-8,15): re-fires at once
	h.element(wev{"a", -30, 16}, -30)
	// [-30,-20) is late (-21+20 <= 14) and merges with nothing: dropped.
	h.element(wev{"b", -3, 32}, -3) // [-3,7) is late but allowed: fires alone at once
	h.watermark(34)                 // cleans up [-8,15) and b's [-3,7)
	h.element(wev{"a", 3, 64}, 3)   // late, [3,13) merges with nothing left
	h.watermark(runtime.MaxWatermark)
	want := []wres{
		{"a", -8, 15, 3, 7, 14},
		{"a", -8, 15, 4, 15, 14},
		{"b", -3, 7, 1, 32, 6},
	}
	if got := withTS(h.out.take()); !slices.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if h.late() != 2 {
		t.Fatalf("late count %d, want 2", h.late())
	}
}

func TestProcessingTimeTumbling(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, true), AllowedLateness: time.Hour}
	h := newWinHarness[wev, wres](t, resultFactories(t, spec)["aggregate"], 1, 0)
	h.clock.advance(1003)
	h.element(wev{"a", runtime.NoTimestamp, 1}, runtime.NoTimestamp) // processing time needs no timestamp
	h.clock.advance(1005)
	h.element(wev{"a", 0, 2}, 0)
	h.watermark(5000) // watermarks do not fire processing-time windows
	h.element(wev{"b", 0, 4}, 0)
	if got := h.out.take(); len(got) != 0 {
		t.Fatalf("before the window ends: got %v", got)
	}
	h.clock.advance(1009)
	h.element(wev{"a", 0, 32}, 0) // the window's last millisecond is not over
	if got := h.out.take(); len(got) != 0 {
		t.Fatalf("at 1009: got %v", got)
	}
	h.clock.advance(1010)
	want := []wres{{"a", 1000, 1010, 3, 35, 1009}, {"b", 1000, 1010, 1, 4, 1009}}
	if got := sortedResults(h.out.take()); !slices.Equal(got, want) {
		t.Fatalf("at 1010: got %v, want %v", got, want)
	}
	h.clock.advance(1012)
	h.element(wev{"a", 0, 8}, 0)
	h.clock.advance(1035)
	h.element(wev{"a", 0, 16}, 0)
	want = []wres{{"a", 1010, 1020, 1, 8, 1019}}
	if got := withTS(h.out.take()); !slices.Equal(got, want) {
		t.Fatalf("at 1035: got %v, want %v", got, want)
	}
	// The end of the input fires the pending window; later callbacks are no-ops.
	h.op.EndInput(0)
	want = []wres{{"a", 1030, 1040, 1, 16, 1039}}
	if got := withTS(h.out.take()); !slices.Equal(got, want) {
		t.Fatalf("at end of input: got %v, want %v", got, want)
	}
	h.clock.advance(5000)
	if got := h.out.take(); len(got) != 0 {
		t.Fatalf("after end of input: got %v", got)
	}
}

func TestProcessingTimeSlidingAndSessions(t *testing.T) {
	t.Run("sliding", func(t *testing.T) {
		spec := WindowSpec{Assigner: SlidingWindows(10*time.Millisecond, 5*time.Millisecond, true)}
		h := newWinHarness[wev, wres](t, resultFactories(t, spec)["process"], 1, 0)
		h.clock.advance(7)
		h.element(wev{"a", 0, 1}, 0) // [0,10) and [5,15)
		h.clock.advance(12)          // fires [0,10)
		h.element(wev{"a", 0, 2}, 0) // [5,15) and [10,20)
		h.clock.advance(20)
		want := []wres{{"a", 0, 10, 1, 1, 9}, {"a", 5, 15, 2, 3, 14}, {"a", 10, 20, 1, 2, 19}}
		if got := withTS(h.out.take()); !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("sessions", func(t *testing.T) {
		spec := WindowSpec{Assigner: SessionWindows(10*time.Millisecond, true)}
		h := newWinHarness[wev, wres](t, resultFactories(t, spec)["reduce"], 1, 0)
		h.element(counted(wev{"a", 0, 1}), 0) // [0,10)
		h.clock.advance(6)
		h.element(counted(wev{"a", 0, 2}), 0) // [0,16)
		h.element(counted(wev{"b", 0, 4}), 0) // [6,16)
		h.clock.advance(10)                   // a's first timer finds the session grown
		if got := h.out.take(); len(got) != 0 {
			t.Fatalf("at 10: got %v", got)
		}
		h.clock.advance(15)
		if got := h.out.take(); len(got) != 0 {
			t.Fatalf("at 15: got %v", got)
		}
		h.clock.advance(16)
		want := []wres{{"a", 0, 16, 2, 3, 15}, {"b", 6, 16, 1, 4, 15}}
		if got := sortedResults(h.out.take()); !slices.Equal(got, want) {
			t.Fatalf("at 16: got %v, want %v", got, want)
		}
		h.clock.advance(20)
		h.element(counted(wev{"a", 0, 8}), 0)
		h.op.EndInput(0)
		if got := withTS(h.out.take()); !slices.Equal(got, []wres{{"a", 20, 30, 1, 8, 29}}) {
			t.Fatalf("at end of input: got %v", got)
		}
	})
}

func TestEventTimeWindowsFireOnFinalWatermarkNotEndInput(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	h.element(wev{"a", 5, 1}, 5)
	h.element(wev{"a", 1 << 50, 2}, 1<<50)
	h.watermark(runtime.MaxWatermark)
	if got := h.out.take(); len(got) != 2 || got[1].ts != (1<<50)/10*10+9 {
		t.Fatalf("got %v", got)
	}
	h.op.EndInput(0)
	if got := h.out.take(); len(got) != 0 {
		t.Fatalf("EndInput emitted %v", got)
	}
}

func TestEventTimeWindowNeedsTimestamps(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	msg := panicMessage(func() { h.element(wev{Key: "a"}, runtime.NoTimestamp) })
	if !strings.Contains(msg, "no event timestamp") || !strings.Contains(msg, "WithTimestampAssigner") {
		t.Fatalf("panic %q", msg)
	}
}

func TestWindowFunctionErrorFails(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	f := NewWindowProcess(wevKeying(t), spec, func(key string, w TimeWindow, in []wev, out Collector[int]) error {
		return errors.New("boom")
	})
	h := newWinHarness[wev, int](t, f, 1, 0)
	h.element(wev{Key: "a"}, 3)
	msg := panicMessage(func() { h.watermark(100) })
	if !strings.Contains(msg, "window function for key a, window [0, 10): boom") {
		t.Fatalf("panic %q", msg)
	}
}

func TestRecordForAnotherSubtaskFails(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 128, 0)
	for i := 0; ; i++ {
		k := fmt.Sprint(i)
		if KeyGroupOf([]byte(k), testMaxP) != 0 {
			msg := panicMessage(func() { h.element(wev{Key: k}, 3) })
			if !strings.Contains(msg, "reached the wrong subtask") {
				t.Fatalf("panic %q", msg)
			}
			return
		}
	}
}

// panicMessage runs f and returns what it panicked with; the error of a
// runtime.Fail (whose panic value is unexported) is dug out by reflection.
func panicMessage(f func()) (msg string) {
	defer func() {
		r := recover()
		msg = fmt.Sprint(r)
		v := reflect.ValueOf(r)
		if v.Kind() != reflect.Struct || v.NumField() != 1 {
			return
		}
		cp := reflect.New(v.Type()).Elem()
		cp.Set(v)
		fv := cp.Field(0)
		if err, ok := reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem().Interface().(error); ok {
			msg = err.Error()
		}
	}()
	f()
	return "no panic"
}

// TestWindowStateRestoreRescales snapshots window state midway, restores it
// into two subtasks (each keeps its key groups) and checks that they finish
// with the same results as the original operator.
func TestWindowStateRestoreRescales(t *testing.T) {
	ms := time.Millisecond
	rng := rand.New(rand.NewPCG(3, 4))
	evs := disorderedEvents(rng, 3000, 50, 3, 0)
	for _, a := range []WindowAssigner{SlidingWindows(60*ms, 20*ms, false), SessionWindows(8*ms, false)} {
		spec := WindowSpec{Assigner: a, AllowedLateness: 30 * ms}
		for flavour := range resultFactories(t, spec) {
			t.Run(fmt.Sprintf("%v/%s", a, flavour), func(t *testing.T) {
				orig := newWinHarness[wev, wres](t, resultFactories(t, spec)[flavour], 1, 0)
				half := len(evs) / 2
				for _, e := range evs[:half] {
					orig.element(counted(e), e.TS)
				}
				orig.watermark(evs[half].TS - 50) // some windows fired and wait for their lateness
				orig.out.take()
				var entries []WindowStateEntry
				for e := range orig.op.(WindowState).WindowStates() {
					entries = append(entries, e)
				}
				if len(entries) == 0 || !slices.ContainsFunc(entries, func(e WindowStateEntry) bool { return e.Fired }) {
					t.Fatalf("%d entries, none fired: the test needs both", len(entries))
				}
				finish := func(h *winHarness[wev, wres], only func(string) bool) []wres {
					// A late record within the allowed lateness, then the rest.
					for _, e := range append([]wev{{Key: "k1", TS: evs[half].TS - 60, V: 1}}, evs[half:]...) {
						if only(e.Key) {
							h.element(counted(e), e.TS)
						}
					}
					h.watermark(runtime.MaxWatermark)
					return withTS(h.out.take())
				}
				want := finish(orig, func(string) bool { return true })
				var got []wres
				for sub := range 2 {
					h := newWinHarness[wev, wres](t, resultFactories(t, spec)[flavour], 2, sub)
					h.watermark(evs[half].TS - 50)
					for _, e := range entries {
						if err := h.op.(WindowState).RestoreWindowState(e); err != nil {
							t.Fatal(err)
						}
					}
					kgs := keygroup.RangeForOperator(testMaxP, 2, sub)
					got = append(got, finish(h, func(k string) bool { return kgs.Contains(KeyGroupOf([]byte(k), testMaxP)) })...)
				}
				sortResults(got)
				sortResults(want)
				if !slices.Equal(got, want) {
					t.Fatalf("%d results after restore, want %d; first difference:\n%s", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}
}

func TestRestoreRejectsMismatchedState(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	ws := h.op.(WindowState)
	key := []byte("a")
	kg := KeyGroupOf(key, testMaxP)
	for _, c := range []struct {
		e    WindowStateEntry
		want string
	}{
		{WindowStateEntry{KeyGroup: kg, Key: key, Window: TimeWindow{0, 10}, Acc: 3}, "contents are int"},
		{WindowStateEntry{KeyGroup: kg, Key: key, Window: TimeWindow{5, 15}, Acc: wev{}}, "not a window of TumblingEventTimeWindows(10ms)"},
		{WindowStateEntry{KeyGroup: (kg + 1) % testMaxP, Key: key, Window: TimeWindow{0, 10}, Acc: wev{}}, "belongs to key group"},
	} {
		if err := ws.RestoreWindowState(c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("restoring %+v: error %v, want one containing %q", c.e, err, c.want)
		}
	}
}

// BenchmarkSlidingCount is Nexmark q5's window: a sliding 10 s / 2 s count
// per key, here over 10 k hot keys, 10 records per ms of event time and a
// watermark every 100 ms of it.
func BenchmarkSlidingCount(b *testing.B) {
	type bid struct{ Auction, Price int64 }
	type row struct{ Auction, Num, Start, End int64 }
	enc, err := NewKeyEncoder[int64]()
	if err != nil {
		b.Fatal(err)
	}
	keying := &Keying[bid, int64]{Select: func(v bid) int64 { return v.Auction }, Encoder: enc}
	spec := WindowSpec{Assigner: SlidingWindows(10*time.Second, 2*time.Second, false)}
	f := NewWindowAggregateProcess(keying, spec, benchCount[bid]{}, func(k int64, w TimeWindow, n []int64, out Collector[row]) error {
		out.Collect(row{k, n[0], w.Start, w.End})
		return nil
	})
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 1 << 20
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = 1000 + rng.Int64N(10_000)
	}
	inst := f.New()
	out := &benchOutput[row]{}
	inst.SetOutput(runtime.Output[row](out))
	kgs := keygroup.RangeForOperator(testMaxP, 1, 0)
	if err := inst.Op.Open(&runtime.OperatorContext{MaxParallelism: testMaxP, KeyGroups: kgs, Parallelism: 1, ProcessingTime: &winClock{}}); err != nil {
		b.Fatal(err)
	}
	in := inst.Inputs[0].(runtime.Input[bid])
	const base = 1_700_000_000_000
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ts := base + int64(i)/10
		in.ProcessElement(bid{Auction: keys[i%n], Price: int64(i)}, ts)
		if i%1000 == 999 {
			inst.Op.ProcessWatermark(0, ts-1)
		}
	}
	inst.Op.ProcessWatermark(0, runtime.MaxWatermark)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if out.n == 0 {
		b.Fatal("no results")
	}
}

type benchCount[T any] struct{}

func (benchCount[T]) CreateAccumulator() int64  { return 0 }
func (benchCount[T]) Add(_ T, acc int64) int64  { return acc + 1 }
func (benchCount[T]) GetResult(acc int64) int64 { return acc }
func (benchCount[T]) Merge(a, b int64) int64    { return a + b }

type benchOutput[T any] struct{ n int }

func (o *benchOutput[T]) Collect(T, int64)    { o.n++ }
func (o *benchOutput[T]) EmitWatermark(int64) {}
