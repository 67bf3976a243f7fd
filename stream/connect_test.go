package stream_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/stream"
)

type order struct {
	ID       int
	Customer string
	Amount   int
}

type customer struct {
	ID   string
	Name string
}

type enrichedOrder struct {
	OrderID  int
	Customer string
	Name     string
	Amount   int
}

// orderEnricher joins orders with their customer: an order whose customer
// is known is emitted at once, others wait in keyed state until the
// customer arrives, and those still waiting at the end of input go out
// with the name "?" from an event-time timer. Both inputs share the key's
// state.
type orderEnricher struct {
	name    stream.ValueState[string]
	pending stream.ListState[order]
}

func (j *orderEnricher) Open(rc *stream.RuntimeContext) (err error) {
	if j.name, err = stream.ValueStateOf[string](rc, "name"); err != nil {
		return err
	}
	j.pending, err = stream.ListStateOf[order](rc, "pending")
	return err
}

func (j *orderEnricher) ProcessElement1(ctx *stream.KeyedContext[string, enrichedOrder], o order) error {
	if name, ok := j.name.Value(); ok {
		ctx.Collect(enrichedOrder{o.ID, o.Customer, name, o.Amount})
		return nil
	}
	j.pending.Add(o)
	ctx.TimerService().RegisterEventTimeTimer(stream.MaxWatermark)
	return nil
}

func (j *orderEnricher) ProcessElement2(ctx *stream.KeyedContext[string, enrichedOrder], c customer) error {
	if _, ok := j.name.Value(); ok {
		return fmt.Errorf("customer %q arrived twice", c.ID)
	}
	j.name.Update(c.Name)
	for _, o := range j.pending.Get() {
		ctx.Collect(enrichedOrder{o.ID, o.Customer, c.Name, o.Amount})
	}
	j.pending.Clear()
	ctx.TimerService().DeleteEventTimeTimer(stream.MaxWatermark)
	return nil
}

func (j *orderEnricher) OnTimer(ctx *stream.KeyedContext[string, enrichedOrder], ts int64, _ stream.TimeDomain) error {
	for _, o := range j.pending.Get() {
		ctx.Collect(enrichedOrder{o.ID, o.Customer, "?", o.Amount})
	}
	j.pending.Clear()
	return nil
}

// TestKeyedCoProcessJoinMatchesIndependentJoin joins two streams in a
// keyed co-process function and compares with a join computed directly.
// The customers trickle in slowly, after most orders (and often after the
// orders input has ended): the timer at the end of input must wait for
// both inputs, or orders would miss customers that were still coming.
func TestKeyedCoProcessJoinMatchesIndependentJoin(t *testing.T) {
	var customers []customer
	names := map[string]string{}
	for i := range 45 { // c45…c49 never arrive
		c := customer{fmt.Sprint("c", i), fmt.Sprint("name-", i)}
		customers = append(customers, c)
		names[c.ID] = c.Name
	}
	var orders []order
	var want []enrichedOrder
	for i := range 3000 {
		o := order{ID: i, Customer: fmt.Sprint("c", (i*13)%50), Amount: i % 97}
		orders = append(orders, o)
		name, ok := names[o.Customer]
		if !ok {
			name = "?"
		}
		want = append(want, enrichedOrder{o.ID, o.Customer, name, o.Amount})
	}
	for _, p := range []int{2, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			checkNoLeaks(t)
			launchQuietly(t, p)
			env := stream.NewEnvironment()
			ords := stream.FromSource(env, "orders", connector.Source[order](timedSource[order]{vals: orders, batch: 50}))
			cs := stream.FromSource(env, "customers", connector.Source[customer](timedSource[customer]{vals: customers, batch: 2, pauseEvery: 2}))
			joined := stream.KeyedCoProcess(stream.ConnectKeyed(
				stream.KeyBy(ords, func(o order) string { return o.Customer }),
				stream.KeyBy(cs, func(c customer) string { return c.ID }),
			), "enrich", &orderEnricher{})
			sink := &gatherSink[enrichedOrder]{}
			stream.SinkTo(joined, "out", connector.Sink[enrichedOrder](sink))
			if err := env.Execute("join"); err != nil {
				t.Fatal(err)
			}
			got := sortedBy(sink.values(), func(e enrichedOrder) int { return e.OrderID })
			if len(got) != len(want) {
				t.Fatalf("got %d joined orders, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("order %d: got %+v, want %+v", want[i].OrderID, got[i], want[i])
				}
			}
		})
	}
}

