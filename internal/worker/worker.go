// Package worker is the worker process of a job: the job's binary (or
// `weir __worker builtin:NAME`), started by a TaskManager, serving the
// subtasks that the job's JobMaster deploys to it.
//
//	JobMaster ◀══ Attach (gRPC stream) ══▶ recv goroutine ──▶ run loop (owns the attempt)
//	                    ▲                                        │ Deploy → runtime.Start
//	                    │                                        │ Trigger*/Notify*/Release/Cancel
//	                    └──── sender goroutine ◀── outbox ◀──────┤
//	                            (one Send at a time)     ▲       ▼
//	                                                     └── checkpoint hooks (task goroutines)
//	worker ⇄ other workers: network.Server (one per worker) and a
//	network.Client per attempt, the data plane of internal/network.
//
// One run loop owns the attempt; the receiver, the sender and the tasks'
// checkpoint hooks talk to it through channels and the outbox, never
// through shared state. A worker serves one attempt at a time: a Deploy of
// a newer attempt cancels the running one and starts when it has ended.
//
// The worker ends when the TaskManager stops it (the context), when the
// JobMaster refuses it, or when it loses the JobMaster: the stream breaks,
// or nothing arrives for heartbeat.timeout although the JobMaster asks for
// a heartbeat every heartbeat.interval. It then cancels its tasks: a worker
// without a JobMaster would run them uncoordinated.
package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/minicluster"
	"github.com/weirstream/weir/internal/network"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/version"
)

// Execution states reported in TaskStateChanged, Flink's names.
const (
	stateDeploying = "DEPLOYING"
	stateRunning   = "RUNNING"
	stateFinished  = "FINISHED"
	stateCanceled  = "CANCELED"
	stateFailed    = "FAILED"
)

// tuning holds the bounds of a worker that are not configuration keys.
type tuning struct {
	// connectTimeout bounds reaching the master before the first Attach.
	connectTimeout time.Duration
	// cancelTimeout bounds how long a canceled attempt may take to end
	// before the worker gives up on it (and exits, so that its
	// TaskManager starts a fresh process).
	cancelTimeout time.Duration
	// flushTimeout bounds sending what is queued when the worker ends.
	flushTimeout time.Duration
}

var defaultTuning = tuning{connectTimeout: 10 * time.Second, cancelTimeout: 10 * time.Second, flushTimeout: time.Second}

// maxMessageSize is the largest gRPC message a worker sends or receives:
// acknowledgements and deployments carry operator state.
const maxMessageSize = math.MaxInt32

// Serve runs the worker until ctx is canceled (nil), the JobMaster refuses
// it or it loses the JobMaster (an error saying so). s must be a Worker
// launch (s.Worker set); s.Config configures the tasks.
func Serve(ctx context.Context, job *runtime.Job, s *launch.Settings) error {
	return serve(ctx, job, s, defaultTuning)
}

func serve(ctx context.Context, job *runtime.Job, s *launch.Settings, tn tuning) error {
	ws := s.Worker
	if ws == nil {
		return errors.New("worker: no worker settings; a worker is started by a TaskManager")
	}
	jobID, err := hex.DecodeString(ws.JobID)
	if err != nil || len(jobID) != 16 {
		return fmt.Errorf("worker: job id %q is not 32 hex digits", ws.JobID)
	}
	cfg, err := config.FromMap(s.Config)
	if err != nil {
		return fmt.Errorf("worker: job configuration: %w", err)
	}
	w := &worker{
		job: job, ws: ws, tn: tn, cfg: cfg,
		base:    minicluster.Options(cfg),
		timeout: cfg.Duration(config.HeartbeatTimeout),
		out:     newOutbox(),
		inbox:   make(chan *clusterpb.JobMasterMessage),
		recvErr: make(chan error, 1),
		sendErr: make(chan error, 1),
		ended:   make(chan attemptEnd),
		quit:    make(chan struct{}),
		log:     func(string, ...any) {},
		graph:   newGraphInfo(job.Graph),
	}
	copy(w.jobID[:], jobID)
	if !s.Quiet {
		w.log = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "weir worker %s: %s\n", short(ws.WorkerID), fmt.Sprintf(format, args...))
		}
	}
	return w.serve(ctx)
}

