package jobs

// Nexmark q5 and q7: the windowed queries, written with the DataStream API
// the way a user would write them, and documentation of that API: event-time
// windows with an incremental aggregate that knows its window, keyed process
// functions with value state and event-time timers, and the local
// pre-aggregation (a per-subtask filter in front of a key exchange) that
// turns a global "maximum per window" from an exchange of every partial
// result into an exchange of a handful.

import (
	"slices"
	"time"

	"github.com/weirstream/weir/internal/nexmark"
	"github.com/weirstream/weir/stream"
)

func init() {
	NexmarkQueries["q5"] = q5
	NexmarkQueries["q7"] = q7
}

// q5 (hot items): for every hopping window of 10 s sliding by 2 s, the
// auctions with the most bids (all of them on a tie).
//
//	SELECT AuctionBids.auction, AuctionBids.num
//	FROM (SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
//	      GROUP BY auction, window_start, window_end) AS AuctionBids
//	JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
//	      FROM (…the same counts…) AS CountBids
//	      GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
//	ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
//	   AND AuctionBids.num >= MaxBids.maxn
//
// The dataflow:
//
//	bids ─▶ auction ─KeyBy auction─▶ sliding window 10 s / 2 s, count
//	     ─▶ (auction, num, window) ─▶ local leaders ─KeyBy window end─▶ hottest, at the window's end
//
// Only the auction id of a bid crosses the first exchange; the record keeps
// the bid's event time, which the window assigner reads. The window
// operator counts incrementally (one int64 per auction and window) and,
// when the watermark passes a window, emits every auction's count with the
// window's bounds (WindowAggregateWith hands the window to the function).
// That is one row per auction per window, most of which cannot be the
// maximum: the local leaders filter, chained to the window operator on the
// same subtask, drops a row whose count is below the highest count it has
// already passed for that window. Rows with the window's overall maximum
// always pass, so the result is unchanged; only a few rows per window and
// subtask reach the second exchange. The final operator, keyed by window
// end, keeps the maximum and the auctions having it, and emits them from an
// event-time timer at the window's MaxTimestamp (the timestamp of its rows),
// which fires once every window subtask has emitted that window: each
// forwards the watermark only after firing the windows it passes.
func q5(events *stream.DataStream[nexmark.Event], output string) {
	auctions := stream.Map(bids(events), "q5-auction", func(e nexmark.Event) int64 { return e.Bid.Auction })
	windows := stream.Window(stream.KeyBy(auctions, func(auction int64) int64 { return auction }),
		stream.SlidingEventTimeWindows(nexmark.Q5WindowSize*time.Millisecond, nexmark.Q5WindowSlide*time.Millisecond))
	counts := stream.WindowAggregateWith(windows, "q5-count", countAggregate{},
		func(auction int64, w stream.TimeWindow, num []int64, out stream.Collector[nexmark.Q5Row]) error {
			out.Collect(nexmark.Q5Row{Auction: auction, Num: num[0], WindowStart: w.Start, WindowEnd: w.End})
			return nil
		})
	leaders := stream.ProcessUnkeyed(counts, "q5-local-leaders", &localLeaders{})
	byWindow := stream.KeyBy(leaders, func(r nexmark.Q5Row) int64 { return r.WindowEnd })
	sinkRows(stream.Process(byWindow, "q5-hottest", &hottestAuctions{}), output)
}

// countAggregate counts records: an AggregateFunction whose accumulator is
// the count itself.
type countAggregate struct{}

func (countAggregate) CreateAccumulator() int64     { return 0 }
func (countAggregate) Add(_ int64, n int64) int64   { return n + 1 }
func (countAggregate) GetResult(n int64) int64      { return n }
func (countAggregate) Merge(a int64, b int64) int64 { return a + b }

// localLeaders passes, of the per-auction counts one window subtask emits,
// only those that may be a window's maximum: a count below one it has
// already passed for the same window cannot be. It keeps no checkpointed
// state and needs none: after a restore it starts empty and passes more,
// never less.
type localLeaders struct {
	best []windowBest // the windows being emitted; a few at most
}

// windowBest is the highest value a local filter has passed for a window.
type windowBest struct{ end, best int64 }

