package taskmanager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/resource"
)

// The test binary doubles as the worker: a TaskManager under test starts it
// (as a job binary served by the fake master, or as `weir __worker
// builtin:NAME`), and launch's init hands it the worker settings.
func TestMain(m *testing.M) {
	if s := launch.Get(); s.Mode == launch.Worker && s.Worker != nil {
		workerMain(s)
		return
	}
	goleak.VerifyTestMain(m)
}

// record is what a test worker writes about itself, one JSON line per
// start.
type record struct {
	Pid         int                   `json:"pid"`
	Args        []string              `json:"args"`
	Worker      launch.WorkerSettings `json:"worker"`
	Parallelism int                   `json:"parallelism"`
	Config      map[string]string     `json:"config"`
	GOMAXPROCS  string                `json:"gomaxprocs"`
	GOMEMLIMIT  string                `json:"gomemlimit"`
	Launch      string                `json:"launch"` // WEIR_LAUNCH as the worker sees it after init: empty
}

// workerMain is a test worker: ARGS are [__worker builtin:NAME] --record
// FILE [--exit CODE]. It records itself, writes some output, then exits
// with CODE or waits to be stopped.
func workerMain(s *launch.Settings) {
	args := os.Args[1:]
	rest := args
	if len(rest) >= 2 && rest[0] == "__worker" {
		rest = rest[2:]
	}
	var file string
	exit := -1
	for i := 0; i+1 < len(rest); i += 2 {
		switch rest[i] {
		case "--record":
			file = rest[i+1]
		case "--exit":
			fmt.Sscan(rest[i+1], &exit)
		case "--ignore":
			if rest[i+1] == "SIGTERM" {
				signal.Ignore(syscall.SIGTERM)
			}
		}
	}
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(os.Stderr, "worker output line %d\n", i)
	}
	b, _ := json.Marshal(record{Pid: os.Getpid(), Args: args, Worker: *s.Worker, Parallelism: s.Parallelism,
		Config: s.Config, GOMAXPROCS: os.Getenv("GOMAXPROCS"), GOMEMLIMIT: os.Getenv("GOMEMLIMIT"), Launch: os.Getenv(launch.EnvVar)})
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f.Write(append(b, '\n'))
	f.Close()
	if exit >= 0 {
		os.Exit(exit)
	}
	select {}
}

// ---- fake master ---------------------------------------------------------

type fakeMaster struct {
	pb.UnimplementedMasterServer
	addr      string
	conns     chan *fakeConn
	artifacts map[string][]byte // by digest
	fetches   atomic.Int32
}

// fakeConn is one Connect stream as the test sees it.
type fakeConn struct {
	stream pb.Master_ConnectServer
	in     chan *pb.TaskManagerMessage // closed when the stream ends
	end    chan struct{}               // closed to end the stream
	leader string
}

func startFakeMaster(t *testing.T) *fakeMaster {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fm := &fakeMaster{addr: lis.Addr().String(), conns: make(chan *fakeConn, 16), artifacts: map[string][]byte{}}
	srv := grpc.NewServer()
	pb.RegisterMasterServer(srv, fm)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return fm
}

func (fm *fakeMaster) Connect(stream pb.Master_ConnectServer) error {
	c := &fakeConn{stream: stream, in: make(chan *pb.TaskManagerMessage, 1000), end: make(chan struct{})}
	go func() {
		defer close(c.in)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			c.in <- m
		}
	}()
	fm.conns <- c
	select {
	case <-c.end:
	case <-stream.Context().Done():
	}
	return nil
}

func (fm *fakeMaster) FetchArtifact(r *pb.FetchArtifactRequest, stream pb.Master_FetchArtifactServer) error {
	fm.fetches.Add(1)
	b, ok := fm.artifacts[r.GetDigest()]
	if !ok {
		return fmt.Errorf("no artifact %s", r.GetDigest())
	}
	for len(b) > 0 {
		n := min(len(b), 1<<20)
		if err := stream.Send(&pb.ArtifactChunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

const wait = 10 * time.Second

func (fm *fakeMaster) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-fm.conns:
		return c
	case <-time.After(wait):
		t.Fatal("the TaskManager did not connect")
		return nil
	}
}

// next returns the TaskManager's next message.
func (c *fakeConn) next(t *testing.T) *pb.TaskManagerMessage {
	t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			t.Fatal("the TaskManager closed the stream")
		}
		return m
	case <-time.After(wait):
		t.Fatal("no message from the TaskManager")
		return nil
	}
}

