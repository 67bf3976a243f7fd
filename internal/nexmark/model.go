package nexmark

// EventType says which of the three Nexmark record kinds an Event holds. The
// values match the suite's event_type column (0 person, 1 auction, 2 bid).
type EventType uint8

const (
	PersonEvent  EventType = 0
	AuctionEvent EventType = 1
	BidEvent     EventType = 2
)

func (t EventType) String() string {
	switch t {
	case PersonEvent:
		return "person"
	case AuctionEvent:
		return "auction"
	case BidEvent:
		return "bid"
	}
	return "unknown"
}

// Person is a new user registering with the auction site.
type Person struct {
	ID           int64
	Name         string
	EmailAddress string
	CreditCard   string
	City         string
	State        string
	DateTime     int64 // event time, unix ms
	Extra        string
}

// Auction is an item put up for auction by a seller.
type Auction struct {
	ID          int64
	ItemName    string
	Description string
	InitialBid  int64 // cents
	Reserve     int64 // cents
	DateTime    int64 // event time, unix ms
	Expires     int64 // unix ms
	Seller      int64 // Person.ID
	Category    int64
	Extra       string
}

// Bid is a bid for an auction.
type Bid struct {
	Auction  int64 // Auction.ID
	Bidder   int64 // Person.ID
	Price    int64 // cents
	Channel  string
	URL      string
	DateTime int64 // event time, unix ms
	Extra    string
}

// Event is the union of the three record kinds. Bids are 46 of every 50
// events, so a bid is held inline and costs no allocation; persons and
// auctions are behind pointers. Only the member named by Type is meaningful.
type Event struct {
	Type    EventType
	Bid     Bid
	Person  *Person
	Auction *Auction
}

// Timestamp returns the event time of the record, in unix ms.
func (e *Event) Timestamp() int64 {
	switch e.Type {
	case PersonEvent:
		return e.Person.DateTime
	case AuctionEvent:
		return e.Auction.DateTime
	default:
		return e.Bid.DateTime
	}
}
