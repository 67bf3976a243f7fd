package runtime

import (
	"fmt"
	"sync"

	"github.com/weirstream/weir/internal/state"
)

// Checkpoints in the tasks: Chandy–Lamport snapshots with aligned barriers.
//
// A checkpoint starts at the source tasks: the coordinator's trigger reaches
// each source task's mailbox, and between two reads the task snapshots its
// chain, sends a barrier on every output channel after the records it
// already sent, and acknowledges. A task with inputs snapshots when the
// barrier has arrived on every input channel that has not ended: after a
// channel delivered the barrier, what it sends next belongs to the next
// epoch, so the task holds it back (the held buffers keep their credits,
// which stops that producer) until the barriers of the other channels are in.
// Then it snapshots, sends the barrier on, acknowledges and processes what
// it held. The snapshots of all tasks together are a consistent cut of the
// job: every record before the barriers is in the state, none after.
//
// The synchronous part of a snapshot is the operator's SnapshotState on the
// task goroutine; writing the result to checkpoint storage is the
// coordinator's runner's business, off the task goroutine.

// kindBarrier is the envelope kind of a checkpoint barrier; its wm field
// carries the checkpoint id.
const kindBarrier uint8 = 6

// TaskID names one subtask of a job.
type TaskID struct {
	Vertex  int32
	Subtask int32
}

func (id TaskID) String() string { return fmt.Sprintf("vertex %d subtask %d", id.Vertex, id.Subtask) }

// Snapshotter is implemented by operators that have state to checkpoint.
type Snapshotter interface {
	// SnapshotState returns the operator's state as of checkpoint id. It
	// runs on the task goroutine between two records, so it must be quick,
	// and the result must not share memory the operator changes later.
	SnapshotState(id int64) (*OperatorSnapshot, error)
}

// CheckpointListener is implemented by operators that act when a
// checkpoint completes, such as sinks that commit what they wrote before it.
type CheckpointListener interface {
	// NotifyCheckpointComplete runs on the task goroutine once checkpoint
	// id is complete, i.e. durable for every task. Notifications may skip
	// ids: a completed checkpoint subsumes earlier ones.
	NotifyCheckpointComplete(id int64) error
}

// OperatorSnapshot is the state of one operator instance in a checkpoint.
type OperatorSnapshot struct {
	// Keyed is the operator's keyed state in canonical form; nil if it has
	// none.
	Keyed *state.Snapshot
	// Timers are the operator's keyed timers; nil if it has none.
	Timers *state.TimerSnapshot
	// Operator is non-keyed state: a source's position, a sink's pending
	// files. On a restore with another parallelism each new subtask sees
	// every old subtask's entries and picks what is its own.
	Operator []byte
	// Native is keyed state in the state backend's own format, set instead
	// of Keyed for incremental checkpoints: in an acknowledgement the
	// backend's local checkpoint for the checkpoint storage to upload (a
	// *pebblestate.Files, which the uploader removes when done); in
	// restored state what to download (a *pebblestate.RemoteCheckpoint),
	// which the task hands to a new backend (state.NativeRestorer, or
	// state.NativeState's canonical form for another backend type; see
	// backends.go). Nil for canonical state.
	Native any
	// Materialize, if not nil, completes a snapshot whose SnapshotState
	// left the expensive part (encoding, ordering) for later: it fills
	// Keyed and Timers from a copy taken on the task goroutine. Whoever
	// reads Keyed or Timers of an acknowledged snapshot (the job master,
	// off the task goroutine) calls it first; it may be called more than
	// once and from any goroutine, and returns the same result each time.
	// An error fails the checkpoint.
	Materialize func() error
}

// RestoredState is what an operator restores from: the snapshots of all
// subtasks of the operator (by old subtask index) in the checkpoint or
// savepoint the job started from.
type RestoredState struct {
	Checkpoint int64
	// Snapshots of the old subtasks; an entry is nil for a subtask without
	// state.
	Snapshots []*OperatorSnapshot
}