func (c *fakeConn) send(t *testing.T, m *pb.MasterMessage) {
	t.Helper()
	if m.LeaderId == "" {
		m.LeaderId = c.leader
	}
	if err := c.stream.Send(m); err != nil {
		t.Fatal(err)
	}
}

// register reads the registration and answers it.
func (c *fakeConn) register(t *testing.T, leader string, timeout time.Duration) *pb.RegisterTaskManager {
	t.Helper()
	reg := c.next(t).GetRegister()
	if reg == nil {
		t.Fatal("first message is not RegisterTaskManager")
	}
	c.leader = leader
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_Registered{Registered: &pb.Registered{
		LeaderId: leader, HeartbeatIntervalMillis: 100, HeartbeatTimeoutMillis: timeout.Milliseconds()}}})
	return reg
}

// heartbeat asks for a heartbeat and returns the answer, which must be the
// next message.
func (c *fakeConn) heartbeat(t *testing.T, seq int64) *pb.Heartbeat {
	t.Helper()
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_Heartbeat{Heartbeat: &pb.HeartbeatRequest{Seq: seq}}})
	m := c.next(t)
	hb := m.GetHeartbeat()
	if hb == nil || hb.GetSeq() != seq {
		t.Fatalf("want heartbeat %d, got %v", seq, m)
	}
	return hb
}

func (c *fakeConn) requestSlot(t *testing.T, alloc string, index int32, job string) *pb.SlotOffer {
	t.Helper()
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_RequestSlot{RequestSlot: &pb.RequestSlot{
		AllocationId: alloc, SlotIndex: index, JobId: job, JobMasterId: "jm-" + job}}})
	m := c.next(t)
	if m.GetSlotOffer() == nil {
		t.Fatalf("want a slot offer, got %v", m)
	}
	return m.GetSlotOffer()
}

func (c *fakeConn) close() { close(c.end) }

// ---- harness -------------------------------------------------------------

// logs collects the TaskManager's log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) printf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logs) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type runningTM struct {
	o      Options
	logs   *logs
	cancel context.CancelFunc
	done   chan error
}

var testTotal = resource.Profile{CPU: 2000, TaskMemory: 2 << 30, ManagedMemory: 1 << 30, Extended: map[string]int64{"gpu": 2}}

func startTM(t *testing.T, addr string, edit func(*Options)) *runningTM {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &runningTM{logs: &logs{}, done: make(chan error, 1)}
	r.o = Options{MasterAddress: addr, Slots: 2, Total: testTotal, WorkDir: t.TempDir(),
		Version: "test-version", Log: r.logs.printf, Executable: exe}
	if edit != nil {
		edit(&r.o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, r.o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(wait):
			t.Error("Run did not return after its context ended")
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("TaskManager log:\n%s", r.logs)
		}
	})
	return r
}

// stop ends the TaskManager and checks that Run returned nil.
func (r *runningTM) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
}

// eventually polls cond until it holds or the wait ends.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readRecords(t *testing.T, file string) []record {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// awaitRecords waits until the worker records in file number n.
func awaitRecords(t *testing.T, file string, n int) []record {
	t.Helper()
	var recs []record
	eventually(t, fmt.Sprintf("%d worker starts recorded", n), func() bool {
		recs = readRecords(t, file)
		return len(recs) >= n
	})
	return recs
}

func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func startWorker(job, worker string, art *pb.Artifact, args ...string) *pb.MasterMessage {
	return &pb.MasterMessage{Msg: &pb.MasterMessage_StartWorker{StartWorker: &pb.StartWorker{
		JobId: job, JobMasterId: "jm-" + job, WorkerId: worker, Artifact: art, Args: args,
		Config: map[string]string{"parallelism.default": "2"}, Parallelism: 2,
		Resources: &pb.ResourceProfile{CpuMillis: 1500, TaskMemory: 256 << 20}}}}
}

// ---- tests ---------------------------------------------------------------

