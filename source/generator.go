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
	p := max(ctx.Parallelism, 1)
	if ctx.Subtask < 0 || ctx.Subtask >= p {
		return nil, fmt.Errorf("source %q: subtask %d is out of range for parallelism %d", ctx.OperatorName, ctx.Subtask, p)
	}
	return &generatorReader[T]{count: s.count, gen: s.gen, next: int64(ctx.Subtask), step: int64(p)}, nil
}

// generatorReader's progress is next, the next index to generate.
type generatorReader[T any] struct {
	count int64
	gen   func(int64) T
	next  int64
	step  int64
}

// Position implements Positioned: the next index to generate.
func (r *generatorReader[T]) Position() int64 { return r.next }

func (r *generatorReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	if r.count < 0 {
		for range batchSize {
			out.Collect(r.gen(r.next))
			r.next += r.step
		}
		return connector.MoreAvailable, nil
	}
	for n := 0; n < batchSize && r.next < r.count; n++ {
		out.Collect(r.gen(r.next))
		r.next += r.step
	}
	if r.next >= r.count {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *generatorReader[T]) Close() error { return nil }
