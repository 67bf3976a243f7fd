package sink

import (
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/connector"
)

// Counter is implemented by sinks and sink writers that count the records
// they were given, such as Blackhole's.
type Counter interface {
	Count() int64
}

// Blackhole discards every record, counting them: a sink for benchmarks
// that measures the job, not the output. The returned sink and its writers
// implement Counter; the sink's count is the total over the subtasks that
// ran in this process.
//
//	bh := sink.Blackhole[Event]()
//	stream.SinkTo(events, "discard", bh)
//	err := env.Execute("bench")
//	n := bh.(sink.Counter).Count()
func Blackhole[T any]() connector.Sink[T] {
	return &blackholeSink[T]{}
}

type blackholeSink[T any] struct {
	mu      sync.Mutex
	writers []*blackholeWriter[T]
}

func (s *blackholeSink[T]) Open(connector.SinkContext) (connector.SinkWriter[T], error) {
	w := &blackholeWriter[T]{}
	s.mu.Lock()
	s.writers = append(s.writers, w)
	s.mu.Unlock()
	return w, nil
}

// Count implements Counter: the records written by all subtasks so far.
func (s *blackholeSink[T]) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, w := range s.writers {
		n += w.Count()
	}
	return n
}

// blackholeWriter counts on its own atomic, so subtasks never contend on
// one cache line; Count reads it from any goroutine.
type blackholeWriter[T any] struct {
	n atomic.Int64
	_ [56]byte // keep neighbouring writers' counters off this cache line
}

func (w *blackholeWriter[T]) Write(T, int64) error { w.n.Add(1); return nil }
func (w *blackholeWriter[T]) Finish() error        { return nil }
func (w *blackholeWriter[T]) Close() error         { return nil }

// Count implements Counter: the records this subtask was given.
func (w *blackholeWriter[T]) Count() int64 { return w.n.Load() }
