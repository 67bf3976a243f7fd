package source

import (
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/connector"
)

const (
	// rateStep is the coarse unit of the limiter: it lets records out in
	// chunks of about this much time's worth, and blocks a Read at most
	// this long. Longer waits go back to the runtime as NothingAvailable.
	rateStep = 10 * time.Millisecond
	// rateBurst is how much time's worth of records the limiter lets out at
	// once after a stall (back-pressure, a slow downstream): it catches up
	// a little, never unboundedly.
	rateBurst = 100 * time.Millisecond
	// maxInnerReads bounds the wrapped reader's Reads per Read, for wrapped
	// readers that return MoreAvailable having emitted little or nothing.
	maxInnerReads = 8
)

// RateLimited emits the records of src at no more than perSecond records per
// second in total: each of the p subtasks lets perSecond/p through. A
// perSecond of 0 (or +Inf) means no limit; a negative or NaN rate fails when
// the job starts.
//
//	gen := source.Generator(-1, makeEvent)
//	events := stream.FromSource(env, "events", source.RateLimited(gen, 50_000))
//
// The limit is a token bucket. Records leave in chunks of about 10 ms worth
// of the rate (in Reads of at most 1024 records); to wait for a chunk the
// reader sleeps, at most 10 ms and about once per 10 ms, and a longer wait
// (rates under ~100 records/s per subtask) returns NothingAvailable so the
// subtask's goroutine is free while it waits. After a stall the
// source catches up by at most 100 ms worth of records. Records that src
// emits beyond the budget of one Read are held and emitted first by the next.
func RateLimited[T any](src connector.Source[T], perSecond float64) connector.Source[T] {
	return rateLimitedSource[T]{inner: src, perSecond: perSecond, clock: realClock{}}
}

// clock is the time the rate limiter reads and waits on; tests inject a fake.
type clock interface {
	Now() time.Time
	Sleep(d time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }

type rateLimitedSource[T any] struct {
	inner     connector.Source[T]
	perSecond float64
	clock     clock
}

func (s rateLimitedSource[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	if s.inner == nil {
		return nil, fmt.Errorf("source %q: RateLimited was given a nil source; pass the source to limit", ctx.OperatorName)
	}
	if s.perSecond < 0 || math.IsNaN(s.perSecond) {
		return nil, fmt.Errorf("source %q: rate limit %v records/s is invalid; use a positive rate, or 0 for no limit", ctx.OperatorName, s.perSecond)
	}
	inner, err := s.inner.Open(ctx)
	if err != nil {
		return nil, err
	}
	if s.perSecond == 0 || math.IsInf(s.perSecond, 1) {
		return inner, nil
	}
	rate := s.perSecond / float64(max(ctx.Parallelism, 1))
	chunk := max(rate*rateStep.Seconds(), 1)
	r := &rateLimitedReader[T]{
		inner:    inner,
		clock:    s.clock,
		rate:     rate,
		chunk:    chunk,
		least:    min(chunk, batchSize),
		capacity: max(2*chunk, rate*rateBurst.Seconds()),
		tokens:   chunk, // the first chunk goes out at once, without a burst
		last:     s.clock.Now(),
	}
	r.out.r = r
	return r, nil
}

// rateLimitedReader is a token bucket in front of a reader: tokens accrue at
// rate per second up to capacity, and each record emitted spends one.
type rateLimitedReader[T any] struct {
	inner connector.SourceReader[T]
	clock clock

	rate     float64 // records per second for this subtask
	chunk    float64 // a step's worth of tokens, >= 1: what a wait waits for
	least    float64 // fewer tokens than this are not worth a Read: wait
	capacity float64 // most tokens the bucket holds, >= 2*chunk
	tokens   float64
	last     time.Time // when tokens were last brought up to date

	out       budgetOutput[T]
	pending   []timestamped[T] // emitted by inner beyond the budget, not yet let out
	head      int              // pending[head:] is still to go
	innerDone bool
}

type timestamped[T any] struct {
	v     T
	ts    int64
	hasTs bool
}

// budgetOutput passes the wrapped reader's records on while the budget of
// the current Read lasts and holds the rest in pending.
type budgetOutput[T any] struct {
	r         *rateLimitedReader[T]
	out       connector.SourceOutput[T]
	remaining int
	passed    int
}

func (o *budgetOutput[T]) Collect(v T) {
	if o.remaining > 0 {
		o.remaining--
		o.passed++
		o.out.Collect(v)
		return
	}
	o.r.pending = append(o.r.pending, timestamped[T]{v: v})
}

func (o *budgetOutput[T]) CollectWithTimestamp(v T, ts int64) {
	if o.remaining > 0 {
		o.remaining--
		o.passed++
		o.out.CollectWithTimestamp(v, ts)
		return
	}
	o.r.pending = append(o.r.pending, timestamped[T]{v: v, ts: ts, hasTs: true})
}

// refill brings the bucket up to date with the clock.
func (r *rateLimitedReader[T]) refill() {
	now := r.clock.Now()
	if d := now.Sub(r.last); d > 0 {
		r.tokens = min(r.tokens+r.rate*d.Seconds(), r.capacity)
	}
	r.last = now
}

func (r *rateLimitedReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	if r.innerDone && r.head == len(r.pending) {
		return connector.EndOfInput, nil
	}
	r.refill()
	if r.tokens < r.least {
		// Wait for a whole step's worth, so that at high rates one sleep
		// pays for several full Reads rather than one per Read.
		wait := time.Duration(math.Ceil((r.chunk - r.tokens) / r.rate * float64(time.Second)))
		if wait > rateStep {
			return connector.NothingAvailable, nil
		}
		r.clock.Sleep(wait)
		r.refill()
		if r.tokens < 1 { // the clock slept less than asked
			return connector.NothingAvailable, nil
		}
	}
	budget := int(min(r.tokens, batchSize))
	emitted := r.drainPending(out, budget)
	innerIdle := false
	for reads := 0; emitted < budget && r.head == len(r.pending) && !r.innerDone && reads < maxInnerReads; reads++ {
		r.out.out, r.out.remaining, r.out.passed = out, budget-emitted, 0
		status, err := r.inner.Read(&r.out)
		emitted += r.out.passed
		r.out.out = nil
		if err != nil {
			r.tokens -= float64(emitted)
			return 0, err
		}
		if status == connector.EndOfInput {
			r.innerDone = true
		} else if status == connector.NothingAvailable {
			innerIdle = true
			break
		}
	}
	r.tokens -= float64(emitted)
	switch {
	case r.head < len(r.pending):
		return connector.MoreAvailable, nil
	case r.innerDone:
		return connector.EndOfInput, nil
	case innerIdle:
		return connector.NothingAvailable, nil
	default:
		return connector.MoreAvailable, nil
	}
}

// drainPending emits up to budget held records, oldest first.
func (r *rateLimitedReader[T]) drainPending(out connector.SourceOutput[T], budget int) int {
	n := min(budget, len(r.pending)-r.head)
	var zero timestamped[T]
	for i := r.head; i < r.head+n; i++ {
		if p := r.pending[i]; p.hasTs {
			out.CollectWithTimestamp(p.v, p.ts)
		} else {
			out.Collect(p.v)
		}
		r.pending[i] = zero // drop the reference for the garbage collector
	}
	r.head += n
	if r.head == len(r.pending) {
		r.pending, r.head = r.pending[:0], 0
	}
	return n
}

func (r *rateLimitedReader[T]) Close() error {
	r.pending, r.head = nil, 0
	return r.inner.Close()
}
