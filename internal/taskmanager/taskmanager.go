// Package taskmanager is the TaskManager agent (`weir taskmanager`), a small
// agent like a kubelet (DESIGN.md §3): it registers its slots with the
// master's ResourceManager, reserves them when told, starts one worker
// process per job from the job's binary, reports worker exits, and keeps
// running when a worker crashes or the master goes away.
//
//	                 Connect (one stream)               FetchArtifact
//	master ◀──────────────────────────────────┐      ┌──────────▶ master
//	  Registered, HeartbeatRequest,            │      │
//	  RequestSlot, StartWorker, FreeSlot, ...  │      │ cache miss
//	        │ recv goroutine            sender goroutine   fetch goroutine
//	        ▼                                  │      │
//	     mailbox ──▶ agent goroutine: slots, workers, session state
//	        ▲                 │ exec (WEIR_LAUNCH, GOMAXPROCS, GOMEMLIMIT)
//	        │ waiter goroutine ▼
//	        └────────── worker process per job (own process group,
//	                    killed with the agent; log in WorkDir/logs)
//
// One goroutine (the agent's loop) owns all state; the gRPC receive loop,
// the process waiters, artifact fetches and timers only enqueue events.
package taskmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirstream/weir/internal/artifact"
	pb "github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/resource"
	"github.com/weirstream/weir/internal/version"
)

// Options configure a TaskManager.
type Options struct {
	// MasterAddress is the master's RPC endpoint, host:port.
	MasterAddress string
	// Slots is the number of equal slots carved from Total.
	Slots int
	// Total is what the TaskManager offers to its workers.
	Total resource.Profile
	// ResourceID names the TaskManager; default 32 random hex characters.
	ResourceID string
	// DataHost is the host workers' data servers listen on, as other
	// hosts reach it; default the address of the interface that reaches
	// the master.
	DataHost string
	// WorkDir holds the artifact cache (artifacts/) and the worker logs
	// (logs/); default a directory under the system's temporary directory.
	WorkDir string
	// Version is Weir's version, which the master checks; default
	// version.Version.
	Version string
	// Log receives the agent's log lines; default the standard logger.
	Log func(format string, args ...any)
	// Executable runs built-in jobs (`EXECUTABLE __worker builtin:NAME
	// ARGS…`); default os.Executable().
	Executable string
	// HeartbeatTimeout bounds the wait for the master's answer to a
	// registration, and the silence allowed after it when Registered does
	// not say; default 2 s (heartbeat.timeout).
	HeartbeatTimeout time.Duration
}

// Timing of the agent, variables so that tests may shorten them.
var (
	// stopGrace is how long a worker has to exit after SIGTERM before it
	// is killed.
	stopGrace = 3 * time.Second
	// Reconnection backoff: doubling from minBackoff to maxBackoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

const defaultHeartbeatTimeout = 2 * time.Second

// Run runs a TaskManager until ctx ends, then stops its workers and
// returns nil; or until the master refuses it, then stops its workers and
// returns the reason. A lost master is not an error: the TaskManager stops
// its workers, forgets its slots and registers again when it can.
func Run(ctx context.Context, o Options) error {
	if err := o.withDefaults(); err != nil {
		return err
	}
	cache, err := artifact.OpenCache(filepath.Join(o.WorkDir, "artifacts"))
	if err != nil {
		return fmt.Errorf("taskmanager: %w (cluster.working-dir chooses the directory)", err)
	}
	if err := os.MkdirAll(filepath.Join(o.WorkDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("taskmanager: worker log directory: %w; set cluster.working-dir to a writable directory", err)
	}
	conn, err := grpc.NewClient(o.MasterAddress, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's own reconnection backoff (1 s growing to 2 min) would
		// hold a restarted master off long after the agent's retries:
		// match it to them.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return fmt.Errorf("taskmanager: master address %q: %w; write it as HOST:PORT, e.g. --jobmanager master:6123", o.MasterAddress, err)
	}
	defer conn.Close()

	life, endLife := context.WithCancel(context.Background())
	a := &agent{
		o:        o,
		client:   pb.NewMasterClient(conn),
		cache:    cache,
		life:     life,
		mailbox:  make(chan event, 64),
		slots:    newSlotTable(slotProfiles(o.Total, o.Slots)),
		workers:  map[string]*worker{},
		stopping: map[*worker]bool{},
		pending:  map[string]*pb.StartWorker{},
		backoff:  minBackoff,
	}
	err = a.loop(ctx)
	// Every goroutine the agent started enqueues under life or ends with
	// the session it belongs to; ending life releases them.
	endLife()
	a.wg.Wait()
	return err
}

// withDefaults fills in the options left empty and checks the rest.
func (o *Options) withDefaults() error {
	if o.MasterAddress == "" {
		return errors.New("taskmanager: no master address; give --jobmanager HOST:PORT (the master's jobmanager.rpc.port, 6123 by default)")
	}
	if _, _, err := net.SplitHostPort(o.MasterAddress); err != nil {
		return fmt.Errorf("taskmanager: master address %q: %v; write it as HOST:PORT, e.g. master:6123", o.MasterAddress, err)
	}
	if o.Slots < 1 {
		return fmt.Errorf("taskmanager: %d slots; a TaskManager needs at least 1 (taskmanager.numberOfTaskSlots)", o.Slots)
	}
	if o.Total.IsNegative() {
		return fmt.Errorf("taskmanager: negative resources %s", o.Total)
	}
	if o.Log == nil {
		o.Log = log.Printf
	}
	if o.ResourceID == "" {
		var b [16]byte
		rand.Read(b[:])
		o.ResourceID = hex.EncodeToString(b[:])
	}
	if o.DataHost == "" {
		o.DataHost = hostReaching(o.MasterAddress)
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(os.TempDir(), "weir-taskmanager-"+o.ResourceID)
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("taskmanager: cannot find weir's own executable to run built-in jobs: %w", err)
		}
		o.Executable = exe
	}
	if o.Version == "" {
		o.Version = version.Version
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = defaultHeartbeatTimeout
	}
	return nil
}

// hostReaching returns the local address of the interface that reaches
// addr's host: a UDP "dial" sends nothing but makes the kernel pick the
// route. If that fails the host name is the best guess.
func hostReaching(addr string) string {
	c, err := net.Dial("udp", addr)
	if err == nil {
		defer c.Close()
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
			return ua.IP.String()
		}
	}
	h, err := os.Hostname()
	if err != nil {
		return "127.0.0.1"
	}
	return h
}

