// Package jobmaster runs one job to its end: it deploys the job's tasks,
// drives the checkpoint coordinator (triggering checkpoints, persisting the
// acknowledged state to checkpoint storage, notifying completions, retaining
// the last completed checkpoints) and, when the job fails, restarts it from
// the latest completed checkpoint as the restart strategy allows.
//
// It is a single goroutine fed by a mailbox: the tasks' acknowledgements,
// timers and the results of asynchronous uploads arrive as events; the
// decisions are the coordinator's and the restart strategy's, both pure.
// Where the tasks run is the Deployer's business: the embedded cluster runs
// them in this process.
package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/coordinator"
	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/config"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/internal/restart"
	"github.com/weirstream/weir/internal/runtime"
)

// Execution is one attempt of a job, as deployed.
type Execution interface {
	TriggerCheckpoint(id int64)
	// TriggerStop starts a stop-with-savepoint (see runtime.Running).
	TriggerStop(id int64, drain bool)
	NotifyCheckpointComplete(id int64)
	NotifyCheckpointAborted(id int64)
	// Release lets finished tasks exit (see runtime.Running.Release).
	Release()
	Done() <-chan struct{}
	Wait() error
}

// Deployer starts an attempt of the job: hooks receive the tasks'
// checkpoint answers (nil when checkpoints are off), restore is the state
// to start from (nil for a fresh start).
type Deployer func(ctx context.Context, hooks runtime.CheckpointHooks, restore map[string]*runtime.RestoredState) (Execution, error)

// Options configure a job master.
type Options struct {
	// JobID is the job's id, 32 hex digits; checkpoints go to
	// state.checkpoints.dir/<JobID>/chk-<n>.
	JobID  string
	Config *config.Config
	Deploy Deployer
	// FromSavepoint is a savepoint or retained checkpoint to start from.
	FromSavepoint string
	// AllowNonRestoredState skips state of operators the job does not have.
	AllowNonRestoredState bool
	// Log receives progress lines (restarts, restores); nil discards them.
	Log func(format string, args ...any)
	// Name is the job's name, for Status.
	Name string
	// OnControl, if set, receives the job's Control before it starts.
	OnControl func(Control)
}

// Run runs the job until it finishes, fails for good or ctx is canceled.
func Run(ctx context.Context, job *runtime.Job, o Options) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := newMaster(ctx, job, o)
	if err != nil {
		return err
	}
	defer m.close()
	defer close(m.done)
	m.cancel = cancel
	m.setState("RUNNING")
	if o.OnControl != nil {
		o.OnControl(m)
	}
	defer func() {
		switch {
		case err == nil:
			m.setState("FINISHED")
		case errors.Is(err, runtime.ErrCanceled):
			m.setState("CANCELED")
		default:
			m.setFailure(err)
			m.setState("FAILED")
		}
	}()
	return m.run(ctx)
}

type master struct {
	job      *runtime.Job
	o        Options
	ops      map[string]operatorInfo
	tasks    []coordinator.TaskID
	sources  []coordinator.TaskID
	ckOpts   coordinator.Options
	enabled  bool // checkpoints on
	strategy restart.Strategy
	store    storage.Storage // nil: completed checkpoints are kept in memory
	incr     *incremental    // incremental checkpoints (incremental.go); nil when off

	events chan any
	nextID coordinator.CheckpointID
	// latest is the restore input of the latest completed checkpoint (or
	// the savepoint the job started from); with checkpoint storage it is
	// read from there when a restart needs it (latestStored).
	latest       map[string]*runtime.RestoredState
	latestID     int64
	latestStored bool
	retained     []int64
	// pending holds the in-memory restore input of checkpoints persisted
	// but not yet complete.
	pending map[int64]map[string]*runtime.RestoredState
	// latestSavepoint is where the latest completed checkpoint is when it
	// is a savepoint (outside the checkpoint directory).
	latestSavepoint string

	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returns
	requests chan savepointRequest
	seq      int
	mu       sync.Mutex
	status   Status
}

// savepointRequest asks the attempt loop for a savepoint.
type savepointRequest struct {
	dir         string
	stop, drain bool
	reply       chan savepointResult
}

