package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/cluster/taskwire"
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/execution"
	"github.com/weirstream/weir/internal/heartbeat"
	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	jgpb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/resource"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/slotmanager"
)

// job is the cluster side of one job's JobMaster: its SlotPool (the slots
// the ResourceManager had TaskManagers offer it), its scheduler (which
// subtask runs in which slot) and its workers (one per TaskManager that
// holds its slots). jobmaster.Run drives checkpoints and restarts through
// the Deployer this provides. One goroutine (loop) owns the state below;
// gRPC handlers and the ResourceManager reach it through do.
type job struct {
	m     *Master
	id    string
	jmID  string // fencing token of this JobMaster
	graph *jgpb.JobGraph
	req   rest.SubmitRequest
	cfg   *config.Config
	maxP  func(uid string) int
	// groups are the job's slot sharing groups in order, with the number
	// of slots each needs (its vertices' highest parallelism).
	groups []group
	need   int
	// maxParallelism of each vertex, by id (its number of key groups).
	maxParallelism map[int32]int

	mail chan func()
	done chan struct{}

	// Owned by loop.
	slots    map[string]*slotInfo // by allocation id
	declared bool
	slotWait []chan error
	workers  map[string]*workerSession // attached, by TaskManager id
	starting map[string]*pendingWorker // by TaskManager id
	exec     *remoteExec
	attempt  uint32
	hb       *heartbeat.Monitor
	seq      int64

	// current is the running attempt, read by the workers' receive
	// goroutines to hand task acknowledgements to its hooks directly.
	current atomic.Pointer[remoteExec]

	mu    sync.Mutex
	state *execution.Graph
}

type group struct {
	name  string
	slots int
}

type slotInfo struct {
	alloc, tm string
	index     int
	profile   resource.Profile
}

type workerSession struct {
	id, tm string
	hello  *clusterpb.WorkerHello
	peer   string
	send   chan *clusterpb.JobMasterMessage
	ctx    context.Context
	cancel context.CancelCauseFunc
}

type pendingWorker struct {
	id      string
	waiters []chan error
}

func newJob(m *Master, id string, g *jgpb.JobGraph, req rest.SubmitRequest, cfg *config.Config) *job {
	j := &job{m: m, id: id, jmID: newID(), graph: g, req: req, cfg: cfg, maxP: taskwire.MaxParallelism(g),
		mail: make(chan func(), 4096), done: make(chan struct{}),
		slots: map[string]*slotInfo{}, workers: map[string]*workerSession{}, starting: map[string]*pendingWorker{},
		hb: heartbeat.New(cfg.Duration(config.HeartbeatTimeout)), maxParallelism: map[int32]int{}}
	byGroup := map[string]int{}
	var order []string
	var vs []execution.Vertex
	for _, v := range g.Vertices {
		name := v.SlotSharingGroup
		if _, ok := byGroup[name]; !ok {
			order = append(order, name)
		}
		byGroup[name] = max(byGroup[name], int(v.Parallelism))
		vs = append(vs, execution.Vertex{ID: v.Id, Name: v.Name, Parallelism: int(v.Parallelism)})
		maxP := int(v.MaxParallelism)
		if maxP <= 0 {
			maxP = keygroup.DefaultMaxParallelism(int(v.Parallelism))
		}
		j.maxParallelism[v.Id] = maxP
	}
	for _, name := range order {
		j.groups = append(j.groups, group{name, byGroup[name]})
		j.need += byGroup[name]
	}
	j.state, _ = execution.NewGraph(vs, time.Now()) // vertices come from a valid job graph
	return j
}

// do runs f on the job's goroutine.
func (j *job) do(f func()) {
	select {
	case j.mail <- f:
	case <-j.done:
	}
}