func slotProfiles(total resource.Profile, n int) []resource.Profile {
	p := total.Divide(n)
	out := make([]resource.Profile, n)
	for i := range out {
		out[i] = p
	}
	return out
}

// agent is the TaskManager's state, owned by the goroutine that runs loop.
type agent struct {
	o      Options
	client pb.MasterClient
	cache  *artifact.Cache

	// life ends after loop returns; goroutines enqueue under it.
	life    context.Context
	mailbox chan event
	wg      sync.WaitGroup

	// The session with the master: nil between attempts.
	session    *session
	sessions   int // sessions started, to tell stale events apart
	registered bool
	leaderID   string
	// silence is the heartbeat timeout of the current session.
	silence  time.Duration
	deadline *time.Timer // registration or heartbeat timeout; nil when unarmed
	retry    *time.Timer // next connection attempt; nil when none is due
	backoff  time.Duration
	// Reconnection state, to log each change once: failures counts the
	// attempts since the last registration (or start); problem is the
	// last connection problem logged; lost says a registration was lost.
	failures int
	problem  string
	lost     bool
	fenced   int // messages of another leader dropped in this session

	slots    *slotTable
	workers  map[string]*worker         // by job: the job's current worker
	stopping map[*worker]bool           // workers told to stop, not yet exited
	pending  map[string]*pb.StartWorker // by job: starts waiting for the job's old worker to exit
}

// event is what goroutines other than the agent's hand it.
type event any

type (
	// received is a message from the master on session.
	received struct {
		session int
		msg     *pb.MasterMessage
	}
	// sessionEnded is a session's stream failing or ending.
	sessionEnded struct {
		session int
		err     error
	}
	// artifactReady ends an artifact fetch for w.
	artifactReady struct {
		w    *worker
		path string
		err  error
	}
	// workerExited is w's process ending.
	workerExited struct {
		w      *worker
		status string
		tail   string
	}
	// killDue is the end of w's grace period after SIGTERM.
	killDue struct{ w *worker }
)

// enqueue hands ev to the agent; it gives up when the agent has ended.
func (a *agent) enqueue(ev event) {
	select {
	case a.mailbox <- ev:
	case <-a.life.Done():
	}
}

// timerC returns t's channel, or nil (never ready) if t is nil.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (a *agent) loop(ctx context.Context) error {
	a.connect()
	for {
		select {
		case <-ctx.Done():
			a.endSession()
			a.stopAllWorkers()
			a.awaitWorkers()
			return nil
		case ev := <-a.mailbox:
			if err := a.handle(ev); err != nil {
				a.endSession()
				a.stopAllWorkers()
				a.awaitWorkers()
				return err
			}
		case <-timerC(a.deadline):
			a.deadline = nil
			if a.registered {
				a.lostMaster(fmt.Errorf("no message from it for %v (heartbeat.timeout)", a.silence))
			} else {
				a.connectFailed(noAnswer, fmt.Errorf("%s did not answer the registration within %v; is it the master's RPC port (jobmanager.rpc.port)?",
					a.o.MasterAddress, a.o.HeartbeatTimeout))
			}
		case <-timerC(a.retry):
			a.retry = nil
			a.connect()
		}
	}
}