type savepointResult struct {
	path string
	err  error
}

// Events of the master's mailbox besides the coordinator's.
type (
	ackEvent     struct{ ack runtime.TaskAck }
	declineEvent struct {
		id   int64
		task runtime.TaskID
		err  error
	}
	finishedEvent struct{ task runtime.TaskID }
	persisted     struct {
		id      int64
		restore map[string]*runtime.RestoredState
		path    string // a savepoint's directory
		err     error
	}
)

// hooks forward the tasks' answers into the mailbox.
type hooks struct{ events chan<- any }

func (h hooks) Ack(a runtime.TaskAck)                         { h.events <- ackEvent{a} }
func (h hooks) Decline(id int64, t runtime.TaskID, err error) { h.events <- declineEvent{id, t, err} }
func (h hooks) Finished(t runtime.TaskID)                     { h.events <- finishedEvent{t} }

func newMaster(ctx context.Context, job *runtime.Job, o Options) (*master, error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	m := &master{job: job, o: o, ops: operators(job.Graph), events: make(chan any, 1024), nextID: 1,
		requests: make(chan savepointRequest), done: make(chan struct{})}
	m.status = Status{JobID: o.JobID, Name: o.Name, State: "INITIALIZING", StartTime: time.Now(),
		Timestamps: map[string]time.Time{"INITIALIZING": time.Now()}}
	for _, v := range job.Graph.Vertices {
		for s := range v.Parallelism {
			id := coordinator.TaskID{Vertex: v.Id, Subtask: s}
			m.tasks = append(m.tasks, id)
			if v.IsSource {
				m.sources = append(m.sources, id)
			}
		}
	}
	var err error
	if m.ckOpts, err = coordinator.OptionsFromConfig(o.Config); err != nil {
		return nil, err
	}
	m.enabled = m.ckOpts.Interval > 0
	if m.strategy, err = restart.FromConfig(o.Config, m.enabled); err != nil {
		return nil, err
	}
	if dir := o.Config.String(config.CheckpointsDir); dir != "" && m.enabled {
		if m.store, err = storage.Open(ctx, dir); err != nil {
			return nil, fmt.Errorf("%s: %w", config.CheckpointsDir.Name, err)
		}
		if m.incr, err = openIncremental(ctx, m.store, o.JobID, o.Config, o.Log); err != nil { // incremental.go
			m.close()
			return nil, err
		}
	}
	if o.FromSavepoint != "" {
		st, loc, md, note, err := openSnapshot(ctx, o.FromSavepoint)
		if err != nil {
			m.close()
			return nil, err
		}
		if note != "" {
			o.Log("%s", note)
		}
		m.latest, err = restoreFrom(ctx, st, loc, md, m.ops, o.AllowNonRestoredState)
		st.Close()
		if err != nil {
			m.close()
			return nil, err
		}
		m.latestID = md.CheckpointId
		m.nextID = coordinator.CheckpointID(md.CheckpointId + 1)
		where := st.URI()
		if loc.Dir != "" {
			where += "/" + loc.Dir
		}
		o.Log("restoring from %s %d at %s", kindName(md.Kind), md.CheckpointId, where)
	}
	return m, nil
}

func (m *master) close() {
	m.incr.close() // incremental.go
	if m.store != nil {
		m.store.Close()
	}
}

func kindName(k pb.Kind) string {
	if k == pb.Kind_SAVEPOINT {
		return "savepoint"
	}
	return "checkpoint"
}

