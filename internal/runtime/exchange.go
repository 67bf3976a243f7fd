package runtime

import (
	"context"
)

// Envelope kinds: what travels on a channel, in order.
const (
	kindData uint8 = iota + 1
	kindWatermark
	kindEnd
	kindIdle
	kindActive
)

// envelope is one buffer in a task's input gate.
type envelope struct {
	ch   int32 // gate channel index
	kind uint8
	wm   int64
	// data is the *batch[T] of a local channel; it is returned to its pool
	// (the credit) once processed.
	data any
	// bytes and release carry a buffer that arrived over the network.
	bytes   []byte
	release func()
}

// batch is the unit of transfer of a local channel; the pool of free batches
// of a channel is its credit.
type batch[T any] struct {
	vals []T
	ts   []int64
	pool chan *batch[T]
}

func (b *batch[T]) recycle() {
	clear(b.vals)
	b.vals = b.vals[:0]
	b.ts = b.ts[:0]
	b.pool <- b
}

// channelWriter is the producer end of one channel.
type channelWriter[T any] interface {
	// acquire returns an empty batch to fill, blocking for a credit.
	acquire(ctx context.Context) *batch[T]
	// send hands a filled batch to the consumer.
	send(ctx context.Context, b *batch[T])
	// sendEvent sends an event (watermark, end, idle) in order after the data.
	sendEvent(ctx context.Context, kind uint8, wm int64)
	// close releases the writer's resources after the end event was sent.
	close()
}

// localChannel connects two tasks in one process.
type localChannel[T any] struct {
	gate *chan envelope // the consumer task's gate, made once wiring is known
	idx  int32
	pool chan *batch[T]
}

func newLocalChannel[T any](gate *chan envelope, idx int32, credits, batchSize int) *localChannel[T] {
	c := &localChannel[T]{gate: gate, idx: idx, pool: make(chan *batch[T], credits)}
	for range credits {
		c.pool <- &batch[T]{vals: make([]T, 0, batchSize), ts: make([]int64, 0, batchSize), pool: c.pool}
	}
	return c
}

func (c *localChannel[T]) acquire(ctx context.Context) *batch[T] {
	select {
	case b := <-c.pool:
		return b
	default:
	}
	select {
	case b := <-c.pool:
		return b
	case <-ctx.Done():
		panic(canceledPanic{})
	}
}

func (c *localChannel[T]) send(ctx context.Context, b *batch[T]) {
	// The gate holds every credit of every channel, so this never blocks.
	*c.gate <- envelope{ch: c.idx, kind: kindData, data: b}
}

func (c *localChannel[T]) sendEvent(ctx context.Context, kind uint8, wm int64) {
	b := c.acquire(ctx)
	*c.gate <- envelope{ch: c.idx, kind: kind, wm: wm, data: b}
}

func (c *localChannel[T]) close() {}

// partitioning of an exchange writer.
type partitioning uint8

const (
	partForward partitioning = iota
	partHash
	partRebalance
	partBroadcast
)

// exchangeWriter is the Output[T] that feeds one job edge from one producer
// subtask: it partitions records over the edge's channels and batches them.
type exchangeWriter[T any] struct {
	ctx       context.Context
	chans     []channelWriter[T]
	cur       []*batch[T]
	mode      partitioning
	batchSize int
	// hash partitioning: key group of a record, and key group → channel.
	keyGroupOf func(T) int
	kgTarget   []int32
	next       int // rebalance position
	finished   bool
	// inKey is set while the key selector runs, so a panic in it is blamed
	// on the keyed operator it belongs to (target).
	inKey  bool
	target string
}

func (w *exchangeWriter[T]) Collect(v T, ts int64) {
	switch w.mode {
	case partForward:
		w.add(0, v, ts)
	case partHash:
		w.inKey = true
		kg := w.keyGroupOf(v)
		w.inKey = false
		w.add(int(w.kgTarget[kg]), v, ts)
	case partRebalance:
		w.add(w.next, v, ts)
		w.next++
		if w.next == len(w.chans) {
			w.next = 0
		}
	case partBroadcast:
		for i := range w.chans {
			w.add(i, v, ts)
		}
	}
}

func (w *exchangeWriter[T]) add(i int, v T, ts int64) {
	b := w.cur[i]
	if b == nil {
		b = w.chans[i].acquire(w.ctx)
		w.cur[i] = b
	}
	b.vals = append(b.vals, v)
	b.ts = append(b.ts, ts)
	if len(b.vals) >= w.batchSize {
		w.cur[i] = nil
		w.chans[i].send(w.ctx, b)
	}
}

// flush sends every partly filled batch.
func (w *exchangeWriter[T]) flush() {
	for i, b := range w.cur {
		if b != nil {
			w.cur[i] = nil
			w.chans[i].send(w.ctx, b)
		}
	}
}

func (w *exchangeWriter[T]) EmitWatermark(wm int64) {
	w.event(kindWatermark, wm)
}

func (w *exchangeWriter[T]) event(kind uint8, wm int64) {
	if w.finished {
		return
	}
	w.flush()
	for _, c := range w.chans {
		c.sendEvent(w.ctx, kind, wm)
	}
}

// finish flushes and sends end-of-partition on every channel.
func (w *exchangeWriter[T]) finish() {
	if w.finished {
		return
	}
	w.event(kindEnd, 0)
	w.finished = true
	for _, c := range w.chans {
		c.close()
	}
}

func (w *exchangeWriter[T]) inKeySelector() (string, bool) { return w.target, w.inKey }

func (w *exchangeWriter[T]) barrier(id int64) {
	w.event(kindBarrier, id)
}

func (w *exchangeWriter[T]) setIdle(idle bool) {
	if idle {
		w.event(kindIdle, 0)
	} else {
		w.event(kindActive, 0)
	}
}

// outputWriter is the type-erased view of an exchange writer the task needs.
type outputWriter interface {
	// inKeySelector reports whether the writer is running the key
	// selector of target, the operator it feeds.
	inKeySelector() (target string, ok bool)
	flush()
	finish()
	setIdle(idle bool)
	barrier(id int64)
}

// inputHandler is the typed consumer end of the channels of one job edge.
type inputHandler interface {
	// handleData processes a data envelope and returns its credit.
	handleData(env *envelope)
	// recycle returns the credit of an event envelope.
	recycle(env *envelope)
}

type inputReader[T any] struct {
	target Input[T]
	decode func(src []byte, vals []T, ts []int64) ([]T, []int64, error)
	vals   []T
	ts     []int64
}

func (r *inputReader[T]) handleData(env *envelope) {
	if b, ok := env.data.(*batch[T]); ok {
		vals, ts := b.vals, b.ts
		for i := range vals {
			r.target.ProcessElement(vals[i], ts[i])
		}
		b.recycle()
		return
	}
	var err error
	r.vals, r.ts, err = r.decode(env.bytes, r.vals[:0], r.ts[:0])
	if err != nil {
		env.release()
		Fail(err)
	}
	for i := range r.vals {
		r.target.ProcessElement(r.vals[i], r.ts[i])
	}
	clear(r.vals)
	env.release()
}

func (r *inputReader[T]) recycle(env *envelope) {
	if b, ok := env.data.(*batch[T]); ok {
		b.recycle()
	} else if env.release != nil {
		env.release()
	}
}
