package worker

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/cluster/taskwire"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/version"
)

// Tests of workers against a fake JobMaster on loopback: real gRPC
// streams, real data plane between the workers, real executors.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startPair starts two workers of tj and returns their streams, A's
// first.
func startPair(t *testing.T, f *fakeJM, tj *testJob, cfg map[string]string) (a, b *jmConn, wa, wb *testWorker) {
	t.Helper()
	wa = startWorker(t, f, tj, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", cfg)
	c1 := f.accept(t)
	wb = startWorker(t, f, tj, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", cfg)
	c2 := f.accept(t)
	if c1.hello.WorkerId != wa.id {
		c1, c2 = c2, c1
	}
	return c1, c2, wa, wb
}

// decodeAcks decodes acknowledgements and gathers them into the state a
// JobMaster would restore from.
func decodeAcks(t *testing.T, acks []*clusterpb.WorkerMessage) ([]runtime.TaskAck, map[string]*runtime.RestoredState) {
	t.Helper()
	var out []runtime.TaskAck
	restore := map[string]*runtime.RestoredState{}
	for _, m := range acks {
		a, err := taskwire.DecodeAck(m.GetAck())
		if err != nil {
			t.Fatalf("undecodable ack of %v: %v", m.GetAck().GetTask(), err)
		}
		out = append(out, a)
		for uid, s := range a.Operators {
			rs := restore[uid]
			if rs == nil {
				rs = &runtime.RestoredState{Checkpoint: a.Checkpoint, Snapshots: make([]*runtime.OperatorSnapshot, 2)}
				restore[uid] = rs
			}
			rs.Snapshots[a.Task.Subtask] = s
		}
	}
	return out, restore
}

// checkCheckpointState checks what a checkpoint taken with the sources
// held at limit holds: each source's position, and in the sums the count
// of every record before it.
func checkCheckpointState(t *testing.T, acks []runtime.TaskAck, restore map[string]*runtime.RestoredState, limit int64) {
	t.Helper()
	if len(acks) != 4 {
		t.Fatalf("%d acks, want one from each of the 4 tasks", len(acks))
	}
	src := restore["src"]
	if src == nil {
		t.Fatal("no source state in the checkpoint")
	}
	for i, s := range src.Snapshots {
		if s == nil || len(s.Operator) != 8 {
			t.Fatalf("source subtask %d: state %+v, want its position", i, s)
		}
		// Subtask i emits i, i+2, …; the next one is the first at or
		// past the limit.
		want := limit + (int64(i)-limit%2+2)%2
		if got := int64(binary.BigEndian.Uint64(s.Operator)); got != want {
			t.Fatalf("source subtask %d is at %d, want %d", i, got, want)
		}
	}
	sum := restore["sum"]
	if sum == nil {
		t.Fatal("no state of the keyed sum in the checkpoint")
	}
	entries := 0
	for i, s := range sum.Snapshots {
		if s == nil || s.Keyed == nil {
			t.Fatalf("sum subtask %d acknowledged no keyed state", i)
		}
		entries += s.Keyed.Len()
	}
	if entries != keys {
		t.Fatalf("the sums hold %d keys, want %d", entries, keys)
	}
}

// TestTwoWorkersRunACheckpointedJob deploys half of a job's subtasks to
// each of two workers, takes a checkpoint while the sources are held, lets
// the job finish, takes the final checkpoint, releases the tasks and
// checks the output.
func TestTwoWorkersRunACheckpointedJob(t *testing.T) {
	const n = 20_000
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, n)
	tj.gate.limit.Store(n / 2)
	a, b, wa, wb := startPair(t, f, tj, nil)
	for _, c := range []*jmConn{a, b} {
		h := c.hello
		if h.JobId != testJobID || h.JobMasterId != testJMID || h.ResourceId != "tm-"+h.WorkerId || h.Pid == 0 ||
			h.DataAddress == "" || h.Version != version.Version || len(h.Plan.GetVertices()) != 2 {
			t.Fatalf("hello: %v", h)
		}
	}
	ds := deployment(tj.job, 1, true, a, b)
	a.deploy(ds[0])
	b.deploy(ds[1])
	for _, c := range []*jmConn{a, b} {
		c.awaitN(t, 2, "RUNNING", isState(1, "RUNNING"))
	}
	eventually(t, "both sources at the gate", func() bool { return tj.gate.blocked.Load() == 2 })

	a.trigger(1, 1)
	b.trigger(1, 1)
	acks := append(a.awaitN(t, 2, "ack of checkpoint 1", isAck(1, 1)), b.awaitN(t, 2, "ack of checkpoint 1", isAck(1, 1))...)
	decoded, restore := decodeAcks(t, acks)
	checkCheckpointState(t, decoded, restore, n/2)
	a.notifyComplete(1, 1)
	b.notifyComplete(1, 1)

	// Let the job end: with checkpoints on, tasks wait for the release.
	tj.gate.limit.Store(n)
	for _, c := range []*jmConn{a, b} {
		c.awaitN(t, 2, "TaskFinished", isFinished(1))
		c.trigger(1, 2)
	}
	for _, c := range []*jmConn{a, b} {
		for _, m := range c.awaitN(t, 2, "final ack", isAck(1, 2)) {
			if !m.GetAck().Finished {
				t.Fatalf("final ack of %v not marked finished", m.GetAck().Task)
			}
		}
		c.notifyComplete(1, 2)
		c.release(1)
	}
	for _, c := range []*jmConn{a, b} {
		e := c.await(t, "AttemptEnded", isEnded(1)).GetAttemptEnded()
		if e.Error != "" || e.Canceled {
			t.Fatalf("attempt ended with %v", e)
		}
	}
	tj.out.check(t, n)

	// The TaskManager stops the workers: Serve returns nil.
	wa.cancel()
	wb.cancel()
	for _, w := range []*testWorker{wa, wb} {
		if err := w.wait(t, patience); err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	}
}

// TestDeployRestoresFromAnAck runs attempt 1 to a checkpoint, cancels it,
// and deploys attempt 2 with the state the tasks acknowledged: the output
// of attempt 2 must continue the sums of attempt 1 exactly.
func TestDeployRestoresFromAnAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) map[string]string
	}{
		{"heap", func(*testing.T) map[string]string { return nil }},
		{"pebble", func(t *testing.T) map[string]string {
			return map[string]string{"state.backend.type": "pebble", "state.backend.pebble.localdir": t.TempDir()}
		}},
		// Incremental checkpoints are not supported in cluster mode yet:
		// the worker acknowledges the native checkpoints in the canonical
		// format.
		{"pebble incremental", func(t *testing.T) map[string]string {
			return map[string]string{"state.backend.type": "pebble", "state.backend.pebble.localdir": t.TempDir(),
				"execution.checkpointing.incremental": "true", "state.checkpoints.dir": t.TempDir()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testDeployRestoresFromAnAck(t, tc.cfg(t)) })
	}
}