func (l *localLeaders) ProcessElement(ctx *stream.Context[nexmark.Q5Row], r nexmark.Q5Row) error {
	i := findWindowBest(&l.best, r.WindowEnd, ctx.CurrentWatermark())
	if i < 0 {
		l.best = append(l.best, windowBest{end: r.WindowEnd, best: r.Num})
	} else if r.Num < l.best[i].best {
		return nil
	} else {
		l.best[i].best = r.Num
	}
	ctx.Collect(r)
	return nil
}

// findWindowBest returns the index of window end in *best, or -1. On a
// miss it first forgets the windows whose end the watermark wm has reached:
// their rows, and the records at their end instant, have all gone by.
func findWindowBest(best *[]windowBest, end, wm int64) int {
	for i := range *best {
		if (*best)[i].end == end {
			return i
		}
	}
	*best = slices.DeleteFunc(*best, func(b windowBest) bool { return b.end <= wm })
	return -1
}

// hottestAuctions is q5's last step, keyed by window end: it keeps the
// highest count of the window and every auction with it, and emits them
// when the window is complete.
type hottestAuctions struct {
	leaders stream.ValueState[q5Leaders]
}

// q5Leaders is the state of one window: its highest count so far and the
// auctions with it.
type q5Leaders struct {
	Num      int64
	Auctions []int64
}

func (h *hottestAuctions) Open(rc *stream.RuntimeContext) (err error) {
	h.leaders, err = stream.ValueStateOf[q5Leaders](rc, "leaders")
	return err
}

func (h *hottestAuctions) ProcessElement(ctx *stream.KeyedContext[int64, nexmark.Q5Row], r nexmark.Q5Row) error {
	l, ok := h.leaders.Value()
	switch {
	case !ok:
		// The window's first row: fire once every window subtask has
		// emitted the window, at the rows' own timestamp.
		ctx.TimerService().RegisterEventTimeTimer(r.WindowEnd - 1)
		l = q5Leaders{Num: r.Num, Auctions: []int64{r.Auction}}
	case r.Num > l.Num:
		l = q5Leaders{Num: r.Num, Auctions: append(l.Auctions[:0], r.Auction)}
	case r.Num == l.Num:
		l.Auctions = append(l.Auctions, r.Auction)
	default:
		return nil
	}
	h.leaders.Update(l)
	return nil
}

func (h *hottestAuctions) OnTimer(ctx *stream.KeyedContext[int64, nexmark.Q5Row], _ int64, _ stream.TimeDomain) error {
	l, _ := h.leaders.Value()
	end := ctx.Key()
	for _, a := range l.Auctions {
		ctx.Collect(nexmark.Q5Row{Auction: a, Num: l.Num, WindowStart: end - nexmark.Q5WindowSize, WindowEnd: end})
	}
	h.leaders.Clear()
	return nil
}

// q7 (highest bid): the bids with the highest price of every tumbling 10 s
// window.
//
//	SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
//	FROM bid B
//	JOIN (SELECT MAX(price) AS maxprice, window_end as dateTime
//	      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY window_start, window_end) B1
//	ON B.price = B1.maxprice
//	WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime
//
// The maximum is over the bids of [start, end), but BETWEEN includes both
// ends: a bid made exactly at a window's end (the first instant of the next
// window) is also a highest bid of the earlier window when its price is
// that window's maximum, and then appears twice if it is its own window's
// highest too.
//
// The dataflow:
//
//	bids ─▶ local candidates ─KeyBy window end─▶ highest, once the window's end has passed
//
// A global maximum needs one place that sees every candidate, but not every
// bid. The local filter, chained to the source on each subtask, passes a
// bid as a candidate for its own window only if its price is at least the
// highest it has passed for that window (a lower price cannot be the
// maximum), and a bid at a window's first instant also as a boundary
// candidate for the previous window, under the same test against that
// window's local highest. It passes a few bids per window instead of all.
// The last operator, keyed by window end, keeps the window's highest price
// among its own candidates, the candidates with it and the boundary
// candidates that may still equal it; its event-time timer is at the
// window's end itself, not at MaxTimestamp, so that it fires only when the
// watermark says every bid made at the end instant has arrived. It then
// emits the window's candidates with the maximum and the boundary
// candidates with the same price.
func q7(events *stream.DataStream[nexmark.Event], output string) {
	candidates := stream.ProcessUnkeyed(bids(events), "q7-local-candidates", &localCandidates{})
	byWindow := stream.KeyBy(candidates, func(c q7Candidate) int64 { return c.WindowEnd })
	sinkRows(stream.Process(byWindow, "q7-highest", &highestBids{}), output)
}

