package source

import (
	"slices"

	"github.com/weirstream/weir/connector"
)

// FromSlice emits the elements of vals and ends: a bounded source for tests
// and examples. Subtask i of p emits elements i, i+p, i+2p, … in that order.
// The records carry no event timestamp. vals is copied.
//
// Its readers are checkpointed: a restored job emits exactly the elements
// it had not emitted, with any parallelism (see IndexShare), provided vals
// is the same.
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
	share, err := NewIndexShare(ctx, int64(len(s.vals)))
	if err != nil {
		return nil, err
	}
	return &sliceReader[T]{vals: s.vals, ts: s.ts, share: share}, nil
}

// sliceReader's progress is its share of the slice's indices.
type sliceReader[T any] struct {
	vals  []T
	ts    func(T) int64
	share *IndexShare
}

// SnapshotState implements connector.CheckpointedReader.
func (r *sliceReader[T]) SnapshotState() ([]byte, error) { return r.share.SnapshotState() }

func (r *sliceReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	return r.ReadAtMost(out, batchSize)
}

// ReadAtMost implements connector.LimitedReader.
func (r *sliceReader[T]) ReadAtMost(out connector.SourceOutput[T], n int) (connector.ReadStatus, error) {
	for range min(n, batchSize) {
		i, ok := r.share.Next()
		if !ok {
			break
		}
		v := r.vals[i]
		if r.ts != nil {
			out.CollectWithTimestamp(v, r.ts(v))
		} else {
			out.Collect(v)
		}
	}
	if r.share.Done() {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *sliceReader[T]) Close() error { return nil }
