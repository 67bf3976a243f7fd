package nexmark

import (
	"fmt"
	"math"
)

// Fixed constants of the suite's generator (GeneratorConfig, PersonGenerator,
// AuctionGenerator, BidGenerator).
const (
	// FirstPersonID, FirstAuctionID and FirstCategoryID offset the ids so
	// that queries find matches even on small data sets.
	FirstPersonID   = 1000
	FirstAuctionID  = 1000
	FirstCategoryID = 10
	// NumCategories is how many categories auctions are spread over.
	NumCategories = 5

	// personIDLead and auctionIDLead: how many not-yet-created person and
	// auction ids a random choice may reach ahead, so that some bids and
	// auctions arrive before the person or auction they refer to.
	personIDLead  = 10
	auctionIDLead = 10

	// The 'hot' seller, bidder and auction is the first (bidder: second)
	// of each batch of this many ids.
	hotSellerBatch  = 100
	hotBidderBatch  = 100
	hotAuctionBatch = 100
)

// DefaultBaseTime is the event time of event 0: 2015-07-15T00:00:00Z, the
// fixed base time of Beam's Nexmark. Flink's connector uses the wall clock at
// job start instead, which makes its runs unrepeatable.
const DefaultBaseTime int64 = 1436918400000

// DefaultFirstEventRate is the events per second of event time of the
// suite's workloads (nexmark.yaml: nexmark.workload.suite.100m.tps).
const DefaultFirstEventRate int64 = 10_000_000

// GeneratorConfig holds the knobs of the generator. The zero value is not
// valid; start from DefaultConfig.
type GeneratorConfig struct {
	// MaxEvents is the number of events generated over all subtasks
	// (events 0..MaxEvents-1). Zero or less means unbounded, which, as in
	// the suite, is capped at MaxInt64 / (total proportion × largest
	// average size) ≈ 3.7e14 events with the defaults.
	MaxEvents int64
	// FirstEventRate is the number of events per second of event time, over
	// all subtasks together. It sets event time only; the generator itself
	// runs as fast as it is called.
	FirstEventRate int64
	// BaseTime is the event time of event 0, unix ms.
	BaseTime int64
	// Seed is mixed into every event's random stream; configs differing
	// only in Seed give different data with the same structure.
	Seed uint64

	// Proportions of persons, auctions and bids in each group of
	// PersonProportion+AuctionProportion+BidProportion events.
	PersonProportion  int
	AuctionProportion int
	BidProportion     int

	// Average sizes in bytes that the extra padding aims at, counted the
	// suite's way (see the package comment).
	AvgPersonByteSize  int
	AvgAuctionByteSize int
	AvgBidByteSize     int

	// A bid is for the current hot auction with probability
	// 1 - 1/HotAuctionRatio, an auction is by the current hot seller with
	// probability 1 - 1/HotSellersRatio and a bid is by the current hot
	// bidder with probability 1 - 1/HotBiddersRatio.
	HotAuctionRatio int
	HotSellersRatio int
	HotBiddersRatio int

	// NumActivePeople bounds the people that random sellers and bidders are
	// drawn from (the most recent ones).
	NumActivePeople int
	// NumInFlightAuctions bounds the auctions that random bids are drawn
	// from (the most recent ones) and sets the average auction length.
	NumInFlightAuctions int
}

// DefaultConfig returns the suite's defaults (NexmarkConfiguration plus the
// nexmark.yaml workload rate), unbounded, with DefaultBaseTime.
func DefaultConfig() GeneratorConfig {
	return GeneratorConfig{
		MaxEvents:           0,
		FirstEventRate:      DefaultFirstEventRate,
		BaseTime:            DefaultBaseTime,
		PersonProportion:    1,
		AuctionProportion:   3,
		BidProportion:       46,
		AvgPersonByteSize:   200,
		AvgAuctionByteSize:  500,
		AvgBidByteSize:      100,
		HotAuctionRatio:     2,
		HotSellersRatio:     4,
		HotBiddersRatio:     4,
		NumActivePeople:     1000,
		NumInFlightAuctions: 100,
	}
}

// Validate reports the first knob that the generator cannot work with.
func (c GeneratorConfig) Validate() error {
	positive := []struct {
		name  string
		value int64
	}{
		{"FirstEventRate", c.FirstEventRate},
		{"PersonProportion", int64(c.PersonProportion)},
		{"AuctionProportion", int64(c.AuctionProportion)},
		{"HotAuctionRatio", int64(c.HotAuctionRatio)},
		{"HotSellersRatio", int64(c.HotSellersRatio)},
		{"HotBiddersRatio", int64(c.HotBiddersRatio)},
		{"NumActivePeople", int64(c.NumActivePeople)},
		{"NumInFlightAuctions", int64(c.NumInFlightAuctions)},
	}
	for _, p := range positive {
		if p.value < 1 {
			return fmt.Errorf("nexmark: %s is %d but must be at least 1; start from DefaultConfig()", p.name, p.value)
		}
	}
	nonNegative := []struct {
		name  string
		value int
	}{
		{"BidProportion", c.BidProportion},
		{"AvgPersonByteSize", c.AvgPersonByteSize},
		{"AvgAuctionByteSize", c.AvgAuctionByteSize},
		{"AvgBidByteSize", c.AvgBidByteSize},
	}
	for _, p := range nonNegative {
		if p.value < 0 {
			return fmt.Errorf("nexmark: %s is %d but must not be negative", p.name, p.value)
		}
	}
	return nil
}

// totalProportion is the length of one group of events.
func (c GeneratorConfig) totalProportion() int64 {
	return int64(c.PersonProportion + c.AuctionProportion + c.BidProportion)
}

// EffectiveMaxEvents is the number of events that generators for this config
// produce over all subtasks: MaxEvents, or the suite's cap when unbounded.
func (c GeneratorConfig) EffectiveMaxEvents() int64 {
	// Timestamp computes eventNumber*1000; keep that, plus the expiry
	// look-ahead, inside int64.
	limit := int64(math.MaxInt64/1000) - 1<<30
	if c.MaxEvents > 0 {
		return min(c.MaxEvents, limit)
	}
	largest := int64(max(c.AvgPersonByteSize, c.AvgAuctionByteSize, c.AvgBidByteSize, 1))
	return min(math.MaxInt64/(c.totalProportion()*largest), limit)
}

// Timestamp is the event time of event eventNumber, unix ms: BaseTime plus
// eventNumber inter-event delays of 1/FirstEventRate seconds, truncated to
// the millisecond as the suite's timestampForEvent does (in integer
// arithmetic here, so no floating-point drift).
func (c GeneratorConfig) Timestamp(eventNumber int64) int64 {
	return c.BaseTime + eventNumber*1000/c.FirstEventRate
}

// EventsForSubtask is how many events subtask index of n generates.
func (c GeneratorConfig) EventsForSubtask(index, n int) int64 {
	total := c.EffectiveMaxEvents()
	if int64(index) >= total {
		return 0
	}
	return (total-int64(index)-1)/int64(n) + 1
}