// Rescaled reports whether the operator's parallelism changed since the
// snapshot.
func (r *RestoredState) Rescaled(parallelism int) bool { return len(r.Snapshots) != parallelism }

// RestoreKeyed restores into b the keyed state of every old subtask; b keeps
// the key groups of its own range.
func (r *RestoredState) RestoreKeyed(b state.Backend) error {
	for _, s := range r.Snapshots {
		if s == nil || s.Keyed == nil {
			continue
		}
		if err := b.Restore(s.Keyed); err != nil {
			return err
		}
	}
	return nil
}

// RestoreTimers registers the timers of every old subtask in svc, which
// keeps those of its own key groups.
func (r *RestoredState) RestoreTimers(svc *state.TimerService) {
	for _, s := range r.Snapshots {
		if s != nil && s.Timers != nil {
			svc.Restore(s.Timers)
		}
	}
}

// RestoreError is an operator's failure to open with restored state. It is
// not worth a restart from the same checkpoint: the state or the job must
// change.
type RestoreError struct {
	Checkpoint int64
	Err        error
}

func (e *RestoreError) Error() string {
	return fmt.Sprintf("cannot restore from checkpoint %d: %v", e.Checkpoint, e.Err)
}

func (e *RestoreError) Unwrap() error { return e.Err }

// TaskAck reports one subtask's part of a checkpoint.
type TaskAck struct {
	Checkpoint int64
	Task       TaskID
	// Operators holds the snapshots of the chain's stateful operators by uid.
	Operators map[string]*OperatorSnapshot
	// Finished is set when the task had finished before the checkpoint: it
	// has nothing more to emit, and a job restored from this checkpoint
	// does not run it again.
	Finished bool
}

// CheckpointHooks receive the tasks' answers to a checkpoint; they are
// called from task goroutines and must not block.
type CheckpointHooks interface {
	Ack(TaskAck)
	Decline(id int64, task TaskID, err error)
	// Finished reports that a task has processed all its input; it waits
	// for Running.Release.
	Finished(task TaskID)
}

// mailbox passes actions to a task goroutine, which runs them between
// records. Actions sent after the task ended run on the sender's goroutine
// with the task marked exited.
type mailbox struct {
	mu     sync.Mutex
	queue  []func(t *task)
	exited bool
	signal chan struct{}
}

func newMailbox() *mailbox { return &mailbox{signal: make(chan struct{}, 1)} }

// put queues f; it reports false if the task has exited.
func (m *mailbox) put(f func(t *task)) bool {
	m.mu.Lock()
	if m.exited {
		m.mu.Unlock()
		return false
	}
	m.queue = append(m.queue, f)
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
	return true
}

func (m *mailbox) take() []func(t *task) {
	m.mu.Lock()
	q := m.queue
	m.queue = nil
	m.mu.Unlock()
	return q
}

// close marks the task exited and returns what was still queued.
func (m *mailbox) close() []func(t *task) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exited = true
	q := m.queue
	m.queue = nil
	return q
}

// runMail runs queued actions; the task loops call it between batches.
func (t *task) runMail() {
	select {
	case <-t.mail.signal:
	default:
		return
	}
	for _, f := range t.mail.take() {
		f(t)
	}
}

// alignment is a checkpoint whose barrier has arrived on some of a task's
// input channels but not yet on all of them.
type alignment struct {
	id      int64
	blocked []bool // channels that delivered the barrier
	pending int    // open channels that have not
	held    []envelope
}

// onBarrier handles the barrier of checkpoint id on gate channel ch.
func (t *task) onBarrier(ch int32, id int64) {
	a := t.align
	if a != nil && id > a.id {
		// A newer checkpoint overtook the one being aligned: that one can
		// no longer complete here. Give up on it and start over.
		t.declineCheckpoint(a.id, fmt.Errorf("checkpoint %d was overtaken by checkpoint %d before its barriers aligned", a.id, id))
		t.releaseHeld()
		a = nil
	}
	if a == nil {
		if id <= t.lastCheckpoint {
			return // the rest of an aborted alignment
		}
		a = &alignment{id: id, blocked: make([]bool, len(t.channels))}
		for i := range t.channels {
			if !t.chEnded[i] {
				a.pending++
			}
		}
		t.align = a
	}
	if id < a.id || a.blocked[ch] {
		return
	}
	a.blocked[ch] = true
	a.pending--
	t.maybeAligned()
}

