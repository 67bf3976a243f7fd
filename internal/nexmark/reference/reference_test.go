package reference

import (
	"slices"
	"strconv"
	"testing"

	"github.com/weirstream/weir/internal/nexmark"
)

// T is a base time on a 10 s boundary, so window starts are easy to read.
const T = 1_436_918_400_000

func bid(auction, bidder, price, ts int64) nexmark.Event {
	return nexmark.Event{Type: nexmark.BidEvent, Bid: nexmark.Bid{
		Auction: auction, Bidder: bidder, Price: price,
		Channel: "Google", URL: "https://www.nexmark.com/a/b/c/item.htm?query=1",
		DateTime: ts, Extra: "x",
	}}
}

func person(id int64, name, city, state string, ts int64) nexmark.Event {
	return nexmark.Event{Type: nexmark.PersonEvent, Person: &nexmark.Person{
		ID: id, Name: name, City: city, State: state, DateTime: ts,
	}}
}

func auction(id, seller, category, ts, expires int64) nexmark.Event {
	return nexmark.Event{Type: nexmark.AuctionEvent, Auction: &nexmark.Auction{
		ID: id, Seller: seller, Category: category, DateTime: ts, Expires: expires,
	}}
}

func TestQueriesOnHandMadeEvents(t *testing.T) {
	tests := []struct {
		name   string
		query  func([]nexmark.Event) []string
		events []nexmark.Event
		want   []string
	}{
		{
			name:  "q0 passes every bid through",
			query: Q0,
			events: []nexmark.Event{
				bid(1001, 2001, 500, T+7),
				person(1000, "Paul Smith", "Bend", "OR", T),
				bid(1000, 2000, 100, T+3),
			},
			want: []string{
				"1000\t2000\t100\tGoogle\thttps://www.nexmark.com/a/b/c/item.htm?query=1\t" + itoa(T+3) + "\tx",
				"1001\t2001\t500\tGoogle\thttps://www.nexmark.com/a/b/c/item.htm?query=1\t" + itoa(T+7) + "\tx",
			},
		},
		{
			name:  "q1 converts prices with truncation",
			query: Q1,
			events: []nexmark.Event{
				bid(1000, 2000, 1000, T), // 908
				bid(1001, 2001, 1999, T), // 1815.092 -> 1815
				bid(1002, 2002, 1, T),    // 0.908 -> 0
				auction(1003, 1000, 10, T, T+5),
			},
			want: []string{
				"1000\t2000\t908\t" + itoa(T) + "\tx",
				"1001\t2001\t1815\t" + itoa(T) + "\tx",
				"1002\t2002\t0\t" + itoa(T) + "\tx",
			},
		},
		{
			name:  "q2 keeps multiples of 123",
			query: Q2,
			events: []nexmark.Event{
				bid(123, 1, 10, T), bid(124, 1, 20, T), bid(246, 1, 30, T), bid(1230, 2, 40, T),
			},
			want: []string{"123\t10", "1230\t40", "246\t30"},
		},
		{
			name:  "q3 joins category-10 auctions to sellers in OR, ID, CA in any order",
			query: Q3,
			events: []nexmark.Event{
				auction(13, 3, 10, T, T+1), // before its seller arrives
				person(1, "Paul Smith", "Bend", "OR", T),
				person(2, "Kate White", "Seattle", "WA", T), // wrong state
				person(3, "Luke Jones", "Boise", "ID", T+1),
				auction(10, 1, 10, T+2, T+3),
				auction(11, 2, 10, T+2, T+3),  // seller in WA
				auction(12, 3, 11, T+2, T+3),  // wrong category
				auction(14, 99, 10, T+2, T+3), // no such person
				auction(15, 1, 10, T+4, T+5),
			},
			want: []string{
				"Luke Jones\tBoise\tID\t13",
				"Paul Smith\tBend\tOR\t10",
				"Paul Smith\tBend\tOR\t15",
			},
		},
		{
			name:  "q4 averages the winning bids per category",
			query: Q4,
			events: []nexmark.Event{
				auction(1, 100, 10, T+1000, T+2000),
				auction(2, 100, 10, T+1000, T+1500),
				auction(3, 100, 11, T+0, T+100),
				auction(4, 100, 11, T+0, T+100),
				bid(1, 7, 50, T+999),   // before auction 1 opens
				bid(1, 7, 30, T+1000),  // at the open: counts
				bid(1, 7, 40, T+2000),  // at expiry: counts -> 40 wins
				bid(1, 7, 100, T+2001), // after expiry
				bid(2, 7, 15, T+1200),  // 15 wins
				bid(3, 7, 7, T+50),     // 7 wins
				bid(4, 7, 1000, T+101), // too late: auction 4 has no winner
				bid(9, 7, 999, T+10),   // no such auction
			},
			// Category 10: (40+15)/2 = 27.5 -> 27. Category 11: 7.
			want: []string{"10\t27", "11\t7"},
		},
		{
			name:  "q5 keeps the auctions with the most bids per hopping window",
			query: Q5,
			events: []nexmark.Event{
				bid(1, 9, 1, T+0),
				bid(1, 9, 1, T+1000),
				bid(2, 9, 1, T+1500),
				bid(2, 9, 1, T+9999),
				bid(3, 9, 1, T+10000),
			},
			want: nexmark.Lines([]nexmark.Q5Row{
				// Windows starting before T hold the first three bids.
				q5row(1, 2, T-8000),
				q5row(1, 2, T-6000),
				q5row(1, 2, T-4000),
				q5row(1, 2, T-2000),
				// [T, T+10000) holds all but the last: a tie.
				q5row(1, 2, T),
				q5row(2, 2, T),
				// Later windows hold the bid at T+9999 and the one at T+10000.
				q5row(2, 1, T+2000), q5row(3, 1, T+2000),
				q5row(2, 1, T+4000), q5row(3, 1, T+4000),
				q5row(2, 1, T+6000), q5row(3, 1, T+6000),
				q5row(2, 1, T+8000), q5row(3, 1, T+8000),
				q5row(3, 1, T+10000),
			}),
		},
		{
			name:  "q7 returns the highest bids, boundary bids joining the earlier window too",
			query: Q7,
			events: []nexmark.Event{
				// [T, T+10000): max 9, reached twice.
				bid(1, 1, 5, T+1),
				bid(2, 2, 9, T+2),
				bid(3, 3, 9, T+9999),
				// [T+10000, T+20000): max 9. The bid at T+10000 is also
				// within [end-10s, end] of the first window and has its max.
				bid(4, 4, 9, T+10000),
				bid(5, 5, 3, T+15000),
				// [T+20000, T+30000): max 8.
				bid(6, 6, 4, T+20000),
				bid(7, 7, 8, T+25000),
				// [T+30000, T+40000): max 20. The bid at T+30000 matches
				// only the previous window's max.
				bid(8, 8, 8, T+30000),
				bid(9, 9, 20, T+31000),
			},
			want: nexmark.Lines([]nexmark.Q7Row{
				q7row(2, 9, 2, T+2),
				q7row(3, 9, 3, T+9999),
				q7row(4, 9, 4, T+10000),
				q7row(4, 9, 4, T+10000),
				q7row(7, 8, 7, T+25000),
				q7row(8, 8, 8, T+30000),
				q7row(9, 20, 9, T+31000),
			}),
		},
		{
			name:  "q8 finds people who sold in the window they registered",
			query: Q8,
			events: []nexmark.Event{
				person(1, "Paul Smith", "Bend", "OR", T+100),
				person(2, "Kate White", "Kent", "WA", T+9999),
				person(3, "Luke Jones", "Boise", "ID", T+5000),
				person(4, "Saul Noris", "Bend", "OR", T+10001),
				auction(10, 1, 10, T+200, T+300),
				auction(11, 1, 11, T+300, T+400),     // same person and window: one line
				auction(12, 2, 10, T+10000, T+10001), // next window
				auction(13, 3, 10, T+5001, T+6000),
				auction(14, 77, 10, T+10, T+20), // no such person
				auction(15, 4, 10, T+19999, T+20000),
			},
			want: []string{
				"1\tPaul Smith\t" + itoa(T),
				"3\tLuke Jones\t" + itoa(T),
				"4\tSaul Noris\t" + itoa(T+10000),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.query(tt.events)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got %d lines:\n%q\nwant %d lines:\n%q", len(got), got, len(want), want)
			}
			// The answer does not depend on the order of the events.
			reversed := slices.Clone(tt.events)
			slices.Reverse(reversed)
			if again := tt.query(reversed); !slices.Equal(again, got) {
				t.Errorf("reversed input gave a different answer:\n%q", again)
			}
		})
	}
}

