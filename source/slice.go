package source

import (
	"fmt"
	"slices"

	"github.com/weirstream/weir/connector"
)

// FromSlice emits the elements of vals and ends: a bounded source for tests
// and examples. Subtask i of p emits elements i, i+p, i+2p, … in that order.
// The records carry no event timestamp. vals is copied.
func FromSlice[T any](vals []T) connector.Source[T] {
	return sliceSource[T]{vals: slices.Clone(vals)}
}

// FromSliceWithTimestamps is FromSlice with an event timestamp (unix
// milliseconds) for every element, computed by ts.
func FromSliceWithTimestamps[T any](vals []T, ts func(T) int64) connector.Source[T] {
	return sliceSource[T]{vals: slices.Clone(vals), ts: ts}
}

type sliceSource[T any] struct {
	vals []T
	ts   func(T) int64 // nil: no timestamps
}

func (s sliceSource[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	p := max(ctx.Parallelism, 1)
	if ctx.Subtask < 0 || ctx.Subtask >= p {
		return nil, fmt.Errorf("source %q: subtask %d is out of range for parallelism %d", ctx.OperatorName, ctx.Subtask, p)
	}
	return &sliceReader[T]{vals: s.vals, ts: s.ts, next: ctx.Subtask, step: p}, nil
}

// sliceReader's progress is next, the index of the next element to emit.
type sliceReader[T any] struct {
	vals []T
	ts   func(T) int64
	next int
	step int
}

// Position implements Positioned: the index of the next element to emit.
func (r *sliceReader[T]) Position() int64 { return int64(r.next) }

func (r *sliceReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	for n := 0; n < batchSize && r.next < len(r.vals); n++ {
		v := r.vals[r.next]
		if r.ts != nil {
			out.CollectWithTimestamp(v, r.ts(v))
		} else {
			out.Collect(v)
		}
		r.next += r.step
	}
	if r.next >= len(r.vals) {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *sliceReader[T]) Close() error { return nil }
