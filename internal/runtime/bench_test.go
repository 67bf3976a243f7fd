package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
)

// benchRecord is the small record the benchmarks move.
type benchRecord struct {
	Key int64
	Val int64
}

const benchKeys = 1024

// countingSource emits n records split over its subtasks, in reads of 256.
func countingSource(n int) connector.Source[benchRecord] {
	return sourceFunc[benchRecord](func(ctx connector.SourceContext) readerFunc[benchRecord] {
		i := ctx.Subtask
		return func(out connector.SourceOutput[benchRecord]) (connector.ReadStatus, error) {
			for range 256 {
				if i >= n {
					return connector.EndOfInput, nil
				}
				out.Collect(benchRecord{Key: int64(i % benchKeys), Val: int64(i)})
				i += ctx.Parallelism
			}
			return connector.MoreAvailable, nil
		}
	})
}

// blackhole is a sink that drops every record.
type blackhole struct{}

func (blackhole) Open(connector.SinkContext) (connector.SinkWriter[benchRecord], error) {
	return blackhole{}, nil
}
func (blackhole) Write(benchRecord, int64) error { return nil }
func (blackhole) Finish() error                  { return nil }
func (blackhole) Close() error                   { return nil }

// benchOptions are the runtime defaults of the embedded cluster.
var benchOptions = runtime.Options{Credits: 4, BatchSize: 512, BufferTimeout: 100 * time.Millisecond}

// runBench executes the job built for b.N records and reports throughput.
func runBench(b *testing.B, p int, build func(g *graph.Graph, src *runtime.Factory)) {
	runBenchSplit(b, p, nil, build)
}

// runBenchSplit is runBench with the subtasks split over two executors by
// mine (nil: one executor), exchanging data over loopback TCP.
func runBenchSplit(b *testing.B, p int, mine func(string, int) bool, build func(g *graph.Graph, src *runtime.Factory)) {
	b.ReportAllocs()
	g := &graph.Graph{}
	src := operators.NewSource(countingSource(b.N), operators.WatermarkStrategy[benchRecord]{}, 200*time.Millisecond)
	build(g, src)
	jg, err := jobgraph.Translate(g, jobgraph.Settings{JobName: b.Name(), DefaultParallelism: p})
	if err != nil {
		b.Fatal(err)
	}
	fs := map[string]*runtime.Factory{}
	for _, n := range g.Nodes {
		fs[n.UID] = n.Factory
	}
	job := &runtime.Job{Graph: jg, Factories: fs}
	b.ResetTimer()
	start := time.Now()
	if mine == nil {
		if err := runtime.Execute(context.Background(), job, benchOptions); err != nil {
			b.Fatal(err)
		}
	} else {
		a, c := newEndpoint(b), newEndpoint(b)
		pa, pc := split(job, a, c, mine)
		oa, oc := benchOptions, benchOptions
		oa.Placement, oc.Placement = pa, pc
		done := make(chan error, 1)
		go func() { done <- runtime.Execute(context.Background(), job, oc) }()
		errA := runtime.Execute(context.Background(), job, oa)
		a.close()
		errC := <-done
		c.close()
		if errA != nil || errC != nil {
			b.Fatal(errA, errC)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/record")
}

// BenchmarkHashExchangeKeyedReduce: source → map → hash exchange → keyed
// reduce → blackhole, two tasks per parallel instance.
func BenchmarkHashExchangeKeyedReduce(b *testing.B) {
	enc, err := operators.NewKeyEncoder[int64]()
	if err != nil {
		b.Fatal(err)
	}
	keying := &operators.Keying[benchRecord, int64]{Select: func(r benchRecord) int64 { return r.Key }, Encoder: enc}
	for _, tc := range []struct {
		name string
		p    int
		mine func(string, int) bool
	}{
		{"p1", 1, nil},
		{"p2", 2, nil},
		// Each source feeds the reducer in the other executor over TCP
		// and the one in its own in memory.
		{"p2-two-executors", 2, alternate},
	} {
		b.Run(tc.name, func(b *testing.B) {
			runBenchSplit(b, tc.p, tc.mine, func(g *graph.Graph, src *runtime.Factory) {
				s := g.Add(&graph.Node{UID: "src", Name: "src", Kind: "source", Factory: src})
				m := g.Add(&graph.Node{UID: "map", Name: "map", Kind: "map", Inputs: []graph.Input{{Node: s.ID}},
					Factory: operators.NewMap(func(r benchRecord) benchRecord { r.Val *= 3; return r })})
				r := g.Add(&graph.Node{UID: "reduce", Name: "reduce", Kind: "keyed-reduce", KeyedInputs: []bool{true},
					Inputs:  []graph.Input{{Node: m.ID, Partitioning: graph.Hash}},
					Factory: operators.NewKeyedReduce(keying, func(a, x benchRecord) benchRecord { a.Val += x.Val; return a })})
				g.Add(&graph.Node{UID: "sink", Name: "sink", Kind: "sink", Inputs: []graph.Input{{Node: r.ID}},
					Factory: operators.NewSink[benchRecord](blackhole{})})
			})
		})
	}
}

// BenchmarkForwardChain: source → map → filter → blackhole chained into one
// task: the cost of the operators and the source loop without an exchange.
func BenchmarkForwardChain(b *testing.B) {
	runBench(b, 1, func(g *graph.Graph, src *runtime.Factory) {
		s := g.Add(&graph.Node{UID: "src", Name: "src", Kind: "source", Factory: src})
		m := g.Add(&graph.Node{UID: "map", Name: "map", Kind: "map", Inputs: []graph.Input{{Node: s.ID}},
			Factory: operators.NewMap(func(r benchRecord) benchRecord { r.Val *= 3; return r })})
		f := g.Add(&graph.Node{UID: "filter", Name: "filter", Kind: "filter", Inputs: []graph.Input{{Node: m.ID}},
			Factory: operators.NewFilter(func(r benchRecord) bool { return r.Val >= 0 })})
		g.Add(&graph.Node{UID: "sink", Name: "sink", Kind: "sink", Inputs: []graph.Input{{Node: f.ID}},
			Factory: operators.NewSink[benchRecord](blackhole{})})
	})
}

// BenchmarkForwardExchange: the same pipeline with chaining off, so every
// operator is a task and records cross three forward exchanges.
func BenchmarkForwardExchange(b *testing.B) {
	runBench(b, 1, func(g *graph.Graph, src *runtime.Factory) {
		s := g.Add(&graph.Node{UID: "src", Name: "src", Kind: "source", Factory: src})
		m := g.Add(&graph.Node{UID: "map", Name: "map", Kind: "map", Inputs: []graph.Input{{Node: s.ID}}, Chaining: graph.ChainNever,
			Factory: operators.NewMap(func(r benchRecord) benchRecord { r.Val *= 3; return r })})
		f := g.Add(&graph.Node{UID: "filter", Name: "filter", Kind: "filter", Inputs: []graph.Input{{Node: m.ID}}, Chaining: graph.ChainNever,
			Factory: operators.NewFilter(func(r benchRecord) bool { return r.Val >= 0 })})
		g.Add(&graph.Node{UID: "sink", Name: "sink", Kind: "sink", Inputs: []graph.Input{{Node: f.ID}}, Chaining: graph.ChainNever,
			Factory: operators.NewSink[benchRecord](blackhole{})})
	})
}