func q5row(auction, num, start int64) nexmark.Q5Row {
	return nexmark.Q5Row{Auction: auction, Num: num, WindowStart: start, WindowEnd: start + nexmark.Q5WindowSize}
}

func q7row(auction, price, bidder, ts int64) nexmark.Q7Row {
	return nexmark.Q7Row{Auction: auction, Price: price, Bidder: bidder, DateTime: ts, Extra: "x"}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestQueriesFindMatchesInGeneratedData checks that the generator and the
// queries fit together: with the suite's defaults every query has output.
func TestQueriesFindMatchesInGeneratedData(t *testing.T) {
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = 100_000
	events := nexmark.Generate(cfg, 0, 1)
	bids := 0
	for _, e := range events {
		if e.Type == nexmark.BidEvent {
			bids++
		}
	}
	for _, q := range []struct {
		name  string
		query func([]nexmark.Event) []string
	}{{"q0", Q0}, {"q1", Q1}, {"q2", Q2}, {"q3", Q3}, {"q4", Q4}, {"q5", Q5}, {"q7", Q7}, {"q8", Q8}} {
		lines := q.query(events)
		t.Logf("%s: %d lines", q.name, len(lines))
		if len(lines) == 0 {
			t.Errorf("%s has no output on %d generated events", q.name, len(events))
		}
		if (q.name == "q0" || q.name == "q1") && len(lines) != bids {
			t.Errorf("%s has %d lines for %d bids", q.name, len(lines), bids)
		}
	}
}
