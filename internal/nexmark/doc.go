// Package nexmark owns the Nexmark benchmark's data: the event model
// (Person, Auction, Bid and the Event union), a deterministic generator that
// follows the generator of the suite Flink is measured with
// (github.com/nexmark/nexmark, itself derived from Beam's Nexmark), and the
// result rows and constants of queries q0–q8. Reference answers for the
// queries live in the reference subpackage.
//
// # Events
//
// Events are numbered 0, 1, 2, …; event n is a pure function of the config
// and n. Its id is n; its kind is fixed by n mod 50 with the default
// proportions (0: person, 1–3: auction, 4–49: bid); person and auction ids
// count the persons and auctions before it (from 1000); its event time is
//
//	BaseTime + n*1000/FirstEventRate   (unix ms, integer division)
//
// Parallel subtasks share the numbers round robin, so each subtask's event
// time advances at the same pace and the subtasks together produce exactly
// the single generator's events:
//
//	event number   0  1  2  3  4  5  6  7 …
//	subtask 0/3    ●        ●        ●
//	subtask 1/3       ●        ●        ●
//	subtask 2/3          ●        ●
//
// A Generator is a position (EventsGenerated) over its subtask's numbers;
// SeekTo restores it, which is all a checkpoint needs. It does no pacing: a
// source that wants event time to track wall time waits on the timestamps.
// With the defaults it produces about 12M events/s on one core, and a bid
// allocates nothing (strings are cut from precomputed text).
//
// # What matches the suite
//
//   - Proportions 1:3:46 per 50 events, exact per group of 50.
//   - Ids from the event number (firstPersonId 1000, firstAuctionId 1000);
//     categories 10–14.
//   - Hot auctions, sellers and bidders: with probability 1-1/ratio
//     (hotAuctionRatio 2, hotSellersRatio 4, hotBiddersRatio 4) the first
//     auction / first person / second person of the current batch of 100;
//     otherwise a random one of the last numInFlightAuctions (100) auctions
//     or numActivePeople (1000) people, plus a lead of 10 ids not created
//     yet.
//   - Auction length: uniform in [1, 2·h] ms, h the event time the next
//     numInFlightAuctions auctions take to be created (1666 events, 0.17 ms
//     at the default rate, so auctions last 1–2 ms, as in the suite).
//   - Prices round(10^(6u)·100) cents; reserve = initial bid + a price.
//   - Strings: item names nextString(20), descriptions nextString(100),
//     emails nextString(7)@nextString(5).com, credit cards "dddd dddd dddd
//     dddd", the suite's states, cities, first and last names.
//   - Channels and URLs: a hot channel (Google, Facebook, Baidu, Apple) with
//     probability 1/2, else one of 10,000 "channel-i", whose URL has
//     "&channel_id=" + Math.abs(Integer.reverse(i)) in 9 of 10 cases.
//   - Padding: extra is sized by the suite's nextExtra (±20% around the
//     average minus what the suite counts), which gives, measured as string
//     lengths plus 8 bytes per integer field: person 207.5 bytes (the suite
//     counts the id but not dateTime), auction 507.6 (it counts six of seven
//     integers), bid 99.5 plus about 72 bytes of channel and url, which the
//     suite added to bids without counting them (≈ 172 in all).
//   - Defaults: the NexmarkConfiguration defaults, and the rate of the
//     suite's workloads, 10,000,000 events/s (nexmark.yaml).
//
// # What differs, and why
//
//   - Randomness: each event draws from splitmix64 seeded with a hash of
//     (Seed, event id). Beam seeds java.util.Random with the event id;
//     Flink's connector uses one unseeded Random per generator and the wall
//     clock as base time, so its streams cannot be repeated. The structure
//     and distributions match; the values are not Java's. The default base
//     time is Beam's fixed 2015-07-15T00:00:00Z.
//   - Split: the suite cuts the event ids into n contiguous blocks, each
//     generated on its own timeline from baseTime with n times the
//     inter-event delay; its union is not the single generator's stream.
//     Round robin keeps one timeline, so results do not depend on the
//     parallelism, and subtasks stay in step for watermarks. Auction lengths
//     follow that one timeline, as the suite's do with one generator.
//   - First event: Flink's connector starts at event id 2 (firstEventId 1
//     plus firstEventNumber 1), so its person 1000 and auction 1000 never
//     appear; here the stream starts at event 0, person 1000.
//   - Bidder ids: the suite's current BidGenerator adds firstPersonId to the
//     bidder twice, so its bidders are 1000 above real person ids; here it is
//     added once, as in Beam.
//   - Strings are cut at random offsets from fixed pools of random text with
//     the suite's character distribution, instead of drawn per character
//     (Java's nextExactString can also emit non-letters from a negative
//     remainder; these are letters only). Channel URLs come from a fixed
//     seed instead of a per-JVM random one.
//   - Random longs are uniform; the suite's LongGenerator is skewed above
//     2^31 (unreachable with the defaults).
//   - Not implemented, all off in the suite's workloads: rate shapes
//     (next-event.rate equals first-event.rate there), out-of-order groups
//     (outOfOrderGroupSize 1), extended bid mode, rate limiting (a source's
//     business).
//   - MaxEvents ≤ 0 means unbounded, capped as the suite caps it
//     (MaxInt64 / (50·500) events).
//
// # Query results
//
// Each query's rows have a String() that is one output line: fields joined
// by tabs, integers in decimal (ids, prices in cents, times in unix ms).
// Lines sorts them; a streaming query is correct when the sorted lines of
// its final output equal the reference's. Where the brief for Weir and
// Flink's SQL differ, the doc comments of the row types and of the
// reference functions say how.
package nexmark
