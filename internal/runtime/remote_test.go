package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/network"
	"github.com/weirstream/weir/internal/operators"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/stream"
)

// Tests of jobs whose subtasks run in two executors (two endpoints in one
// process, or two processes) that exchange records over the TCP data plane.

// reading is a record type that must cross processes through the codec.
type reading struct {
	Sensor string
	Value  int64
	Tags   []string
}

// endpoint is one executor's data plane.
type endpoint struct {
	server *network.Server
	client *network.Client
}

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	s, err := network.Listen("127.0.0.1:0", network.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &endpoint{server: s, client: network.NewClient(network.Options{})}
}

// close ends the endpoint as a worker process does when its executor
// returns: the client flushes what was written, then both sides close.
func (e *endpoint) close() {
	_ = e.client.Close()
	_ = e.server.Close()
}

// split returns the placements of two executors: mine(vertex name, subtask)
// says which subtasks the first runs; the second runs the rest.
func split(job *runtime.Job, a, b *endpoint, mine func(name string, s int) bool) (*runtime.Placement, *runtime.Placement) {
	names := map[int32]string{}
	for _, v := range job.Graph.Vertices {
		names[v.Id] = v.Name
	}
	jobID := [16]byte{0xfe, 0xed}
	pa := &runtime.Placement{
		JobID: jobID, Attempt: 1, Server: a.server, Client: a.client,
		Local:    func(v int32, s int) bool { return mine(names[v], s) },
		DataAddr: func(int32, int) string { return b.server.Addr() },
	}
	pb := &runtime.Placement{
		JobID: jobID, Attempt: 1, Server: b.server, Client: b.client,
		Local:    func(v int32, s int) bool { return !mine(names[v], s) },
		DataAddr: func(int32, int) string { return a.server.Addr() },
	}
	return pa, pb
}

// runSplit runs job on two executors over loopback and returns both results.
func runSplit(t *testing.T, job *runtime.Job, opts runtime.Options, mine func(string, int) bool) (errA, errB error) {
	t.Helper()
	a, b := newEndpoint(t), newEndpoint(t)
	pa, pb := split(job, a, b, mine)
	oa, ob := opts, opts
	oa.Placement, ob.Placement = pa, pb
	doneA, doneB := start(context.Background(), job, oa), start(context.Background(), job, ob)
	errA = wait(t, doneA)
	a.close()
	errB = wait(t, doneB)
	b.close()
	return errA, errB
}

// alternate places even subtasks in the first executor, odd ones in the
// second, so every exchange has local and remote channels.
func alternate(_ string, s int) bool { return s%2 == 0 }

func TestSplitExecutorsDeliverEverything(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 20_000
	for _, tc := range []struct {
		name  string
		build func(b *jobBuilder, src, sink *runtime.Factory)
		// copies is how many times each record reaches the sink.
		copies int
		mine   func(string, int) bool
	}{
		{"rebalance", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			b.add("sink", sink, 3, from(s))
		}, 1, nil},
		{"forward", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 3)
			b.unchained("sink", sink, 3, graph.Input{Node: s, Partitioning: graph.Forward})
		}, 1, func(name string, s int) bool { return (name == "src") == (s%2 == 0) }},
		{"broadcast", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			b.add("sink", sink, 3, graph.Input{Node: s, Partitioning: graph.Broadcast})
		}, 3, nil},
		{"hash", func(b *jobBuilder, src, sink *runtime.Factory) {
			s := b.add("src", src, 2)
			keying := newKeying(t, func(r reading) string { return r.Sensor })
			m := b.keyed("keyed", operators.NewKeyedReduce(keying, func(a, b reading) reading { return b }), 3, s)
			b.add("sink", sink, 2, from(m))
		}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := &collector[reading]{}
			var mu sync.Mutex
			var bad []string
			lastWM := map[int]int64{}
			sink := &probe[reading]{
				element:   func(_ *runtime.OperatorContext, v reading, _ int64) { got.add(v) },
				watermark: func(ctx *runtime.OperatorContext, wm int64) { mu.Lock(); lastWM[ctx.Subtask] = wm; mu.Unlock() },
				endInput: func(ctx *runtime.OperatorContext) {
					mu.Lock()
					defer mu.Unlock()
					if lastWM[ctx.Subtask] != runtime.MaxWatermark {
						bad = append(bad, fmt.Sprintf("sink %d ended at watermark %d", ctx.Subtask, lastWM[ctx.Subtask]))
					}
				},
			}
			b := &jobBuilder{}
			tc.build(b, readingSource(n), sink.factory())
			mine := tc.mine
			if mine == nil {
				mine = alternate
			}
			errA, errB := runSplit(t, b.job(t), runtime.Options{Credits: 2, BatchSize: 64}, mine)
			if errA != nil || errB != nil {
				t.Fatalf("executors ended with %v and %v", errA, errB)
			}
			checkReadings(t, got.snapshot(), n, tc.copies)
			if len(bad) > 0 {
				t.Fatal(strings.Join(bad, "; "))
			}
		})
	}
}

