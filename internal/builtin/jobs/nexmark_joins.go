package jobs

import (
	"slices"

	"github.com/weirstream/weir/internal/nexmark"
	"github.com/weirstream/weir/stream"
)

// The Nexmark queries that join two kinds of record: q3 (an unbounded
// join), q4 (a join that closes with event time, then an aggregation) and
// q8 (a join within tumbling windows). Each is a keyed co-process function
// over two keyed streams, written as a user of the DataStream API would.
//
// All three cut the 100-byte Event down to a small struct of the fields
// they use before the keyed exchange: the exchange and the state then carry
// a few words per record, not the whole event, and bids that a query does
// not need never leave the source's chain.

func init() {
	NexmarkQueries["q3"] = q3
	NexmarkQueries["q4"] = q4
	NexmarkQueries["q8"] = q8
}

// q3: local item suggestion — who sells in category 10 from OR, ID or CA,
// and which auctions.
//
//	SELECT P.name, P.city, P.state, A.id
//	FROM auction AS A INNER JOIN person AS P on A.seller = P.id
//	WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
//
// Both selections run in the source's chain, so only the matching auctions
// and persons (about 1 event in 100) cross the keyed exchange and bids
// never do:
//
//	events ─┬─ q3-auctions: category 10  → {id, seller} ──KeyBy(seller)─┐
//	        └─ q3-persons:  OR, ID or CA → {id, name, city, state} ─KeyBy(id)─┴─ q3-join ─▶ Q3Row
//
// q3-join is an unbounded inner join, keyed by the person id: it keeps the
// person, and the auctions that arrived before their seller, and emits a
// row for every matching pair whichever side came first.
func q3(events *stream.DataStream[nexmark.Event], output string) {
	auctions := stream.FlatMap(events, "q3-auctions", func(e nexmark.Event, out stream.Collector[q3Auction]) {
		if e.Type == nexmark.AuctionEvent && e.Auction.Category == nexmark.Q3Category {
			out.Collect(q3Auction{ID: e.Auction.ID, Seller: e.Auction.Seller})
		}
	})
	persons := stream.FlatMap(events, "q3-persons", func(e nexmark.Event, out stream.Collector[q3Person]) {
		if p := e.Person; e.Type == nexmark.PersonEvent && slices.Contains(nexmark.Q3States, p.State) {
			out.Collect(q3Person{ID: p.ID, Name: p.Name, City: p.City, State: p.State})
		}
	})
	rows := stream.KeyedCoProcess(stream.ConnectKeyed(
		stream.KeyBy(auctions, func(a q3Auction) int64 { return a.Seller }),
		stream.KeyBy(persons, func(p q3Person) int64 { return p.ID }),
	), "q3-join", &q3Join{})
	sinkRows(rows, output)
}

// q3Auction is the part of a category-10 auction that q3 needs.
type q3Auction struct{ ID, Seller int64 }

// q3Person is the part of a person from OR, ID or CA that q3 needs.
type q3Person struct {
	ID                int64
	Name, City, State string
}

// q3Join joins auctions with their seller, keyed by the person id.
//
// A person registers once (Nexmark's person ids are unique), so the person
// side is one value per key and an auction waits only until its seller
// arrives; from then on auctions are emitted as they come and nothing more
// is stored for them.
type q3Join struct {
	person  stream.ValueState[q3Person]
	pending stream.ListState[int64] // ids of auctions that came before their seller
}

func (j *q3Join) Open(rc *stream.RuntimeContext) (err error) {
	if j.person, err = stream.ValueStateOf[q3Person](rc, "person"); err != nil {
		return err
	}
	j.pending, err = stream.ListStateOf[int64](rc, "pending-auctions")
	return err
}

// ProcessElement1 handles an auction: emitted now if its seller is known,
// else kept until the seller arrives.
func (j *q3Join) ProcessElement1(ctx *stream.KeyedContext[int64, nexmark.Q3Row], a q3Auction) error {
	if p, ok := j.person.Value(); ok {
		ctx.Collect(nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: a.ID})
		return nil
	}
	j.pending.Add(a.ID)
	return nil
}

