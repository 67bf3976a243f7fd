package operators

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/runtime"
)

// base holds what every one-output operator has.
type base[OUT any] struct {
	out runtime.Output[OUT]
	ctx *runtime.OperatorContext
}

func (b *base[OUT]) Open(ctx *runtime.OperatorContext) error { b.ctx = ctx; return nil }
func (b *base[OUT]) ProcessWatermark(_ int, wm int64)        { b.out.EmitWatermark(wm) }
func (b *base[OUT]) EndInput(int)                            {}
func (b *base[OUT]) Close() error                            { return nil }
func (b *base[OUT]) setOutput(o any)                         { b.out = o.(runtime.Output[OUT]) }

type mapOp[IN, OUT any] struct {
	base[OUT]
	f func(IN) OUT
}

func (m *mapOp[IN, OUT]) ProcessElement(v IN, ts int64) { m.out.Collect(m.f(v), ts) }

// NewMap returns the factory of a map operator.
func NewMap[IN, OUT any](f func(IN) OUT) *runtime.Factory {
	return oneInput[IN, OUT](func() (runtime.Operator, runtime.Input[IN], func(any)) {
		op := &mapOp[IN, OUT]{f: f}
		return op, op, op.setOutput
	})
}

type filterOp[T any] struct {
	base[T]
	f func(T) bool
}

func (m *filterOp[T]) ProcessElement(v T, ts int64) {
	if m.f(v) {
		m.out.Collect(v, ts)
	}
}

// NewFilter returns the factory of a filter operator.
func NewFilter[T any](f func(T) bool) *runtime.Factory {
	return oneInput[T, T](func() (runtime.Operator, runtime.Input[T], func(any)) {
		op := &filterOp[T]{f: f}
		return op, op, op.setOutput
	})
}

// Collector receives the records a FlatMap or process function emits.
type Collector[T any] interface {
	Collect(v T)
}

type flatMapOp[IN, OUT any] struct {
	base[OUT]
	f  func(IN, Collector[OUT])
	ts int64
}

func (m *flatMapOp[IN, OUT]) ProcessElement(v IN, ts int64) {
	m.ts = ts
	m.f(v, m)
}

func (m *flatMapOp[IN, OUT]) Collect(v OUT) { m.out.Collect(v, m.ts) }

// NewFlatMap returns the factory of a flat-map operator.
func NewFlatMap[IN, OUT any](f func(IN, Collector[OUT])) *runtime.Factory {
	return oneInput[IN, OUT](func() (runtime.Operator, runtime.Input[IN], func(any)) {
		op := &flatMapOp[IN, OUT]{f: f}
		return op, op, op.setOutput
	})
}

// oneInput builds the factory of a one-input, one-output operator.
func oneInput[IN, OUT any](mk func() (runtime.Operator, runtime.Input[IN], func(any))) *runtime.Factory {
	return &runtime.Factory{
		OutType: runtime.TypeOf[OUT](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[IN]()},
		New: func() runtime.Instance {
			op, in, set := mk()
			return runtime.Instance{Op: op, Inputs: []any{in}, SetOutput: set}
		},
	}
}

// sinkOp writes records to a connector.Sink. When the job takes checkpoints
// and the writer is a connector.TwoPhaseCommitWriter, it commits with them:
//
//	barrier of checkpoint c   PrepareCommit(c) → description d; the snapshot
//	                          holds every description not yet committed
//	checkpoint c completes    Commit(descriptions prepared at checkpoints ≤ c)
//	restore from c            Open commits c's descriptions (again), then the
//	                          input after c is replayed
type sinkOp[T any] struct {
	sink   connector.Sink[T]
	writer connector.SinkWriter[T]
	tpc    connector.TwoPhaseCommitWriter[T] // nil unless committing with checkpoints
	// pending are the prepared descriptions not yet committed, oldest first.
	pending []pendingCommit
	done    bool
}

// pendingCommit is a description PrepareCommit returned at a checkpoint.
type pendingCommit struct {
	checkpoint int64
	desc       []byte
}

// NewSink returns the factory of a sink operator.
func NewSink[T any](s connector.Sink[T]) *runtime.Factory {
	return &runtime.Factory{
		InTypes: []runtime.TypeInfo{runtime.TypeOf[T]()},
		New: func() runtime.Instance {
			op := &sinkOp[T]{sink: s}
			return runtime.Instance{Op: op, Inputs: []any{op}}
		},
	}
}