func (j *job) loop(ctx context.Context) {
	interval := j.cfg.Duration(config.HeartbeatInterval)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case f := <-j.mail:
			f()
		case now := <-tick.C:
			j.seq++
			for _, ws := range j.workers {
				j.sendWorker(ws, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Heartbeat{Heartbeat: &clusterpb.HeartbeatRequest{Seq: j.seq}}})
			}
			for _, tm := range j.hb.Expired(now) {
				if ws := j.workers[tm]; ws != nil {
					// A silent worker may still run: its TaskManager stops it.
					j.stopWorker(ws.tm, ws.id)
					j.workerGone(ws, fmt.Sprintf("no heartbeat for %v (heartbeat.timeout)", j.cfg.Duration(config.HeartbeatTimeout)))
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// jobSink, called on the ResourceManager's goroutine.

func (j *job) jobMasterID() string { return j.jmID }

func (j *job) slotOffered(tm string, o *clusterpb.SlotOffer) {
	j.do(func() {
		if len(j.slots) >= j.need {
			// More than needed (a late offer after a re-match): give it back.
			j.m.rm.do(func() { j.m.rm.free(o.AllocationId) })
			return
		}
		j.slots[o.AllocationId] = &slotInfo{alloc: o.AllocationId, tm: tm, index: int(o.SlotIndex), profile: profileFromPB(o.Profile)}
		if len(j.slots) >= j.need {
			j.wakeSlots(nil)
		}
	})
}

func (j *job) slotLost(a slotmanager.Allocation, reason string) {
	j.do(func() {
		if _, ok := j.slots[a.ID]; !ok {
			return
		}
		delete(j.slots, a.ID)
		// A deployment waiting for a worker there waits in vain: it
		// starts over on the slots the job gets instead.
		j.wakeWorker(a.TaskManager, fmt.Errorf("TaskManager %s lost: %s: %w", a.TaskManager, reason, errSlotsLost))
		if ws := j.workers[a.TaskManager]; ws != nil {
			j.workerGone(ws, "TaskManager "+a.TaskManager+" lost: "+reason)
		}
		if e := j.exec; e != nil {
			e.fail(fmt.Errorf("TaskManager %s lost: %s", a.TaskManager, reason))
		}
	})
}

func (j *job) slotTimeout(err error) {
	j.do(func() {
		// Give back what the job got so far; the next attempt (if the
		// restart strategy allows one) declares again and waits anew.
		j.declared = false
		for id := range j.slots {
			delete(j.slots, id)
		}
		j.m.rm.do(func() { j.m.rm.removeJob(j.id) })
		j.wakeSlots(err)
	})
}

func (j *job) workerExited(tm string, w *clusterpb.WorkerExited) {
	j.do(func() {
		err := fmt.Errorf("the job's worker on TaskManager %s (pid %d) exited: %s%s", tm, w.Pid, w.Status, tail(w.StderrTail))
		if p := j.starting[tm]; p != nil && p.id == w.WorkerId {
			j.wakeWorker(tm, err)
		}
		if ws := j.workers[tm]; ws != nil && ws.id == w.WorkerId {
			j.workerGoneErr(ws, err)
		}
	})
}

func (j *job) workerStartFailed(tm string, w *clusterpb.WorkerStartFailed) {
	j.do(func() {
		if p := j.starting[tm]; p != nil && p.id == w.WorkerId {
			j.wakeWorker(tm, fmt.Errorf("TaskManager %s could not start the job's worker: %s", tm, w.Error))
		}
	})
}

func tail(s string) string {
	if s == "" {
		return ""
	}
	return "; its last output:\n" + s
}

func (j *job) wakeSlots(err error) {
	for _, c := range j.slotWait {
		c <- err
	}
	j.slotWait = nil
}

func (j *job) wakeWorker(tm string, err error) {
	p := j.starting[tm]
	if p == nil {
		return
	}
	delete(j.starting, tm)
	for _, c := range p.waiters {
		c <- err
	}
}

// deploy is the job's jobmaster.Deployer: get the slots, get a worker on
// every TaskManager that holds some, and send each its share of the
// subtasks.
func (j *job) deploy(ctx context.Context, hooks runtime.CheckpointHooks, restore map[string]*runtime.RestoredState) (jobmaster.Execution, error) {
	var rs []*clusterpb.OperatorRestore
	if restore != nil {
		var err error
		if rs, err = taskwire.EncodeRestore(restore, j.maxP); err != nil {
			return nil, err
		}
	}
	// A new attempt: its tasks are scheduled, waiting for slots and
	// workers, and the REST API shows that rather than the last attempt's
	// end.
	j.do(func() {
		now := time.Now()
		j.mu.Lock()
		defer j.mu.Unlock()
		j.state.Reset(now)
		for _, v := range j.graph.Vertices {
			for s := range int(v.Parallelism) {
				_ = j.state.Set(v.Id, s, execution.Scheduled, now)
			}
		}
	})
	// A TaskManager lost while deploying takes its slots along; the
	// SlotManager matches the requirement again, so the deployment starts
	// over with the slots the job gets instead (or fails when none come
	// within slot.request.timeout).
	for {
		if err := j.awaitSlots(ctx); err != nil {
			return nil, err
		}
		slots, err := j.awaitWorkers(ctx)
		if errors.Is(err, errSlotsLost) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c := make(chan result[*remoteExec], 1)
		j.do(func() {
			e, err := j.start(ctx, hooks, rs, slots)
			c <- result[*remoteExec]{e, err}
		})
		select {
		case r := <-c:
			if errors.Is(r.err, errSlotsLost) {
				continue
			}
			if r.err != nil {
				return nil, r.err
			}
			return r.v, nil
		case <-ctx.Done():
			return nil, runtime.ErrCanceled
		}
	}
}

// errSlotsLost ends a deployment that lost some of its slots before it
// started the tasks; deploy starts over.
var errSlotsLost = errors.New("the job lost slots while deploying")

type result[T any] struct {
	v   T
	err error
}

func (j *job) awaitSlots(ctx context.Context) error {
	c := make(chan error, 1)
	j.do(func() {
		if len(j.slots) >= j.need {
			c <- nil
			return
		}
		j.slotWait = append(j.slotWait, c)
		if !j.declared {
			j.declared = true
			reqs := make([]slotmanager.Requirement, 0, len(j.groups))
			// One requirement for the whole job: its groups' slots are
			// equal, so the SlotManager need not tell them apart.
			reqs = append(reqs, slotmanager.Requirement{Job: j.id, Group: "default", Count: j.need,
				Timeout: j.cfg.Duration(config.SlotRequestTimeout)})
			j.m.rm.do(func() { j.m.rm.declare(j.id, j, reqs) })
		}
	})
	select {
	case err := <-c:
		return err
	case <-ctx.Done():
		return runtime.ErrCanceled
	}
}

// awaitWorkers makes sure every TaskManager holding the job's slots runs
// an attached worker of the job; it returns the slots in scheduling order.
func (j *job) awaitWorkers(ctx context.Context) ([]*slotInfo, error) {
	type plan struct {
		slots []*slotInfo
		wait  []chan error
	}
	c := make(chan plan, 1)
	j.do(func() {
		var p plan
		for _, s := range j.slots {
			p.slots = append(p.slots, s)
		}
		if len(p.slots) < j.need {
			// Lost since awaitSlots returned.
			c <- p
			return
		}
		sort.Slice(p.slots, func(a, b int) bool {
			if p.slots[a].tm != p.slots[b].tm {
				return p.slots[a].tm < p.slots[b].tm
			}
			return p.slots[a].index < p.slots[b].index
		})
		res := map[string]resource.Profile{}
		for _, s := range p.slots {
			res[s.tm] = res[s.tm].Add(s.profile)
		}
		for tm, prof := range res {
			if j.workers[tm] != nil {
				continue
			}
			w := make(chan error, 1)
			p.wait = append(p.wait, w)
			if pw := j.starting[tm]; pw != nil {
				pw.waiters = append(pw.waiters, w)
				continue
			}
			pw := &pendingWorker{id: newID(), waiters: []chan error{w}}
			j.starting[tm] = pw
			msg := &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_StartWorker{StartWorker: &clusterpb.StartWorker{
				JobId: j.id, JobMasterId: j.jmID, WorkerId: pw.id, Artifact: j.artifact(), Args: j.req.Args,
				Config: j.workerConfig(), Parallelism: int32(j.req.Parallelism), Resources: profileToPB(prof),
				MasterAddress: j.m.rpcAddr}}}
			tm := tm
			j.m.rm.do(func() {
				if !j.m.rm.sendToTM(tm, msg) {
					j.do(func() { j.wakeWorker(tm, fmt.Errorf("TaskManager %s is gone", tm)) })
				}
			})
		}
		c <- p
	})
	var p plan
	select {
	case p = <-c:
	case <-ctx.Done():
		return nil, runtime.ErrCanceled
	}
	if len(p.slots) < j.need {
		return nil, fmt.Errorf("have %d of %d slots: %w", len(p.slots), j.need, errSlotsLost)
	}
	timeout := time.NewTimer(workerStartTimeout)
	defer timeout.Stop()
	for _, w := range p.wait {
		select {
		case err := <-w:
			if err != nil {
				return nil, err
			}
		case <-timeout.C:
			err := fmt.Errorf("the job's workers did not start within %v; see the TaskManagers' logs", workerStartTimeout)
			j.do(func() { j.abandonStarts(err) })
			return nil, err
		case <-ctx.Done():
			j.do(func() { j.abandonStarts(runtime.ErrCanceled) })
			return nil, runtime.ErrCanceled
		}
	}
	return p.slots, nil
}

// abandonStarts gives up on the workers still starting (on the job's
// goroutine): their TaskManagers stop them, and the next deployment asks
// for fresh ones instead of waiting for these.
func (j *job) abandonStarts(err error) {
	for tm, p := range j.starting {
		j.stopWorker(tm, p.id)
		j.wakeWorker(tm, err)
	}
}

// stopWorker tells a TaskManager to stop one of the job's workers.
func (j *job) stopWorker(tm, workerID string) {
	msg := &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_StopWorker{StopWorker: &clusterpb.StopWorker{JobId: j.id, WorkerId: workerID}}}
	j.m.rm.do(func() { j.m.rm.sendToTM(tm, msg) })
}