// worker is one worker process's state. The fields below "run loop" are
// owned by the run loop's goroutine.
type worker struct {
	job     *runtime.Job
	ws      *launch.WorkerSettings
	tn      tuning
	cfg     *config.Config
	base    runtime.Options
	timeout time.Duration
	jobID   [16]byte
	graph   *graphInfo
	log     func(format string, args ...any)

	server   *network.Server
	backends *minicluster.Backends
	out      *outbox

	inbox   chan *clusterpb.JobMasterMessage
	recvErr chan error
	sendErr chan error
	ended   chan attemptEnd
	quit    chan struct{} // closed when the run loop is done

	nativeOnce sync.Once

	// run loop
	cur         *attempt
	deployed    bool
	last        uint32            // the newest attempt deployed here
	pending     *clusterpb.Deploy // waits for cur to end
	cancelLimit time.Time         // when cur, canceled, must have ended
	lastHeard   time.Time
	dropped     int
}

// attempt is the share of one attempt of the job that this worker runs.
type attempt struct {
	id       uint32
	running  *runtime.Running
	cancel   context.CancelFunc
	client   *network.Client
	canceled bool // by the JobMaster or this worker, not a failure
}

type attemptEnd struct {
	a   *attempt
	err error
}

func (w *worker) serve(ctx context.Context) (err error) {
	host := w.ws.DataHost
	if host == "" {
		host = "127.0.0.1"
	}
	w.server, err = network.Listen(net.JoinHostPort(host, "0"), network.Options{})
	if err != nil {
		return fmt.Errorf("worker: cannot listen for data connections on %s: %w", host, err)
	}
	defer w.server.Close()
	// Two workers of a job may share a host (two TaskManagers there): the
	// worker id keeps their local state directories apart.
	w.backends, err = minicluster.NewBackends(w.cfg, w.ws.JobID+"-"+short(w.ws.WorkerID), w.log)
	if err != nil {
		return err
	}

	conn, err := grpc.NewClient(w.ws.MasterAddress,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: max(w.timeout, time.Second), PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
	if err != nil {
		w.backends.RemoveAll()
		return fmt.Errorf("worker: master address %q: %w", w.ws.MasterAddress, err)
	}
	defer conn.Close()
	if err := w.connect(ctx, conn); err != nil {
		w.backends.RemoveAll()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	streamCtx, cancelStream := context.WithCancel(context.Background())
	defer cancelStream()
	stream, err := clusterpb.NewMasterClient(conn).Attach(streamCtx)
	if err != nil {
		w.backends.RemoveAll()
		return fmt.Errorf("cannot attach to the JobMaster at %s: %w", w.ws.MasterAddress, err)
	}
	// The hello goes first, before the sender starts: nothing may
	// overtake it, not even a heartbeat.
	if err := stream.Send(&clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Hello{Hello: &clusterpb.WorkerHello{
		JobId: w.ws.JobID, JobMasterId: w.ws.JobMasterID, WorkerId: w.ws.WorkerID, ResourceId: w.ws.ResourceID,
		Pid: int32(os.Getpid()), DataAddress: w.server.Addr(), Version: version.Version, Plan: w.job.Graph,
	}}}); err != nil {
		w.backends.RemoveAll()
		return w.lost(err)
	}

	var goroutines sync.WaitGroup
	senderDone := make(chan struct{})
	goroutines.Add(2)
	go func() {
		defer goroutines.Done()
		defer close(senderDone)
		if err := w.out.run(stream.Send, streamCtx.Done()); err != nil {
			w.sendErr <- err
		}
	}()
	go func() {
		defer goroutines.Done()
		w.receive(stream)
	}()

	err = w.runLoop(ctx)
	clean := w.stopAttempt()
	// Send what is queued (the last AttemptEnded, say), bounded: the
	// JobMaster may be gone.
	w.out.close()
	select {
	case <-senderDone:
	case <-time.After(w.tn.flushTimeout):
	}
	cancelStream()
	close(w.quit)
	goroutines.Wait()
	w.out.encoders.Wait()
	if clean {
		w.backends.RemoveAll()
	}
	return err
}

// connect waits until the connection to the master is up, so that a
// master still starting is not a failure but one that cannot be reached
// is, after tn.connectTimeout.
func (w *worker) connect(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, w.tn.connectTimeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("cannot reach the master at %s within %v (connection %s); check that it runs and that this host can reach it",
				w.ws.MasterAddress, w.tn.connectTimeout, strings.ToLower(s.String()))
		}
	}
}