// q7Candidate is a bid that may be a highest bid of the window ending at
// WindowEnd: one of its bids, or (Boundary) a bid made exactly at its end.
type q7Candidate struct {
	Bid       nexmark.Q7Row
	WindowEnd int64
	Boundary  bool
}

// localCandidates passes the bids of one source subtask that may be a
// window's highest. Like localLeaders, it keeps no checkpointed state and
// needs none: after a restore it passes more, never less.
type localCandidates struct {
	best []windowBest
}

func (l *localCandidates) ProcessElement(ctx *stream.Context[q7Candidate], e nexmark.Event) error {
	b := &e.Bid
	start := nexmark.WindowStart(b.DateTime, nexmark.Q7WindowSize)
	end := start + nexmark.Q7WindowSize
	wm := ctx.CurrentWatermark()
	ownCandidate := true
	if i := findWindowBest(&l.best, end, wm); i < 0 {
		l.best = append(l.best, windowBest{end: end, best: b.Price})
	} else if b.Price >= l.best[i].best {
		l.best[i].best = b.Price
	} else {
		ownCandidate = false
	}
	atBoundary := b.DateTime == start
	if !ownCandidate && !atBoundary {
		return nil
	}
	row := nexmark.Q7Row{Auction: b.Auction, Price: b.Price, Bidder: b.Bidder, DateTime: b.DateTime, Extra: b.Extra}
	if ownCandidate {
		ctx.Collect(q7Candidate{Bid: row, WindowEnd: end})
	}
	if atBoundary {
		// Also a candidate for the window ending at this instant, unless
		// that window has a higher bid here. It does not raise that
		// window's highest: it is not one of its bids.
		if prev := findWindowBest(&l.best, start, wm); prev < 0 || b.Price >= l.best[prev].best {
			ctx.Collect(q7Candidate{Bid: row, WindowEnd: start, Boundary: true})
		}
	}
	return nil
}

// highestBids is q7's last step, keyed by window end.
type highestBids struct {
	window stream.ValueState[q7Window]
}

// q7Window is the state of one window: the highest price of its own
// candidates (if HasMax), the candidates with that price, and the boundary
// candidates whose price is not below it.
type q7Window struct {
	Max      int64
	HasMax   bool
	Highest  []nexmark.Q7Row
	Boundary []nexmark.Q7Row
}

func (h *highestBids) Open(rc *stream.RuntimeContext) (err error) {
	h.window, err = stream.ValueStateOf[q7Window](rc, "window")
	return err
}

func (h *highestBids) ProcessElement(ctx *stream.KeyedContext[int64, nexmark.Q7Row], c q7Candidate) error {
	w, ok := h.window.Value()
	if !ok {
		// The window's end instant is part of it (BETWEEN): fire once the
		// watermark has passed it, not at MaxTimestamp.
		ctx.TimerService().RegisterEventTimeTimer(c.WindowEnd)
	}
	p := c.Bid.Price
	switch {
	case c.Boundary:
		if w.HasMax && p < w.Max {
			return nil
		}
		w.Boundary = append(w.Boundary, c.Bid)
	case !w.HasMax || p > w.Max:
		w.Max, w.HasMax = p, true
		w.Highest = append(w.Highest[:0], c.Bid)
		w.Boundary = slices.DeleteFunc(w.Boundary, func(r nexmark.Q7Row) bool { return r.Price < p })
	case p == w.Max:
		w.Highest = append(w.Highest, c.Bid)
	default:
		return nil
	}
	h.window.Update(w)
	return nil
}

func (h *highestBids) OnTimer(ctx *stream.KeyedContext[int64, nexmark.Q7Row], _ int64, _ stream.TimeDomain) error {
	w, _ := h.window.Value()
	h.window.Clear()
	if !w.HasMax {
		return nil // only boundary bids: the window itself had no bid
	}
	for _, r := range w.Highest {
		ctx.Collect(r)
	}
	for _, r := range w.Boundary {
		if r.Price == w.Max {
			ctx.Collect(r)
		}
	}
	return nil
}
