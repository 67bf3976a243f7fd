// Package connector defines the interfaces between Weir's runtime and the
// systems it reads from and writes to. Implementations live in the source and
// sink packages, or in user code.
//
// A Source is split across the parallel subtasks of its operator: each subtask
// opens its own SourceReader. The runtime calls Read in a loop on the
// subtask's goroutine, so a reader needs no locking; Read should emit a modest
// batch (tens to a few thousand records) and return, so the subtask can react
// to checkpoints and cancellation between calls.
//
// With checkpoints on, sources and sinks take part in them through optional
// interfaces: a reader that implements CheckpointedReader stores its
// position, and the job resumes it from there after a failure; a writer
// that implements TwoPhaseCommitWriter publishes its output only when a
// checkpoint that covers it completes, so that replayed records are not
// written twice. Together they make a job's output exactly-once.
package connector

// SourceContext tells a source which parallel subtask is opening it.
type SourceContext struct {
	OperatorName string
	Subtask      int
	Parallelism  int
	// Restored is set when the job resumes from a checkpoint or savepoint:
	// the states the source's readers returned from SnapshotState, by the
	// subtask index they had then (len(Restored) is the old parallelism).
	// A reader resumes where its state says; when the parallelism changed,
	// each new reader must work out its share from all the old states, or
	// Open fails with an error saying the source cannot be rescaled.
	Restored [][]byte
}

// CheckpointedReader is implemented by readers whose progress can be stored
// in checkpoints, which makes the source replayable: after a failure the
// job resumes from the last checkpoint and each reader from the state it
// returned then, so no record is lost or counted twice.
type CheckpointedReader interface {
	// SnapshotState returns the reader's progress: enough to emit exactly
	// the records it has not emitted yet when opened again with it. It
	// runs between two Reads.
	SnapshotState() ([]byte, error)
}

// ReadStatus is what a SourceReader reports after a Read.
type ReadStatus int

const (
	// MoreAvailable means Read should be called again right away.
	MoreAvailable ReadStatus = iota
	// NothingAvailable means the source has no data now (an unbounded source
	// waiting for input); the runtime waits briefly before the next Read.
	NothingAvailable
	// EndOfInput means a bounded source has emitted everything.
	EndOfInput
)

// Source is a parallel source of records of type T.
type Source[T any] interface {
	Open(ctx SourceContext) (SourceReader[T], error)
}

// SourceReader reads one subtask's share of a source.
type SourceReader[T any] interface {
	Read(out SourceOutput[T]) (ReadStatus, error)
	Close() error
}

// SourceOutput receives the records a reader emits. Records emitted with
// Collect carry no event timestamp unless a watermark strategy assigns one.
type SourceOutput[T any] interface {
	Collect(v T)
	CollectWithTimestamp(v T, timestamp int64)
}

// LimitedReader is implemented by readers that can cap the records one Read
// emits. A wrapper that lets records through at a pace, such as
// source.RateLimited, asks for no more than it can pass on, so it never
// holds records that the reader's checkpointed position already counts as
// emitted. Readers of sources meant to be wrapped should implement it.
type LimitedReader[T any] interface {
	SourceReader[T]
	// ReadAtMost is Read emitting at most max records; max >= 1.
	ReadAtMost(out SourceOutput[T], max int) (ReadStatus, error)
}

// SinkContext tells a sink which parallel subtask is opening it.
type SinkContext struct {
	OperatorName string
	Subtask      int
	Parallelism  int
	// Checkpointing is set when the job takes checkpoints. A writer that
	// implements TwoPhaseCommitWriter then makes its output visible only
	// in Commit, and its Finish only flushes: the last output is committed
	// by the checkpoint that follows the end of input.
	Checkpointing bool
	// RestoredCheckpoint is the id of the checkpoint or savepoint the job
	// resumes from; 0 on a fresh start.
	RestoredCheckpoint int64
	// Restored holds, when the job resumes from a checkpoint, the
	// descriptions that PrepareCommit returned in the old subtasks (all of
	// them, whatever the parallelism now) and that were not known to be
	// committed when the checkpoint was taken, oldest first within each old
	// subtask. Right after Open the runtime passes them to Commit, each to
	// exactly one new subtask. Open uses them to tell the leftovers of a
	// failed attempt (which it removes) from output about to be committed.
	Restored [][]byte
}

// Sink is a parallel destination for records of type T.
type Sink[T any] interface {
	Open(ctx SinkContext) (SinkWriter[T], error)
}

// SinkWriter writes one subtask's records. Finish is called once when the
// input has ended (bounded jobs), before Close; Close alone is called on
// cancellation and failure.
type SinkWriter[T any] interface {
	Write(v T, timestamp int64) error
	Finish() error
	Close() error
}

// TwoPhaseCommitWriter is implemented by writers that make their output
// visible exactly once although the job may fail and replay input: output
// becomes visible only when a checkpoint that covers it completes.
//
//	Write … Write | PrepareCommit(c) | Write …   (barrier of checkpoint c)
//	                 └ description d stored in checkpoint c
//	checkpoint c completes         → Commit([d]): d's output becomes visible
//	failure, restore from c        → Commit([d]) again, then replay after c
//
// The runtime uses it only when SinkContext.Checkpointing is set, or to
// commit the descriptions of a restored checkpoint. Without checkpoints a
// writer commits in Finish.
type TwoPhaseCommitWriter[T any] interface {
	SinkWriter[T]
	// PrepareCommit runs at the checkpoint's barrier: it closes the
	// output written since the last PrepareCommit, makes it durable but not
	// yet visible, and returns a description that lets Commit publish it,
	// in this or any later attempt of the job. It returns nil when there
	// is nothing to commit. It may be called after Finish.
	PrepareCommit(checkpoint int64) ([]byte, error)
	// Commit makes the described output visible, in the order given (the
	// order it was prepared in). It must be idempotent: after a failure the
	// descriptions of the restored checkpoint are committed again, some of
	// them perhaps already in full, one perhaps in part. The descriptions
	// may come from another subtask of the job, or from a run with another
	// parallelism.
	Commit(pending [][]byte) error
}