// receive passes the JobMaster's messages to the run loop until the
// stream ends.
func (w *worker) receive(stream clusterpb.Master_AttachClient) {
	for {
		m, err := stream.Recv()
		if err != nil {
			w.recvErr <- err
			return
		}
		select {
		case w.inbox <- m:
		case <-w.quit:
			return
		}
	}
}

// runLoop handles the JobMaster's messages and the attempt's end until the
// worker must stop; it returns Serve's result.
func (w *worker) runLoop(ctx context.Context) error {
	w.lastHeard = time.Now()
	tick := time.NewTicker(max(min(w.timeout/4, 100*time.Millisecond), 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.log("stopping: %v", context.Cause(ctx))
			return nil
		case m := <-w.inbox:
			if err := w.handle(m); err != nil {
				return err
			}
		case e := <-w.ended:
			w.attemptEnded(e)
		case err := <-w.recvErr:
			return w.lost(err)
		case err := <-w.sendErr:
			return w.lost(err)
		case now := <-tick.C:
			if d := now.Sub(w.lastHeard); d > w.timeout {
				return fmt.Errorf("lost the JobMaster at %s: nothing heard from it for %v (heartbeat.timeout is %v)",
					w.ws.MasterAddress, d.Round(time.Millisecond), w.timeout)
			}
			if w.cur != nil && w.cur.canceled && !w.cancelLimit.IsZero() && now.After(w.cancelLimit) {
				return fmt.Errorf("attempt %d of job %s did not end within %v of being canceled (a task does not return); "+
					"the worker exits so that its TaskManager can start a fresh one", w.cur.id, w.ws.JobID, w.tn.cancelTimeout)
			}
		}
	}
}

// lost describes a broken stream.
func (w *worker) lost(err error) error {
	what := err.Error()
	switch {
	case errors.Is(err, io.EOF):
		what = "the master closed the connection"
	case status.Code(err) == codes.Unavailable:
		what = "the connection broke: " + status.Convert(err).Message()
	case status.Code(err) != codes.Unknown:
		what = fmt.Sprintf("%s: %s", status.Code(err), status.Convert(err).Message())
	}
	return fmt.Errorf("lost the JobMaster at %s: %s", w.ws.MasterAddress, what)
}

