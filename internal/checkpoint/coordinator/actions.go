package coordinator

import (
	"fmt"
	"strings"
	"time"
)

// Action is an output of Coordinator.Handle for the runner to carry out, in
// the order returned. The concrete types are the structs in this file.
type Action interface{ isAction() }

// TriggerCheckpoint: send the trigger for checkpoint ID to Tasks (the
// running sources), which inject barriers stamped with Timestamp. A task
// that cannot take part answers with a Decline.
type TriggerCheckpoint struct {
	ID        CheckpointID
	Timestamp time.Time
	Kind      Kind
	Drain     bool // stop-with-savepoint only: emit the max watermark first
	Tasks     []TaskID
}

// PersistCheckpoint: every task acknowledged; write the checkpoint's
// metadata from Acks (and, for a checkpoint, register it in the
// completed-checkpoint store), then report MetadataWritten or
// MetadataFailed. Finished lists the tasks that had finished before the
// trigger: their operators' state is "finished" (FLIP-147), not missing.
type PersistCheckpoint struct {
	ID        CheckpointID
	Kind      Kind
	Timestamp time.Time
	Acks      map[TaskID]any
	Finished  []TaskID
}

// NotifyComplete: checkpoint (or stop-with-savepoint) ID is complete; tell
// Tasks, so that sinks commit what they prepared for it and every earlier
// one.
type NotifyComplete struct {
	ID    CheckpointID
	Tasks []TaskID
}

// AbortCheckpoint: checkpoint ID ended without completing. Discard the
// state in Acks (and anything written for it); Reason wraps one of the Err*
// reasons of this package.
type AbortCheckpoint struct {
	ID     CheckpointID
	Kind   Kind
	Reason error
	Acks   map[TaskID]any
}

// NotifyAborted: tell Tasks that checkpoint ID was aborted, so they can drop
// in-flight snapshot work for it. It is not a signal to roll anything back:
// what a sink prepared for an aborted checkpoint is committed with the next
// one that completes. Always follows the AbortCheckpoint of the same ID.
type NotifyAborted struct {
	ID    CheckpointID
	Tasks []TaskID
}

// SavepointDone answers TriggerSavepoint Request: ID is the savepoint's
// checkpoint ID (0 if it was refused before being triggered) and Err is nil
// if it completed.
type SavepointDone struct {
	Request RequestID
	ID      CheckpointID
	Err     error
}

// FailJob: more consecutive checkpoints failed than
// execution.checkpointing.tolerable-failed-checkpoints allows; fail the job
// (its restart strategy decides what follows). The coordinator has stopped;
// send Start when the job runs again.
type FailJob struct {
	Reason error
}

// SetTimer: deliver Tick at At, replacing any earlier timer; a zero At
// cancels the timer.
type SetTimer struct {
	At time.Time
}

// DiscardAck: an acknowledgement that no checkpoint will use (aborted or
// unknown checkpoint, or a task it did not wait for); delete the state it
// names. Discards must be idempotent: AbortCheckpoint may already have
// listed the same state.
type DiscardAck struct {
	ID    CheckpointID
	Task  TaskID
	State any
}

// DiscardMetadata: metadata was written for a checkpoint that had already
// been aborted (it expired or was subsumed while persisting); delete it and
// do not register it.
type DiscardMetadata struct {
	ID CheckpointID
}

// DiscardCompleted: completed checkpoint ID is no longer retained
// (state.checkpoints.num-retained); remove it from the completed-checkpoint
// store and delete the files that no retained checkpoint shares.
type DiscardCompleted struct {
	ID CheckpointID
}

func (TriggerCheckpoint) isAction() {}
func (PersistCheckpoint) isAction() {}
func (NotifyComplete) isAction()    {}
func (AbortCheckpoint) isAction()   {}
func (NotifyAborted) isAction()     {}
func (SavepointDone) isAction()     {}
func (FailJob) isAction()           {}
func (SetTimer) isAction()          {}
func (DiscardAck) isAction()        {}
func (DiscardMetadata) isAction()   {}
func (DiscardCompleted) isAction()  {}

const stampLayout = "15:04:05.000"

func (a TriggerCheckpoint) String() string {
	drain := ""
	if a.Drain {
		drain = " drain"
	}
	return fmt.Sprintf("trigger %s %d at %s%s to %s", a.Kind, a.ID, a.Timestamp.Format(stampLayout), drain, tasks(a.Tasks))
}

func (a PersistCheckpoint) String() string {
	s := fmt.Sprintf("persist %s %d (%d acks)", a.Kind, a.ID, len(a.Acks))
	if len(a.Finished) > 0 {
		s += " finished " + tasks(a.Finished)
	}
	return s
}

func (a NotifyComplete) String() string {
	return fmt.Sprintf("notify complete %d to %s", a.ID, tasks(a.Tasks))
}

func (a AbortCheckpoint) String() string {
	return fmt.Sprintf("abort %s %d (%d acks): %v", a.Kind, a.ID, len(a.Acks), a.Reason)
}

func (a NotifyAborted) String() string {
	return fmt.Sprintf("notify aborted %d to %s", a.ID, tasks(a.Tasks))
}

func (a SavepointDone) String() string {
	if a.Err != nil {
		return fmt.Sprintf("savepoint %q done: %d failed: %v", a.Request, a.ID, a.Err)
	}
	return fmt.Sprintf("savepoint %q done: %d", a.Request, a.ID)
}

func (a FailJob) String() string { return fmt.Sprintf("fail job: %v", a.Reason) }

func (a SetTimer) String() string {
	if a.At.IsZero() {
		return "cancel timer"
	}
	return "timer at " + a.At.Format(stampLayout)
}

func (a DiscardAck) String() string {
	return fmt.Sprintf("discard ack %d from %s", a.ID, a.Task)
}

func (a DiscardMetadata) String() string { return fmt.Sprintf("discard metadata %d", a.ID) }

func (a DiscardCompleted) String() string { return fmt.Sprintf("discard completed %d", a.ID) }

func tasks(ts []TaskID) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