func testDeployRestoresFromAnAck(t *testing.T, cfg map[string]string) {
	const n = 10_000
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, n)
	tj.gate.limit.Store(n / 2)
	a, b, wa, wb := startPair(t, f, tj, cfg)
	ds := deployment(tj.job, 1, true, a, b)
	a.deploy(ds[0])
	b.deploy(ds[1])
	eventually(t, "both sources at the gate", func() bool { return tj.gate.blocked.Load() == 2 })
	a.trigger(1, 1)
	b.trigger(1, 1)
	acks := append(a.awaitN(t, 2, "ack", isAck(1, 1)), b.awaitN(t, 2, "ack", isAck(1, 1))...)
	decoded, restore := decodeAcks(t, acks)
	checkCheckpointState(t, decoded, restore, n/2)

	a.cancel(1)
	b.cancel(1)
	for _, c := range []*jmConn{a, b} {
		c.await(t, "end of attempt 1", isEnded(1))
	}
	tj.out.reset()
	tj.gate.limit.Store(n)
	wire, err := taskwire.EncodeRestore(restore, taskwire.MaxParallelism(tj.job.Graph))
	if err != nil {
		t.Fatal(err)
	}
	ds = deployment(tj.job, 2, false, a, b)
	for _, d := range ds {
		d.Restore = wire
	}
	a.deploy(ds[0])
	b.deploy(ds[1])
	for _, c := range []*jmConn{a, b} {
		e := c.await(t, "end of attempt 2", isEnded(2)).GetAttemptEnded()
		if e.Error != "" {
			t.Fatalf("attempt 2: %v", e)
		}
	}
	tj.out.check(t, n)
	// Attempt 2 continued from the checkpoint: the first count it
	// emitted for a key is one more than the checkpoint's.
	for k, c := range tj.out.first {
		if want := int64(n/2/keys + 1); c != want {
			t.Fatalf("key %d: attempt 2 started counting at %d, want %d", k, c, want)
		}
	}
	// Stopped workers leave no local state behind.
	for _, w := range []*testWorker{wa, wb} {
		w.cancel()
		if err := w.wait(t, patience); err != nil {
			t.Fatal(err)
		}
	}
	if dir := cfg["state.backend.pebble.localdir"]; dir != "" {
		if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
			t.Fatalf("%s holds %v (%v) after the workers stopped", dir, ents, err)
		}
	}
}