// ProcessElement2 handles a person: it is stored, and the auctions that
// were waiting for it are emitted.
func (j *q3Join) ProcessElement2(ctx *stream.KeyedContext[int64, nexmark.Q3Row], p q3Person) error {
	j.person.Update(p)
	if waiting := j.pending.Get(); len(waiting) > 0 {
		for _, id := range waiting {
			ctx.Collect(nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: id})
		}
		j.pending.Clear()
	}
	return nil
}

// q4: the average winning price per category.
//
//	SELECT Q.category, AVG(Q.final)
//	FROM (
//	    SELECT MAX(B.price) AS final, A.category
//	    FROM auction A, bid B
//	    WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
//	    GROUP BY A.id, A.category
//	) Q
//	GROUP BY Q.category
//
// Two keyed stages:
//
//	events ─┬─ q4-auctions → {id, category, dateTime, expires} ─KeyBy(id)──────┐
//	        └─ q4-bids     → {auction, price, dateTime} ──────KeyBy(auction)──┴─ q4-winning-bids
//	                                                                               │ {category, final}
//	                                                          KeyBy(category) ─▶ q4-average ─▶ Q4Row
//
// q4-winning-bids keeps, per auction, the highest price among its bids made
// while it was open, and closes the auction with an event-time timer at its
// expiry: by then every bid made up to the expiry has arrived, so the
// maximum is final and goes downstream (if there was a bid) and the
// auction's state is dropped. q4-average keeps a running sum and count per
// category and emits the new average (sum/count, truncated like SQL's AVG
// of a BIGINT) after every closed auction. At the end of input the
// watermark jumps to the end of time, every open auction closes, and the
// last row of each category is the final answer.
func q4(events *stream.DataStream[nexmark.Event], output string) {
	auctions := stream.FlatMap(events, "q4-auctions", func(e nexmark.Event, out stream.Collector[q4Auction]) {
		if a := e.Auction; e.Type == nexmark.AuctionEvent {
			out.Collect(q4Auction{ID: a.ID, Category: a.Category, DateTime: a.DateTime, Expires: a.Expires})
		}
	})
	bids := stream.FlatMap(events, "q4-bids", func(e nexmark.Event, out stream.Collector[q4Bid]) {
		if e.Type == nexmark.BidEvent {
			out.Collect(q4Bid{Auction: e.Bid.Auction, Price: e.Bid.Price, DateTime: e.Bid.DateTime})
		}
	})
	winners := stream.KeyedCoProcess(stream.ConnectKeyed(
		stream.KeyBy(auctions, func(a q4Auction) int64 { return a.ID }),
		stream.KeyBy(bids, func(b q4Bid) int64 { return b.Auction }),
	), "q4-winning-bids", &q4WinningBids{})
	rows := stream.Process(stream.KeyBy(winners, func(w q4Winner) int64 { return w.Category }),
		"q4-average", &q4Average{})
	sinkRows(rows, output)
}

// q4Auction is the part of an auction that q4 needs.
type q4Auction struct{ ID, Category, DateTime, Expires int64 }

// q4Bid is the part of a bid that q4 needs.
type q4Bid struct{ Auction, Price, DateTime int64 }

// q4Winner is the winning price of one closed auction.
type q4Winner struct{ Category, Price int64 }

// q4OpenAuction is an auction waiting for its expiry and its best valid bid.
type q4OpenAuction struct {
	Auction q4Auction
	Final   int64 // highest price among the valid bids; meaningful if HasBid
	HasBid  bool
}

// accept folds bid b into the auction's winning price if b was made while
// the auction was open (both ends included, as SQL's BETWEEN).
func (o *q4OpenAuction) accept(b q4Bid) bool {
	if b.DateTime < o.Auction.DateTime || b.DateTime > o.Auction.Expires || o.HasBid && b.Price <= o.Final {
		return false
	}
	o.Final, o.HasBid = b.Price, true
	return true
}

// q4WinningBids joins bids with their auction, keyed by the auction id, and
// emits each auction's winning price when it expires.
//
// A bid can arrive before its auction: parallel source subtasks do not keep
// the order of records between them, and a bid may also be for an auction
// that has not been created yet or has already closed. Such bids wait in
// the early list. When the auction arrives they are checked against it.
// Once the watermark passes a waiting bid's time, any auction it could
// belong to (one created no later than the bid) has arrived unless it is
// late, so the bid is dropped: this keeps bids on closed auctions from
// piling up. (The generator's records are never late; a late auction would
// miss the bids dropped before it, as late records miss closed windows.)
type q4WinningBids struct {
	open  stream.ValueState[q4OpenAuction]
	early stream.ListState[q4Bid]
}