// workerStartTimeout bounds how long a worker may take from StartWorker
// to its hello (fetching the binary included).
var workerStartTimeout = 60 * time.Second

func (j *job) artifact() *clusterpb.Artifact {
	if j.req.Builtin != "" {
		return &clusterpb.Artifact{Builtin: j.req.Builtin, Name: j.req.Builtin}
	}
	return &clusterpb.Artifact{Digest: j.req.ArtifactDigest, Name: j.req.ArtifactName}
}

// start sends the attempt's deployments (on the job's goroutine).
func (j *job) start(ctx context.Context, hooks runtime.CheckpointHooks, restore []*clusterpb.OperatorRestore, slots []*slotInfo) (*remoteExec, error) {
	for _, s := range slots {
		if j.slots[s.alloc] != s {
			return nil, fmt.Errorf("slot %d of TaskManager %s: %w", s.index, s.tm, errSlotsLost)
		}
	}
	// Slot sharing: subtask s of every vertex of a group runs in the
	// group's s-th slot.
	offset := map[string]int{}
	n := 0
	for _, g := range j.groups {
		offset[g.name] = n
		n += g.slots
	}
	tasks := map[string][]*clusterpb.TaskRef{}
	var peers []*clusterpb.TaskLocation
	for _, v := range j.graph.Vertices {
		for s := range int(v.Parallelism) {
			slot := slots[offset[v.SlotSharingGroup]+s]
			ws := j.workers[slot.tm]
			if ws == nil {
				return nil, fmt.Errorf("the job's worker on TaskManager %s is gone", slot.tm)
			}
			tasks[slot.tm] = append(tasks[slot.tm], &clusterpb.TaskRef{Vertex: v.Id, Subtask: int32(s)})
			peers = append(peers, &clusterpb.TaskLocation{Vertex: v.Id, Subtask: int32(s), DataAddress: ws.hello.DataAddress})
		}
	}
	j.attempt++
	e := &remoteExec{j: j, attempt: j.attempt, hooks: hooks, workers: map[string]*workerSession{}, ended: map[string]bool{},
		done: make(chan struct{})}
	now := time.Now()
	j.mu.Lock()
	for _, v := range j.graph.Vertices {
		for s := range int(v.Parallelism) {
			_ = j.state.Set(v.Id, s, execution.Deploying, now)
		}
	}
	j.mu.Unlock()
	for tm, ts := range tasks {
		ws := j.workers[tm]
		e.workers[tm] = ws
		j.sendWorker(ws, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Deploy{Deploy: &clusterpb.Deploy{
			Attempt: e.attempt, Tasks: ts, Peers: peers, Checkpoints: hooks != nil, Restore: restore}}})
	}
	j.exec = e
	j.current.Store(e)
	go func() {
		select {
		case <-ctx.Done():
			j.do(func() { e.fail(runtime.ErrCanceled) })
		case <-e.done:
		}
	}()
	return e, nil
}