// TestCancelAttempt cancels a running attempt: its tasks end CANCELED and
// the worker reports the attempt canceled; commands for other attempts are
// ignored.
func TestCancelAttempt(t *testing.T) {
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, 1000)
	tj.gate.limit.Store(10)
	w := startWorker(t, f, tj, "cccccccccccccccccccccccccccccccc", nil)
	c := f.accept(t)
	c.deploy(deployment(tj.job, 3, true, c)[0])
	c.awaitN(t, 4, "RUNNING", isState(3, "RUNNING"))
	eventually(t, "sources at the gate", func() bool { return tj.gate.blocked.Load() == 2 })
	// Another attempt's commands do nothing.
	c.trigger(2, 1)
	c.cancel(2)
	c.quiet(t, 200*time.Millisecond, "answer to another attempt", func(m *clusterpb.WorkerMessage) bool {
		return m.GetAck() != nil || m.GetAttemptEnded() != nil
	})
	c.cancel(3)
	e := c.await(t, "AttemptEnded", isEnded(3)).GetAttemptEnded()
	if !e.Canceled || e.Error == "" || e.RestoreError {
		t.Fatalf("canceled attempt ended with %v", e)
	}
	// The CANCELED states came before.
	w.cancel()
	if err := w.wait(t, patience); err != nil {
		t.Fatal(err)
	}
}

// TestDeployWhileRunning deploys a new attempt while one runs: the worker
// cancels the old one, reports its end, then starts the new one.
func TestDeployWhileRunning(t *testing.T) {
	const n = 2000
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, n)
	tj.gate.limit.Store(0)
	startWorker(t, f, tj, "dddddddddddddddddddddddddddddddd", nil)
	c := f.accept(t)
	c.deploy(deployment(tj.job, 1, false, c)[0])
	c.awaitN(t, 4, "RUNNING", isState(1, "RUNNING"))
	c.deploy(deployment(tj.job, 2, false, c)[0])
	var order []string
	for len(order) < 2 {
		m := c.await(t, "end of attempt 1 and start of attempt 2", func(m *clusterpb.WorkerMessage) bool {
			return isEnded(1)(m) || isState(2, "DEPLOYING")(m)
		})
		if e := m.GetAttemptEnded(); e != nil {
			if !e.Canceled {
				t.Fatalf("attempt 1 ended with %v, want canceled", e)
			}
			order = append(order, "ended 1")
		} else if len(order) == 0 || order[len(order)-1] != "deploying 2" {
			order = append(order, "deploying 2")
		}
	}
	if order[0] != "ended 1" {
		t.Fatalf("order %v: attempt 2 started before attempt 1 ended", order)
	}
	// A stale deployment is ignored.
	c.deploy(deployment(tj.job, 1, false, c)[0])
	tj.gate.limit.Store(n)
	e := c.await(t, "end of attempt 2", func(m *clusterpb.WorkerMessage) bool {
		if s := m.GetTaskState(); s != nil && s.Attempt == 1 {
			t.Fatalf("stale deployment of attempt 1 started: %v", s)
		}
		return isEnded(2)(m)
	}).GetAttemptEnded()
	if e.Error != "" {
		t.Fatalf("attempt 2: %v", e)
	}
	tj.out.check(t, n)
}

