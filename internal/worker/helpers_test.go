package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/runtime"
)

const patience = 15 * time.Second

// --- the test job: gated source → keyed sum (hash) → collecting sink -----

// rec is a running count and sum per key; it crosses workers through the
// codec.
type rec struct {
	Key   int64
	Count int64
	Sum   int64
}

const keys = 10

// gate holds the sources back at a record index until it is raised.
type gate struct {
	limit   atomic.Int64
	blocked atomic.Int64 // source subtasks waiting at the gate
}

// gatedSource emits records 0..n-1 (subtask s of p takes s, s+p, …), each
// {Key: i % keys, Count: 1, Sum: i}, but none at or beyond the gate's
// limit. Its position is checkpointed.
type gatedSource struct {
	n    int64
	gate *gate
}

type gatedReader struct {
	src     *gatedSource
	next, p int64
	waiting bool
}

func (s *gatedSource) Open(ctx connector.SourceContext) (connector.SourceReader[rec], error) {
	r := &gatedReader{src: s, next: int64(ctx.Subtask), p: int64(ctx.Parallelism)}
	if ctx.Restored != nil {
		if len(ctx.Restored) != ctx.Parallelism {
			return nil, errors.New("gatedSource cannot be rescaled")
		}
		if b := ctx.Restored[ctx.Subtask]; len(b) == 8 {
			r.next = int64(binary.BigEndian.Uint64(b))
		}
	}
	return r, nil
}

func (r *gatedReader) SnapshotState() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(r.next)), nil
}

func (r *gatedReader) Read(out connector.SourceOutput[rec]) (connector.ReadStatus, error) {
	for range 50 {
		if r.next >= r.src.n {
			r.setWaiting(false)
			return connector.EndOfInput, nil
		}
		if r.next >= r.src.gate.limit.Load() {
			r.setWaiting(true)
			return connector.NothingAvailable, nil
		}
		r.setWaiting(false)
		out.CollectWithTimestamp(rec{Key: r.next % keys, Count: 1, Sum: r.next}, r.next)
		r.next += r.p
	}
	return connector.MoreAvailable, nil
}

func (r *gatedReader) setWaiting(w bool) {
	if w != r.waiting {
		r.waiting = w
		if w {
			r.src.gate.blocked.Add(1)
		} else {
			r.src.gate.blocked.Add(-1)
		}
	}
}

func (r *gatedReader) Close() error { r.setWaiting(false); return nil }

// results keeps the latest running count and sum of every key that
// reached the sinks.
type results struct {
	mu     sync.Mutex
	latest map[int64]rec
	first  map[int64]int64 // the smallest count of each key
	// hold, if not nil, blocks every Write until it is closed, deaf to
	// cancellation: a stuck task.
	hold chan struct{}
	// holding, if not nil, is signalled when a Write starts waiting on hold.
	holding chan struct{}
}