func (j *job) sendWorker(ws *workerSession, m *clusterpb.JobMasterMessage) {
	m.JobMasterId = j.jmID
	select {
	case ws.send <- m:
	default:
		ws.cancel(errors.New("the worker does not read its control messages"))
		j.stopWorker(ws.tm, ws.id)
	}
}

// serveWorker runs a worker's Attach session.
func (j *job) serveWorker(stream clusterpb.Master_AttachServer, hello *clusterpb.WorkerHello, peer string) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	ws := &workerSession{id: hello.WorkerId, tm: hello.ResourceId, hello: hello, peer: peer,
		send: make(chan *clusterpb.JobMasterMessage, 4096), ctx: ctx, cancel: cancel}
	refuse := make(chan string, 1)
	j.do(func() { refuse <- j.admit(ws) })
	var reason string
	select {
	case reason = <-refuse:
	case <-j.done:
		reason = "the job has ended"
	}
	if reason != "" {
		_ = stream.Send(&clusterpb.JobMasterMessage{JobMasterId: j.jmID, Msg: &clusterpb.JobMasterMessage_Refused{Refused: &clusterpb.Refused{Reason: reason}}})
		return nil
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				cause := "its connection closed (the worker process or its TaskManager ended)"
				if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
					cause = c.Error()
				} else if err != io.EOF && status.Code(err) != codes.Canceled {
					cause = "its connection broke: " + status.Convert(err).Message()
				}
				cancel(errors.New(cause))
				j.do(func() { j.workerGone(ws, cause) })
				return
			}
			j.onWorkerMessage(ws, m)
		}
	}()
	for {
		select {
		case m := <-ws.send:
			if err := stream.Send(m); err != nil {
				cancel(err)
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// admit checks a worker's hello (on the job's goroutine); a non-empty
// result is the reason to refuse it.
func (j *job) admit(ws *workerSession) string {
	h := ws.hello
	if h.JobMasterId != j.jmID {
		return fmt.Sprintf("the worker belongs to JobMaster %s of job %s, which is no longer the job's JobMaster", h.JobMasterId, j.id)
	}
	p := j.starting[ws.tm]
	if p == nil || p.id != ws.id {
		return fmt.Sprintf("no worker %s of job %s was started on TaskManager %s", ws.id, j.id, ws.tm)
	}
	if err := samePlan(j.graph, h.Plan); err != nil {
		err = fmt.Errorf("the job's binary built a different plan on TaskManager %s than on the client: %v; "+
			"main() must build the same job graph every time it runs (no random or time-dependent uids or parallelism)", ws.tm, err)
		j.wakeWorker(ws.tm, err)
		return err.Error()
	}
	j.workers[ws.tm] = ws
	j.hb.Add(ws.tm, time.Now())
	j.wakeWorker(ws.tm, nil)
	return ""
}

// samePlan checks that a worker's plan has the submitted graph's shape.
func samePlan(want, got *jgpb.JobGraph) error {
	if got == nil {
		return errors.New("the worker sent no plan")
	}
	if len(want.Vertices) != len(got.Vertices) {
		return fmt.Errorf("%d vertices, not %d", len(got.Vertices), len(want.Vertices))
	}
	for i, v := range want.Vertices {
		g := got.Vertices[i]
		if len(v.Operators) != len(g.Operators) {
			return fmt.Errorf("vertex %q has %d operators, not %d", g.Name, len(g.Operators), len(v.Operators))
		}
		for k, op := range v.Operators {
			if op.Uid != g.Operators[k].Uid {
				return fmt.Errorf("vertex %q has operator %q where %q was", g.Name, g.Operators[k].Uid, op.Uid)
			}
		}
	}
	return nil
}

// onWorkerMessage runs on the worker's receive goroutine: task answers
// go to the attempt's hooks at once, the rest to the job's goroutine.
func (j *job) onWorkerMessage(ws *workerSession, m *clusterpb.WorkerMessage) {
	e := j.current.Load()
	switch msg := m.Msg.(type) {
	case *clusterpb.WorkerMessage_Ack:
		if e == nil || e.hooks == nil || msg.Ack.Attempt != e.attempt {
			break
		}
		a, err := taskwire.DecodeAck(msg.Ack)
		if err != nil {
			e.hooks.Decline(msg.Ack.Checkpoint, runtime.TaskID{Vertex: msg.Ack.Task.GetVertex(), Subtask: msg.Ack.Task.GetSubtask()}, err)
			break
		}
		e.hooks.Ack(a)
	case *clusterpb.WorkerMessage_Decline:
		if e == nil || e.hooks == nil || msg.Decline.Attempt != e.attempt {
			break
		}
		d := msg.Decline
		e.hooks.Decline(d.Checkpoint, runtime.TaskID{Vertex: d.Task.GetVertex(), Subtask: d.Task.GetSubtask()}, errors.New(d.Error))
	case *clusterpb.WorkerMessage_Finished:
		if e == nil || e.hooks == nil || msg.Finished.Attempt != e.attempt {
			break
		}
		f := msg.Finished
		e.hooks.Finished(runtime.TaskID{Vertex: f.Task.GetVertex(), Subtask: f.Task.GetSubtask()})
	}
	j.do(func() {
		j.hb.Received(ws.tm, time.Now())
		switch msg := m.Msg.(type) {
		case *clusterpb.WorkerMessage_TaskState:
			j.onTaskState(msg.TaskState)
		case *clusterpb.WorkerMessage_AttemptEnded:
			if e := j.exec; e != nil && e.attempt == msg.AttemptEnded.Attempt {
				e.workerEnded(ws.tm, msg.AttemptEnded)
			}
		}
	})
}

func (j *job) onTaskState(t *clusterpb.TaskStateChanged) {
	if j.exec == nil || t.Attempt != j.exec.attempt {
		return
	}
	to, ok := parseState(t.State)
	if !ok {
		return
	}
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	// A worker may skip states it does not report (INITIALIZING): walk
	// the legal path up to the reported one.
	for _, s := range []execution.State{execution.Initializing, execution.Running} {
		if s >= to {
			break
		}
		if j.state.State(t.Task.GetVertex(), int(t.Task.GetSubtask())) < s {
			_ = j.state.Set(t.Task.GetVertex(), int(t.Task.GetSubtask()), s, now)
		}
	}
	_ = j.state.Set(t.Task.GetVertex(), int(t.Task.GetSubtask()), to, now)
}

// workerGone drops a worker whose session ended.
func (j *job) workerGone(ws *workerSession, cause string) {
	j.workerGoneErr(ws, fmt.Errorf("the job's worker on TaskManager %s (pid %d) is gone: %s", ws.tm, ws.hello.Pid, cause))
}

func (j *job) workerGoneErr(ws *workerSession, err error) {
	if j.workers[ws.tm] != ws {
		return
	}
	delete(j.workers, ws.tm)
	j.hb.Remove(ws.tm)
	ws.cancel(err)
	if e := j.exec; e != nil && e.workers[ws.tm] == ws {
		e.ended[ws.tm] = true
		e.fail(err)
		e.maybeDone()
	}
}

// finish releases the job's slots and workers once jobmaster.Run returned.
func (j *job) finish(state execution.JobStatus) {
	j.m.rm.do(func() { j.m.rm.removeJob(j.id) })
	now := time.Now()
	j.mu.Lock()
	switch state {
	case execution.JobFinished:
		// Tasks that reported nothing more are done too.
		for _, v := range j.graph.Vertices {
			for s := range int(v.Parallelism) {
				if !j.state.State(v.Id, s).Terminal() {
					for _, st := range []execution.State{execution.Scheduled, execution.Deploying, execution.Initializing, execution.Running, execution.Finished} {
						if j.state.State(v.Id, s) < st {
							_ = j.state.Set(v.Id, s, st, now)
						}
					}
				}
			}
		}
	default:
		j.state.SetAll(execution.Canceling, now)
		j.state.SetAll(execution.Canceled, now)
	}
	j.mu.Unlock()
}

// vertices is the job's vertices as the REST API shows them.
func (j *job) vertices() []jobmaster.VertexStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []jobmaster.VertexStatus
	for _, v := range j.state.Vertices() {
		counts := map[string]int{}
		for s, n := range j.state.Counts(v.ID) {
			counts[s.String()] = n
		}
		out = append(out, jobmaster.VertexStatus{ID: v.ID, Name: v.Name, Parallelism: v.Parallelism,
			MaxParallelism: j.maxParallelism[v.ID], State: j.state.VertexState(v.ID).String(), Counts: counts})
	}
	return out
}

// remoteExec is one attempt of the job across its workers.
type remoteExec struct {
	j       *job
	attempt uint32
	hooks   runtime.CheckpointHooks
	// Owned by the job's goroutine.
	workers   map[string]*workerSession
	ended     map[string]bool
	firstErr  error
	timeout   *time.Timer
	done      chan struct{}
	err       error
	closeOnce sync.Once
}

func (e *remoteExec) broadcast(m func() *clusterpb.JobMasterMessage) {
	e.j.do(func() {
		for tm, ws := range e.workers {
			if !e.ended[tm] {
				e.j.sendWorker(ws, m())
			}
		}
	})
}

func (e *remoteExec) TriggerCheckpoint(id int64) {
	e.broadcast(func() *clusterpb.JobMasterMessage {
		return &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_TriggerCheckpoint{TriggerCheckpoint: &clusterpb.TriggerCheckpoint{Attempt: e.attempt, Checkpoint: id}}}
	})
}

func (e *remoteExec) TriggerStop(id int64, drain bool) {
	e.broadcast(func() *clusterpb.JobMasterMessage {
		return &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_TriggerStop{TriggerStop: &clusterpb.TriggerStop{Attempt: e.attempt, Checkpoint: id, Drain: drain}}}
	})
}

