// Package connector defines the interfaces between Weir's runtime and the
// systems it reads from and writes to. Implementations live in the source and
// sink packages, or in user code.
//
// A Source is split across the parallel subtasks of its operator: each subtask
// opens its own SourceReader. The runtime calls Read in a loop on the
// subtask's goroutine, so a reader needs no locking; Read should emit a modest
// batch (tens to a few thousand records) and return, so the subtask can react
// to checkpoints and cancellation between calls.
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

// SinkContext tells a sink which parallel subtask is opening it.
type SinkContext struct {
	OperatorName string
	Subtask      int
	Parallelism  int
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
