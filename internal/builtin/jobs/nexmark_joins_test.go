package jobs

import (
	"context"
	"fmt"
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

// The joins run on enough events for every query to have a real answer
// (persons are 1 event in 50, and q3 keeps few of them).
const nexmarkJoinEvents = 100_000

func TestNexmarkQ3MatchesReference(t *testing.T) {
	events := nexmarkEvents(t, nexmarkJoinEvents)
	want := reference.Q3(events)
	if len(want) < 10 {
		t.Fatalf("the reference has %d rows; the test would prove little", len(want))
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, fmt.Sprintf("q3 at p=%d", p), runNexmark(t, "q3", nexmarkJoinEvents, p), want)
	}
}

func TestNexmarkQ8MatchesReference(t *testing.T) {
	events := nexmarkEvents(t, nexmarkJoinEvents)
	want := reference.Q8(events)
	if len(want) < 10 {
		t.Fatalf("the reference has %d rows; the test would prove little", len(want))
	}
	for _, p := range []int{1, 2, 3} {
		sameLines(t, fmt.Sprintf("q8 at p=%d", p), runNexmark(t, "q8", nexmarkJoinEvents, p), want)
	}
}

// q4 emits a new average whenever an auction closes; the last row of each
// category (the sink has parallelism 1, so file order is emission order
// per category) must be the reference's final average.
func TestNexmarkQ4LastAverageMatchesReference(t *testing.T) {
	events := nexmarkEvents(t, nexmarkJoinEvents)
	want := reference.Q4(events)
	if len(want) != nexmark.NumCategories {
		t.Fatalf("the reference has %d categories, want all %d", len(want), nexmark.NumCategories)
	}
	for _, p := range []int{1, 2, 3} {
		lines := runToFile(t, p, func(env *stream.Environment, out string) error {
			return BuildNexmark(env, NexmarkOptions{Query: "q4", Events: nexmarkJoinEvents, Output: out})
		})
		if len(lines) <= len(want) {
			t.Errorf("q4 at p=%d: %d rows; want an update per closed auction", p, len(lines))
		}
		sameLines(t, fmt.Sprintf("q4 at p=%d, last row per category", p), lastPerCategory(t, lines), want)
	}
}

// A bid that reaches q4 before its auction (another source subtask, or
// just slower) must still count once the auction arrives, if it was made
// while the auction was open; one made before or after must not.
func TestNexmarkQ4CountsBidsThatArriveBeforeTheirAuction(t *testing.T) {
	bid := func(auction, price, at int64) nexmark.Event {
		return nexmark.Event{Type: nexmark.BidEvent, Bid: nexmark.Bid{Auction: auction, Price: price, DateTime: at}}
	}
	auction := func(id, category, at, expires int64) nexmark.Event {
		return nexmark.Event{Type: nexmark.AuctionEvent, Auction: &nexmark.Auction{ID: id, Category: category, DateTime: at, Expires: expires}}
	}
	const t0 = 1_700_000_000_000
	events := []nexmark.Event{
		bid(1, 700, t0+500),   // early, made while auction 1 is open: the winner
		bid(1, 900, t0-1),     // early, made before auction 1 opened
		bid(1, 800, t0+2_001), // early, made after auction 1 closed
		bid(2, 30, t0+1_000),  // early, the only bid of auction 2
		bid(3, 50, t0+1_000),  // for an auction that never comes
		auction(1, 10, t0, t0+2_000),
		auction(2, 11, t0+900, t0+3_000),
		bid(1, 600, t0+2_000), // on time and at the closing instant, but lower
		bid(2, 40, t0+3_001),  // too late for auction 2
		auction(4, 10, t0+100, t0+200),
		bid(4, 300, t0+150), // auction 4's winner: category 10 averages (700+300)/2
	}
	ts := func(e nexmark.Event) int64 { return e.Timestamp() }
	lines := runToFile(t, 1, func(env *stream.Environment, out string) error {
		src := stream.FromSource(env, "events", source.FromSliceWithTimestamps(events, ts),
			stream.ForBoundedOutOfOrderness[nexmark.Event](10*time.Second))
		q4(src, out)
		return nil
	})
	want := []string{"10\t500", "11\t30"}
	sameLines(t, "q4 on hand-made events, last row per category", lastPerCategory(t, lines), want)
	// Auction 4 closes (t0+200) before auction 1 (t0+2000): category 10
	// averages 300 first, then 500.
	if !slices.Equal(lines, []string{"10\t300", "10\t500", "11\t30"}) {
		t.Errorf("q4 rows in order: %q, want auction 4, 1 and 2 closing in order of expiry", lines)
	}
}

