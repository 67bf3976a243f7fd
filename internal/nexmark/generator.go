package nexmark

import (
	"fmt"
	"strings"
)

// Generator produces the events of one subtask: event numbers subtask,
// subtask+parallelism, subtask+2·parallelism, … below the config's
// EffectiveMaxEvents. Event n is a pure function of (config, n), so the
// subtasks of one parallelism together produce exactly the events of a
// single generator, and each subtask's event times never decrease.
//
// A Generator is not safe for concurrent use; give each subtask its own.
type Generator struct {
	cfg         GeneratorConfig
	t           *tables
	subtask     int64
	parallelism int64
	maxEvents   int64
	pos         int64 // events generated so far by this subtask

	// Derived from cfg once, for the hot path.
	total             int64 // person+auction+bid proportions
	person, auction   int64 // proportions
	eventsForAuctions int64 // events until NumInFlightAuctions more auctions
}

// NewGenerator returns the generator of subtask `subtask` of `parallelism`.
// It panics if the config is invalid or the subtask is out of range, which
// are programming errors; call cfg.Validate first for a user-supplied config.
func NewGenerator(cfg GeneratorConfig, subtask, parallelism int) *Generator {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if parallelism < 1 || subtask < 0 || subtask >= parallelism {
		panic(fmt.Sprintf("nexmark: subtask %d of parallelism %d is out of range; want 0 <= subtask < parallelism", subtask, parallelism))
	}
	total := cfg.totalProportion()
	return &Generator{
		cfg:               cfg,
		t:                 loadTables(),
		subtask:           int64(subtask),
		parallelism:       int64(parallelism),
		maxEvents:         cfg.EffectiveMaxEvents(),
		total:             total,
		person:            int64(cfg.PersonProportion),
		auction:           int64(cfg.AuctionProportion),
		eventsForAuctions: int64(cfg.NumInFlightAuctions) * total / int64(cfg.AuctionProportion),
	}
}

// HasNext reports whether this subtask has events left.
func (g *Generator) HasNext() bool {
	return g.subtask+g.pos*g.parallelism < g.maxEvents
}

// Next fills e with this subtask's next event. e may be reused between
// calls: the inline Bid is overwritten, and Person/Auction are set to fresh
// values (or nil), never mutated, so earlier pointers stay valid.
// Call only while HasNext is true.
func (g *Generator) Next(e *Event) {
	n := g.subtask + g.pos*g.parallelism
	g.pos++
	g.fill(n, e)
}

// EventsGenerated is the number of events this subtask has produced: its
// position, which SeekTo restores.
func (g *Generator) EventsGenerated() int64 { return g.pos }

// SeekTo sets the position so that the next event is the one that would
// follow after pos calls of Next on a fresh generator.
func (g *Generator) SeekTo(pos int64) {
	if pos < 0 {
		panic(fmt.Sprintf("nexmark: SeekTo(%d): position must not be negative", pos))
	}
	g.pos = pos
}

// Generate returns all events of subtask `subtask` of `parallelism` for a
// bounded config. Meant for tests and reference answers.
func Generate(cfg GeneratorConfig, subtask, parallelism int) []Event {
	if cfg.MaxEvents <= 0 {
		panic("nexmark: Generate needs a bounded config; set MaxEvents")
	}
	g := NewGenerator(cfg, subtask, parallelism)
	events := make([]Event, 0, cfg.EventsForSubtask(subtask, parallelism))
	for g.HasNext() {
		var e Event
		g.Next(&e)
		events = append(events, e)
	}
	return events
}

// fill generates event number n. The event id is the event number.
func (g *Generator) fill(n int64, e *Event) {
	r := eventRand(g.cfg.Seed, n)
	ts := g.cfg.Timestamp(n)
	epoch, offset := n/g.total, n%g.total
	switch {
	case offset < g.person:
		e.Type = PersonEvent
		e.Bid = Bid{}
		e.Auction = nil
		e.Person = g.nextPerson(&r, epoch, offset, ts)
	case offset < g.person+g.auction:
		e.Type = AuctionEvent
		e.Bid = Bid{}
		e.Person = nil
		e.Auction = g.nextAuction(&r, n, epoch, offset, ts)
	default:
		e.Type = BidEvent
		e.Person = nil
		e.Auction = nil
		g.nextBid(&r, epoch, offset, ts, &e.Bid)
	}
}

// lastBase0PersonID is the id (without FirstPersonID) of the most recent
// person at the event (epoch, offset): the person being created if the event
// is a person.
func (g *Generator) lastBase0PersonID(epoch, offset int64) int64 {
	if offset >= g.person {
		offset = g.person - 1
	}
	return epoch*g.person + offset
}

// lastBase0AuctionID is the id (without FirstAuctionID) of the most recent
// auction at the event (epoch, offset): the auction being created if the
// event is an auction.
func (g *Generator) lastBase0AuctionID(epoch, offset int64) int64 {
	switch {
	case offset < g.person:
		// A person: the last auction of the previous epoch.
		epoch--
		offset = g.auction - 1
	case offset >= g.person+g.auction:
		// A bid: the last auction of this epoch.
		offset = g.auction - 1
	default:
		offset -= g.person
	}
	return epoch*g.auction + offset
}