func TestRegistrationHeartbeatsAndSlots(t *testing.T) {
	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, nil)
	c := fm.accept(t)
	reg := c.register(t, "leader-1", time.Minute)

	if len(reg.ResourceId) != 32 {
		t.Errorf("resource id %q: want 32 random hex characters", reg.ResourceId)
	}
	if _, err := hex.DecodeString(reg.ResourceId); err != nil {
		t.Errorf("resource id %q: %v", reg.ResourceId, err)
	}
	if reg.Version != "test-version" || reg.Pid != int32(os.Getpid()) || reg.DataHost != "127.0.0.1" || reg.Goos == "" {
		t.Errorf("registration %v", reg)
	}
	if got := reg.Total; got.CpuMillis != 2000 || got.TaskMemory != 2<<30 || got.ManagedMemory != 1<<30 || got.Extended["gpu"] != 2 {
		t.Errorf("total %v", got)
	}
	if len(reg.Slots) != 2 {
		t.Fatalf("%d slots, want 2", len(reg.Slots))
	}
	for i, s := range reg.Slots {
		if s.CpuMillis != 1000 || s.TaskMemory != 1<<30 || s.ManagedMemory != 512<<20 || s.Extended["gpu"] != 1 {
			t.Errorf("slot %d: %v, want half of the total", i, s)
		}
	}

	hb := c.heartbeat(t, 1)
	if len(hb.Slots) != 2 || hb.Slots[0].AllocationId != "" || hb.Slots[1].Index != 1 {
		t.Errorf("heartbeat slots %v, want two free", hb.Slots)
	}

	offer := c.requestSlot(t, "a1", 0, "j1")
	if offer.Error != "" || offer.AllocationId != "a1" || offer.JobId != "j1" || offer.JobMasterId != "jm-j1" ||
		offer.SlotIndex != 0 || offer.Profile.GetCpuMillis() != 1000 {
		t.Errorf("offer %v", offer)
	}
	if offer := c.requestSlot(t, "a2", 0, "j2"); !strings.Contains(offer.Error, "slot 0 is taken by allocation a1 of job j1") {
		t.Errorf("second request for slot 0: %v, want a refusal", offer)
	}
	if offer := c.requestSlot(t, "a1", 0, "j1"); offer.Error != "" {
		t.Errorf("repeated request of allocation a1: %v, want the offer again", offer)
	}
	if offer := c.requestSlot(t, "a3", 5, "j1"); !strings.Contains(offer.Error, "slot 5 does not exist") {
		t.Errorf("request for slot 5: %v", offer)
	}

	// Fencing: a former leader's messages are dropped.
	c.send(t, &pb.MasterMessage{LeaderId: "leader-0", Msg: &pb.MasterMessage_Heartbeat{Heartbeat: &pb.HeartbeatRequest{Seq: 7}}})
	c.send(t, &pb.MasterMessage{LeaderId: "leader-0", Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a1", JobId: "j1"}}})
	// A FreeSlot for a job that does not hold the allocation is dropped.
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a1", JobId: "j2"}}})
	hb = c.heartbeat(t, 8)
	if hb.Slots[0].AllocationId != "a1" || hb.Slots[0].JobId != "j1" || hb.Slots[1].AllocationId != "" {
		t.Errorf("heartbeat slots %v, want slot 0 held by a1 of j1", hb.Slots)
	}
	if tm.logs.count("dropping messages of master leader \"leader-0\"") != 1 {
		t.Errorf("fencing not logged once:\n%s", tm.logs)
	}

	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a1", JobId: "j1"}}})
	if hb := c.heartbeat(t, 9); hb.Slots[0].AllocationId != "" {
		t.Errorf("slot 0 not freed: %v", hb.Slots)
	}
	if tm.logs.count("registered with the master at "+fm.addr) != 1 {
		t.Errorf("registration not logged:\n%s", tm.logs)
	}
	tm.stop(t)
}

func TestRefusedEndsRun(t *testing.T) {
	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, func(o *Options) { o.ResourceID = "tm-1" })
	c := fm.accept(t)
	if reg := c.next(t).GetRegister(); reg.GetResourceId() != "tm-1" {
		t.Fatalf("registration %v", reg)
	}
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_Refused{Refused: &pb.Refused{
		Reason: "version other-version of this TaskManager is not the master's version"}}})
	select {
	case err := <-tm.done:
		if err == nil || !strings.Contains(err.Error(), "refused this TaskManager (tm-1): version other-version") {
			t.Fatalf("Run: %v, want the refusal", err)
		}
		tm.done <- nil
	case <-time.After(wait):
		t.Fatal("Run did not return after the refusal")
	}
}