// TestStaleJobMasterIsIgnored sends messages fenced with another
// JobMaster's id: the worker drops them, and they do not count as signs of
// life of its own JobMaster.
func TestStaleJobMasterIsIgnored(t *testing.T) {
	f := newFakeJM(t, 0)
	tj := newTestJob(t, 100)
	w := startWorker(t, f, tj, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", map[string]string{"heartbeat.timeout": "800ms"})
	c := f.accept(t)
	start := time.Now()
	stale := func(m *clusterpb.JobMasterMessage) { c.send("jm-0", m) }
	d := deployment(tj.job, 1, false, c)[0]
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				stale(&clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Heartbeat{Heartbeat: &clusterpb.HeartbeatRequest{Seq: 1}}})
			}
		}
	}()
	stale(&clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Deploy{Deploy: d}})
	stale(&clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Refused{Refused: &clusterpb.Refused{Reason: "stale"}}})
	c.quiet(t, 300*time.Millisecond, "answer to a stale JobMaster", func(*clusterpb.WorkerMessage) bool { return true })
	if n := c.hbSeen.Load(); n != 0 {
		t.Fatalf("worker answered %d stale heartbeat requests", n)
	}
	err := w.wait(t, patience)
	if err == nil || !strings.Contains(err.Error(), "lost the JobMaster at "+f.addr) || !strings.Contains(err.Error(), "nothing heard") {
		t.Fatalf("got %v, want the heartbeat timeout", err)
	}
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Fatalf("timed out after %v, before heartbeat.timeout", el)
	}
}

// TestLostJobMasterWhenTheStreamBreaks breaks the stream under a running
// attempt: Serve cancels the attempt and returns at once, naming the
// master, without waiting for the heartbeat timeout.
func TestLostJobMasterWhenTheStreamBreaks(t *testing.T) {
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, 1000)
	tj.gate.limit.Store(0)
	w := startWorker(t, f, tj, "ffffffffffffffffffffffffffffffff", map[string]string{"heartbeat.timeout": "1min"})
	c := f.accept(t)
	c.deploy(deployment(tj.job, 1, true, c)[0])
	c.awaitN(t, 4, "RUNNING", isState(1, "RUNNING"))
	start := time.Now()
	c.broken <- status.Error(codes.Unavailable, "master shutting down")
	err := w.wait(t, 5*time.Second)
	if err == nil || !strings.HasPrefix(err.Error(), "lost the JobMaster at "+f.addr+": ") || !strings.Contains(err.Error(), "master shutting down") {
		t.Fatalf("got %v, want an error naming the lost JobMaster", err)
	}
	t.Logf("Serve returned %v after %v", err, time.Since(start))
}

// TestLostJobMasterWhenHeartbeatsStop: the stream stays up but the
// JobMaster falls silent.
func TestLostJobMasterWhenHeartbeatsStop(t *testing.T) {
	f := newFakeJM(t, 20*time.Millisecond)
	tj := newTestJob(t, 100)
	w := startWorker(t, f, tj, "11111111111111111111111111111111", map[string]string{"heartbeat.timeout": "500ms"})
	c := f.accept(t)
	eventually(t, "heartbeats answered", func() bool { return c.hbSeen.Load() >= 5 })
	c.mute.Store(true)
	err := w.wait(t, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "lost the JobMaster at "+f.addr+": nothing heard from it for") {
		t.Fatalf("got %v", err)
	}
}

func TestRefused(t *testing.T) {
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, 100)
	w := startWorker(t, f, tj, "22222222222222222222222222222222", nil)
	c := f.accept(t)
	c.send(testJMID, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Refused{Refused: &clusterpb.Refused{Reason: "worker of another version"}}})
	if err := w.wait(t, 5*time.Second); err == nil || !strings.Contains(err.Error(), "refused this worker: worker of another version") {
		t.Fatalf("got %v", err)
	}
}

