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
// source catches up by at most 100 ms worth of records. A reader of src
// that implements connector.LimitedReader (the readers of this package do)
// is asked for no more than the budget of the Read; records that another
// reader emits beyond it are held and emitted first by the next Read.
//
// The limited reader is checkpointed if src's reader is: its state is the
// wrapped reader's, so a restored job resumes exactly and may change the
// rate or the parallelism. Only when a wrapped reader that cannot cap its
// Reads held records at the checkpoint is the state the wrapped reader's
// from before that Read, with the count of its records already let out; such
// a state resumes exactly with the same parallelism only.
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
	innerCtx, skip := ctx, 0
	if len(ctx.Restored) > 0 {
		var err error
		if innerCtx.Restored, skip, err = unwrapRateLimited(ctx); err != nil {
			return nil, err
		}
	}
	inner, err := s.inner.Open(innerCtx)
	if err != nil {
		return nil, err
	}
	unlimited := s.perSecond == 0 || math.IsInf(s.perSecond, 1)
	if unlimited && skip == 0 {
		return inner, nil
	}
	// Without a limit, a reader restored from records held under one still
	// has to drop what was let out then: a limiter without a limit does.
	rate := math.Inf(1)
	if !unlimited {
		rate = s.perSecond / float64(max(ctx.Parallelism, 1))
	}
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
		skip:     skip,
	}
	r.limited, _ = inner.(connector.LimitedReader[T])
	r.out.r = r
	if c, ok := inner.(connector.CheckpointedReader); ok {
		r.checkpointed = c
		return &checkpointedRateLimited[T]{r}, nil
	}
	return r, nil
}

// unwrapRateLimited returns the wrapped reader's states in restored and the
// number of records this subtask's reader has to drop first.
//
// A limited reader's state is the wrapped reader's, framed:
//
//	version 'r' letOut innerState…
//
// letOut is 0 unless the reader held records when the checkpoint was taken;
// then innerState is from before the wrapped Read that produced them, and
// letOut is how many of that Read's records had gone out. A state without
// the frame is the wrapped reader's own: a run without a limit returns the
// wrapped reader.
func unwrapRateLimited(ctx connector.SourceContext) ([][]byte, int, error) {
	inner := make([][]byte, len(ctx.Restored))
	skip := 0
	for j, b := range ctx.Restored {
		if len(b) < 2 || b[0] != stateVersion || b[1] != kindRateLimited {
			inner[j] = b
			continue
		}
		d := decodeState(b, kindRateLimited)
		letOut := d.int63("records let out")
		if d.err == nil && letOut > 1<<31 {
			d.fail("%d records let out of one read is implausible", letOut)
		}
		if d.err != nil {
			return nil, 0, restoreError(ctx.OperatorName, j, len(ctx.Restored), d.err)
		}
		inner[j] = d.b
		if letOut == 0 {
			continue
		}
		if len(ctx.Restored) != ctx.Parallelism {
			return nil, 0, fmt.Errorf("source %q: cannot rescale from %d to %d subtasks exactly: old subtask %d was holding records "+
				"its reader had produced beyond the rate limit, and the wrapped reader cannot cap its reads "+
				"(implement connector.LimitedReader); restore with parallelism %d", ctx.OperatorName, len(ctx.Restored), ctx.Parallelism, j, len(ctx.Restored))
		}
		if j == ctx.Subtask {
			skip = int(letOut)
		}
	}
	return inner, skip, nil
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

	// A wrapped reader that can cap its Reads is asked for no more than
	// the budget, so nothing is held. Another one may emit more; to
	// checkpoint while some of its records are held, the limiter keeps the
	// reader's state from before the Read that produced them and counts
	// how many of that Read's records went out (or were dropped).
	limited      connector.LimitedReader[T]   // nil if the inner reader cannot cap its Reads
	checkpointed connector.CheckpointedReader // nil if the inner reader is not checkpointed
	preRead      []byte
	consumed     int
	skip         int // records to drop: a restored reader's, let out before the checkpoint
}

// checkpointedRateLimited is a rate-limited reader over a checkpointed one.
type checkpointedRateLimited[T any] struct{ *rateLimitedReader[T] }

// SnapshotState implements connector.CheckpointedReader: see
// unwrapRateLimited for the format.
func (c *checkpointedRateLimited[T]) SnapshotState() ([]byte, error) {
	r := c.rateLimitedReader
	var inner []byte
	letOut := r.skip
	if r.head == len(r.pending) {
		var err error
		if inner, err = r.checkpointed.SnapshotState(); err != nil {
			return nil, err
		}
	} else {
		if r.preRead == nil {
			return nil, fmt.Errorf("the wrapped reader %T emitted more records than ReadAtMost allowed, so the rate limiter holds records it cannot checkpoint", r.inner)
		}
		inner, letOut = r.preRead, r.consumed
	}
	if letOut == 0 {
		// Nothing held: the wrapped reader's own state, which a run
		// without the limit (or with another one) restores as well.
		return inner, nil
	}
	e := newStateEncoder(kindRateLimited)
	e.uvarint(uint64(letOut))
	return append(e.b, inner...), nil
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
	if o.dropped() {
		return
	}
	if o.remaining > 0 {
		o.remaining--
		o.passed++
		o.r.consumed++
		o.out.Collect(v)
		return
	}
	o.r.pending = append(o.r.pending, timestamped[T]{v: v})
}

func (o *budgetOutput[T]) CollectWithTimestamp(v T, ts int64) {
	if o.dropped() {
		return
	}
	if o.remaining > 0 {
		o.remaining--
		o.passed++
		o.r.consumed++
		o.out.CollectWithTimestamp(v, ts)
		return
	}
	o.r.pending = append(o.r.pending, timestamped[T]{v: v, ts: ts, hasTs: true})
}

// dropped reports whether the record is one a restored reader let out
// before the checkpoint.
func (o *budgetOutput[T]) dropped() bool {
	if o.r.skip == 0 {
		return false
	}
	o.r.skip--
	o.r.consumed++
	return true
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
		var status connector.ReadStatus
		var err error
		if r.limited != nil && r.skip == 0 {
			status, err = r.limited.ReadAtMost(&r.out, budget-emitted)
		} else {
			if r.checkpointed != nil {
				if r.preRead, err = r.checkpointed.SnapshotState(); err != nil {
					r.tokens -= float64(emitted)
					return 0, err
				}
				r.consumed = 0
			}
			status, err = r.inner.Read(&r.out)
		}
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
	r.consumed += n
	if r.head == len(r.pending) {
		r.pending, r.head = r.pending[:0], 0
	}
	return n
}

func (r *rateLimitedReader[T]) Close() error {
	r.pending, r.head = nil, 0
	return r.inner.Close()
}