func TestWorkerFromArtifact(t *testing.T) {
	fm := startFakeMaster(t)
	exe, _ := os.Executable()
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	digest := hex.EncodeToString(sum[:])
	fm.artifacts[digest] = bin
	art := &pb.Artifact{Digest: digest, Size: int64(len(bin)), Name: "testjob"}

	tm := startTM(t, fm.addr, func(o *Options) { o.ResourceID = "tm-1"; o.DataHost = "data.example" })
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	c.requestSlot(t, "a2", 1, "j1")

	rec := filepath.Join(t.TempDir(), "rec")
	c.send(t, startWorker("j1", "w1", art, "--record", rec))
	r := awaitRecords(t, rec, 1)[0]
	want := launch.WorkerSettings{MasterAddress: fm.addr, JobID: "j1", JobMasterID: "jm-j1", WorkerID: "w1", ResourceID: "tm-1", DataHost: "data.example"}
	if r.Worker != want {
		t.Errorf("worker settings %+v, want %+v", r.Worker, want)
	}
	if r.GOMAXPROCS != "2" || r.GOMEMLIMIT != "268435456" || r.Parallelism != 2 || r.Config["parallelism.default"] != "2" {
		t.Errorf("worker environment %+v", r)
	}
	if strings.Join(r.Args, " ") != "--record "+rec || r.Launch != "" {
		t.Errorf("worker args %q, launch env %q", r.Args, r.Launch)
	}

	// The job's worker runs already: its StartWorker again does nothing.
	c.send(t, startWorker("j1", "w1", art, "--record", rec))
	c.heartbeat(t, 1)
	if logsDir, _ := os.ReadDir(filepath.Join(tm.o.WorkDir, "logs")); len(logsDir) != 1 {
		t.Errorf("%d worker logs, want 1 (one process)", len(logsDir))
	}

	// A crash is reported and the TaskManager carries on.
	if err := syscall.Kill(r.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m := c.next(t)
	ex := m.GetWorkerExited()
	if ex == nil || ex.JobId != "j1" || ex.WorkerId != "w1" || ex.Pid != int32(r.Pid) || ex.Status != "signal: killed" {
		t.Fatalf("want WorkerExited of w1 killed, got %v", m)
	}
	if lines := strings.Split(ex.StderrTail, "\n"); len(lines) != tailLines || lines[len(lines)-1] != "worker output line 30" {
		t.Errorf("stderr tail %q, want the last %d lines", ex.StderrTail, tailLines)
	}
	c.heartbeat(t, 2)

	// A new worker for the job: the binary comes from the cache.
	c.send(t, startWorker("j1", "w3", art, "--record", rec))
	r3 := awaitRecords(t, rec, 2)[1]
	if r3.Worker.WorkerID != "w3" {
		t.Errorf("second start: worker %q", r3.Worker.WorkerID)
	}
	if n := fm.fetches.Load(); n != 1 {
		t.Errorf("artifact fetched %d times, want once", n)
	}

	// Freeing one of the job's two slots keeps the worker; freeing the
	// last stops it, and a stop is not reported as an exit.
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a1", JobId: "j1"}}})
	c.heartbeat(t, 3)
	if gone(r3.Pid) {
		t.Fatal("worker stopped while its job still holds a slot")
	}
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a2", JobId: "j1"}}})
	eventually(t, "the worker to stop", func() bool { return gone(r3.Pid) })
	c.heartbeat(t, 4)
	tm.stop(t)
	if tm.logs.count("worker started: job j1") != 2 || tm.logs.count("worker exited: job j1, worker w1") != 1 {
		t.Errorf("log:\n%s", tm.logs)
	}
}

// TestStartWorkerReplacesOldWorker: a StartWorker with a new worker id
// for a job whose worker this agent still has means the master gave the
// old one up (say it crashed and the agent has not handled its exit yet):
// the old one is stopped, without a report, and the new one started.
func TestStartWorkerReplacesOldWorker(t *testing.T) {
	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, nil)
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	builtin := &pb.Artifact{Builtin: "builtin:testjob"}
	rec := filepath.Join(t.TempDir(), "rec")
	c.send(t, startWorker("j1", "w1", builtin, "--record", rec))
	old := awaitRecords(t, rec, 1)[0]
	c.send(t, startWorker("j1", "w2", builtin, "--record", rec))
	recs := awaitRecords(t, rec, 2)
	if recs[1].Worker.WorkerID != "w2" || !gone(old.Pid) {
		t.Fatalf("after StartWorker w2: workers %+v; w1 (pid %d) gone: %v", recs, old.Pid, gone(old.Pid))
	}
	// The next message is the heartbeat's answer, not w1's exit.
	c.heartbeat(t, 1)
	tm.stop(t)
	if tm.logs.count("worker w1 of job j1 is replaced by worker w2") != 1 || tm.logs.count("worker exited") != 0 {
		t.Errorf("log:\n%s", tm.logs)
	}
}

