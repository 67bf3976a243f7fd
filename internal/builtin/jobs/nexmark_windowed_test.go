package jobs

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/nexmark"
	"github.com/weirstream/weir/internal/nexmark/reference"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

// The windowed queries are checked twice against the reference: on the
// suite's default events, where 10 million events make one second of event
// time, so every window fires at the end of the input; and on events
// generated a thousand times slower, spread over many windows that fire one
// after another while records still arrive (and, for q7, with bids planted
// exactly on window ends, the inclusive BETWEEN's edge).

func TestNexmarkQ5MatchesReference(t *testing.T) {
	const n = 100_000
	want := reference.Q5(nexmarkEvents(t, n))
	if len(want) == 0 {
		t.Fatal("q5: the reference is empty; the test would prove nothing")
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q5", runNexmark(t, "q5", n, p), want)
	}
}

func TestNexmarkQ7MatchesReference(t *testing.T) {
	const n = 100_000
	want := reference.Q7(nexmarkEvents(t, n))
	if len(want) == 0 {
		t.Fatal("q7: the reference is empty; the test would prove nothing")
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q7", runNexmark(t, "q7", n, p), want)
	}
}

func TestNexmarkQ5ManyWindows(t *testing.T) {
	events := slowNexmarkEvents(t, 60_000, 1_000) // a minute: 35 windows
	want := reference.Q5(events)
	if len(want) == 0 {
		t.Fatal("q5: the reference is empty; the test would prove nothing")
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q5", runOverEvents(t, q5, events, p), want)
	}
}

func TestNexmarkQ5TiesByHand(t *testing.T) {
	// Auctions 1-6 have three bids each in [base, base+2 s), auction 7 two,
	// so 1-6 tie in the five windows holding them. Auction 8's three bids,
	// at base+2 s and a millisecond either side, join the tie in the four
	// windows holding all three, and lead alone, with two, in the window
	// starting at base+2 s.
	var events []nexmark.Event
	base := int64(1436918400000)
	for round := range int64(3) {
		for a := int64(1); a <= 7; a++ {
			if a == 7 && round == 2 {
				continue
			}
			events = append(events, nexmark.Event{Type: nexmark.BidEvent,
				Bid: nexmark.Bid{Auction: a, Price: 1, DateTime: base + 100*round + a}})
		}
	}
	for _, ts := range []int64{1_999, 2_000, 2_001} {
		events = append(events, nexmark.Event{Type: nexmark.BidEvent, Bid: nexmark.Bid{Auction: 8, Price: 1, DateTime: base + ts}})
	}
	slices.SortStableFunc(events, func(a, b nexmark.Event) int { return cmp.Compare(a.Timestamp(), b.Timestamp()) })
	want := reference.Q5(events)
	if len(want) != 6+4*7+1 {
		t.Fatalf("reference: %d rows, want 35: %q", len(want), want)
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q5", runOverEvents(t, q5, events, p), want)
	}
}