func (w *q4WinningBids) Open(rc *stream.RuntimeContext) (err error) {
	if w.open, err = stream.ValueStateOf[q4OpenAuction](rc, "open-auction"); err != nil {
		return err
	}
	w.early, err = stream.ListStateOf[q4Bid](rc, "early-bids")
	return err
}

// ProcessElement1 handles an auction: it takes the bids that came before
// it and waits for its expiry.
func (w *q4WinningBids) ProcessElement1(ctx *stream.KeyedContext[int64, q4Winner], a q4Auction) error {
	open := q4OpenAuction{Auction: a}
	if early := w.early.Get(); len(early) > 0 {
		for _, b := range early {
			open.accept(b)
		}
		w.early.Clear()
	}
	w.open.Update(open)
	ctx.TimerService().RegisterEventTimeTimer(a.Expires)
	return nil
}

// ProcessElement2 handles a bid: it counts at once if its auction is open,
// or waits for the auction.
func (w *q4WinningBids) ProcessElement2(ctx *stream.KeyedContext[int64, q4Winner], b q4Bid) error {
	if open, ok := w.open.Value(); ok {
		if open.accept(b) {
			w.open.Update(open)
		}
		return nil
	}
	if len(w.early.Get()) == 0 {
		// One timer for the list: it is moved on to the next waiting
		// bid's time when it fires.
		ctx.TimerService().RegisterEventTimeTimer(b.DateTime)
	}
	w.early.Add(b)
	return nil
}

// OnTimer closes an expired auction, or drops the waiting bids that can no
// longer meet their auction.
func (w *q4WinningBids) OnTimer(ctx *stream.KeyedContext[int64, q4Winner], ts int64, _ stream.TimeDomain) error {
	if open, ok := w.open.Value(); ok {
		if ts < open.Auction.Expires {
			return nil // an early-bid timer from before the auction came
		}
		if open.HasBid {
			ctx.Collect(q4Winner{Category: open.Auction.Category, Price: open.Final})
		}
		w.open.Clear()
		return nil
	}
	early := w.early.Get()
	if len(early) == 0 {
		return nil
	}
	// Drop every bid the watermark has passed, not only those up to ts,
	// and wait for the earliest of the rest: one pass over the list per
	// watermark, however many bids it holds.
	wm := ctx.TimerService().CurrentWatermark()
	var keep []q4Bid
	next := int64(0)
	for _, b := range early {
		if b.DateTime > wm {
			if len(keep) == 0 || b.DateTime < next {
				next = b.DateTime
			}
			keep = append(keep, b)
		}
	}
	w.early.Update(keep) // an empty list clears it
	if len(keep) > 0 {
		ctx.TimerService().RegisterEventTimeTimer(next)
	}
	return nil
}

// q4Average keeps the running average winning price of a category.
type q4Average struct {
	total stream.ValueState[q4Total]
}

type q4Total struct{ Sum, Count int64 }

func (a *q4Average) Open(rc *stream.RuntimeContext) (err error) {
	a.total, err = stream.ValueStateOf[q4Total](rc, "total")
	return err
}

func (a *q4Average) ProcessElement(ctx *stream.KeyedContext[int64, nexmark.Q4Row], w q4Winner) error {
	t, _ := a.total.Value()
	t.Sum += w.Price
	t.Count++
	a.total.Update(t)
	ctx.Collect(nexmark.Q4Row{Category: ctx.Key(), Avg: t.Sum / t.Count})
	return nil
}