func TestBuiltinWorkerExitAndStop(t *testing.T) {
	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, nil)
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	c.requestSlot(t, "a2", 1, "j2")
	builtin := &pb.Artifact{Builtin: "builtin:testjob"}

	// A worker that fails is reported with its status and output.
	rec1 := filepath.Join(t.TempDir(), "rec1")
	c.send(t, startWorker("j1", "w1", builtin, "--record", rec1, "--exit", "3"))
	m := c.next(t)
	if ex := m.GetWorkerExited(); ex == nil || ex.Status != "exit status 3" || !strings.Contains(ex.StderrTail, "worker output line 30") {
		t.Fatalf("want WorkerExited with exit status 3, got %v", m)
	}
	if r := readRecords(t, rec1)[0]; strings.Join(r.Args[:2], " ") != "__worker builtin:testjob" {
		t.Errorf("built-in worker args %q", r.Args)
	}

	// Two jobs, two processes; StopWorker stops one without a report.
	rec2 := filepath.Join(t.TempDir(), "rec2")
	c.send(t, startWorker("j1", "w2", builtin, "--record", rec2))
	c.send(t, startWorker("j2", "w3", builtin, "--record", rec2))
	recs := awaitRecords(t, rec2, 2)
	if recs[0].Pid == recs[1].Pid {
		t.Fatal("two jobs share a worker process")
	}
	pids := map[string]int{}
	for _, r := range recs {
		pids[r.Worker.JobID] = r.Pid
	}
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_StopWorker{StopWorker: &pb.StopWorker{JobId: "j1", WorkerId: "w2"}}})
	eventually(t, "j1's worker to stop", func() bool { return gone(pids["j1"]) })
	c.heartbeat(t, 1)
	if gone(pids["j2"]) {
		t.Fatal("stopping j1's worker stopped j2's")
	}

	// Ending the TaskManager stops the other worker.
	tm.stop(t)
	if !gone(pids["j2"]) {
		t.Error("j2's worker outlived the TaskManager")
	}
}

func TestStopKillsAWorkerThatIgnoresSIGTERM(t *testing.T) {
	old := stopGrace
	stopGrace = 200 * time.Millisecond
	defer func() { stopGrace = old }()

	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, nil)
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	rec := filepath.Join(t.TempDir(), "rec")
	c.send(t, startWorker("j1", "w1", &pb.Artifact{Builtin: "testjob"}, "--record", rec, "--ignore", "SIGTERM"))
	pid := awaitRecords(t, rec, 1)[0].Pid
	c.send(t, &pb.MasterMessage{Msg: &pb.MasterMessage_FreeSlot{FreeSlot: &pb.FreeSlot{AllocationId: "a1", JobId: "j1"}}})
	eventually(t, "the worker to be killed", func() bool { return gone(pid) })
	c.heartbeat(t, 1)
	tm.stop(t)
	if tm.logs.count("did not exit within 200ms of SIGTERM; killing it") != 1 || tm.logs.count("(signal: killed)") != 1 {
		t.Errorf("log:\n%s", tm.logs)
	}
}

func TestWorkerStartFailed(t *testing.T) {
	fm := startFakeMaster(t)
	startTM(t, fm.addr, nil)
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	// A StartWorker for a job without a slot here is dropped.
	c.send(t, startWorker("j9", "w0", &pb.Artifact{Builtin: "builtin:testjob"}))
	c.send(t, startWorker("j1", "w1", &pb.Artifact{Digest: strings.Repeat("ab", 32), Name: "missing"}))
	m := c.next(t)
	f := m.GetWorkerStartFailed()
	if f == nil || f.JobId != "j1" || f.WorkerId != "w1" || !strings.Contains(f.Error, "no artifact") {
		t.Fatalf("want WorkerStartFailed for the missing artifact, got %v", m)
	}
}