// readingSource emits readings 0..n-1 over its subtasks, each with its value
// as event time.
func readingSource(n int) *runtime.Factory {
	src := sourceFunc[reading](func(ctx connector.SourceContext) readerFunc[reading] {
		next := ctx.Subtask
		return func(out connector.SourceOutput[reading]) (connector.ReadStatus, error) {
			for range 100 {
				if next >= n {
					return connector.EndOfInput, nil
				}
				out.CollectWithTimestamp(makeReading(next), int64(next))
				next += ctx.Parallelism
			}
			return connector.MoreAvailable, nil
		}
	})
	return operators.NewSource(src, stream.ForMonotonousTimestamps[reading](), time.Millisecond)
}

func makeReading(i int) reading {
	return reading{Sensor: fmt.Sprintf("sensor-%d", i), Value: int64(i), Tags: []string{"t", strings.Repeat("x", i%7)}}
}

// checkReadings checks that every reading 0..n-1 arrived copies times,
// intact.
func checkReadings(t *testing.T, got []reading, n, copies int) {
	t.Helper()
	if len(got) != n*copies {
		t.Fatalf("sink got %d records, want %d", len(got), n*copies)
	}
	slices.SortFunc(got, func(a, b reading) int { return int(a.Value - b.Value) })
	for i, r := range got {
		want := makeReading(i / copies)
		if r.Sensor != want.Sensor || r.Value != want.Value || !slices.Equal(r.Tags, want.Tags) {
			t.Fatalf("record %d of the sorted output is %+v, want %+v: lost, duplicated or corrupted", i, r, want)
		}
	}
}

// keyed adds a keyed operator that reads node in over a hash edge.
func (b *jobBuilder) keyed(uid string, f *runtime.Factory, p int, in int) int {
	id := b.add(uid, f, p, graph.Input{Node: in, Partitioning: graph.Hash})
	b.g.Nodes[id].KeyedInputs = []bool{true}
	return id
}

func newKeying[T any, K comparable](t testing.TB, sel func(T) K) *operators.Keying[T, K] {
	enc, err := operators.NewKeyEncoder[K]()
	if err != nil {
		t.Fatal(err)
	}
	return &operators.Keying[T, K]{Select: sel, Encoder: enc}
}

// TestRemoteFailureFailsTheOtherExecutor fails a task in one executor and
// checks that the other executor's tasks fail too, naming the channel,
// instead of waiting forever for input.
func TestRemoteFailureFailsTheOtherExecutor(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := &jobBuilder{}
	s := b.add("src", readingSource(1_000_000), 2)
	boom := operators.NewMap(func(r reading) reading {
		if r.Value == 5_000 {
			panic("sensor 5000 is broken")
		}
		return r
	})
	m := b.unchained("check", boom, 2, from(s))
	b.add("sink", (&probe[reading]{}).factory(), 2, graph.Input{Node: m, Partitioning: graph.Rebalance})
	// The first executor runs the sources and the failing operator; the
	// second only the sinks, which read from the first over the network.
	errA, errB := runSplit(t, b.job(t), runtime.Options{}, func(name string, _ int) bool { return name != "sink" })
	if errA == nil || !strings.Contains(errA.Error(), "sensor 5000 is broken") {
		t.Fatalf("first executor: got %v, want the operator's panic", errA)
	}
	if errB == nil || !strings.Contains(errB.Error(), `channel "check" -> "sink"`) {
		t.Fatalf("second executor: got %v, want an error naming the failed input channel", errB)
	}
}

// TestUnencodableRecordsCannotCrossProcesses checks that a job whose records
// cannot be serialised is refused when it would need to, with an error
// naming the channel and the type.
func TestUnencodableRecordsCannotCrossProcesses(t *testing.T) {
	defer goleak.VerifyNone(t)
	type withFunc struct{ F func() }
	b := &jobBuilder{}
	s := b.add("src", readingSource(10), 2)
	m := b.add("wrap", operators.NewMap(func(r reading) withFunc { return withFunc{} }), 2, from(s))
	b.add("sink", (&probe[withFunc]{}).factory(), 2, graph.Input{Node: m, Partitioning: graph.Rebalance})
	job := b.job(t)
	// In one process the records never need encoding.
	if err := wait(t, start(context.Background(), job, runtime.Options{})); err != nil {
		t.Fatalf("local run: %v", err)
	}
	errA, errB := runSplit(t, job, runtime.Options{}, alternate)
	for _, err := range []error{errA, errB} {
		if err == nil || !strings.Contains(err.Error(), "cross processes") || !strings.Contains(err.Error(), "func") {
			t.Fatalf("got %v, want an error saying the records of the channel cannot be encoded", err)
		}
	}
}