func TestNexmarkQ7ManyWindowsAndBoundaries(t *testing.T) {
	events := slowNexmarkEvents(t, 60_000, 1_000)
	// The generated events have no bid exactly at a window's end with that
	// window's highest price (at this rate an end's one event is a person).
	// Plant some: at the end of every other window, a bid at its highest
	// price. At every fourth, that price is first raised, by a bid at the
	// window's last instant, to at least the next window's highest, so that
	// the bid at the end is a highest bid of both windows and appears twice.
	highest := map[int64]int64{} // window start -> highest price
	for _, e := range events {
		if e.Type == nexmark.BidEvent {
			start := nexmark.WindowStart(e.Bid.DateTime, nexmark.Q7WindowSize)
			highest[start] = max(highest[start], e.Bid.Price)
		}
	}
	var planted, twice int
	first := nexmark.WindowStart(events[0].Timestamp(), nexmark.Q7WindowSize)
	for end := first + nexmark.Q7WindowSize; end <= events[len(events)-1].Timestamp(); end += nexmark.Q7WindowSize {
		k := (end - first) / nexmark.Q7WindowSize
		if k%2 != 0 {
			continue
		}
		prev := end - nexmark.Q7WindowSize
		b := nexmark.Bid{Auction: 1000 + k, Bidder: 2000 + k, DateTime: end - 1, Extra: "planted"}
		var plant []nexmark.Event
		if k%4 == 0 {
			b.Price = max(highest[prev], highest[end])
			highest[prev], highest[end] = b.Price, b.Price
			plant = append(plant, nexmark.Event{Type: nexmark.BidEvent, Bid: b})
			planted++ // a highest bid of its window, not on the boundary
		}
		b.Bidder++
		b.DateTime, b.Price = end, highest[prev]
		plant = append(plant, nexmark.Event{Type: nexmark.BidEvent, Bid: b})
		planted++
		if b.Price >= highest[end] {
			highest[end] = b.Price
			twice++
		}
		i, _ := slices.BinarySearchFunc(events, end, func(e nexmark.Event, ts int64) int { return cmp.Compare(e.Timestamp(), ts) })
		events = slices.Insert(events, i, plant...)
	}
	if planted == 0 {
		t.Fatal("no bid planted on a window end: the test would not cover the boundary")
	}
	want := reference.Q7(events)
	if n := countContaining(want, "planted"); n != planted+twice || twice == 0 {
		t.Fatalf("the reference has %d planted rows, want %d (%d twice); the boundary is not covered", n, planted+twice, twice)
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q7", runOverEvents(t, q7, events, p), want)
	}
}

func TestNexmarkQ7BoundaryByHand(t *testing.T) {
	// Windows [0, 10 s), [10 s, 20 s) and [20 s, 30 s) from base. The
	// highest price of the first is 500, on a tie (one at its last
	// instant); bid 5, at exactly 10 s and priced 500, is a highest bid of
	// the first window too, and of the second, whose highest is also 500:
	// it appears twice. Of the bids at exactly 20 s, bid 12 is a highest
	// bid of the second window, bid 9 of the third, bid 11 of none.
	bid := func(auction, price, ts int64) nexmark.Event {
		return nexmark.Event{Type: nexmark.BidEvent, Bid: nexmark.Bid{Auction: auction, Bidder: auction + 100, Price: price, DateTime: ts, Extra: "x"}}
	}
	base := int64(1436918400000) // a multiple of the window size
	events := []nexmark.Event{
		bid(1, 100, base+1), bid(2, 500, base+2_000), bid(3, 400, base+5_000), bid(4, 500, base+9_999),
		bid(6, 300, base+10_000), bid(7, 450, base+10_000), bid(5, 500, base+10_000), bid(8, 500, base+12_000),
		bid(9, 700, base+20_000), bid(11, 300, base+20_000), bid(12, 500, base+20_000), bid(10, 600, base+25_000),
	}
	want := reference.Q7(events)
	if len(want) != 7 {
		t.Fatalf("reference: %d rows, want 7: %q", len(want), want)
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, "q7", runOverEvents(t, q7, events, p), want)
	}
	// Again with watermarks that follow the events closely and advance
	// between any two of them: once the bid at 10 s makes the watermark
	// 9999 (the first window's MaxTimestamp), more bids at 10 s, bid 5 among
	// them, are still to come for the first window.
	paced := pacedSource{events: events, pause: 10 * time.Millisecond}
	fastWatermarks := map[string]string{"pipeline.auto-watermark-interval": "1ms"}
	for _, p := range []int{1, 2} {
		sameLines(t, "q7 (paced)", runOverSource(t, q7, p, fastWatermarks, paced, 0), want)
	}
}

