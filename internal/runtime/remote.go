package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/network"
)

// Placement splits a job's subtasks between executors in different
// processes: each runs the subtasks Local says are its own, and channels to
// or from the others cross the data plane (internal/network). Records are
// serialised only on those channels; channels between two local subtasks
// stay in memory.
type Placement struct {
	// JobID and Attempt name the job's channels on the data plane, so that
	// buffers of an earlier attempt never reach this one.
	JobID   [16]byte
	Attempt uint32
	// Local reports whether this executor runs subtask s of vertex v.
	Local func(v int32, s int) bool
	// DataAddr returns the data-plane address of the process that runs
	// subtask s of vertex v when it is not local.
	DataAddr func(v int32, s int) string
	// Server receives the channels whose consumer is local; Client sends
	// those whose producer is local. The caller owns both and closes them
	// after Execute returns (closing the client flushes the last buffers).
	Server *network.Server
	Client *network.Client
}

func (p *Placement) local(v int32, s int) bool { return p == nil || p.Local(v, s) }

func (p *Placement) check() error {
	if p == nil {
		return nil
	}
	if p.Local == nil || p.DataAddr == nil || p.Server == nil || p.Client == nil {
		return errors.New("runtime: a Placement needs Local, DataAddr, Server and Client")
	}
	return nil
}

// kindFailed is a gate envelope that reports a failed remote input channel;
// it is never sent on the wire.
const kindFailed uint8 = 100

// remoteSpec describes one channel whose consumer runs in another process.
type remoteSpec struct {
	client    *network.Client
	addr      string
	id        network.ChannelID
	batchSize int
	// desc names the channel in errors, e.g. `edge "a" -> "b", subtask 1 -> 2`.
	desc string
}

// remoteChannel is the producer end of a channel to another process. The
// exchange writer fills a batch of Go values as for a local channel; send
// encodes it with the codec and writes it to the network, which copies the
// bytes, so the one batch is reused at once. Credits are the consumer's,
// enforced by network.Output.Write.
type remoteChannel[T any] struct {
	spec  remoteSpec
	codec codec.Codec[T]
	out   *network.Output
	buf   []byte
	spare *batch[T]
}

func newRemoteChannel[T any](spec remoteSpec) (*remoteChannel[T], error) {
	c, err := codec.For[T]()
	if err != nil {
		return nil, fmt.Errorf("%s crosses processes, so its records must be encodable: %w", spec.desc, err)
	}
	return &remoteChannel[T]{
		spec:  spec,
		codec: c,
		spare: &batch[T]{vals: make([]T, 0, spec.batchSize), ts: make([]int64, 0, spec.batchSize)},
	}, nil
}

func (c *remoteChannel[T]) acquire(ctx context.Context) *batch[T] {
	if b := c.spare; b != nil {
		c.spare = nil
		return b
	}
	return &batch[T]{vals: make([]T, 0, c.spec.batchSize), ts: make([]int64, 0, c.spec.batchSize)}
}

func (c *remoteChannel[T]) send(ctx context.Context, b *batch[T]) {
	c.open(ctx)
	c.sendBatch(ctx, b.vals, b.ts)
	clear(b.vals)
	b.vals, b.ts = b.vals[:0], b.ts[:0]
	c.spare = b
}

// sendBatch writes vals as one buffer, or as several when the encoding is
// larger than the data plane's frame size.
func (c *remoteChannel[T]) sendBatch(ctx context.Context, vals []T, ts []int64) {
	c.buf = codec.AppendBatch(c.codec, c.buf[:0], vals, ts)
	if len(c.buf) > c.out.MaxPayload() {
		if len(vals) == 1 {
			panic(failure{fmt.Errorf("%s: one record of %s encodes to %d bytes, more than the data plane's frame limit of %d bytes; "+
				"make records smaller or raise the frame limit", c.spec.desc, reflect.TypeFor[T](), len(c.buf), c.out.MaxPayload())})
		}
		h := len(vals) / 2
		c.sendBatch(ctx, vals[:h], ts[:h])
		c.sendBatch(ctx, vals[h:], ts[h:])
		return
	}
	c.write(ctx, kindData, c.buf)
}

func (c *remoteChannel[T]) sendEvent(ctx context.Context, kind uint8, wm int64) {
	c.open(ctx)
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(wm))
	c.write(ctx, kind, p[:])
}

func (c *remoteChannel[T]) close() {
	if c.out != nil {
		_ = c.out.Close()
	}
}

// open dials the consumer's process on first use, on the task's goroutine,
// so that building a job never waits for a peer.
func (c *remoteChannel[T]) open(ctx context.Context) {
	if c.out != nil {
		return
	}
	out, err := c.spec.client.OpenOutput(ctx, c.spec.addr, c.spec.id)
	if err != nil {
		c.fail(ctx, err)
	}
	c.out = out
}

func (c *remoteChannel[T]) write(ctx context.Context, kind uint8, payload []byte) {
	if err := c.out.Write(ctx, kind, payload); err != nil {
		c.fail(ctx, err)
	}
}

func (c *remoteChannel[T]) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		panic(canceledPanic{})
	}
	panic(failure{fmt.Errorf("%s to %s: %w", c.spec.desc, c.spec.addr, err)})
}

// registerRemoteInput registers gate channel idx of t with the data plane.
// Buffers go into the task's gate as they arrive (the gate has room for
// every credit, so delivery never blocks the connection) and their credit
// returns when the task has processed them. A failed channel puts one
// kindFailed envelope into the gate, for which the gate also has room.
func registerRemoteInput(t *task, p *Placement, id network.ChannelID, idx int32, credits int, desc string) error {
	deliver := func(kind uint8, payload []byte, release func()) {
		env := envelope{ch: idx, kind: kind, release: release}
		switch kind {
		case kindData:
			env.bytes = payload
		case kindWatermark, kindEnd, kindIdle, kindActive, kindBarrier:
			if len(payload) != 8 {
				env = envelope{ch: idx, kind: kindFailed, release: release, data: fmt.Errorf(
					"%s: a %d-byte event buffer arrived where 8 bytes were expected; the producer runs an incompatible Weir version", desc, len(payload))}
				break
			}
			env.wm = int64(binary.BigEndian.Uint64(payload))
		default:
			env = envelope{ch: idx, kind: kindFailed, release: release, data: fmt.Errorf(
				"%s: a buffer of unknown kind %d arrived; the producer runs an incompatible Weir version", desc, kind)}
		}
		t.gate <- env
	}
	onError := func(err error) {
		t.gate <- envelope{ch: idx, kind: kindFailed, data: fmt.Errorf("%s: %w", desc, err)}
	}
	unregister, err := p.Server.RegisterInput(id, credits, deliver, onError)
	if err != nil {
		return err
	}
	t.onExit = append(t.onExit, unregister)
	return nil
}

// remoteDecoder gives an input reader the codec to decode batches that
// arrive over the network.
func remoteDecoder[T any]() (func(src []byte, vals []T, ts []int64) ([]T, []int64, error), error) {
	c, err := codec.For[T]()
	if err != nil {
		return nil, err
	}
	return func(src []byte, vals []T, ts []int64) ([]T, []int64, error) {
		return codec.DecodeBatch(c, src, vals, ts)
	}, nil
}