// run is the attempt loop: deploy, drive checkpoints until the attempt
// ends, restart on failure.
func (m *master) run(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := m.runAttempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return runtime.ErrCanceled
		}
		var re *runtime.RestoreError
		if errors.As(err, &re) {
			return err // the same state would fail again
		}
		d := m.strategy.OnFailure(time.Now())
		if !d.Restart {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d restarts; restart strategy %s)", err, attempt-1, m.strategy)
			}
			return err
		}
		from := "the beginning (no checkpoint completed yet)"
		if m.latest != nil || m.latestStored {
			from = fmt.Sprintf("checkpoint %d", m.latestID)
		}
		m.o.Log("job failed: %v", err)
		m.setFailure(err)
		m.setState("RESTARTING")
		m.mu.Lock()
		m.status.Restarts++
		m.mu.Unlock()
		m.o.Log("restarting from %s in %v (restart %d, strategy %s)", from, d.Delay.Round(time.Millisecond), attempt, m.strategy)
		select {
		case <-time.After(d.Delay):
		case <-ctx.Done():
			return runtime.ErrCanceled
		}
		if m.latestStored {
			if err := m.loadLatest(ctx); err != nil {
				return fmt.Errorf("restarting from checkpoint %d: %w", m.latestID, err)
			}
		}
		m.setState("RUNNING")
	}
}

// loadLatest reads the latest completed checkpoint or savepoint back from
// storage for a restart.
func (m *master) loadLatest(ctx context.Context) error {
	if m.latestSavepoint != "" {
		st, loc, md, _, err := openSnapshot(ctx, m.latestSavepoint)
		if err != nil {
			return err
		}
		defer st.Close()
		if m.latest, err = restoreFrom(ctx, st, loc, md, m.ops, false); err != nil {
			return err
		}
	} else {
		loc := storage.CheckpointLocation(m.o.JobID, m.latestID)
		md, err := storage.ReadMetadata(ctx, m.store, loc)
		if err == nil {
			m.latest, err = restoreFrom(ctx, m.store, loc, md, m.ops, false)
		}
		if err != nil {
			return err
		}
	}
	m.latestStored = false
	return nil
}

func (m *master) runAttempt(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Drop what an earlier attempt left in the mailbox.
	for len(m.events) > 0 {
		<-m.events
	}
	if !m.enabled {
		exec, err := m.o.Deploy(ctx, nil, m.latest)
		if err != nil {
			return err
		}
		return exec.Wait()
	}
	coord, err := coordinator.New(coordinator.Config{Options: m.ckOpts, Sources: m.sources, Tasks: m.tasks, FirstID: m.nextID,
		Retained: m.retainedIDs()})
	if err != nil {
		return err
	}
	exec, err := m.o.Deploy(ctx, hooks{m.events}, m.latest)
	if err != nil {
		return err
	}
	a := &attempt{m: m, coord: coord, exec: exec, ctx: ctx, cancel: cancel,
		final: map[int64]bool{}, kinds: map[int64]coordinator.Kind{},
		requests: map[coordinator.RequestID]savepointRequest{}, savepoints: map[int64]string{}, reqOf: map[int64]coordinator.RequestID{}}
	a.handle(coordinator.Start{})
	defer func() {
		if a.timer != nil {
			a.timer.Stop()
		}
	}()
	for {
		var timerC <-chan time.Time
		if a.timer != nil {
			timerC = a.timer.C
		}
		select {
		case ev := <-m.events:
			a.onEvent(ev)
		case <-timerC:
			a.timer = nil
			a.handle(coordinator.Tick{})
		case req := <-m.requests:
			a.requestSavepoint(req)
		case <-exec.Done():
			err := exec.Wait()
			a.handle(coordinator.Stop{})
			a.failRequests(err)
			if a.failed != nil && err != nil {
				return a.failed
			}
			return err
		}
	}
}

func (m *master) retainedIDs() []coordinator.CheckpointID {
	var out []coordinator.CheckpointID
	for _, id := range m.retained {
		out = append(out, coordinator.CheckpointID(id))
	}
	return out
}

// attempt is the state of one deployment.
type attempt struct {
	m        *master
	coord    *coordinator.Coordinator
	exec     Execution
	ctx      context.Context
	cancel   context.CancelFunc
	timer    *time.Timer
	kinds    map[int64]coordinator.Kind
	final    map[int64]bool // checkpoints taken after every task finished
	finished int
	failed   error
	// requests are the savepoint requests in flight by request id, and
	// savepoints their target locations by checkpoint id.
	requests   map[coordinator.RequestID]savepointRequest
	savepoints map[int64]string
	reqOf      map[int64]coordinator.RequestID
	stopped    bool // a stop-with-savepoint completed: release when all finished
}