// channelEnded counts an ended channel as aligned.
func (t *task) channelEnded(ch int32) {
	t.chEnded[ch] = true
	if a := t.align; a != nil && !a.blocked[ch] {
		a.blocked[ch] = true
		a.pending--
		t.maybeAligned()
	}
}

func (t *task) maybeAligned() {
	a := t.align
	if a == nil || a.pending > 0 {
		return
	}
	t.completeCheckpoint(a.id)
	t.releaseHeld()
}

// releaseHeld ends the alignment; the held envelopes are processed next, in
// the order they arrived.
func (t *task) releaseHeld() {
	if a := t.align; a != nil {
		t.replay = append(t.replay, a.held...)
		t.align = nil
	}
}

// completeCheckpoint snapshots the chain, sends the barrier downstream and
// acknowledges.
func (t *task) completeCheckpoint(id int64) {
	t.lastCheckpoint = id
	ack := TaskAck{Checkpoint: id, Task: t.id, Operators: map[string]*OperatorSnapshot{}, Finished: t.finishedAll}
	for i, n := range t.ops {
		s, ok := n.inst.Op.(Snapshotter)
		if !ok {
			continue
		}
		prev := t.cur
		t.cur = i
		snap, err := s.SnapshotState(id)
		t.cur = prev
		if err != nil {
			t.declineCheckpoint(id, t.opError(i, fmt.Errorf("snapshot for checkpoint %d: %w", id, err)))
			t.broadcastBarrier(id)
			return
		}
		if snap != nil {
			ack.Operators[n.uid] = snap
		}
	}
	t.broadcastBarrier(id)
	if t.hooks != nil {
		t.hooks.Ack(ack)
	}
}

// broadcastBarrier sends the barrier on every output still open. A
// declined checkpoint's barrier still goes on, so downstream tasks do not
// wait for it; the coordinator aborts the checkpoint anyway.
func (t *task) broadcastBarrier(id int64) {
	for _, w := range t.writers {
		w.barrier(id)
	}
}

func (t *task) declineCheckpoint(id int64, err error) {
	if t.hooks != nil {
		t.hooks.Decline(id, t.id, err)
	}
}

// notifyComplete tells the chain's listeners that checkpoint id completed.
func (t *task) notifyComplete(id int64) {
	if t.stopID != 0 && id >= t.stopID {
		t.stopNow = true
	}
	for i, n := range t.ops {
		l, ok := n.inst.Op.(CheckpointListener)
		if !ok {
			continue
		}
		prev := t.cur
		t.cur = i
		err := l.NotifyCheckpointComplete(id)
		t.cur = prev
		if err != nil {
			panic(failure{fmt.Errorf("committing checkpoint %d: %w", id, err)})
		}
	}
}

// onTrigger handles the coordinator's trigger of checkpoint id. A source
// task starts the checkpoint; a finished task acknowledges its final state
// at once, since no barrier can reach it any more; a running task with
// inputs waits for the barriers, but remembers the id in case its inputs
// end before they arrive.
func (t *task) onTrigger(id int64) {
	switch {
	case id <= t.lastCheckpoint:
	case t.finishedAll:
		t.completeCheckpoint(id)
	case t.source != nil:
		t.completeCheckpoint(id)
	default:
		t.triggered = max(t.triggered, id)
	}
}