// --- two processes ---------------------------------------------------------

// peerEnv carries the first process's data address to the peer process, a
// copy of this test binary that runs TestSplitAcrossProcessesPeer.
const peerEnv = "WEIR_RUNTIME_TEST_PEER_ADDR"

// processJob is the job both processes build: the same plan, as a job
// binary's main() builds it in every worker. Sources run in the peer, the
// sinks in the parent, the keyed operator in both.
func processJob(t testing.TB, n int, sink *runtime.Factory) *runtime.Job {
	b := &jobBuilder{}
	s := b.add("src", readingSource(n), 2)
	keying := newKeying(t, func(r reading) int64 { return r.Value % 100 })
	sum := operators.NewKeyedReduce(keying, func(a, b reading) reading {
		return reading{Sensor: a.Sensor, Value: a.Value + b.Value, Tags: b.Tags}
	})
	m := b.keyed("sum", sum, 3, s)
	b.add("sink", sink, 2, graph.Input{Node: m, Partitioning: graph.Rebalance})
	return b.job(t)
}

func inParent(name string, s int) bool {
	switch name {
	case "src":
		return false
	case "sink":
		return true
	}
	return s != 1
}

const processRecords = 50_000

// TestSplitAcrossProcesses runs one job in this process and a child process
// and checks the keyed sums that reach the sinks against sums computed here.
func TestSplitAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	ep := newEndpoint(t)
	defer ep.close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSplitAcrossProcessesPeer$", "-test.v")
	cmd.Env = append(os.Environ(), peerEnv+"="+ep.server.Addr())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	peerAddr := make(chan string, 1)
	var peerOut strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "PEER-ADDR "); ok {
				peerAddr <- a
			}
			peerOut.WriteString(sc.Text() + "\n")
		}
	}()
	var addr string
	select {
	case addr = <-peerAddr:
	case <-time.After(patience):
		t.Fatalf("the peer process did not report its address: %s", stderr.String())
	}

	final := map[int64]int64{}
	var mu sync.Mutex
	sink := &probe[reading]{element: func(_ *runtime.OperatorContext, r reading, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		k := keyOf(r.Sensor)
		final[k] = max(final[k], r.Value)
	}}
	job := processJob(t, processRecords, sink.factory())
	p := &runtime.Placement{
		JobID: [16]byte{1}, Attempt: 1, Server: ep.server, Client: ep.client,
		Local:    func(v int32, s int) bool { return inParent(vertexName(job.Graph, v), s) },
		DataAddr: func(int32, int) string { return addr },
	}
	if err := wait(t, start(context.Background(), job, runtime.Options{Placement: p})); err != nil {
		t.Fatalf("parent executor: %v", err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("peer process: %v\n%s%s", err, peerOut.String(), stderr.String())
		}
	case <-time.After(patience):
		t.Fatal("the peer process did not exit")
	}
	want := map[int64]int64{}
	for i := range processRecords {
		want[int64(i%100)] += int64(i)
	}
	if len(final) != len(want) {
		t.Fatalf("sums for %d keys, want %d", len(final), len(want))
	}
	for k, v := range want {
		if final[k] != v {
			t.Fatalf("key %d: final sum %d, want %d", k, final[k], v)
		}
	}
}

// keyOf recovers the key of a sum from the sensor name of its first reading.
func keyOf(sensor string) int64 {
	var i int64
	fmt.Sscanf(sensor, "sensor-%d", &i)
	return i % 100
}

func vertexName(g *pb.JobGraph, id int32) string {
	for _, v := range g.Vertices {
		if v.Id == id {
			return v.Name
		}
	}
	return ""
}

// TestSplitAcrossProcessesPeer is the child's side of TestSplitAcrossProcesses.
func TestSplitAcrossProcessesPeer(t *testing.T) {
	parent := os.Getenv(peerEnv)
	if parent == "" {
		t.Skip("runs only as the peer process of TestSplitAcrossProcesses")
	}
	ep := newEndpoint(t)
	fmt.Printf("PEER-ADDR %s\n", ep.server.Addr())
	job := processJob(t, processRecords, (&probe[reading]{}).factory())
	p := &runtime.Placement{
		JobID: [16]byte{1}, Attempt: 1, Server: ep.server, Client: ep.client,
		Local:    func(v int32, s int) bool { return !inParent(vertexName(job.Graph, v), s) },
		DataAddr: func(int32, int) string { return parent },
	}
	err := runtime.Execute(context.Background(), job, runtime.Options{Placement: p})
	ep.close()
	if err != nil && !errors.Is(err, runtime.ErrCanceled) {
		t.Fatal(err)
	}
}