func countContaining(lines []string, substr string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// slowNexmarkEvents returns n events of the default configuration
// generated at rate events per second of event time, starting on a window
// boundary.
func slowNexmarkEvents(t testing.TB, n, rate int64) []nexmark.Event {
	t.Helper()
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = n
	cfg.FirstEventRate = rate
	g := nexmark.NewGenerator(cfg, 0, 1)
	out := make([]nexmark.Event, 0, n)
	for g.HasNext() {
		var e nexmark.Event
		g.Next(&e)
		out = append(out, e)
	}
	return out
}

// runOverEvents runs query on events (split over p source subtasks with the
// suite's 4 s watermark delay) at parallelism p and returns the lines of its
// output, sorted.
func runOverEvents(t testing.TB, query func(*stream.DataStream[nexmark.Event], string), events []nexmark.Event, p int) []string {
	t.Helper()
	src := source.FromSliceWithTimestamps(events, func(e nexmark.Event) int64 { return e.Timestamp() })
	return runOverSource(t, query, p, nil, src, 4*time.Second)
}

// runOverSource runs query on the events of src, watermarks trailing them by
// delay, at parallelism p with configuration config, and returns the lines
// of its output, sorted.
func runOverSource(t testing.TB, query func(*stream.DataStream[nexmark.Event], string), p int,
	config map[string]string, src connector.Source[nexmark.Event], delay time.Duration) []string {
	t.Helper()
	launch.Set(&launch.Settings{Parallelism: p, Config: config, Quiet: true, Context: context.Background()})
	defer launch.Set(nil)
	out := filepath.Join(t.TempDir(), "out.txt")
	env := stream.NewEnvironment()
	query(stream.FromSource(env, "events", src, stream.ForBoundedOutOfOrderness[nexmark.Event](delay)), out)
	if err := env.Execute("nexmark-test"); err != nil {
		t.Fatalf("p=%d: %v", p, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// pacedSource emits events one at a time, waiting pause of wall time
// before each, so that the periodic watermark (at a short interval) can
// advance between any two of them. Subtask i of p emits events i, i+p, …
type pacedSource struct {
	events []nexmark.Event
	pause  time.Duration
}

func (s pacedSource) Open(ctx connector.SourceContext) (connector.SourceReader[nexmark.Event], error) {
	return &pacedReader{src: s, next: ctx.Subtask, step: max(ctx.Parallelism, 1)}, nil
}

type pacedReader struct {
	src        pacedSource
	next, step int
	last       time.Time
}

func (r *pacedReader) Read(out connector.SourceOutput[nexmark.Event]) (connector.ReadStatus, error) {
	if r.next >= len(r.src.events) {
		return connector.EndOfInput, nil
	}
	if time.Since(r.last) < r.src.pause {
		return connector.NothingAvailable, nil
	}
	e := r.src.events[r.next]
	out.CollectWithTimestamp(e, e.Timestamp())
	r.next += r.step
	r.last = time.Now()
	return connector.MoreAvailable, nil
}

func (r *pacedReader) Close() error { return nil }

// BenchmarkNexmarkQ5 and BenchmarkNexmarkQ7 run the queries at parallelism
// 2 over a million generated events per iteration, for profiling:
//
//	go test ./internal/builtin/jobs/ -run '^$' -bench 'NexmarkQ5' -cpuprofile /tmp/q5.prof
func BenchmarkNexmarkQ5(b *testing.B) { benchmarkWindowedQuery(b, "q5") }
func BenchmarkNexmarkQ7(b *testing.B) { benchmarkWindowedQuery(b, "q7") }

func benchmarkWindowedQuery(b *testing.B, query string) {
	const n = 1_000_000
	launch.Set(&launch.Settings{Parallelism: 2, Quiet: true, Context: context.Background()})
	defer launch.Set(nil)
	for b.Loop() {
		env := stream.NewEnvironment()
		if err := BuildNexmark(env, NexmarkOptions{Query: query, Events: n}); err != nil {
			b.Fatal(err)
		}
		if err := env.Execute("nexmark-" + query); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
