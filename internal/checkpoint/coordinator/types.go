package coordinator

import (
	"errors"
	"fmt"
)

// CheckpointID identifies a checkpoint or savepoint of one job. IDs are
// strictly increasing and shared by checkpoints and savepoints.
type CheckpointID int64

// TaskID names one subtask: the job vertex and the subtask index. The
// coordinator treats it as opaque; it only compares and sorts TaskIDs.
type TaskID struct {
	Vertex  int32
	Subtask int32
}

func (t TaskID) String() string { return fmt.Sprintf("%d/%d", t.Vertex, t.Subtask) }

func (t TaskID) less(u TaskID) bool {
	if t.Vertex != u.Vertex {
		return t.Vertex < u.Vertex
	}
	return t.Subtask < u.Subtask
}

// Kind is what a snapshot is for.
type Kind uint8

const (
	// Checkpoint is a periodic checkpoint: retained for recovery, subsumed
	// by newer ones, limited by max-concurrent and min-pause.
	Checkpoint Kind = iota
	// Savepoint is a user-requested snapshot in the canonical format. It is
	// not limited, never subsumed, does not subsume, and tasks are not
	// notified when it completes (sinks do not commit on it).
	Savepoint
	// StopWithSavepoint is a savepoint after which the job ends: tasks are
	// notified when it completes (so sinks commit) and then finish. With
	// Drain, sources first emit the maximum watermark to fire all timers.
	StopWithSavepoint
)

func (k Kind) String() string {
	switch k {
	case Checkpoint:
		return "checkpoint"
	case Savepoint:
		return "savepoint"
	case StopWithSavepoint:
		return "stop-with-savepoint"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsSavepoint reports whether k is a savepoint of either kind.
func (k Kind) IsSavepoint() bool { return k == Savepoint || k == StopWithSavepoint }

// notifiesTasks reports whether completing a snapshot of this kind sends
// NotifyComplete and subsumes older pending checkpoints (Flink: not a
// savepoint, or a synchronous one).
func (k Kind) notifiesTasks() bool { return k == Checkpoint || k == StopWithSavepoint }

// RequestID identifies a savepoint request, so the runner can answer the
// caller (REST trigger id) when SavepointDone comes.
type RequestID string

// Phase is where a triggered checkpoint is in its life; see the package
// comment for the diagram.
type Phase uint8

const (
	// Pending: triggered, waiting for acknowledgements.
	Pending Phase = iota + 1
	// Persisting: every task acknowledged; the runner is writing metadata.
	Persisting
	// Completed: metadata written; final.
	Completed
	// Aborted: declined, expired, subsumed, failed or stopped; final.
	Aborted
)

func (p Phase) String() string {
	switch p {
	case Pending:
		return "pending"
	case Persisting:
		return "persisting"
	case Completed:
		return "completed"
	case Aborted:
		return "aborted"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// canMoveTo is the one transition function of a checkpoint's phase.
func (p Phase) canMoveTo(to Phase) bool {
	switch p {
	case Pending:
		return to == Persisting || to == Aborted
	case Persisting:
		return to == Completed || to == Aborted
	}
	return false
}

// Reasons for aborting a checkpoint. AbortCheckpoint.Reason and
// SavepointDone.Err wrap one of them; test with errors.Is.
var (
	// ErrDeclined: a task declined the checkpoint; the error also wraps the
	// task's reason.
	ErrDeclined = errors.New("declined")
	// ErrExpired: the checkpoint did not complete within the timeout.
	ErrExpired = errors.New("expired")
	// ErrSubsumed: a newer checkpoint completed first.
	ErrSubsumed = errors.New("subsumed")
	// ErrTaskFinished: a task the checkpoint waited for finished first.
	ErrTaskFinished = errors.New("task finished before acknowledging")
	// ErrMetadata: the runner could not persist the checkpoint's metadata.
	ErrMetadata = errors.New("could not persist the checkpoint metadata")
	// ErrStopped: the coordinator stopped (job ending, failing or
	// restarting) while the checkpoint was in flight, or a savepoint was
	// requested while the job was not running.
	ErrStopped = errors.New("checkpointing stopped")
	// ErrTooManyFailures: FailJob's reason, wrapping the last failure.
	ErrTooManyFailures = errors.New("too many consecutive failed checkpoints")
	// ErrRefused: a savepoint request was refused before anything was
	// triggered (wrong kind, job stopping, sources finished).
	ErrRefused = errors.New("savepoint request refused")

	// ErrTaskNotReady may be wrapped by a task's decline reason when the
	// task could not take part yet (still restoring, or closing): the
	// checkpoint is aborted but does not count toward
	// execution.checkpointing.tolerable-failed-checkpoints, as Flink's
	// CHECKPOINT_DECLINED_TASK_NOT_READY and _TASK_CLOSING.
	ErrTaskNotReady = errors.New("task not ready for checkpoints")
)