func (r *results) Open(connector.SinkContext) (connector.SinkWriter[rec], error) { return r, nil }
func (r *results) Write(v rec, _ int64) error {
	if r.hold != nil {
		if r.holding != nil {
			select {
			case r.holding <- struct{}{}:
			default:
			}
		}
		<-r.hold
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.latest == nil {
		r.latest, r.first = map[int64]rec{}, map[int64]int64{}
	}
	if f, ok := r.first[v.Key]; !ok || v.Count < f {
		r.first[v.Key] = v.Count
	}
	if v.Count > r.latest[v.Key].Count {
		r.latest[v.Key] = v
	}
	return nil
}
func (r *results) Finish() error { return nil }
func (r *results) Close() error  { return nil }

func (r *results) reset() {
	r.mu.Lock()
	r.latest, r.first = nil, nil
	r.mu.Unlock()
}

// check compares the final sums with those of the whole input 0..n-1.
func (r *results) check(t *testing.T, n int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[int64]rec{}
	for i := range n {
		w := want[i%keys]
		want[i%keys] = rec{Key: i % keys, Count: w.Count + 1, Sum: w.Sum + i}
	}
	if len(r.latest) != len(want) {
		t.Fatalf("results for %d keys, want %d: %v", len(r.latest), len(want), r.latest)
	}
	for k, w := range want {
		if r.latest[k] != w {
			t.Fatalf("key %d: final %+v, want %+v (records lost, duplicated or state not restored)", k, r.latest[k], w)
		}
	}
}

type testJob struct {
	job  *runtime.Job
	gate *gate
	out  *results
	n    int64
}

// newTestJob builds src (p=2) → sum (p=2, hash) → sink (chained to sum).
func newTestJob(t *testing.T, n int64) *testJob {
	t.Helper()
	tj := &testJob{gate: &gate{}, out: &results{}, n: n}
	tj.gate.limit.Store(n)
	enc, err := operators.NewKeyEncoder[int64]()
	if err != nil {
		t.Fatal(err)
	}
	keying := &operators.Keying[rec, int64]{Select: func(r rec) int64 { return r.Key }, Encoder: enc}
	var g graph.Graph
	src := g.Add(&graph.Node{UID: "src", Name: "src", Kind: "source", Parallelism: 2,
		Factory: operators.NewSource[rec](&gatedSource{n: n, gate: tj.gate}, operators.WatermarkStrategy[rec]{}, time.Millisecond)})
	sum := g.Add(&graph.Node{UID: "sum", Name: "sum", Kind: "keyed-reduce", Parallelism: 2, KeyedInputs: []bool{true},
		Inputs:  []graph.Input{{Node: src.ID, Partitioning: graph.Hash}},
		Factory: operators.NewKeyedReduce(keying, func(a, b rec) rec { return rec{Key: a.Key, Count: a.Count + b.Count, Sum: a.Sum + b.Sum} })})
	g.Add(&graph.Node{UID: "sink", Name: "sink", Kind: "sink", Parallelism: 2,
		Inputs: []graph.Input{{Node: sum.ID}}, Factory: operators.NewSink[rec](tj.out)})
	jg, err := jobgraph.Translate(&g, jobgraph.Settings{JobName: t.Name(), DefaultParallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	fs := map[string]*runtime.Factory{}
	for _, n := range g.Nodes {
		fs[n.UID] = n.Factory
	}
	tj.job = &runtime.Job{Graph: jg, Factories: fs}
	return tj
}

// --- the fake JobMaster ----------------------------------------------------

const (
	testJobID = "0123456789abcdef0123456789abcdef"
	testJMID  = "jm-1"
)

// fakeJM implements the Master service's Attach as a JobMaster does, as far
// as a test drives it: it records what workers send and sends what the
// test says.
type fakeJM struct {
	t     *testing.T
	srv   *grpc.Server
	addr  string
	conns chan *jmConn
}

// jmConn is one worker's Attach stream.
type jmConn struct {
	hello  *clusterpb.WorkerHello
	stream clusterpb.Master_AttachServer
	msgs   chan *clusterpb.WorkerMessage // everything but heartbeats
	hbSeen atomic.Int64
	sendMu sync.Mutex
	// heartbeats is the interval of heartbeat requests; 0 sends none.
	heartbeats time.Duration
	// mute stops the heartbeat requests.
	mute   atomic.Bool
	broken chan error // the handler returns this error
	ended  chan struct{}
}

func newFakeJM(t *testing.T, heartbeats time.Duration) *fakeJM {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeJM{t: t, addr: lis.Addr().String(), conns: make(chan *jmConn, 4),
		srv: grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))}
	clusterpb.RegisterMasterServer(f.srv, &attachHandler{f: f, heartbeats: heartbeats})
	go func() { _ = f.srv.Serve(lis) }()
	t.Cleanup(f.srv.Stop)
	return f
}

type attachHandler struct {
	clusterpb.UnimplementedMasterServer
	f          *fakeJM
	heartbeats time.Duration
}

func (h *attachHandler) Attach(stream clusterpb.Master_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "the first message must be a WorkerHello")
	}
	c := &jmConn{hello: first.GetHello(), stream: stream, msgs: make(chan *clusterpb.WorkerMessage, 10_000),
		heartbeats: h.heartbeats, broken: make(chan error, 1), ended: make(chan struct{})}
	defer close(c.ended)
	h.f.conns <- c
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.GetHeartbeat() != nil {
				c.hbSeen.Add(1)
				continue
			}
			c.msgs <- m
		}
	}()
	var tick <-chan time.Time
	if c.heartbeats > 0 {
		tk := time.NewTicker(c.heartbeats)
		defer tk.Stop()
		tick = tk.C
	}
	seq := int64(0)
	for {
		select {
		case <-tick:
			if c.mute.Load() {
				continue
			}
			seq++
			c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Heartbeat{Heartbeat: &clusterpb.HeartbeatRequest{Seq: seq}}})
		case err := <-c.broken:
			return err
		case <-recvDone:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (f *fakeJM) accept(t *testing.T) *jmConn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(patience):
		t.Fatal("no worker attached")
		return nil
	}
}

// send sends m fenced with jmID.
func (c *jmConn) send(jmID string, m *clusterpb.JobMasterMessage) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	m.JobMasterId = jmID
	_ = c.stream.Send(m)
}

func (c *jmConn) deploy(d *clusterpb.Deploy) {
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Deploy{Deploy: d}})
}

func (c *jmConn) trigger(attempt uint32, id int64) {
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_TriggerCheckpoint{
		TriggerCheckpoint: &clusterpb.TriggerCheckpoint{Attempt: attempt, Checkpoint: id}}})
}

func (c *jmConn) notifyComplete(attempt uint32, id int64) {
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_NotifyComplete{
		NotifyComplete: &clusterpb.NotifyCheckpoint{Attempt: attempt, Checkpoint: id}}})
}

func (c *jmConn) release(attempt uint32) {
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Release{Release: &clusterpb.Release{Attempt: attempt}}})
}

