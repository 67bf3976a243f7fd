package stream_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/stream"
)

// sliceSource emits vals, subtask i taking every p-th element.
type sliceSource[T any] struct{ vals []T }

func (s sliceSource[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	return &sliceReader[T]{vals: s.vals, i: ctx.Subtask, step: ctx.Parallelism}, nil
}

type sliceReader[T any] struct {
	vals    []T
	i, step int
}

func (r *sliceReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	for n := 0; n < 100 && r.i < len(r.vals); n++ {
		out.Collect(r.vals[r.i])
		r.i += r.step
	}
	if r.i >= len(r.vals) {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

func (r *sliceReader[T]) Close() error { return nil }

// collectSink gathers every record.
type collectSink[T any] struct {
	mu   sync.Mutex
	vals []T
}

func (c *collectSink[T]) Open(connector.SinkContext) (connector.SinkWriter[T], error) { return c, nil }
func (c *collectSink[T]) Write(v T, _ int64) error {
	c.mu.Lock()
	c.vals = append(c.vals, v)
	c.mu.Unlock()
	return nil
}
func (c *collectSink[T]) Finish() error { return nil }
func (c *collectSink[T]) Close() error  { return nil }

func quiet(t *testing.T, p int) {
	launch.Set(&launch.Settings{Parallelism: p, Quiet: true, Context: context.Background()})
	t.Cleanup(func() { launch.Set(nil) })
}

func words(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("w%d w%d", i%37, i%5))
	}
	return out
}

// TestRollingCountMatchesIndependentCount runs a keyed rolling reduce at
// several parallelisms and checks the last count of every key.
func TestRollingCountMatchesIndependentCount(t *testing.T) {
	lines := words(5000)
	want := map[string]int{}
	for _, l := range lines {
		for _, w := range strings.Fields(l) {
			want[w]++
		}
	}
	for _, p := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			quiet(t, p)
			env := stream.NewEnvironment()
			src := stream.FromSource(env, "lines", connector.Source[string](sliceSource[string]{lines}))
			ws := stream.FlatMap(src, "split", func(l string, out stream.Collector[string]) {
				for _, w := range strings.Fields(l) {
					out.Collect(w)
				}
			})
			type wc struct {
				W string
				N int
			}
			pairs := stream.Map(ws, "pair", func(w string) wc { return wc{w, 1} })
			counts := stream.KeyBy(pairs, func(x wc) string { return x.W }).Reduce("count", func(a, b wc) wc { return wc{a.W, a.N + b.N} })
			sink := &collectSink[wc]{}
			stream.SinkTo(counts, "out", connector.Sink[wc](sink))
			if err := env.Execute("count"); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, x := range sink.vals {
				got[x.W] = max(got[x.W], x.N)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("counts differ: got %d keys, want %d", len(got), len(want))
			}
			total := 0
			for _, n := range want {
				total += n
			}
			if len(sink.vals) != total {
				t.Fatalf("rolling reduce emitted %d records, want %d", len(sink.vals), total)
			}
		})
	}
}

// TestRebalanceUnionBroadcast checks record counts over each partitioning.
func TestRebalanceUnionBroadcast(t *testing.T) {
	quiet(t, 2)
	env := stream.NewEnvironment()
	nums := make([]int, 1000)
	for i := range nums {
		nums[i] = i
	}
	a := stream.FromSource(env, "a", connector.Source[int](sliceSource[int]{nums}))
	b := stream.FromSource(env, "b", connector.Source[int](sliceSource[int]{nums})).SetParallelism(1)
	u := a.Union(b)
	r := stream.Map(u.Rebalance(), "inc", func(x int) int { return x + 1 }).SetParallelism(3)
	bc := stream.Filter(r.Broadcast(), "all", func(int) bool { return true })
	sink := &collectSink[int]{}
	stream.SinkTo(bc, "out", connector.Sink[int](sink))
	if err := env.Execute("partitions"); err != nil {
		t.Fatal(err)
	}
	// 2000 records, each broadcast to the 2 subtasks of "all".
	if len(sink.vals) != 4000 {
		t.Fatalf("got %d records, want 4000", len(sink.vals))
	}
	sum := 0
	for _, v := range sink.vals {
		sum += v
	}
	if want := 2 * 2 * (1000 * 1001 / 2); sum != want {
		t.Fatalf("sum %d, want %d", sum, want)
	}
}

// TestPanicNamesOperator checks that a user panic fails the job with the
// operator's name, not a goroutine dump.
func TestPanicNamesOperator(t *testing.T) {
	quiet(t, 2)
	env := stream.NewEnvironment()
	src := stream.FromSource(env, "nums", connector.Source[int](sliceSource[int]{[]int{1, 2, 3, 0, 5}}))
	m := stream.Map(src, "ok", func(x int) int { return x })
	d := stream.Map(m, "divide", func(x int) int { return 10 / x })
	stream.SinkTo(d, "out", connector.Sink[int](&collectSink[int]{}))
	err := env.Execute("panics")
	if err == nil || !strings.Contains(err.Error(), `operator "divide"`) || !strings.Contains(err.Error(), "divide by zero") {
		t.Fatalf("want an error naming operator divide, got %v", err)
	}
	t.Log(err)
	if errors.Is(err, stream.ErrJobCanceled) {
		t.Fatal("a failure must not look like a cancellation")
	}
}

// TestDuplicateNamesRejected checks the uid uniqueness error.
func TestDuplicateNamesRejected(t *testing.T) {
	quiet(t, 1)
	env := stream.NewEnvironment()
	src := stream.FromSource(env, "x", connector.Source[int](sliceSource[int]{[]int{1}}))
	m := stream.Map(src, "x", func(x int) int { return x })
	stream.SinkTo(m, "out", connector.Sink[int](&collectSink[int]{}))
	err := env.Execute("dups")
	if err == nil || !strings.Contains(err.Error(), `uid "x"`) {
		t.Fatalf("want duplicate uid error, got %v", err)
	}
}

// TestCancelStopsUnboundedJob cancels an endless job through the context.
func TestCancelStopsUnboundedJob(t *testing.T) {
	quiet(t, 2)
	env := stream.NewEnvironment()
	src := stream.FromSource(env, "endless", connector.Source[int](endless{}))
	stream.SinkTo(src, "out", connector.Sink[int](&collectSink[int]{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.ExecuteContext(ctx, "endless") }()
	cancel()
	if err := <-done; !errors.Is(err, stream.ErrJobCanceled) {
		t.Fatalf("want ErrJobCanceled, got %v", err)
	}
}

type endless struct{}

func (endless) Open(connector.SourceContext) (connector.SourceReader[int], error) {
	return endless{}, nil
}
func (endless) Read(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
	for i := range 100 {
		out.Collect(i)
	}
	return connector.MoreAvailable, nil
}
func (endless) Close() error { return nil }