func (e *remoteExec) NotifyCheckpointComplete(id int64) {
	e.broadcast(func() *clusterpb.JobMasterMessage {
		return &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_NotifyComplete{NotifyComplete: &clusterpb.NotifyCheckpoint{Attempt: e.attempt, Checkpoint: id}}}
	})
}

func (e *remoteExec) NotifyCheckpointAborted(id int64) {
	e.broadcast(func() *clusterpb.JobMasterMessage {
		return &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_NotifyAborted{NotifyAborted: &clusterpb.NotifyCheckpoint{Attempt: e.attempt, Checkpoint: id}}}
	})
}

func (e *remoteExec) Release() {
	e.broadcast(func() *clusterpb.JobMasterMessage {
		return &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Release{Release: &clusterpb.Release{Attempt: e.attempt}}}
	})
}

func (e *remoteExec) Done() <-chan struct{} { return e.done }

func (e *remoteExec) Wait() error {
	<-e.done
	return e.err
}

// cancelWait bounds how long a failed attempt waits for the other workers
// to confirm they canceled their tasks.
var cancelWait = 10 * time.Second

// fail ends the attempt with err: the other workers cancel their share.
func (e *remoteExec) fail(err error) {
	if e.firstErr != nil || e.isDone() {
		return
	}
	e.firstErr = err
	for tm, ws := range e.workers {
		if !e.ended[tm] {
			e.j.sendWorker(ws, &clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Cancel{Cancel: &clusterpb.CancelAttempt{Attempt: e.attempt}}})
		}
	}
	now := time.Now()
	e.j.mu.Lock()
	e.j.state.SetAll(execution.Canceling, now)
	e.j.mu.Unlock()
	e.timeout = time.AfterFunc(cancelWait, func() {
		e.j.do(func() {
			for tm := range e.workers {
				e.ended[tm] = true
			}
			e.maybeDone()
		})
	})
	e.maybeDone()
}