func (a *attempt) onEvent(ev any) {
	switch e := ev.(type) {
	case ackEvent:
		a.handle(coordinator.Ack{ID: coordinator.CheckpointID(e.ack.Checkpoint), Task: taskID(e.ack.Task), State: e.ack})
	case declineEvent:
		a.handle(coordinator.Decline{ID: coordinator.CheckpointID(e.id), Task: taskID(e.task), Reason: e.err})
	case finishedEvent:
		// Finished tasks keep acknowledging checkpoints (with their final
		// state), so the coordinator keeps counting on them; the job ends
		// when a checkpoint taken after every task finished completes, or
		// when all have finished after a stop-with-savepoint.
		a.finished++
		a.maybeReleaseStopped()
		if a.finished == len(a.m.tasks) && !a.stopped {
			// Everything has finished: the checkpoint that lets the job
			// end (and commits its last output) need not wait out the
			// interval.
			a.handle(coordinator.CheckpointNow{})
		}
	case persisted:
		if e.path != "" {
			a.savepoints[e.id] = e.path
		}
		if e.err != nil {
			a.handle(coordinator.MetadataFailed{ID: coordinator.CheckpointID(e.id), Err: e.err})
			return
		}
		if e.restore != nil {
			a.pendingRestore(e.id, e.restore)
		}
		a.handle(coordinator.MetadataWritten{ID: coordinator.CheckpointID(e.id)})
	}
}

func taskID(t runtime.TaskID) coordinator.TaskID {
	return coordinator.TaskID{Vertex: t.Vertex, Subtask: t.Subtask}
}

// handle feeds an event to the coordinator and carries out its actions.
func (a *attempt) handle(ev coordinator.Event) {
	for _, act := range a.coord.Handle(time.Now(), ev) {
		a.do(act)
	}
}

func (a *attempt) pendingRestore(id int64, r map[string]*runtime.RestoredState) {
	if a.m.pending == nil {
		a.m.pending = map[int64]map[string]*runtime.RestoredState{}
	}
	a.m.pending[id] = r
}

func (a *attempt) do(act coordinator.Action) {
	m := a.m
	switch x := act.(type) {
	case coordinator.TriggerCheckpoint:
		id := int64(x.ID)
		a.kinds[id] = x.Kind
		m.nextID = x.ID + 1
		if x.Kind == coordinator.StopWithSavepoint {
			a.exec.TriggerStop(id, x.Drain)
		} else {
			a.exec.TriggerCheckpoint(id)
		}
	case coordinator.PersistCheckpoint:
		id := int64(x.ID)
		acks := make([]runtime.TaskAck, 0, len(x.Acks))
		final := len(x.Acks) == len(m.tasks)
		for _, s := range x.Acks {
			ack := s.(runtime.TaskAck)
			acks = append(acks, ack)
			final = final && ack.Finished
		}
		a.final[id] = final
		dir := ""
		if x.Kind.IsSavepoint() {
			dir = a.savepointDir(id)
		}
		go a.persist(id, x.Kind, x.Timestamp, acks, dir)
	case coordinator.NotifyComplete:
		id := int64(x.ID)
		if r, ok := m.pending[id]; ok {
			m.latest, m.latestID, m.latestStored = r, id, false
			delete(m.pending, id)
		} else if m.store != nil {
			m.latest, m.latestID, m.latestStored = nil, id, true
		}
		if path := a.savepoints[id]; path != "" {
			// A savepoint's side effects are committed too, so it is
			// where a failure must resume from.
			m.latest, m.latestID, m.latestStored, m.latestSavepoint = nil, id, true, path
		} else {
			m.retained = append(m.retained, id)
			m.latestSavepoint = ""
		}
		m.incr.completed(id, a.kinds[id]) // incremental.go
		m.mu.Lock()
		m.status.CompletedCheckpoints++
		m.status.LatestCheckpoint = id
		m.mu.Unlock()
		a.exec.NotifyCheckpointComplete(id)
		if a.final[id] {
			a.exec.Release()
		}
		if a.kinds[id] == coordinator.StopWithSavepoint {
			a.stopped = true
			a.maybeReleaseStopped()
		}
	case coordinator.AbortCheckpoint:
		delete(m.pending, int64(x.ID))
		m.discard(int64(x.ID))
		m.incr.abandoned(int64(x.ID), x.Acks) // incremental.go
		if path := a.savepoints[int64(x.ID)]; path != "" {
			go removeSavepoint(path)
		}
		m.mu.Lock()
		m.status.FailedCheckpoints++
		m.mu.Unlock()
	case coordinator.DiscardMetadata:
		delete(m.pending, int64(x.ID))
		m.discard(int64(x.ID))
		m.incr.abandoned(int64(x.ID), nil) // incremental.go
	case coordinator.DiscardCompleted:
		m.retained = deleteID(m.retained, int64(x.ID))
		m.discard(int64(x.ID))
	case coordinator.FailJob:
		a.failed = fmt.Errorf("checkpointing failed: %w", x.Reason)
		a.cancel()
	case coordinator.SetTimer:
		if a.timer != nil {
			a.timer.Stop()
			a.timer = nil
		}
		if !x.At.IsZero() {
			a.timer = time.NewTimer(max(time.Until(x.At), 0))
		}
	case coordinator.NotifyAborted:
		a.exec.NotifyCheckpointAborted(int64(x.ID))
	case coordinator.SavepointDone:
		req, ok := a.requests[x.Request]
		if !ok {
			return
		}
		delete(a.requests, x.Request)
		if x.Err != nil {
			req.reply <- savepointResult{err: x.Err}
			return
		}
		req.reply <- savepointResult{path: a.savepoints[int64(x.ID)]}
	case coordinator.DiscardAck:
		// Acknowledged state lives in memory until persisted, but for
		// native keyed state's local files.
		discardAck(x.State) // incremental.go
	}
}