// TestCoMapAndCoFlatMap connects streams of different types and
// parallelism, the second also of the same type as the first.
func TestCoMapAndCoFlatMap(t *testing.T) {
	checkNoLeaks(t)
	launchQuietly(t, 3)
	env := stream.NewEnvironment()
	nums := []int{1, 2, 3, 4, 5, 6, 7}
	words := []string{"x y", "z", ""}
	ns := stream.FromSource(env, "nums", connector.Source[int](timedSource[int]{vals: nums, batch: 2}))
	ws := stream.FromSource(env, "words", connector.Source[string](timedSource[string]{vals: words, batch: 1})).SetParallelism(1)
	mapped := stream.CoMap(stream.Connect(ns, ws), "describe",
		func(n int) string { return fmt.Sprint("n", n) },
		func(w string) string { return "w" + w })
	split := stream.CoFlatMap(stream.Connect(ns, ns), "both",
		func(n int, out stream.Collector[int]) { out.Collect(n) },
		func(n int, out stream.Collector[int]) {
			for range n {
				out.Collect(-1)
			}
		})
	mapSink := &gatherSink[string]{}
	flatSink := &gatherSink[int]{}
	stream.SinkTo(mapped, "mapped", connector.Sink[string](mapSink))
	stream.SinkTo(split, "split", connector.Sink[int](flatSink))
	if err := env.Execute("co-map"); err != nil {
		t.Fatal(err)
	}
	got := mapSink.values()
	slices.Sort(got)
	if want := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "w", "wx y", "wz"}; !slices.Equal(got, want) {
		t.Fatalf("co-map: got %q, want %q", got, want)
	}
	ones, sum := 0, 0
	for _, v := range flatSink.values() {
		if v == -1 {
			ones++
		} else {
			sum += v
		}
	}
	if ones != 28 || sum != 28 {
		t.Fatalf("co-flat-map: %d markers and sum %d, want 28 and 28", ones, sum)
	}
}

// TestCoProcessWatermarkWaitsForBothInputs checks, end to end, that a
// two-input operator's event time is the minimum of its inputs: a record
// of the fast input is never behind the operator's watermark while the
// slow input still has earlier records to come.
func TestCoProcessWatermarkWaitsForBothInputs(t *testing.T) {
	checkNoLeaks(t)
	launchQuietly(t, 2)
	env := stream.NewEnvironment()
	if err := env.Configure("pipeline.auto-watermark-interval", "1ms"); err != nil {
		t.Fatal(err)
	}
	times := make([]int64, 2000)
	for i := range times {
		times[i] = int64(i)
	}
	at := func(v int64) int64 { return v }
	fast := stream.FromSource(env, "fast", connector.Source[int64](timedSource[int64]{vals: times, ts: at, batch: 100}))
	slow := stream.FromSource(env, "slow", connector.Source[int64](timedSource[int64]{vals: times, ts: at, batch: 10, pauseEvery: 2}))
	checked := stream.CoProcess(stream.Connect(fast, slow), "check", &lateDetector{})
	sink := &gatherSink[string]{}
	stream.SinkTo(checked, "out", connector.Sink[string](sink))
	if err := env.Execute("min-watermark"); err != nil {
		t.Fatal(err)
	}
	if late := sink.values(); len(late) > 0 {
		t.Fatalf("%d records were behind the operator's watermark, e.g. %s", len(late), strings.Join(late[:min(3, len(late))], ", "))
	}
}

// lateDetector emits a description of every record whose timestamp is at or
// before the operator's watermark when it arrives.
type lateDetector struct{}

func (lateDetector) check(ctx *stream.Context[string], input string) {
	if wm := ctx.CurrentWatermark(); ctx.Timestamp() <= wm {
		ctx.Collect(fmt.Sprintf("%s record at %d with watermark %d", input, ctx.Timestamp(), wm))
	}
}

func (l lateDetector) ProcessElement1(ctx *stream.Context[string], _ int64) error {
	l.check(ctx, "fast")
	return nil
}

func (l lateDetector) ProcessElement2(ctx *stream.Context[string], _ int64) error {
	l.check(ctx, "slow")
	return nil
}
