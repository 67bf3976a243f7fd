package source

import (
	"fmt"

	"github.com/weirstream/weir/connector"
)

// Generator emits gen(0), gen(1), … gen(count-1) and ends; with count < 0 it
// never ends. Subtask i of p generates indices i, i+p, i+2p, …, so the
// subtasks together generate every index once. gen runs on the subtasks'
// goroutines concurrently and must be a pure function of the index.
//
// Its readers are checkpointed: a restored job generates exactly the indices
// it had not emitted, with any parallelism (see IndexShare).
//
// The records carry no event timestamp; assign one with a watermark strategy:
//
//	gen := source.Generator(1_000_000, func(i int64) Event { return Event{ID: i, Time: base + i} })
//	events := stream.FromSource(env, "events", gen,
//		stream.WithTimestampAssigner(stream.ForMonotonousTimestamps[Event](), func(e Event) int64 { return e.Time }))
func Generator[T any](count int64, gen func(index int64) T) connector.Source[T] {
	return generatorSource[T]{count: count, gen: gen}
}

type generatorSource[T any] struct {
	count int64 // < 0: unbounded
	gen   func(int64) T
}

func (s generatorSource[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	if s.gen == nil {
		return nil, fmt.Errorf("source %q: Generator was given a nil function; pass a func(index int64) T", ctx.OperatorName)
	}
	share, err := NewIndexShare(ctx, s.count)
	if err != nil {
		return nil, err
	}
	return &generatorReader[T]{gen: s.gen, share: share}, nil
}

// generatorReader's progress is its share of the indices.
type generatorReader[T any] struct {
	gen   func(int64) T
	share *IndexShare
}

// SnapshotState implements connector.CheckpointedReader.
func (r *generatorReader[T]) SnapshotState() ([]byte, error) { return r.share.SnapshotState() }

func (r *generatorReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	return r.ReadAtMost(out, batchSize)
}

// ReadAtMost implements connector.LimitedReader.
func (r *generatorReader[T]) ReadAtMost(out connector.SourceOutput[T], n int) (connector.ReadStatus, error) {
	for range min(n, batchSize) {
		i, ok := r.share.Next()
		if !ok {
			break
		}
		out.Collect(r.gen(i))
	}
	if r.share.Done() {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *generatorReader[T]) Close() error { return nil }
