package operators

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/runtime"
)

// WatermarkStrategy says how a source assigns event timestamps and
// generates watermarks.
type WatermarkStrategy[T any] struct {
	// Assign returns the event timestamp (unix ms) of a record; nil keeps the
	// timestamp the source attached.
	Assign func(v T, sourceTimestamp int64) int64
	// OutOfOrderness is how late records may arrive; watermarks trail the
	// largest timestamp seen by this much.
	OutOfOrderness time.Duration
	// Idleness marks the source idle after this long without records, so
	// it does not hold back the watermark downstream; 0 disables it.
	Idleness time.Duration
	// None disables watermarks (until the end of a bounded input).
	None bool
}

// sourceOp drives a connector.Source on the task goroutine.
type sourceOp[T any] struct {
	src    connector.Source[T]
	reader connector.SourceReader[T]
	out    runtime.Output[T]
	wm     WatermarkStrategy[T]
	ctx    *runtime.OperatorContext

	interval   int64 // periodic watermark interval, ms
	delay      int64 // out-of-orderness, ms
	maxTs      int64
	emitted    int64
	seen       bool // a record arrived since the last idleness check
	idle       bool
	lastActive int64
}

// NewSource returns the factory of a source operator.
func NewSource[T any](src connector.Source[T], wm WatermarkStrategy[T], interval time.Duration) *runtime.Factory {
	return &runtime.Factory{
		Source:  true,
		OutType: runtime.TypeOf[T](),
		New: func() runtime.Instance {
			op := &sourceOp[T]{src: src, wm: wm, interval: max(interval.Milliseconds(), 1),
				delay: wm.OutOfOrderness.Milliseconds(), maxTs: runtime.MinWatermark, emitted: runtime.MinWatermark}
			return runtime.Instance{Op: op, SetOutput: func(o any) { op.out = o.(runtime.Output[T]) }}
		},
	}
}

func (s *sourceOp[T]) Open(ctx *runtime.OperatorContext) error {
	s.ctx = ctx
	sc := connector.SourceContext{OperatorName: ctx.Name, Subtask: ctx.Subtask, Parallelism: ctx.Parallelism}
	if r := ctx.Restored; r != nil {
		sc.Restored = make([][]byte, len(r.Snapshots))
		for i, snap := range r.Snapshots {
			if snap != nil {
				sc.Restored[i] = snap.Operator
			}
		}
	}
	r, err := s.src.Open(sc)
	if err != nil {
		return err
	}
	s.reader = r
	if ctx.Checkpointing {
		if _, ok := r.(connector.CheckpointedReader); !ok {
			return fmt.Errorf("checkpoints are on, but this source's reader (%T) cannot store its position in them, "+
				"so a restarted job would read it again from the start; implement connector.CheckpointedReader "+
				"or turn checkpoints off (execution.checkpointing.interval)", r)
		}
	}
	if !s.wm.None {
		s.lastActive = ctx.ProcessingTime.Now()
		s.schedule()
	}
	return nil
}

func (s *sourceOp[T]) schedule() {
	pt := s.ctx.ProcessingTime
	pt.Register(pt.Now()+s.interval, s.onPeriodic)
}

func (s *sourceOp[T]) onPeriodic(now int64) {
	if s.seen {
		s.seen = false
		s.lastActive = now
		if s.idle {
			s.idle = false
			s.ctx.SetIdle(false)
		}
	} else if s.wm.Idleness > 0 && !s.idle && now-s.lastActive >= s.wm.Idleness.Milliseconds() {
		s.idle = true
		s.ctx.SetIdle(true)
	}
	if s.maxTs != runtime.MinWatermark {
		if wm := s.maxTs - s.delay - 1; wm > s.emitted {
			s.emitted = wm
			s.out.EmitWatermark(wm)
		}
	}
	s.schedule()
}

func (s *sourceOp[T]) Step() (connector.ReadStatus, error) {
	return s.reader.Read(s)
}

// Collect implements connector.SourceOutput.
func (s *sourceOp[T]) Collect(v T) { s.CollectWithTimestamp(v, runtime.NoTimestamp) }

// CollectWithTimestamp implements connector.SourceOutput.
func (s *sourceOp[T]) CollectWithTimestamp(v T, ts int64) {
	if s.wm.Assign != nil {
		ts = s.wm.Assign(v, ts)
	}
	if ts > s.maxTs {
		s.maxTs = ts
	}
	s.seen = true
	s.out.Collect(v, ts)
}

func (s *sourceOp[T]) Finish() {
	s.emitted = runtime.MaxWatermark
	s.out.EmitWatermark(runtime.MaxWatermark)
}

// SnapshotState implements runtime.Snapshotter: the reader's position.
func (s *sourceOp[T]) SnapshotState(int64) (*runtime.OperatorSnapshot, error) {
	cr, ok := s.reader.(connector.CheckpointedReader)
	if !ok {
		return nil, fmt.Errorf("the reader %T cannot be checkpointed; implement connector.CheckpointedReader", s.reader)
	}
	b, err := cr.SnapshotState()
	if err != nil {
		return nil, err
	}
	return &runtime.OperatorSnapshot{Operator: b}, nil
}

func (s *sourceOp[T]) ProcessWatermark(int, int64) {}
func (s *sourceOp[T]) EndInput(int)                {}

func (s *sourceOp[T]) Close() error {
	if s.reader != nil {
		return s.reader.Close()
	}
	return nil
}