func (s *sinkOp[T]) Open(ctx *runtime.OperatorContext) error {
	sc := connector.SinkContext{OperatorName: ctx.Name, Subtask: ctx.Subtask, Parallelism: ctx.Parallelism, Checkpointing: ctx.Checkpointing}
	// The descriptions of every old subtask go to every new one (to tell
	// the leftovers of a failed attempt from output about to be
	// committed); mine are those this subtask commits: its own old
	// subtask's, or after a rescaling all of them for subtask 0 (commits
	// are idempotent, so a crash in the middle is harmless).
	var mine [][]byte
	if r := ctx.Restored; r != nil {
		sc.RestoredCheckpoint = r.Checkpoint
		sc.Restored = [][]byte{}
		for i, snap := range r.Snapshots {
			if snap == nil || snap.Operator == nil {
				continue
			}
			ps, err := decodePendingCommits(snap.Operator)
			if err != nil {
				return fmt.Errorf("restoring from checkpoint %d: the sink state of subtask %d of %d: %w", r.Checkpoint, i, len(r.Snapshots), err)
			}
			for _, p := range ps {
				sc.Restored = append(sc.Restored, p.desc)
				if r.Rescaled(ctx.Parallelism) && ctx.Subtask == 0 || !r.Rescaled(ctx.Parallelism) && i == ctx.Subtask {
					mine = append(mine, p.desc)
				}
			}
		}
	}
	w, err := s.sink.Open(sc)
	if err != nil {
		return err
	}
	s.writer = w
	tpc, ok := w.(connector.TwoPhaseCommitWriter[T])
	if len(mine) > 0 {
		if !ok {
			return fmt.Errorf("the checkpoint holds output this sink prepared but did not commit, and its writer (%T) cannot commit it "+
				"(it does not implement connector.TwoPhaseCommitWriter); restore with the sink that took the checkpoint", w)
		}
		if err := tpc.Commit(mine); err != nil {
			return fmt.Errorf("committing the output of checkpoint %d: %w", ctx.Restored.Checkpoint, err)
		}
	}
	if ctx.Checkpointing && ok {
		s.tpc = tpc
	}
	return nil
}

func (s *sinkOp[T]) ProcessElement(v T, ts int64) {
	if err := s.writer.Write(v, ts); err != nil {
		runtime.Fail(err)
	}
}

func (s *sinkOp[T]) ProcessWatermark(int, int64) {}

// EndInput finishes the writer: with two-phase commits it only flushes, and
// the checkpoint after the end of input commits.
func (s *sinkOp[T]) EndInput(int) {
	s.done = true
	if err := s.writer.Finish(); err != nil {
		runtime.Fail(err)
	}
}

// SnapshotState implements runtime.Snapshotter: it prepares what was written
// since the last checkpoint and stores every description not yet committed.
func (s *sinkOp[T]) SnapshotState(id int64) (*runtime.OperatorSnapshot, error) {
	if s.tpc == nil {
		return nil, nil
	}
	d, err := s.tpc.PrepareCommit(id)
	if err != nil {
		return nil, fmt.Errorf("preparing the sink's output for checkpoint %d: %w", id, err)
	}
	if d != nil {
		s.pending = append(s.pending, pendingCommit{checkpoint: id, desc: d})
	}
	return &runtime.OperatorSnapshot{Operator: encodePendingCommits(s.pending)}, nil
}

// NotifyCheckpointComplete implements runtime.CheckpointListener: it commits
// what was prepared at checkpoints up to id.
func (s *sinkOp[T]) NotifyCheckpointComplete(id int64) error {
	if s.tpc == nil {
		return nil
	}
	n := 0
	for n < len(s.pending) && s.pending[n].checkpoint <= id {
		n++
	}
	if n == 0 {
		return nil
	}
	descs := make([][]byte, n)
	for i := range descs {
		descs[i] = s.pending[i].desc
	}
	if err := s.tpc.Commit(descs); err != nil {
		return err
	}
	s.pending = slices.Delete(s.pending, 0, n)
	return nil
}

func (s *sinkOp[T]) Close() error {
	if s.writer == nil {
		return nil
	}
	return s.writer.Close()
}

// pendingCommitsVersion heads a sink's operator state:
//
//	version count (checkpoint len desc)…
const pendingCommitsVersion = 1

func encodePendingCommits(ps []pendingCommit) []byte {
	b := []byte{pendingCommitsVersion}
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = binary.AppendUvarint(b, uint64(p.checkpoint))
		b = binary.AppendUvarint(b, uint64(len(p.desc)))
		b = append(b, p.desc...)
	}
	return b
}

func decodePendingCommits(b []byte) ([]pendingCommit, error) {
	corrupt := func(what string) error {
		return fmt.Errorf("the state (%d bytes) is corrupt: %s; restore from another checkpoint, or start the job without one", len(b), what)
	}
	if len(b) == 0 {
		return nil, corrupt("it is empty")
	}
	if b[0] != pendingCommitsVersion {
		return nil, corrupt(fmt.Sprintf("format version %d, but this build reads version %d", b[0], pendingCommitsVersion))
	}
	rest := b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	count, ok := next()
	if !ok || count > uint64(len(rest)) {
		return nil, corrupt("the count of pending commits is truncated or too large")
	}
	ps := make([]pendingCommit, 0, count)
	for range count {
		id, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 || id > 1<<63-1 || n > uint64(len(rest)) {
			return nil, corrupt("a pending commit is truncated")
		}
		ps = append(ps, pendingCommit{checkpoint: int64(id), desc: slices.Clone(rest[:n])})
		rest = rest[n:]
	}
	if len(rest) > 0 {
		return nil, corrupt(fmt.Sprintf("%d unexpected bytes after the end", len(rest)))
	}
	return ps, nil
}