func (e *remoteExec) workerEnded(tm string, m *clusterpb.AttemptEnded) {
	if e.ended[tm] {
		return
	}
	e.ended[tm] = true
	switch {
	case m.RestoreError:
		e.fail(&runtime.RestoreError{Checkpoint: m.RestoreCheckpoint, Err: errors.New(m.Error)})
	case m.Canceled && e.firstErr == nil:
		e.fail(runtime.ErrCanceled)
	case m.Error != "" && !m.Canceled:
		e.fail(errors.New(m.Error))
	}
	e.maybeDone()
}

func (e *remoteExec) isDone() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func (e *remoteExec) maybeDone() {
	for tm := range e.workers {
		if !e.ended[tm] {
			return
		}
	}
	e.closeOnce.Do(func() {
		if e.timeout != nil {
			e.timeout.Stop()
		}
		e.err = e.firstErr
		now := time.Now()
		e.j.mu.Lock()
		if e.err != nil {
			if errors.Is(e.err, runtime.ErrCanceled) {
				e.j.state.SetAll(execution.Canceled, now)
			} else {
				e.j.state.SetAll(execution.Failed, now)
			}
		}
		e.j.mu.Unlock()
		close(e.done)
	})
}

func parseState(s string) (execution.State, bool) {
	for _, st := range execution.States() {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// workerConfig is the configuration a worker starts with: the job's -D
// settings, and the cluster's heartbeat settings unless the job has its
// own, so that the worker watches its JobMaster as the JobMaster watches
// it.
func (j *job) workerConfig() map[string]string {
	out := map[string]string{}
	for k, v := range j.req.Config {
		out[k] = v
	}
	for _, k := range []config.Key{config.HeartbeatInterval, config.HeartbeatTimeout} {
		if _, ok := out[k.Name]; !ok {
			out[k.Name] = j.cfg.Duration(k).String()
		}
	}
	return out
}