func (a *agent) handle(ev event) error {
	switch ev := ev.(type) {
	case received:
		if a.session == nil || ev.session != a.session.id {
			return nil // from a session already given up
		}
		return a.handleMessage(ev.msg)
	case sessionEnded:
		if a.session == nil || ev.session != a.session.id {
			return nil
		}
		if a.registered {
			a.lostMaster(ev.err)
		} else {
			a.connectFailed("", ev.err)
		}
	case artifactReady:
		a.artifactReady(ev)
	case workerExited:
		a.workerExited(ev)
	case killDue:
		a.killDue(ev.w)
	}
	return nil
}

// armDeadline (re)starts the registration or heartbeat timeout.
func (a *agent) armDeadline(d time.Duration) {
	if a.deadline == nil {
		a.deadline = time.NewTimer(d)
		return
	}
	a.deadline.Reset(d)
}

func (a *agent) disarmDeadline() {
	if a.deadline != nil {
		a.deadline.Stop()
		a.deadline = nil
	}
}

// handleMessage carries out one message of the master.
func (a *agent) handleMessage(m *pb.MasterMessage) error {
	if !a.registered {
		switch msg := m.Msg.(type) {
		case *pb.MasterMessage_Registered:
			a.registeredWith(m, msg.Registered)
			return nil
		case *pb.MasterMessage_Refused:
			return fmt.Errorf("the master at %s refused this TaskManager (%s): %s", a.o.MasterAddress, a.o.ResourceID, msg.Refused.GetReason())
		default:
			a.connectFailed(badFirstReply, fmt.Errorf("the master at %s sent %T before answering the registration; is it the same version of Weir?",
				a.o.MasterAddress, m.Msg))
			return nil
		}
	}
	if m.GetLeaderId() != a.leaderID {
		// A message of a former leader (fencing): drop it, and say so once.
		if a.fenced == 0 {
			a.o.Log("dropping messages of master leader %q; this TaskManager is registered with leader %q", m.GetLeaderId(), a.leaderID)
		}
		a.fenced++
		return nil
	}
	a.armDeadline(a.silence)
	switch msg := m.Msg.(type) {
	case *pb.MasterMessage_Heartbeat:
		a.send(&pb.TaskManagerMessage{Msg: &pb.TaskManagerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{
			Seq: msg.Heartbeat.GetSeq(), Slots: a.slotReport()}}})
	case *pb.MasterMessage_RequestSlot:
		a.requestSlot(msg.RequestSlot)
	case *pb.MasterMessage_StartWorker:
		a.startWorker(msg.StartWorker)
	case *pb.MasterMessage_FreeSlot:
		a.freeSlot(msg.FreeSlot)
	case *pb.MasterMessage_StopWorker:
		a.stopWorkerRequest(msg.StopWorker)
	case *pb.MasterMessage_Refused:
		return fmt.Errorf("the master at %s refused this TaskManager (%s): %s", a.o.MasterAddress, a.o.ResourceID, msg.Refused.GetReason())
	case *pb.MasterMessage_Registered:
		// A repeated answer; the session's terms do not change.
	}
	return nil
}

func (a *agent) registeredWith(m *pb.MasterMessage, r *pb.Registered) {
	a.registered = true
	a.leaderID = r.GetLeaderId()
	if a.leaderID == "" {
		a.leaderID = m.GetLeaderId()
	}
	a.silence = time.Duration(r.GetHeartbeatTimeoutMillis()) * time.Millisecond
	if a.silence <= 0 {
		a.silence = a.o.HeartbeatTimeout
	}
	a.armDeadline(a.silence)
	a.backoff = minBackoff
	switch {
	case a.failures > 0:
		a.o.Log("reached the master at %s after %s", a.o.MasterAddress, plural(a.failures, "failed attempt"))
	case a.lost:
		a.o.Log("reconnected to the master at %s", a.o.MasterAddress)
	}
	a.failures, a.problem, a.lost = 0, "", false
	a.o.Log("registered with the master at %s (leader %s) as %s: %d slots of %s (total %s), data host %s",
		a.o.MasterAddress, a.leaderID, a.o.ResourceID, a.o.Slots, a.o.Total.Divide(a.o.Slots), a.o.Total, a.o.DataHost)
}

