package nexmark

import (
	"math"
	"math/bits"
)

// rng is the random stream of one event: splitmix64 started from a hash of
// (config seed, event id). The suite seeds java.util.Random with the event id
// (Beam) or uses one unseeded Random per generator (Flink's connector); seeding
// by event id is what makes every event a pure function of its number, so
// any split of the event numbers yields the same events.
type rng struct{ state uint64 }

const golden = 0x9e3779b97f4a7c15

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// eventRand returns the stream for one event. The start state is hashed so
// that streams of neighbouring events do not overlap.
func eventRand(seed uint64, eventID int64) rng {
	return rng{state: mix64(uint64(eventID)*golden ^ mix64(seed+golden))}
}

func (r *rng) next() uint64 {
	r.state += golden
	return mix64(r.state)
}

// intn returns a value in [0, n) for 0 < n < 2^32 (Lemire's multiply-shift;
// the bias, below n/2^32, is far under anything the suite measures).
func (r *rng) intn(n int) int {
	return int((r.next() >> 32) * uint64(n) >> 32)
}

// int63n returns a value in [0, n) for n > 0. The suite's LongGenerator
// falls back to a skewed abs(nextLong() % n) above 2^31; this one is not
// skewed.
func (r *rng) int63n(n int64) int64 {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int64(hi)
}

// float64 returns a value in [0, 1) with 53 random bits, like
// java.util.Random.nextDouble.
func (r *rng) float64() float64 {
	return float64(r.next()>>11) * 0x1p-53
}

const ln10 = 2.302585092994046

// nextPrice is the suite's PriceGenerator: round(10^(6u) × 100) cents for
// uniform u, i.e. log-uniform between $1 and $1,000,000.
func (r *rng) nextPrice() int64 {
	return int64(math.Round(math.Exp(r.float64()*6*ln10) * 100))
}
