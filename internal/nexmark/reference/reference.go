// Package reference computes the complete, final answer of Nexmark queries
// q0–q5, q7 and q8 over a finite list of events, the way Flink's nexmark SQL
// defines them. It is deliberately plain — maps and loops over the whole
// input, no incremental state, no windows firing — so that it is easy to
// believe, and the streaming queries are checked against it: a streaming
// query run over the same events must produce exactly these lines
// (nexmark.Lines of its rows). Every function returns sorted lines.
//
// Events are taken in any order; the answers do not depend on arrival order,
// lateness or watermarks (the streaming queries must not drop late data for
// the comparison to hold; with the generator's in-order events and
// parallel subtasks that advance together, nothing is late).
package reference

import (
	"slices"

	"github.com/weirstream/weir/internal/nexmark"
)

// Q0 is the pass-through query: every bid, all its fields.
//
//	SELECT auction, bidder, price, dateTime, extra FROM bid
//
// Flink's q0 leaves out channel and url; this one keeps them (see
// nexmark.Q0Row).
func Q0(events []nexmark.Event) []string {
	var rows []nexmark.Q0Row
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		rows = append(rows, nexmark.Q0Row{
			Auction: b.Auction, Bidder: b.Bidder, Price: b.Price,
			Channel: b.Channel, URL: b.URL, DateTime: b.DateTime, Extra: b.Extra,
		})
	}
	return nexmark.Lines(rows)
}

// Q1 converts every bid's price from dollars to euros.
//
//	SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid
//
// Flink computes 0.908 * price as DECIMAL(23, 3); here the price is
// nexmark.Q1Price(price) = price*908/1000 in int64, truncated, which drops
// those three fractional digits.
func Q1(events []nexmark.Event) []string {
	var rows []nexmark.Q1Row
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		rows = append(rows, nexmark.Q1Row{
			Auction: b.Auction, Bidder: b.Bidder, Price: nexmark.Q1Price(b.Price),
			DateTime: b.DateTime, Extra: b.Extra,
		})
	}
	return nexmark.Lines(rows)
}

// Q2 selects the bids of every 123rd auction.
//
//	SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0
func Q2(events []nexmark.Event) []string {
	var rows []nexmark.Q2Row
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		if b.Auction%nexmark.Q2AuctionModulus == 0 {
			rows = append(rows, nexmark.Q2Row{Auction: b.Auction, Price: b.Price})
		}
	}
	return nexmark.Lines(rows)
}

// Q3 lists who sells in category 10 from OR, ID or CA, and which auctions.
//
//	SELECT P.name, P.city, P.state, A.id
//	FROM auction AS A INNER JOIN person AS P on A.seller = P.id
//	WHERE A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
//
// An unbounded inner join: every matching (auction, person) pair, whichever
// arrived first.
func Q3(events []nexmark.Event) []string {
	personsByID := map[int64][]*nexmark.Person{}
	for i := range events {
		if p := events[i].Person; events[i].Type == nexmark.PersonEvent && slices.Contains(nexmark.Q3States, p.State) {
			personsByID[p.ID] = append(personsByID[p.ID], p)
		}
	}
	var rows []nexmark.Q3Row
	for i := range events {
		a := events[i].Auction
		if events[i].Type != nexmark.AuctionEvent || a.Category != nexmark.Q3Category {
			continue
		}
		for _, p := range personsByID[a.Seller] {
			rows = append(rows, nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: a.ID})
		}
	}
	return nexmark.Lines(rows)
}

// Q4 is the average winning price per category.
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
// An auction's winning price is its highest bid made while it was open
// (both ends included); auctions without such a bid do not count. AVG of a
// BIGINT is a BIGINT in Flink: sum / count, truncated. This is the final
// value per category; the streaming query emits an update whenever a
// category's average changes, and its last value per category must equal
// this line.
func Q4(events []nexmark.Event) []string {
	bidsByAuction := map[int64][]nexmark.Bid{}
	for i := range events {
		if events[i].Type == nexmark.BidEvent {
			b := events[i].Bid
			bidsByAuction[b.Auction] = append(bidsByAuction[b.Auction], b)
		}
	}
	type auctionKey struct{ id, category int64 }
	final := map[auctionKey]int64{}
	for i := range events {
		a := events[i].Auction
		if events[i].Type != nexmark.AuctionEvent {
			continue
		}
		key := auctionKey{a.ID, a.Category}
		for _, b := range bidsByAuction[a.ID] {
			if b.DateTime < a.DateTime || b.DateTime > a.Expires {
				continue
			}
			if best, ok := final[key]; !ok || b.Price > best {
				final[key] = b.Price
			}
		}
	}
	sum, count := map[int64]int64{}, map[int64]int64{}
	for key, price := range final {
		sum[key.category] += price
		count[key.category]++
	}
	var rows []nexmark.Q4Row
	for category := range sum {
		rows = append(rows, nexmark.Q4Row{Category: category, Avg: sum[category] / count[category]})
	}
	return nexmark.Lines(rows)
}