// TestBadDeployment deploys a vertex the worker's job graph does not have
// and state that does not decode: both are reported, the worker carries on.
func TestBadDeployment(t *testing.T) {
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, 100)
	startWorker(t, f, tj, "33333333333333333333333333333333", nil)
	c := f.accept(t)
	d := deployment(tj.job, 1, false, c)[0]
	d.Tasks = append(d.Tasks, &clusterpb.TaskRef{Vertex: 99})
	c.deploy(d)
	if e := c.await(t, "AttemptEnded", isEnded(1)).GetAttemptEnded(); !strings.Contains(e.Error, "vertex 99") {
		t.Fatalf("got %v", e)
	}
	d = deployment(tj.job, 2, false, c)[0]
	d.Restore = []*clusterpb.OperatorRestore{{Uid: "sum", Checkpoint: 7, Subtasks: []*clusterpb.SubtaskSnapshot{{Keyed: []byte("garbage")}}}}
	c.deploy(d)
	e := c.await(t, "AttemptEnded", isEnded(2)).GetAttemptEnded()
	if !e.RestoreError || e.RestoreCheckpoint != 7 || !strings.Contains(e.Error, `operator "sum"`) {
		t.Fatalf("got %v", e)
	}
	c.deploy(deployment(tj.job, 3, false, c)[0])
	if e := c.await(t, "AttemptEnded", isEnded(3)).GetAttemptEnded(); e.Error != "" {
		t.Fatalf("attempt 3: %v", e)
	}
	tj.out.check(t, 100)
}

// TestNoMaster: a master that cannot be reached is an error, not a hang.
func TestNoMaster(t *testing.T) {
	f := newFakeJM(t, 0)
	f.srv.Stop()
	tj := newTestJob(t, 100)
	w := startWorker(t, f, tj, "44444444444444444444444444444444", nil)
	err := w.wait(t, patience)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the master at "+f.addr) {
		t.Fatalf("got %v", err)
	}
	if errors.Is(err, runtime.ErrCanceled) {
		t.Fatal(err)
	}
}

// TestStuckAttempt: deployments queue behind an attempt that does not end
// when canceled; a newer one supersedes a queued one, a cancel removes
// it, and when the old attempt outlives the cancel timeout the worker
// gives up with an error (its TaskManager then starts a fresh process).
func TestStuckAttempt(t *testing.T) {
	f := newFakeJM(t, 50*time.Millisecond)
	tj := newTestJob(t, 1000)
	tj.out.hold = make(chan struct{})
	tj.out.holding = make(chan struct{}, 1)
	released := false
	release := func() {
		if !released {
			released = true
			close(tj.out.hold)
		}
	}
	defer release()
	tn := testTuning
	tn.cancelTimeout = 500 * time.Millisecond
	w := startWorkerTuned(t, f, tj, "55555555555555555555555555555555", nil, tn)
	c := f.accept(t)
	c.deploy(deployment(tj.job, 1, false, c)[0])
	c.awaitN(t, 4, "RUNNING", isState(1, "RUNNING"))
	// The attempt is stuck only once a sink waits on hold: a cancel before
	// that ends it normally.
	select {
	case <-tj.out.holding:
	case <-time.After(patience):
		t.Fatal("no record reached the held sink")
	}
	start := time.Now()
	c.deploy(deployment(tj.job, 2, false, c)[0])
	c.deploy(deployment(tj.job, 3, false, c)[0])
	if e := c.await(t, "end of attempt 2", isEnded(2)).GetAttemptEnded(); !e.Canceled {
		t.Fatalf("superseded attempt 2 ended with %v", e)
	}
	c.cancel(3)
	if e := c.await(t, "end of attempt 3", isEnded(3)).GetAttemptEnded(); !e.Canceled {
		t.Fatalf("canceled attempt 3 ended with %v", e)
	}
	c.deploy(deployment(tj.job, 4, false, c)[0])
	err := w.wait(t, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "attempt 1 of job "+testJobID+" did not end within 500ms of being canceled") {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Fatalf("gave up after %v", el)
	}
	release()
}