// A bid waits for its auction only until the watermark passes its time;
// after that, an auction it could belong to would be late. Bids that the
// watermark has not passed keep waiting. A late auction shows which bids
// were dropped.
func TestNexmarkQ4DropsWaitingBidsOnceTheWatermarkPassesThem(t *testing.T) {
	const t0 = 1_700_000_000_000
	src := &phasedSource{phases: [][]nexmark.Event{
		{ // the watermark then passes t0+1_999 (t0+4_000, 2 s out of order)
			{Type: nexmark.BidEvent, Bid: nexmark.Bid{Auction: 7, Price: 900, DateTime: t0 + 1_000}},
			{Type: nexmark.BidEvent, Bid: nexmark.Bid{Auction: 7, Price: 500, DateTime: t0 + 4_000}},
		},
		{ // late: opened before the watermark
			{Type: nexmark.AuctionEvent, Auction: &nexmark.Auction{ID: 7, Category: 10, DateTime: t0 + 500, Expires: t0 + 6_000}},
		},
	}}
	lines := runToFile(t, 1, func(env *stream.Environment, out string) error {
		if err := env.Configure("pipeline.auto-watermark-interval", "1ms"); err != nil {
			return err
		}
		q4(stream.FromSource(env, "events", connector.Source[nexmark.Event](src),
			stream.ForBoundedOutOfOrderness[nexmark.Event](2*time.Second)), out)
		return nil
	})
	// 900 if the first bid had not been dropped, nothing if the second had.
	if want := []string{"10\t500"}; !slices.Equal(lines, want) {
		t.Fatalf("q4 rows %q, want %q", lines, want)
	}
}

// phasedSource emits its phases in order, one subtask only, and between
// two phases waits long enough (in wall-clock time) for periodic
// watermarks at a 1 ms interval to follow the first phase's records.
type phasedSource struct{ phases [][]nexmark.Event }

func (s *phasedSource) Open(connector.SourceContext) (connector.SourceReader[nexmark.Event], error) {
	return &phasedReader{phases: s.phases}, nil
}

type phasedReader struct {
	phases [][]nexmark.Event
	next   int
	resume time.Time // the next phase starts no earlier
}

func (r *phasedReader) Read(out connector.SourceOutput[nexmark.Event]) (connector.ReadStatus, error) {
	if time.Now().Before(r.resume) {
		return connector.NothingAvailable, nil
	}
	for _, e := range r.phases[r.next] {
		out.CollectWithTimestamp(e, e.Timestamp())
	}
	r.next++
	if r.next == len(r.phases) {
		return connector.EndOfInput, nil
	}
	r.resume = time.Now().Add(20 * time.Millisecond)
	return connector.NothingAvailable, nil
}

func (r *phasedReader) Close() error { return nil }

// With the suite's 10 M events per second of event time and watermarks
// 4 s behind, a test run never sees event time pass: every timer fires at
// the end of input. Here the same queries run on events 1 ms apart in
// event time, with a watermark every millisecond of wall-clock time, so
// that q4's auctions close and its waiting bids are dropped, and q8's
// windows are cleaned up, while records are still coming; the answers
// must not change.
func TestNexmarkJoinsWhileEventTimePasses(t *testing.T) {
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = nexmarkJoinEvents
	cfg.FirstEventRate = 100
	var events []nexmark.Event
	for g := nexmark.NewGenerator(cfg, 0, 1); g.HasNext(); {
		var e nexmark.Event
		g.Next(&e)
		events = append(events, e)
	}
	for _, tc := range []struct {
		query string
		ref   func([]nexmark.Event) []string
		last  bool // compare the last row per category (q4)
	}{
		{"q3", reference.Q3, false},
		{"q4", reference.Q4, true},
		{"q8", reference.Q8, false},
	} {
		want := tc.ref(events)
		if len(want) == 0 {
			t.Fatalf("%s: the reference is empty; the test would prove nothing", tc.query)
		}
		for _, p := range []int{2, 3} {
			got := runToFile(t, p, func(env *stream.Environment, out string) error {
				if err := env.Configure("pipeline.auto-watermark-interval", "1ms"); err != nil {
					return err
				}
				src := stream.FromSource(env, "nexmark", connector.Source[nexmark.Event](nexmarkSource{cfg: cfg}),
					stream.ForBoundedOutOfOrderness[nexmark.Event](4*time.Second))
				NexmarkQueries[tc.query](src, out)
				return nil
			})
			if tc.last {
				got = lastPerCategory(t, got)
			} else {
				slices.Sort(got)
			}
			sameLines(t, fmt.Sprintf("%s at p=%d, event time passing", tc.query, p), got, want)
		}
	}
}

// lastPerCategory returns, sorted, the last q4 row of each category in
// lines.
func lastPerCategory(t testing.TB, lines []string) []string {
	t.Helper()
	last := map[string]string{}
	for _, l := range lines {
		category, _, ok := strings.Cut(l, "\t")
		if !ok {
			t.Fatalf("q4 row %q is not category<TAB>average", l)
		}
		last[category] = l
	}
	out := make([]string, 0, len(last))
	for _, l := range last {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// runToFile builds a job with build, which writes its rows to the file it
// is given, runs it at parallelism p and returns the file's lines in file
// order. runNexmark sorts them; q4 needs the order.
func runToFile(t testing.TB, p int, build func(env *stream.Environment, output string) error) []string {
	t.Helper()
	launch.Set(&launch.Settings{Parallelism: p, Quiet: true, Context: context.Background()})
	defer launch.Set(nil)
	out := filepath.Join(t.TempDir(), "out.txt")
	env := stream.NewEnvironment()
	if err := build(env, out); err != nil {
		t.Fatal(err)
	}
	if err := env.Execute("nexmark-test"); err != nil {
		t.Fatalf("at p=%d: %v", p, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}
