package operators

import (
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

// sinkOp writes records to a connector.Sink.
type sinkOp[T any] struct {
	sink   connector.Sink[T]
	writer connector.SinkWriter[T]
	done   bool
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
	w, err := s.sink.Open(connector.SinkContext{OperatorName: ctx.Name, Subtask: ctx.Subtask, Parallelism: ctx.Parallelism})
	s.writer = w
	return err
}

func (s *sinkOp[T]) ProcessElement(v T, ts int64) {
	if err := s.writer.Write(v, ts); err != nil {
		runtime.Fail(err)
	}
}

func (s *sinkOp[T]) ProcessWatermark(int, int64) {}

func (s *sinkOp[T]) EndInput(int) {
	s.done = true
	if err := s.writer.Finish(); err != nil {
		runtime.Fail(err)
	}
}

func (s *sinkOp[T]) Close() error {
	if s.writer == nil {
		return nil
	}
	return s.writer.Close()
}