func deleteID(ids []int64, id int64) []int64 {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// persist writes a checkpoint's state and metadata, off the mailbox
// goroutine, and reports back. Without checkpoint storage the state stays
// in memory.
func (a *attempt) persist(id int64, kind coordinator.Kind, ts time.Time, acks []runtime.TaskAck, savepointDir string) {
	m := a.m
	var ev persisted
	ev.id = id
	if kind.IsSavepoint() {
		ev.path, ev.err = writeSavepoint(a.ctx, savepointDir, m.o.JobID, m.ops, id, ts, acks)
	} else if m.store == nil {
		ev.restore = restoreInMemory(id, acks, m.ops)
	} else {
		loc := storage.CheckpointLocation(m.o.JobID, id)
		if err := m.incr.persist(a.ctx, m.store, loc, m.o.JobID, m.ops, id, ts, acks); err != nil { // incremental.go
			ev.err = fmt.Errorf("persisting checkpoint %d: %w", id, err)
		}
	}
	select {
	case m.events <- ev:
	case <-a.ctx.Done():
	}
}

// discard deletes a checkpoint's directory, in the background.
func (m *master) discard(id int64) {
	if m.store == nil {
		return
	}
	go m.store.DeleteAll(context.Background(), storage.CheckpointDir(m.o.JobID, id))
}

// restoreInMemory turns acknowledgements into restore input directly.
func restoreInMemory(id int64, acks []runtime.TaskAck, ops map[string]operatorInfo) map[string]*runtime.RestoredState {
	out := map[string]*runtime.RestoredState{}
	for _, ack := range acks {
		for uid, snap := range ack.Operators {
			r := out[uid]
			if r == nil {
				r = &runtime.RestoredState{Checkpoint: id, Snapshots: make([]*runtime.OperatorSnapshot, ops[uid].parallelism)}
				out[uid] = r
			}
			// Complete a snapshot that the task left to be built later
			// (runtime.OperatorSnapshot.Materialize), on this persist
			// goroutine; if that fails the operator's restore reports it.
			if snap.Materialize != nil {
				_ = snap.Materialize()
			}
			r.Snapshots[ack.Task.Subtask] = snap
		}
	}
	return out
}