func TestLostMaster(t *testing.T) {
	fm := startFakeMaster(t)
	tm := startTM(t, fm.addr, func(o *Options) { o.ResourceID = "tm-1" })
	c := fm.accept(t)
	c.register(t, "leader-1", time.Minute)
	c.requestSlot(t, "a1", 0, "j1")
	rec := filepath.Join(t.TempDir(), "rec")
	c.send(t, startWorker("j1", "w1", &pb.Artifact{Builtin: "builtin:testjob"}, "--record", rec))
	pid := awaitRecords(t, rec, 1)[0].Pid

	// The master closes the stream: the worker stops, the slots are
	// forgotten and the TaskManager registers again.
	c.close()
	c2 := fm.accept(t)
	if reg := c2.register(t, "leader-2", 300*time.Millisecond); reg.ResourceId != "tm-1" {
		t.Errorf("re-registration as %q", reg.ResourceId)
	}
	eventually(t, "the worker to stop", func() bool { return gone(pid) })
	if hb := c2.heartbeat(t, 1); hb.Slots[0].AllocationId != "" {
		t.Errorf("slots after reconnection %v, want all free", hb.Slots)
	}
	// The old leader's messages are dropped.
	c2.send(t, &pb.MasterMessage{LeaderId: "leader-1", Msg: &pb.MasterMessage_Heartbeat{Heartbeat: &pb.HeartbeatRequest{Seq: 5}}})
	c2.heartbeat(t, 6)

	// A silent master is lost after its heartbeat timeout (300 ms here).
	c3 := fm.accept(t)
	c3.register(t, "leader-3", time.Minute)
	c3.heartbeat(t, 1)
	if n := tm.logs.count("lost the master"); n != 2 {
		t.Errorf("%d losses logged, want 2:\n%s", n, tm.logs)
	}
	if tm.logs.count("no message from it for 300ms") != 1 || tm.logs.count("reconnected to the master") != 2 {
		t.Errorf("log:\n%s", tm.logs)
	}
	tm.stop(t)
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func TestNotAMaster(t *testing.T) {
	old := maxBackoff
	maxBackoff = 200 * time.Millisecond
	defer func() { maxBackoff = old }()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: lis}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Listener = cl
	srv.Start()
	defer srv.Close()

	tm := startTM(t, lis.Addr().String(), nil)
	eventually(t, "three connection attempts", func() bool { return cl.n.Load() >= 3 })
	tm.stop(t)
	if n := tm.logs.count(lis.Addr().String() + " is not a Weir master (it answers in HTTP/1.1, not gRPC)"); n != 1 {
		t.Errorf("%d 'not a Weir master' lines, want 1:\n%s", n, tm.logs)
	}

	// A gRPC server of something else.
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gsrv := grpc.NewServer()
	served := make(chan struct{})
	go func() {
		defer close(served)
		gsrv.Serve(glis)
	}()
	defer func() {
		gsrv.Stop()
		<-served
	}()
	tm = startTM(t, glis.Addr().String(), nil)
	eventually(t, "the failure to be logged", func() bool { return tm.logs.count("is not a Weir master") > 0 })
	tm.stop(t)
	if n := tm.logs.count(glis.Addr().String() + " is not a Weir master (it does not serve weir.cluster.v1.Master)"); n != 1 {
		t.Errorf("want one 'not a Weir master' line:\n%s", tm.logs)
	}
}

func TestMasterUnreachable(t *testing.T) {
	old := maxBackoff
	maxBackoff = 200 * time.Millisecond
	defer func() { maxBackoff = old }()

	// A port where nothing listens.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	tm := startTM(t, addr, nil)
	eventually(t, "the failure to be logged", func() bool { return tm.logs.count("cannot reach") > 0 })
	tm.stop(t)
	want := "cannot reach the master at " + addr + ": dial tcp " + addr + ": connect: connection refused; is `weir cluster start` running there? -- retrying"
	if n := tm.logs.count(want); n != 1 {
		t.Errorf("want one %q line:\n%s", want, tm.logs)
	}

	// A server that hangs up at once, retried: one line only.
	lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: lis}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer func() {
		lis.Close()
		<-done
	}()
	tm = startTM(t, lis.Addr().String(), nil)
	eventually(t, "three connection attempts", func() bool { return cl.n.Load() >= 3 })
	tm.stop(t)
	if n := tm.logs.count("cannot reach the master at " + lis.Addr().String()); n != 1 {
		t.Errorf("%d 'cannot reach' lines, want 1:\n%s", n, tm.logs)
	}
}
