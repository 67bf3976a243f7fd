package operators

import (
	"fmt"

	"github.com/weirstream/weir/internal/runtime"
)

// Two-input operators. Each input is its own port type, so that the two
// inputs stay distinct when A and B are the same type. The operator's event
// time is the minimum of both inputs' watermarks; an input that has ended
// no longer holds it back.

// twoInput builds the factory of a two-input, one-output operator.
func twoInput[A, B, OUT any](mk func() (op runtime.Operator, in1 runtime.Input[A], in2 runtime.Input[B], setOutput func(any))) *runtime.Factory {
	return &runtime.Factory{
		OutType: runtime.TypeOf[OUT](),
		InTypes: []runtime.TypeInfo{runtime.TypeOf[A](), runtime.TypeOf[B]()},
		New: func() runtime.Instance {
			op, in1, in2, set := mk()
			return runtime.Instance{Op: op, Inputs: []any{in1, in2}, SetOutput: set}
		},
	}
}

type coProcessOp[A, B, OUT any] struct {
	processCore[OUT]
	proc CoProcessor[A, B, OUT]
}

// coProcessInput1 and coProcessInput2 are the ports of a coProcessOp.
type coProcessInput1[A, B, OUT any] struct{ op *coProcessOp[A, B, OUT] }
type coProcessInput2[A, B, OUT any] struct{ op *coProcessOp[A, B, OUT] }

func (in coProcessInput1[A, B, OUT]) ProcessElement(v A, ts int64) {
	p := in.op
	p.begin(ts)
	if err := p.proc.ProcessElement1(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record of input 1: %w", err))
	}
}

func (in coProcessInput2[A, B, OUT]) ProcessElement(v B, ts int64) {
	p := in.op
	p.begin(ts)
	if err := p.proc.ProcessElement2(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record of input 2: %w", err))
	}
}

// NewCoProcess returns the factory of a non-keyed two-input process
// operator; newProc is called once per subtask.
func NewCoProcess[A, B, OUT any](newProc func() CoProcessor[A, B, OUT]) *runtime.Factory {
	return twoInput[A, B, OUT](func() (runtime.Operator, runtime.Input[A], runtime.Input[B], func(any)) {
		proc := newProc()
		op := &coProcessOp[A, B, OUT]{proc: proc}
		fs, _ := proc.(FunctionState)
		op.processCore = processCore[OUT]{wm: newWatermarks(2), open: proc.Open, close: proc.Close, fnState: fs}
		return op, coProcessInput1[A, B, OUT]{op}, coProcessInput2[A, B, OUT]{op}, op.setOutput
	})
}

type keyedCoProcessOp[A, B any, K comparable, OUT any] struct {
	keyedCore[K, OUT]
	keying1 *Keying[A, K]
	keying2 *Keying[B, K]
	proc    KeyedCoProcessor[K, A, B, OUT]
}

// keyedCoProcessInput1 and keyedCoProcessInput2 are the ports of a
// keyedCoProcessOp.
type keyedCoProcessInput1[A, B any, K comparable, OUT any] struct {
	op *keyedCoProcessOp[A, B, K, OUT]
}
type keyedCoProcessInput2[A, B any, K comparable, OUT any] struct {
	op *keyedCoProcessOp[A, B, K, OUT]
}

func (in keyedCoProcessInput1[A, B, K, OUT]) ProcessElement(v A, ts int64) {
	p := in.op
	key := p.keying1.Select(v)
	p.begin(p.keying1.Encoder, key, ts)
	if err := p.proc.ProcessElement1(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record of input 1 with key %v: %w", key, err))
	}
}

func (in keyedCoProcessInput2[A, B, K, OUT]) ProcessElement(v B, ts int64) {
	p := in.op
	key := p.keying2.Select(v)
	p.begin(p.keying2.Encoder, key, ts)
	if err := p.proc.ProcessElement2(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record of input 2 with key %v: %w", key, err))
	}
}

// NewKeyedCoProcess returns the factory of a keyed two-input process
// operator. Both inputs are hash-partitioned by a key of type K, so equal
// keys of either input meet in the same subtask and share its keyed state
// and timers. newProc is called once per subtask.
func NewKeyedCoProcess[A, B any, K comparable, OUT any](keying1 *Keying[A, K], keying2 *Keying[B, K], newProc func() KeyedCoProcessor[K, A, B, OUT]) *runtime.Factory {
	f := twoInput[A, B, OUT](func() (runtime.Operator, runtime.Input[A], runtime.Input[B], func(any)) {
		proc := newProc()
		op := &keyedCoProcessOp[A, B, K, OUT]{keying1: keying1, keying2: keying2, proc: proc}
		fs, _ := proc.(FunctionState)
		op.keyedCore = keyedCore[K, OUT]{wm: newWatermarks(2), enc: keying1.Encoder,
			open: proc.Open, onTimer: proc.OnTimer, close: proc.Close, fnState: fs}
		return op, keyedCoProcessInput1[A, B, K, OUT]{op}, keyedCoProcessInput2[A, B, K, OUT]{op}, op.setOutput
	})
	f.InputKeys = []func(int) any{keying1.KeyGroupFunc, keying2.KeyGroupFunc}
	return f
}