// handle carries out one message of the JobMaster; an error ends the worker.
func (w *worker) handle(m *clusterpb.JobMasterMessage) error {
	if m.GetJobMasterId() != w.ws.JobMasterID {
		// A message of a JobMaster that is no longer the job's (fencing).
		if w.dropped++; w.dropped <= 3 {
			w.log("dropping a message of JobMaster %q; this worker belongs to JobMaster %q", m.GetJobMasterId(), w.ws.JobMasterID)
		}
		return nil
	}
	w.lastHeard = time.Now()
	cur := func(attempt uint32) *runtime.Running {
		if w.cur == nil || w.cur.id != attempt || w.cur.canceled {
			return nil
		}
		return w.cur.running
	}
	switch msg := m.Msg.(type) {
	case *clusterpb.JobMasterMessage_Heartbeat:
		w.out.putUrgent(&clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Heartbeat{
			Heartbeat: &clusterpb.WorkerHeartbeat{Seq: msg.Heartbeat.GetSeq()}}})
	case *clusterpb.JobMasterMessage_Refused:
		return fmt.Errorf("the JobMaster at %s refused this worker: %s", w.ws.MasterAddress, msg.Refused.GetReason())
	case *clusterpb.JobMasterMessage_Deploy:
		w.deploy(msg.Deploy)
	case *clusterpb.JobMasterMessage_TriggerCheckpoint:
		if r := cur(msg.TriggerCheckpoint.GetAttempt()); r != nil {
			r.TriggerCheckpoint(msg.TriggerCheckpoint.GetCheckpoint())
		}
	case *clusterpb.JobMasterMessage_TriggerStop:
		if r := cur(msg.TriggerStop.GetAttempt()); r != nil {
			r.TriggerStop(msg.TriggerStop.GetCheckpoint(), msg.TriggerStop.GetDrain())
		}
	case *clusterpb.JobMasterMessage_NotifyComplete:
		if r := cur(msg.NotifyComplete.GetAttempt()); r != nil {
			r.NotifyCheckpointComplete(msg.NotifyComplete.GetCheckpoint())
		}
	case *clusterpb.JobMasterMessage_NotifyAborted:
		if r := cur(msg.NotifyAborted.GetAttempt()); r != nil {
			r.NotifyCheckpointAborted(msg.NotifyAborted.GetCheckpoint())
		}
	case *clusterpb.JobMasterMessage_Release:
		if r := cur(msg.Release.GetAttempt()); r != nil {
			r.Release()
		}
	case *clusterpb.JobMasterMessage_Cancel:
		id := msg.Cancel.GetAttempt()
		switch {
		case w.pending != nil && w.pending.GetAttempt() == id:
			w.pending = nil
			w.sendEnded(id, runtime.ErrCanceled, true)
		case w.cur != nil && w.cur.id == id:
			w.cancelAttempt()
		}
	default:
		w.log("ignoring a message this worker does not know (%T); is the master of another version?", m.Msg)
	}
	return nil
}

// deploy starts an attempt, or queues it until the running one, canceled,
// has ended.
func (w *worker) deploy(d *clusterpb.Deploy) {
	if w.deployed && d.GetAttempt() <= w.last {
		w.log("ignoring the deployment of attempt %d: attempt %d was deployed already", d.GetAttempt(), w.last)
		return
	}
	w.deployed, w.last = true, d.GetAttempt()
	if w.cur != nil {
		if p := w.pending; p != nil {
			// Superseded before it could start.
			w.sendEnded(p.GetAttempt(), runtime.ErrCanceled, true)
		}
		w.pending = d
		w.cancelAttempt()
		return
	}
	w.start(d)
}

// cancelAttempt cancels the running attempt; its end arrives on w.ended.
func (w *worker) cancelAttempt() {
	if w.cur.canceled {
		return
	}
	w.cur.canceled = true
	w.cancelLimit = time.Now().Add(w.tn.cancelTimeout)
	w.cur.cancel()
}

// start starts attempt d; if it cannot start, the JobMaster is told at once.
func (w *worker) start(d *clusterpb.Deploy) {
	id := d.GetAttempt()
	local, addrs, err := w.graph.placement(d)
	if err != nil {
		w.sendEnded(id, err, false)
		return
	}
	restore, err := decodeRestore(d)
	if err != nil {
		w.sendEnded(id, err, false)
		return
	}
	for _, t := range d.GetTasks() {
		w.out.put(taskState(id, runtime.TaskID{Vertex: t.GetVertex(), Subtask: t.GetSubtask()}, stateDeploying))
	}
	client := network.NewClient(network.Options{})
	opts := w.base
	opts.Placement = &runtime.Placement{
		JobID: w.jobID, Attempt: id, Server: w.server, Client: client,
		Local:    func(v int32, s int) bool { return local[runtime.TaskID{Vertex: v, Subtask: int32(s)}] },
		DataAddr: func(v int32, s int) string { return addrs[runtime.TaskID{Vertex: v, Subtask: int32(s)}] },
	}
	opts.Restore = restore
	if d.GetCheckpoints() {
		opts.Checkpoints = &hooks{w: w, attempt: id}
	}
	w.backends.Configure(&opts)
	actx, cancel := context.WithCancel(context.Background())
	r, err := runtime.Start(actx, w.job, opts)
	if err != nil {
		cancel()
		_ = client.Close()
		w.sendEnded(id, err, false)
		return
	}
	a := &attempt{id: id, running: r, cancel: cancel, client: client}
	w.cur, w.cancelLimit = a, time.Time{}
	for _, t := range r.Tasks() {
		w.out.put(taskState(id, t, stateRunning))
	}
	w.log("attempt %d: running %d tasks", id, len(r.Tasks()))
	go func() {
		err := r.Wait()
		// Closing the client flushes the last buffers to the other workers.
		_ = client.Close()
		cancel()
		select {
		case w.ended <- attemptEnd{a, err}:
		case <-w.quit:
		}
	}()
}