// onStop handles a stop-with-savepoint: a source task (optionally after
// emitting the final watermark) takes the savepoint like a checkpoint,
// then reads nothing more until the savepoint completes, when it ends, or
// is aborted, when it resumes. Other tasks take it like a checkpoint and
// end when their inputs do.
func (t *task) onStop(id int64, drain bool) {
	if t.source == nil || t.finishedAll {
		t.onTrigger(id)
		return
	}
	if id <= t.lastCheckpoint {
		return
	}
	if drain {
		prev := t.cur
		t.cur = 0
		t.source.Finish()
		t.cur = prev
	}
	t.completeCheckpoint(id)
	t.stopID = id
}

// notifyAborted resumes a source stopped for an aborted savepoint.
func (t *task) notifyAborted(id int64) {
	if t.stopID == id && !t.stopNow {
		t.stopID = 0
	}
}

// awaitRelease keeps a finished task alive while checkpoints are on, so that
// it can acknowledge checkpoints with its final state and commit when they
// complete (a sink commits its last records only then). It returns when the
// executor releases the job's tasks.
func (t *task) awaitRelease() error {
	t.finishedAll = true
	if t.triggered > t.lastCheckpoint {
		t.completeCheckpoint(t.triggered)
	}
	if t.hooks != nil {
		t.hooks.Finished(t.id)
	}
	for {
		select {
		case <-t.mail.signal:
			for _, f := range t.mail.take() {
				f(t)
			}
		case <-t.release:
			// What was sent before the release (the notification of the
			// checkpoint that let the job end) still runs.
			for _, f := range t.mail.take() {
				f(t)
			}
			return nil
		case <-t.ctx.Done():
			return ErrCanceled
		}
	}
}

// Running is a job started by Start.
type Running struct {
	tasks       []*task
	done        chan struct{}
	err         error
	release     chan struct{}
	releaseOnce sync.Once
}

// Wait blocks until the job ends and returns Execute's result.
func (r *Running) Wait() error {
	<-r.done
	return r.err
}

// Done is closed when the job has ended.
func (r *Running) Done() <-chan struct{} { return r.done }

// TriggerCheckpoint starts checkpoint id: source tasks snapshot and send
// barriers, finished tasks acknowledge their final state.
func (r *Running) TriggerCheckpoint(id int64) {
	for _, t := range r.tasks {
		t.mail.put(func(t *task) { t.onTrigger(id) })
	}
}

// TriggerStop starts stop-with-savepoint id: the sources send its barriers
// and end once it completes; with drain they first emit the final
// watermark, so all event-time timers and windows fire before it.
func (r *Running) TriggerStop(id int64, drain bool) {
	for _, t := range r.tasks {
		t.mail.put(func(t *task) { t.onStop(id, drain) })
	}
}

// NotifyCheckpointAborted tells the tasks that checkpoint id was aborted;
// sources stopped for it resume.
func (r *Running) NotifyCheckpointAborted(id int64) {
	for _, t := range r.tasks {
		t.mail.put(func(t *task) { t.notifyAborted(id) })
	}
}

// NotifyCheckpointComplete tells every task that checkpoint id is complete.
func (r *Running) NotifyCheckpointComplete(id int64) {
	for _, t := range r.tasks {
		t.mail.put(func(t *task) { t.notifyComplete(id) })
	}
}

// Release lets finished tasks exit. With checkpoints on, a task that has
// finished waits for it, so that a checkpoint taken after the end of input
// can commit the last output; the checkpoint runner releases the tasks
// once such a checkpoint completed.
func (r *Running) Release() {
	r.releaseOnce.Do(func() { close(r.release) })
}

// Tasks returns the ids of the subtasks this executor runs.
func (r *Running) Tasks() []TaskID {
	ids := make([]TaskID, len(r.tasks))
	for i, t := range r.tasks {
		ids[i] = t.id
	}
	return ids
}

// SourceTasks returns the ids of the source subtasks this executor runs.
func (r *Running) SourceTasks() []TaskID {
	var ids []TaskID
	for _, t := range r.tasks {
		if t.source != nil {
			ids = append(ids, t.id)
		}
	}
	return ids
}
