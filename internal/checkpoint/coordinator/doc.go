// Package coordinator is the decision core of a job's CheckpointCoordinator:
// when to trigger checkpoints and savepoints, when one is complete, when it
// is aborted, and when too many failures must fail the job. It is Flink's
// CheckpointCoordinator, CheckpointRequestDecider and
// CheckpointFailureManager folded into one synchronous state machine.
//
// A Coordinator starts no goroutines, reads no clock and does no I/O. The
// JobMaster's runner feeds it events with the current time and carries out
// the actions it returns, in order:
//
//	runner ──Handle(now, Start | Tick | Ack | Decline | TaskFinished |──▶ Coordinator
//	          TriggerSavepoint | MetadataWritten | MetadataFailed | Stop)
//	runner ◀── []Action: TriggerCheckpoint, PersistCheckpoint, NotifyComplete,
//	           AbortCheckpoint, NotifyAborted, SavepointDone, FailJob,
//	           SetTimer, DiscardAck, DiscardMetadata, DiscardCompleted
//
// # Life of a checkpoint
//
//	         TriggerCheckpoint               PersistCheckpoint        MetadataWritten
//	(none) ─────────────────▶ Pending ──(every task acked)──▶ Persisting ──────────▶ Completed
//	                             │                               │
//	                             └── decline, timeout, subsumed, ┴── MetadataFailed ──▶ Aborted
//	                                 task finished, Stop, FailJob
//
// Every triggered checkpoint ends exactly once: either as completed
// (NotifyComplete for a checkpoint or stop-with-savepoint, SavepointDone
// with a nil error for a savepoint) or with one AbortCheckpoint followed by
// NotifyAborted.
//
// # The rules, and where Weir differs from Flink
//
//   - Periodic checkpoints are due Interval after Start (or Config.InitialDelay)
//     and Interval after each periodic trigger. One is triggered when it is
//     due, fewer than MaxConcurrent checkpoints and savepoints are in flight,
//     and at least MinPause has passed since the last completion. If it is
//     held back by MaxConcurrent it is triggered as soon as one ends (Flink
//     queues the request and runs it then, too). Flink's periodic timer runs
//     at a fixed rate from a random initial delay; Weir measures each
//     interval from the previous trigger, so a late checkpoint shifts the
//     ones after it instead of being followed by an early one.
//   - Savepoints and stop-with-savepoint are, as in Flink, not limited by
//     MaxConcurrent or MinPause, but they do count as in flight for
//     periodic checkpoints. While a stop-with-savepoint is in flight no
//     periodic checkpoint is triggered and no other savepoint is accepted;
//     if it fails, periodic checkpoints resume.
//   - IDs come from one strictly increasing counter shared by checkpoints and
//     savepoints, starting at Config.FirstID.
//   - A checkpoint completes when every task that was running when it was
//     triggered has acknowledged it and the runner reports its metadata
//     written. Completing a checkpoint or stop-with-savepoint subsumes
//     (aborts) every older pending checkpoint; savepoints are never
//     subsumed, and a plain savepoint neither subsumes nor notifies tasks,
//     as in Flink 1.15+. Only checkpoints are retained (NumRetained); the
//     oldest beyond that is released with DiscardCompleted.
//   - A decline aborts the checkpoint; so does its timeout (counted from the
//     trigger to the metadata being written), a failed metadata write, and
//     the finish of a task it still waits for (FLIP-147: a finished task is
//     not asked to acknowledge later checkpoints; once every source has
//     finished, no more checkpoints are triggered).
//   - Consecutive failed checkpoints are counted as Flink's
//     CheckpointFailureManager does: declines, timeouts and failed metadata
//     writes count, unless the decline wraps ErrTaskNotReady; subsumption,
//     a finished task and Stop do not; a failure of a checkpoint older than
//     the last completed one does not; savepoint failures never do. Any
//     completion (savepoints included) resets the count. One failure more
//     than TolerableFailures emits FailJob, and the coordinator stops.
//   - An acknowledgement for an aborted or unknown checkpoint, or from a task
//     the checkpoint does not wait for, is returned as DiscardAck so the
//     runner can delete the state it names. A duplicate acknowledgement, or
//     one for a recently completed checkpoint, is ignored without a discard,
//     since its state may be the very files the checkpoint keeps (Flink
//     discards late acks of completed checkpoints too; Weir does not).
//
// # Timers
//
// The coordinator never sleeps. After each Handle it returns SetTimer when
// the earliest moment it must act again changes (the next periodic trigger,
// the end of a min pause, or the first pending timeout); a zero At cancels
// the timer. The runner delivers Tick at that moment. Every event is handled
// at its `now`: timeouts due by then are applied first, so a Tick that comes
// late or a spurious one is harmless, and no SetTimer is ever in the past.
package coordinator