func (c *jmConn) cancel(attempt uint32) {
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Cancel{Cancel: &clusterpb.CancelAttempt{Attempt: attempt}}})
}

// await returns the next message that match accepts, failing the test if
// none comes within patience or the worker ends an attempt unexpectedly.
// Messages it skips are passed to skipped, if set.
func (c *jmConn) await(t *testing.T, what string, match func(*clusterpb.WorkerMessage) bool) *clusterpb.WorkerMessage {
	t.Helper()
	deadline := time.After(patience)
	for {
		select {
		case m := <-c.msgs:
			if match(m) {
				return m
			}
			if e := m.GetAttemptEnded(); e != nil && e.Error != "" && !e.Canceled {
				t.Fatalf("waiting for %s: attempt %d failed: %s", what, e.Attempt, e.Error)
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
			return nil
		}
	}
}

// awaitN collects n messages that match accepts.
func (c *jmConn) awaitN(t *testing.T, n int, what string, match func(*clusterpb.WorkerMessage) bool) []*clusterpb.WorkerMessage {
	t.Helper()
	var out []*clusterpb.WorkerMessage
	for len(out) < n {
		out = append(out, c.await(t, fmt.Sprintf("%s (%d of %d)", what, len(out)+1, n), match))
	}
	return out
}

// quiet checks that no message that match accepts arrives for d.
func (c *jmConn) quiet(t *testing.T, d time.Duration, what string, match func(*clusterpb.WorkerMessage) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.msgs:
			if match(m) {
				t.Fatalf("unexpected %s: %v", what, m)
			}
		case <-deadline:
			return
		}
	}
}

func isState(attempt uint32, state string) func(*clusterpb.WorkerMessage) bool {
	return func(m *clusterpb.WorkerMessage) bool {
		s := m.GetTaskState()
		return s != nil && s.Attempt == attempt && s.State == state
	}
}

func isAck(attempt uint32, id int64) func(*clusterpb.WorkerMessage) bool {
	return func(m *clusterpb.WorkerMessage) bool {
		a := m.GetAck()
		return a != nil && a.Attempt == attempt && a.Checkpoint == id
	}
}

func isFinished(attempt uint32) func(*clusterpb.WorkerMessage) bool {
	return func(m *clusterpb.WorkerMessage) bool { f := m.GetFinished(); return f != nil && f.Attempt == attempt }
}

func isEnded(attempt uint32) func(*clusterpb.WorkerMessage) bool {
	return func(m *clusterpb.WorkerMessage) bool {
		e := m.GetAttemptEnded()
		return e != nil && e.Attempt == attempt
	}
}

// --- workers -----------------------------------------------------------------

// testWorker is one Serve running in this process.
type testWorker struct {
	id     string
	cancel context.CancelFunc
	done   chan error
}

var testTuning = tuning{connectTimeout: 2 * time.Second, cancelTimeout: 5 * time.Second, flushTimeout: time.Second}

func startWorker(t *testing.T, f *fakeJM, tj *testJob, id string, cfg map[string]string) *testWorker {
	t.Helper()
	return startWorkerTuned(t, f, tj, id, cfg, testTuning)
}

func startWorkerTuned(t *testing.T, f *fakeJM, tj *testJob, id string, cfg map[string]string, tn tuning) *testWorker {
	t.Helper()
	if cfg == nil {
		cfg = map[string]string{}
	}
	if _, ok := cfg["heartbeat.timeout"]; !ok {
		cfg["heartbeat.timeout"] = "5s"
	}
	s := &launch.Settings{Mode: launch.Worker, Quiet: !testing.Verbose(), Config: cfg, Worker: &launch.WorkerSettings{
		MasterAddress: f.addr, JobID: testJobID, JobMasterID: testJMID, WorkerID: id, ResourceID: "tm-" + id, DataHost: "127.0.0.1"}}
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWorker{id: id, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- serve(ctx, tj.job, s, tn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(patience):
		}
	})
	return w
}

// wait returns Serve's result, failing the test if it does not return
// within d.
func (w *testWorker) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("worker %s: Serve did not return within %v", w.id, d)
		return nil
	}
}

// deployment splits the job's subtasks between conns: subtask i of every
// vertex runs on conns[i % len(conns)].
func deployment(job *runtime.Job, attempt uint32, checkpoints bool, conns ...*jmConn) []*clusterpb.Deploy {
	ds := make([]*clusterpb.Deploy, len(conns))
	for i := range conns {
		ds[i] = &clusterpb.Deploy{Attempt: attempt, Checkpoints: checkpoints}
	}
	for _, v := range job.Graph.Vertices {
		for s := range v.Parallelism {
			i := int(s) % len(conns)
			ds[i].Tasks = append(ds[i].Tasks, &clusterpb.TaskRef{Vertex: v.Id, Subtask: s})
			for _, d := range ds {
				d.Peers = append(d.Peers, &clusterpb.TaskLocation{Vertex: v.Id, Subtask: s, DataAddress: conns[i].hello.DataAddress})
			}
		}
	}
	return ds
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