// q8: monitor new users — the people who registered and opened an auction
// in the same tumbling 10 s window.
//
//	SELECT P.id, P.name, P.starttime
//	FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY id, name, window_start, window_end) P
//	JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
//	      FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY seller, window_start, window_end) A
//	ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
//
// The join condition is the key: persons are keyed by (id, window start)
// and auctions by (seller, window start), each record's window computed in
// the source's chain, so one key is one person's window:
//
//	events ─┬─ q8-persons  → {(id, window), name} ─KeyBy─┐
//	        └─ q8-auctions → (seller, window) ─────KeyBy─┴─ q8-join ─▶ Q8Row
//
// q8-join emits a row as soon as a key has both a person and an auction —
// once per distinct name, however many auctions — and drops the key's
// state with an event-time timer at the end of the window, when no more of
// its records can come.
func q8(events *stream.DataStream[nexmark.Event], output string) {
	persons := stream.FlatMap(events, "q8-persons", func(e nexmark.Event, out stream.Collector[q8Person]) {
		if p := e.Person; e.Type == nexmark.PersonEvent {
			out.Collect(q8Person{Key: q8Key{ID: p.ID, Start: nexmark.WindowStart(p.DateTime, nexmark.Q8WindowSize)}, Name: p.Name})
		}
	})
	auctions := stream.FlatMap(events, "q8-auctions", func(e nexmark.Event, out stream.Collector[q8Key]) {
		if a := e.Auction; e.Type == nexmark.AuctionEvent {
			out.Collect(q8Key{ID: a.Seller, Start: nexmark.WindowStart(a.DateTime, nexmark.Q8WindowSize)})
		}
	})
	rows := stream.KeyedCoProcess(stream.ConnectKeyed(
		stream.KeyBy(persons, func(p q8Person) q8Key { return p.Key }),
		stream.KeyBy(auctions, func(k q8Key) q8Key { return k }),
	), "q8-join", &q8Join{})
	sinkRows(rows, output)
}

// q8Key is a person id (a seller, for auctions) and the start of a tumbling
// window: the join key of q8.
type q8Key struct{ ID, Start int64 }

// q8Person is a person record in its window.
type q8Person struct {
	Key  q8Key
	Name string
}

// q8Window is what q8-join knows of one person's window.
type q8Window struct {
	Names []string // the distinct names of the person's records, each emitted once Sold
	Sold  bool     // the person opened an auction in the window
}

// q8Join joins the persons and auctions of one (id, window) key.
type q8Join struct {
	window stream.ValueState[q8Window]
}

func (j *q8Join) Open(rc *stream.RuntimeContext) (err error) {
	j.window, err = stream.ValueStateOf[q8Window](rc, "window")
	return err
}

// ProcessElement1 handles a person: emitted now if the window already has
// an auction of theirs, and remembered for auctions to come.
func (j *q8Join) ProcessElement1(ctx *stream.KeyedContext[q8Key, nexmark.Q8Row], p q8Person) error {
	w, ok := j.window.Value()
	if slices.Contains(w.Names, p.Name) {
		return nil
	}
	if !ok {
		j.cleanUpAtWindowEnd(ctx)
	}
	w.Names = append(w.Names, p.Name)
	j.window.Update(w)
	if w.Sold {
		ctx.Collect(nexmark.Q8Row{ID: p.Key.ID, Name: p.Name, WindowStart: p.Key.Start})
	}
	return nil
}

// ProcessElement2 handles an auction: the window's first one emits the
// persons seen so far; later ones change nothing.
func (j *q8Join) ProcessElement2(ctx *stream.KeyedContext[q8Key, nexmark.Q8Row], k q8Key) error {
	w, ok := j.window.Value()
	if w.Sold {
		return nil
	}
	if !ok {
		j.cleanUpAtWindowEnd(ctx)
	}
	w.Sold = true
	j.window.Update(w)
	for _, name := range w.Names {
		ctx.Collect(nexmark.Q8Row{ID: k.ID, Name: name, WindowStart: k.Start})
	}
	return nil
}

// cleanUpAtWindowEnd sets the timer that drops the key's state: at the
// window's last millisecond, the point after which a record of the window
// would be late.
func (j *q8Join) cleanUpAtWindowEnd(ctx *stream.KeyedContext[q8Key, nexmark.Q8Row]) {
	ctx.TimerService().RegisterEventTimeTimer(ctx.Key().Start + nexmark.Q8WindowSize - 1)
}

func (j *q8Join) OnTimer(ctx *stream.KeyedContext[q8Key, nexmark.Q8Row], ts int64, _ stream.TimeDomain) error {
	j.window.Clear()
	return nil
}