// connectFailed ends an attempt to register and schedules the next one.
// kind, if set, classifies err, which then is the whole description.
func (a *agent) connectFailed(kind string, err error) {
	a.endSession()
	a.failures++
	text := ""
	if kind == "" {
		kind, text = describeConnectError(a.o.MasterAddress, err)
	} else {
		text = err.Error()
	}
	// Log the first failure and then only a change of problem, not every
	// retry.
	if kind != a.problem {
		a.problem = kind
		a.o.Log("%s -- retrying", text)
	}
	a.scheduleRetry()
}

// lostMaster ends a registered session: the slots go, and so do the
// workers, whose JobMasters are gone or will fail over.
func (a *agent) lostMaster(err error) {
	n := len(a.workers)
	a.o.Log("lost the master at %s: %v; stopping %s, freeing %s and reconnecting",
		a.o.MasterAddress, describeStreamError(err), plural(n, "worker"), plural(a.slots.used(), "slot"))
	a.endSession()
	a.stopAllWorkers()
	a.slots.clear()
	a.lost = true
	a.problem = ""
	a.scheduleRetry()
}

func (a *agent) scheduleRetry() {
	if a.retry != nil {
		a.retry.Stop()
	}
	a.retry = time.NewTimer(a.backoff)
	a.backoff = min(2*a.backoff, maxBackoff)
}

// send queues m on the session; a session whose master does not read is
// lost rather than left to block the agent.
func (a *agent) send(m *pb.TaskManagerMessage) {
	if a.session == nil || !a.registered {
		return
	}
	select {
	case a.session.out <- m:
	default:
		a.lostMaster(errors.New("it stopped reading this TaskManager's messages"))
	}
}

// slotReport is the heartbeat's view of the slots.
func (a *agent) slotReport() []*pb.SlotStatus {
	out := make([]*pb.SlotStatus, len(a.slots.held))
	for i, h := range a.slots.held {
		out[i] = &pb.SlotStatus{Index: int32(i), AllocationId: h.allocation, JobId: h.job}
	}
	return out
}

func (a *agent) requestSlot(r *pb.RequestSlot) {
	offer := &pb.SlotOffer{AllocationId: r.GetAllocationId(), SlotIndex: r.GetSlotIndex(),
		JobId: r.GetJobId(), JobMasterId: r.GetJobMasterId()}
	if err := a.slots.reserve(int(r.GetSlotIndex()), r.GetAllocationId(), r.GetJobId(), r.GetJobMasterId()); err != nil {
		offer.Error = err.Error()
	} else {
		offer.Profile = toProto(a.slots.profiles[r.GetSlotIndex()])
	}
	a.send(&pb.TaskManagerMessage{Msg: &pb.TaskManagerMessage_SlotOffer{SlotOffer: offer}})
}

func (a *agent) freeSlot(f *pb.FreeSlot) {
	if _, ok := a.slots.free(f.GetAllocationId(), f.GetJobId()); !ok {
		return // not ours (stale or for another TaskManager)
	}
	if a.slots.jobSlots(f.GetJobId()) > 0 {
		return
	}
	delete(a.pending, f.GetJobId())
	if w := a.workers[f.GetJobId()]; w != nil {
		a.stopWorker(w)
	}
}

func (a *agent) stopWorkerRequest(s *pb.StopWorker) {
	if p := a.pending[s.GetJobId()]; p != nil && (s.GetWorkerId() == "" || p.GetWorkerId() == s.GetWorkerId()) {
		delete(a.pending, s.GetJobId())
	}
	w := a.workers[s.GetJobId()]
	if w == nil || (s.GetWorkerId() != "" && w.id != s.GetWorkerId()) {
		return
	}
	a.stopWorker(w)
}

// endSession gives up the current session, if any.
func (a *agent) endSession() {
	a.disarmDeadline()
	if a.session != nil {
		a.session.cancel()
		a.session = nil
	}
	a.registered = false
	a.leaderID = ""
	a.fenced = 0
}

// hardwareCores is the machine's CPU count for the registration.
func hardwareCores() int32 { return int32(runtime.NumCPU()) }

func toProto(p resource.Profile) *pb.ResourceProfile {
	out := &pb.ResourceProfile{CpuMillis: p.CPU, TaskMemory: p.TaskMemory,
		ManagedMemory: p.ManagedMemory, NetworkMemory: p.NetworkMemory}
	if len(p.Extended) > 0 {
		out.Extended = make(map[string]int64, len(p.Extended))
		for k, v := range p.Extended {
			out.Extended[k] = v
		}
	}
	return out
}

// plural returns "1 worker", "2 workers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
