package sink

import (
	"math"
	"slices"
	"sync"

	"github.com/weirstream/weir/connector"
)

// NoTimestamp is the Timestamp of a collected record that had no event
// timestamp.
const NoTimestamp int64 = math.MinInt64

// Collected is a sink that keeps every record in memory, for tests and
// examples. It is safe for any number of parallel subtasks.
//
//	got := sink.Collect[WordCount]()
//	stream.SinkTo(counts, "out", got)
//	if err := env.Execute("test"); err != nil { … }
//	counts := got.Values()
//
// Records arrive in each subtask's order; how the subtasks' records
// interleave is not defined, so sort before comparing when the sink runs in
// parallel. Collected only sees the subtasks that run in the process that
// created it, which is every subtask when the job runs on the embedded local
// cluster (go test, go run).
type Collected[T any] struct {
	mu      sync.Mutex
	records []Record[T]
}

// Record is a collected record with its event timestamp.
type Record[T any] struct {
	Value T
	// Timestamp is the record's event timestamp (unix ms), or NoTimestamp.
	Timestamp int64
}

// Collect returns an empty Collected sink.
func Collect[T any]() *Collected[T] { return &Collected[T]{} }

// Open implements connector.Sink.
func (c *Collected[T]) Open(connector.SinkContext) (connector.SinkWriter[T], error) {
	return collectWriter[T]{c}, nil
}

// Values returns a copy of the values collected so far.
func (c *Collected[T]) Values() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]T, len(c.records))
	for i, r := range c.records {
		out[i] = r.Value
	}
	return out
}

// Records returns a copy of the records collected so far, with timestamps.
func (c *Collected[T]) Records() []Record[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.records)
}

// Len returns how many records were collected so far.
func (c *Collected[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.records)
}

type collectWriter[T any] struct{ c *Collected[T] }

func (w collectWriter[T]) Write(v T, ts int64) error {
	w.c.mu.Lock()
	w.c.records = append(w.c.records, Record[T]{Value: v, Timestamp: ts})
	w.c.mu.Unlock()
	return nil
}

func (w collectWriter[T]) Finish() error { return nil }
func (w collectWriter[T]) Close() error  { return nil }