// nextBase0PersonID draws a person among the NumActivePeople most recent,
// plus a few not created yet.
func (g *Generator) nextBase0PersonID(r *rng, epoch, offset int64) int64 {
	numPeople := g.lastBase0PersonID(epoch, offset) + 1
	active := min(numPeople, int64(g.cfg.NumActivePeople))
	return numPeople - active + r.int63n(active+personIDLead)
}

// nextBase0AuctionID draws an auction among the NumInFlightAuctions most
// recent, plus a few not created yet.
func (g *Generator) nextBase0AuctionID(r *rng, epoch, offset int64) int64 {
	last := g.lastBase0AuctionID(epoch, offset)
	lo := max(last-int64(g.cfg.NumInFlightAuctions), 0)
	return lo + r.int63n(last-lo+1+auctionIDLead)
}

func (g *Generator) nextPerson(r *rng, epoch, offset, ts int64) *Person {
	t := g.t
	name := t.names[r.intn(len(t.names))]
	// Email (nextString(7)@nextString(5).com) and credit card
	// ("dddd dddd dddd dddd") share one allocation.
	user, domain := t.nextString(r, 7), t.nextString(r, 5)
	var b strings.Builder
	b.Grow(len(user) + 1 + len(domain) + 4 + 19)
	b.WriteString(user)
	b.WriteByte('@')
	b.WriteString(domain)
	b.WriteString(".com")
	emailLen := b.Len()
	for i := range 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := r.intn(10000)
		b.WriteByte(byte('0' + v/1000))
		b.WriteByte(byte('0' + v/100%10))
		b.WriteByte(byte('0' + v/10%10))
		b.WriteByte(byte('0' + v%10))
	}
	both := b.String()
	email, card := both[:emailLen], both[emailLen:]
	city := usCities[r.intn(len(usCities))]
	state := usStates[r.intn(len(usStates))]
	// The suite counts one 8-byte field (the id) and the strings.
	size := 8 + len(name) + len(email) + len(card) + len(city) + len(state)
	return &Person{
		ID:           g.lastBase0PersonID(epoch, offset) + FirstPersonID,
		Name:         name,
		EmailAddress: email,
		CreditCard:   card,
		City:         city,
		State:        state,
		DateTime:     ts,
		Extra:        t.nextExtra(r, size, g.cfg.AvgPersonByteSize),
	}
}

func (g *Generator) nextAuction(r *rng, n, epoch, offset, ts int64) *Auction {
	t := g.t
	var seller int64
	if r.intn(g.cfg.HotSellersRatio) > 0 {
		// The first person of the current batch of hotSellerBatch people.
		seller = g.lastBase0PersonID(epoch, offset) / hotSellerBatch * hotSellerBatch
	} else {
		seller = g.nextBase0PersonID(r, epoch, offset)
	}
	category := FirstCategoryID + int64(r.intn(NumCategories))
	initialBid := r.nextPrice()
	// The auction lasts on average as long as it takes to create
	// NumInFlightAuctions more auctions: uniform in [1, 2·horizon].
	horizon := g.cfg.Timestamp(n+g.eventsForAuctions) - ts
	length := 1 + r.int63n(max(horizon*2, 1))
	name := t.nextString(r, 20)
	desc := t.nextString(r, 100)
	reserve := initialBid + r.nextPrice()
	// The suite counts the id, the strings and five more 8-byte fields.
	size := 8 + len(name) + len(desc) + 8 + 8 + 8 + 8 + 8
	return &Auction{
		ID:          g.lastBase0AuctionID(epoch, offset) + FirstAuctionID,
		ItemName:    name,
		Description: desc,
		InitialBid:  initialBid,
		Reserve:     reserve,
		DateTime:    ts,
		Expires:     ts + length,
		Seller:      seller + FirstPersonID,
		Category:    category,
		Extra:       t.nextExtra(r, size, g.cfg.AvgAuctionByteSize),
	}
}

func (g *Generator) nextBid(r *rng, epoch, offset, ts int64, b *Bid) {
	t := g.t
	var auction int64
	if r.intn(g.cfg.HotAuctionRatio) > 0 {
		// The first auction of the current batch of hotAuctionBatch auctions.
		auction = g.lastBase0AuctionID(epoch, offset) / hotAuctionBatch * hotAuctionBatch
	} else {
		auction = g.nextBase0AuctionID(r, epoch, offset)
	}
	var bidder int64
	if r.intn(g.cfg.HotBiddersRatio) > 0 {
		// The second person of the current batch, so that hot bidders and
		// hot sellers differ.
		bidder = g.lastBase0PersonID(epoch, offset)/hotBidderBatch*hotBidderBatch + 1
	} else {
		bidder = g.nextBase0PersonID(r, epoch, offset)
	}
	price := r.nextPrice()
	var channel, url string
	if r.intn(hotChannelsRatio) > 0 {
		i := r.intn(len(hotChannel))
		channel, url = hotChannel[i], t.hotURLs[i]
	} else {
		i := r.intn(numChannels)
		channel, url = t.channels[i], t.channelURLs[i]
	}
	*b = Bid{
		Auction:  auction + FirstAuctionID,
		Bidder:   bidder + FirstPersonID,
		Price:    price,
		Channel:  channel,
		URL:      url,
		DateTime: ts,
		// As the suite: four 8-byte fields; channel and url are not
		// counted, so a bid averages AvgBidByteSize plus their length.
		Extra: t.nextExtra(r, 8+8+8+8, g.cfg.AvgBidByteSize),
	}
}