func decodeRestore(d *clusterpb.Deploy) (map[string]*runtime.RestoredState, error) {
	restore, err := decodeRestoreState(d.GetRestore())
	if err != nil {
		var cp int64
		if len(d.GetRestore()) > 0 {
			cp = d.GetRestore()[0].GetCheckpoint()
		}
		return nil, &runtime.RestoreError{Checkpoint: cp, Err: err}
	}
	return restore, nil
}

// attemptEnded reports the end of an attempt and starts the one waiting
// for it.
func (w *worker) attemptEnded(e attemptEnd) {
	if e.a != w.cur {
		return
	}
	w.cur, w.cancelLimit = nil, time.Time{}
	state := stateFinished
	switch {
	case e.err == nil:
	case e.a.canceled || errors.Is(e.err, runtime.ErrCanceled):
		state = stateCanceled
	default:
		state = stateFailed
	}
	for _, t := range e.a.running.Tasks() {
		w.out.put(taskState(e.a.id, t, state))
	}
	w.sendEnded(e.a.id, e.err, e.a.canceled)
	if e.err != nil {
		w.log("attempt %d ended: %v", e.a.id, e.err)
	} else {
		w.log("attempt %d finished", e.a.id)
	}
	if d := w.pending; d != nil {
		w.pending = nil
		w.start(d)
	}
}

// sendEnded sends AttemptEnded for attempt id, which ended with err.
func (w *worker) sendEnded(id uint32, err error, canceled bool) {
	m := &clusterpb.AttemptEnded{Attempt: id}
	if err != nil {
		m.Error = err.Error()
		m.Canceled = canceled || errors.Is(err, runtime.ErrCanceled)
		var re *runtime.RestoreError
		if errors.As(err, &re) {
			m.RestoreError, m.RestoreCheckpoint = true, re.Checkpoint
		}
	}
	w.out.put(&clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_AttemptEnded{AttemptEnded: m}})
}

// stopAttempt cancels the running attempt as the worker ends and waits
// (bounded) for it; it reports whether no attempt runs any more.
func (w *worker) stopAttempt() bool {
	w.pending = nil
	if w.cur == nil {
		return true
	}
	w.cancelAttempt()
	timer := time.NewTimer(w.tn.cancelTimeout)
	defer timer.Stop()
	for w.cur != nil {
		select {
		case e := <-w.ended:
			w.attemptEnded(e)
		case <-timer.C:
			w.log("attempt %d did not end within %v of being canceled; exiting anyway", w.cur.id, w.tn.cancelTimeout)
			return false
		}
	}
	return true
}

func taskState(attempt uint32, t runtime.TaskID, state string) *clusterpb.WorkerMessage {
	return &clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_TaskState{TaskState: &clusterpb.TaskStateChanged{
		Attempt: attempt, Task: taskRef(t), State: state}}}
}

func taskRef(t runtime.TaskID) *clusterpb.TaskRef {
	return &clusterpb.TaskRef{Vertex: t.Vertex, Subtask: t.Subtask}
}

// short abbreviates a 32-hex-digit id for log lines.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
