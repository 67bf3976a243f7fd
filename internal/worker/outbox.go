package worker

import (
	"sync"

	"github.com/weirstream/weir/internal/pb/clusterpb"
)

// outbox orders what a worker sends its JobMaster. Anyone may put
// messages, without blocking: the run loop, and the checkpoint hooks on
// task goroutines. One sender goroutine sends them in the order they were
// put. A message whose encoding is expensive (a task's acknowledgement,
// which may carry a large state) is put as a slot that a goroutine of its
// own fills, so encodings run in parallel and off the task goroutines,
// while the order of the stream stays the order of the hooks' calls.
// Heartbeat replies jump the queue: a large acknowledgement being encoded
// must not make the JobMaster think the worker is gone.
type outbox struct {
	mu     sync.Mutex
	queue  []*outgoing
	closed bool
	signal chan struct{} // capacity 1: the queue changed

	urgent   chan *clusterpb.WorkerMessage
	encoders sync.WaitGroup
}

type outgoing struct {
	msg   *clusterpb.WorkerMessage
	ready chan struct{} // nil when msg is set at put; closed once it is
}

func newOutbox() *outbox {
	return &outbox{signal: make(chan struct{}, 1), urgent: make(chan *clusterpb.WorkerMessage, 16)}
}

// put queues m; after close it is dropped.
func (o *outbox) put(m *clusterpb.WorkerMessage) { o.enqueue(&outgoing{msg: m}) }

// putLater queues the message that encode returns, which runs on a
// goroutine of its own. encode must return (the outbox waits for it when
// the worker shuts down).
func (o *outbox) putLater(encode func() *clusterpb.WorkerMessage) {
	it := &outgoing{ready: make(chan struct{})}
	if !o.enqueue(it) {
		return
	}
	o.encoders.Add(1)
	go func() {
		defer o.encoders.Done()
		it.msg = encode()
		close(it.ready)
	}()
}

func (o *outbox) enqueue(it *outgoing) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	o.queue = append(o.queue, it)
	o.mu.Unlock()
	o.wake()
	return true
}

// putUrgent sends m before whatever is queued; if too many are waiting, m
// is dropped (the JobMaster asks again).
func (o *outbox) putUrgent(m *clusterpb.WorkerMessage) {
	select {
	case o.urgent <- m:
	default:
	}
}

func (o *outbox) wake() {
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// close stops accepting messages; run returns once it has sent those
// already queued.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.wake()
}

func (o *outbox) head() (it *outgoing, closed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil, o.closed
	}
	it = o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	return it, false
}

// run sends the queued messages with send until the outbox is closed and
// empty (nil), send fails (its error) or stop is closed (nil).
func (o *outbox) run(send func(*clusterpb.WorkerMessage) error, stop <-chan struct{}) error {
	for {
		select {
		case m := <-o.urgent:
			if err := send(m); err != nil {
				return err
			}
			continue
		default:
		}
		it, closed := o.head()
		if it == nil {
			if closed {
				return nil
			}
			select {
			case <-o.signal:
			case m := <-o.urgent:
				if err := send(m); err != nil {
					return err
				}
			case <-stop:
				return nil
			}
			continue
		}
		for it.ready != nil {
			select {
			case <-it.ready:
				it.ready = nil
			case m := <-o.urgent:
				if err := send(m); err != nil {
					return err
				}
			case <-stop:
				return nil
			}
		}
		if it.msg == nil {
			continue
		}
		if err := send(it.msg); err != nil {
			return err
		}
	}
}
