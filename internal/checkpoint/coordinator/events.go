package coordinator

// Event is an input to Coordinator.Handle. The concrete types are the
// structs in this file.
type Event interface{ isEvent() }

// Start says that the job's tasks are deployed and running (first start or
// after a restart). Periodic checkpoints become due InitialDelay (or one
// Interval) later. Start forgets which tasks finished and any stop that
// completed, since a restarted job runs its tasks again; a Start while
// running is ignored.
type Start struct{}

// Tick says that the time of the last SetTimer has come. Any event applies
// the timeouts due at its `now`, so Tick only needs to arrive, not to be
// exact.
type Tick struct{}

// Ack is a task's acknowledgement of a checkpoint: its snapshot is durable
// and State names it (handles to its files; opaque to the coordinator).
type Ack struct {
	ID    CheckpointID
	Task  TaskID
	State any
}

// Decline is a task's refusal of a checkpoint; it aborts the checkpoint. A
// Reason that wraps ErrTaskNotReady does not count as a failure.
type Decline struct {
	ID     CheckpointID
	Task   TaskID
	Reason error
}

// TaskFinished says that a task finished (its input ended and it closed).
// It is not asked to acknowledge later checkpoints; checkpoints still
// waiting for it are aborted; when every source has finished no checkpoint
// is triggered any more.
type TaskFinished struct {
	Task TaskID
}

// TriggerSavepoint asks for a savepoint (Kind Savepoint) or a
// stop-with-savepoint (Kind StopWithSavepoint, with Drain to end event time
// first). The answer is SavepointDone with the same Request.
type TriggerSavepoint struct {
	Request RequestID
	Kind    Kind
	Drain   bool
}

// MetadataWritten says that the runner persisted the checkpoint asked for by
// PersistCheckpoint (metadata file written and, for checkpoints, registered
// in the completed-checkpoint store). The checkpoint completes now, unless
// it was aborted meanwhile (then the answer is DiscardMetadata).
type MetadataWritten struct {
	ID CheckpointID
}

// MetadataFailed says that persisting the checkpoint failed; it is aborted
// and counts as a failure.
type MetadataFailed struct {
	ID  CheckpointID
	Err error
}

// Stop says that the job is leaving the running state (finishing, failing,
// cancelling, suspending). Everything in flight is aborted with ErrStopped
// and the timer is cancelled; Start resumes.
type Stop struct{}

// CheckpointNow asks for the next periodic checkpoint now rather than at
// the end of the interval, e.g. because every task has finished its input
// and waits for a final checkpoint to commit its output. Min pause and max
// concurrent still apply.
type CheckpointNow struct{}

func (CheckpointNow) isEvent()    {}
func (Start) isEvent()            {}
func (Tick) isEvent()             {}
func (Ack) isEvent()              {}
func (Decline) isEvent()          {}
func (TaskFinished) isEvent()     {}
func (TriggerSavepoint) isEvent() {}
func (MetadataWritten) isEvent()  {}
func (MetadataFailed) isEvent()   {}
func (Stop) isEvent()             {}