// Q5 finds, for every hopping window of 10 s sliding by 2 s, the auctions
// with the most bids.
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
// Windows are [start, start+10 s) with start a multiple of 2 s since the
// epoch; a bid is in the five windows that contain its time. Ties all
// count. Only windows with a bid exist. Flink's sink keeps auction and num;
// the lines here add the window bounds (see nexmark.Q5Row).
func Q5(events []nexmark.Event) []string {
	type windowAuction struct{ start, auction int64 }
	counts := map[windowAuction]int64{}
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		last := nexmark.WindowStart(b.DateTime, nexmark.Q5WindowSlide)
		for start := last; start > b.DateTime-nexmark.Q5WindowSize; start -= nexmark.Q5WindowSlide {
			counts[windowAuction{start, b.Auction}]++
		}
	}
	maxCount := map[int64]int64{}
	for key, n := range counts {
		maxCount[key.start] = max(maxCount[key.start], n)
	}
	var rows []nexmark.Q5Row
	for key, n := range counts {
		if n >= maxCount[key.start] {
			rows = append(rows, nexmark.Q5Row{
				Auction: key.auction, Num: n,
				WindowStart: key.start, WindowEnd: key.start + nexmark.Q5WindowSize,
			})
		}
	}
	return nexmark.Lines(rows)
}

// Q7 finds the highest bids of every tumbling 10 s window.
//
//	SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
//	FROM bid B
//	JOIN (SELECT MAX(price) AS maxprice, window_end as dateTime
//	      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
//	      GROUP BY window_start, window_end) B1
//	ON B.price = B1.maxprice
//	WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime
//
// The maximum is over the bids of [start, end); the join then takes every
// bid with that price and start <= dateTime <= end — both ends included, as
// BETWEEN is. So a bid made exactly at a window's end (the first instant of
// the next window) is also a highest bid of the earlier window if its price
// equals that window's maximum, and then appears twice if it is also the
// highest of its own window. This follows the SQL, not "the bids of the
// window".
func Q7(events []nexmark.Event) []string {
	maxPrice := map[int64]int64{} // window start -> highest price in [start, start+size)
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		start := nexmark.WindowStart(b.DateTime, nexmark.Q7WindowSize)
		if best, ok := maxPrice[start]; !ok || b.Price > best {
			maxPrice[start] = b.Price
		}
	}
	var rows []nexmark.Q7Row
	for i := range events {
		if events[i].Type != nexmark.BidEvent {
			continue
		}
		b := events[i].Bid
		// The windows whose [end-10 s, end] holds the bid: its own, and
		// the previous one when the bid is exactly on the boundary.
		own := nexmark.WindowStart(b.DateTime, nexmark.Q7WindowSize)
		for _, start := range []int64{own - nexmark.Q7WindowSize, own} {
			end := start + nexmark.Q7WindowSize
			best, ok := maxPrice[start]
			if ok && b.Price == best && end-nexmark.Q7WindowSize <= b.DateTime && b.DateTime <= end {
				rows = append(rows, nexmark.Q7Row{
					Auction: b.Auction, Price: b.Price, Bidder: b.Bidder,
					DateTime: b.DateTime, Extra: b.Extra,
				})
			}
		}
	}
	return nexmark.Lines(rows)
}

// Q8 lists the people who registered and opened an auction in the same
// tumbling 10 s window.
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
// One line per distinct (id, name, window), however many auctions.
func Q8(events []nexmark.Event) []string {
	type sellerWindow struct{ seller, start int64 }
	sold := map[sellerWindow]bool{}
	for i := range events {
		if a := events[i].Auction; events[i].Type == nexmark.AuctionEvent {
			sold[sellerWindow{a.Seller, nexmark.WindowStart(a.DateTime, nexmark.Q8WindowSize)}] = true
		}
	}
	seen := map[nexmark.Q8Row]bool{}
	var rows []nexmark.Q8Row
	for i := range events {
		p := events[i].Person
		if events[i].Type != nexmark.PersonEvent {
			continue
		}
		row := nexmark.Q8Row{ID: p.ID, Name: p.Name, WindowStart: nexmark.WindowStart(p.DateTime, nexmark.Q8WindowSize)}
		if sold[sellerWindow{p.ID, row.WindowStart}] && !seen[row] {
			seen[row] = true
			rows = append(rows, row)
		}
	}
	return nexmark.Lines(rows)
}
