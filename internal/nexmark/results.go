package nexmark

import (
	"fmt"
	"slices"
	"strconv"
)

// Query constants, shared by the streaming queries and the reference
// answers so that both use the same numbers.
const (
	// Q1PriceNumerator / Q1PriceDenominator is the dollar-to-euro rate of q1.
	Q1PriceNumerator   = 908
	Q1PriceDenominator = 1000
	// Q2AuctionModulus: q2 keeps bids whose auction id is a multiple.
	Q2AuctionModulus = 123
	// Q3Category is the auction category q3 looks at.
	Q3Category = 10
	// Q5WindowSize and Q5WindowSlide are q5's hopping window, ms.
	Q5WindowSize  = 10_000
	Q5WindowSlide = 2_000
	// Q7WindowSize and Q8WindowSize are the tumbling windows of q7 and q8, ms.
	Q7WindowSize = 10_000
	Q8WindowSize = 10_000
)

// Q3States are the seller states q3 keeps.
var Q3States = []string{"OR", "ID", "CA"}

// Q1Price converts a bid price in dollar cents to euro cents as q1 does:
// price*908/1000 in int64, truncated (prices are positive, so rounded down).
// Flink's SQL computes 0.908*price as DECIMAL(23, 3), keeping the three
// fractional digits that this drops.
func Q1Price(price int64) int64 {
	return price * Q1PriceNumerator / Q1PriceDenominator
}

// WindowStart is the start of the window of length size (or of slide, for
// hopping windows) that holds time ts, aligned to multiples of size from the
// epoch as Flink's TimeWindow.getWindowStartWithOffset with offset 0.
func WindowStart(ts, size int64) int64 {
	return ts - ((ts%size)+size)%size
}

// Lines renders rows one per line and sorts them: the form in which query
// output is compared with the reference answers.
func Lines[T fmt.Stringer](rows []T) []string {
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = r.String()
	}
	slices.Sort(lines)
	return lines
}

// Result rows. Each String() is one output line: fields separated by a tab,
// integers (ids, prices in cents, times in unix ms) in decimal, strings as
// they are (the generator never puts tabs or newlines in them).

// Q0Row is q0 (pass through), one per bid.
// Line: auction, bidder, price, channel, url, dateTime, extra.
// Flink's q0 selects auction, bidder, price, dateTime, extra; channel and
// url are kept here as asked, so Flink's rows are these without columns 4-5.
type Q0Row struct {
	Auction, Bidder, Price int64
	Channel, URL           string
	DateTime               int64
	Extra                  string
}

func (r Q0Row) String() string {
	b := make([]byte, 0, 64+len(r.Channel)+len(r.URL)+len(r.Extra))
	b = strconv.AppendInt(b, r.Auction, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Bidder, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Price, 10)
	b = append(b, '\t')
	b = append(b, r.Channel...)
	b = append(b, '\t')
	b = append(b, r.URL...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.DateTime, 10)
	b = append(b, '\t')
	b = append(b, r.Extra...)
	return string(b)
}

// Q1Row is q1 (currency conversion), one per bid; Price is Q1Price of the
// bid's price. Line: auction, bidder, price, dateTime, extra.
type Q1Row struct {
	Auction, Bidder, Price, DateTime int64
	Extra                            string
}

func (r Q1Row) String() string {
	b := make([]byte, 0, 64+len(r.Extra))
	b = strconv.AppendInt(b, r.Auction, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Bidder, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Price, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.DateTime, 10)
	b = append(b, '\t')
	b = append(b, r.Extra...)
	return string(b)
}

// Q2Row is q2 (selection). Line: auction, price.
type Q2Row struct {
	Auction, Price int64
}

func (r Q2Row) String() string {
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, r.Auction, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Price, 10)
	return string(b)
}

// Q3Row is q3 (local item suggestion). Line: name, city, state, id (the
// auction's id).
type Q3Row struct {
	Name, City, State string
	ID                int64
}

func (r Q3Row) String() string {
	b := make([]byte, 0, 24+len(r.Name)+len(r.City)+len(r.State))
	b = append(b, r.Name...)
	b = append(b, '\t')
	b = append(b, r.City...)
	b = append(b, '\t')
	b = append(b, r.State...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.ID, 10)
	return string(b)
}

// Q4Row is q4 (average winning price per category). Line: category, avg.
type Q4Row struct {
	Category, Avg int64
}

func (r Q4Row) String() string {
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, r.Category, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Avg, 10)
	return string(b)
}

// Q5Row is q5 (hot items). Line: auction, num, windowStart, windowEnd.
// Flink's q5 sink has only auction and num; the window bounds it groups by
// are kept here as asked, so Flink's rows are these without columns 3-4.
type Q5Row struct {
	Auction, Num, WindowStart, WindowEnd int64
}

func (r Q5Row) String() string {
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, r.Auction, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Num, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.WindowStart, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.WindowEnd, 10)
	return string(b)
}

// Q7Row is q7 (highest bid). Line: auction, price, bidder, dateTime, extra
// (the column order of Flink's SELECT).
type Q7Row struct {
	Auction, Price, Bidder, DateTime int64
	Extra                            string
}

func (r Q7Row) String() string {
	b := make([]byte, 0, 64+len(r.Extra))
	b = strconv.AppendInt(b, r.Auction, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Price, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.Bidder, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.DateTime, 10)
	b = append(b, '\t')
	b = append(b, r.Extra...)
	return string(b)
}

// Q8Row is q8 (monitor new users). Line: id, name, windowStart.
type Q8Row struct {
	ID          int64
	Name        string
	WindowStart int64
}

func (r Q8Row) String() string {
	b := make([]byte, 0, 48+len(r.Name))
	b = strconv.AppendInt(b, r.ID, 10)
	b = append(b, '\t')
	b = append(b, r.Name...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, r.WindowStart, 10)
	return string(b)
}
