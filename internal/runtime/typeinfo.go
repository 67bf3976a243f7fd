package runtime

import (
	"context"
	"fmt"
	"reflect"
)

// TypeInfo builds the typed plumbing for records of one Go type. It is
// created where the type is known (the DataStream API) and used by the
// runtime, which only sees values of type any.
type TypeInfo interface {
	// Name is the Go type name, shown in plans.
	Name() string
	newFanout(outs []any) any
	newChained(in any, op Operator, input int, cur *int, from, to int) any
	newExchange(ctx context.Context, spec *exchangeSpec) (any, outputWriter, error)
	newInputReader(target any, remote bool) (inputHandler, error)
	newLocalChannel(gate *chan envelope, idx int32, credits, batchSize int) any
	newRemoteChannel(spec remoteSpec) (any, error)
	newDiscard() any
}

// TypeOf returns the TypeInfo of T.
func TypeOf[T any]() TypeInfo { return typeInfo[T]{} }

type typeInfo[T any] struct{}

func (typeInfo[T]) Name() string { return reflect.TypeFor[T]().String() }

type fanout[T any] []Output[T]

func (f fanout[T]) Collect(v T, ts int64) {
	for _, o := range f {
		o.Collect(v, ts)
	}
}

func (f fanout[T]) EmitWatermark(wm int64) {
	for _, o := range f {
		o.EmitWatermark(wm)
	}
}

func (typeInfo[T]) newFanout(outs []any) any {
	if len(outs) == 1 {
		return outs[0]
	}
	f := make(fanout[T], len(outs))
	for i, o := range outs {
		f[i] = o.(Output[T])
	}
	return f
}

// chainedOutput feeds records straight into the next operator of a chain.
// It records which operator runs (cur) so a panic names the right one.
type chainedOutput[T any] struct {
	in       Input[T]
	op       Operator
	input    int
	cur      *int
	from, to int
}

func (c *chainedOutput[T]) Collect(v T, ts int64) {
	*c.cur = c.to
	c.in.ProcessElement(v, ts)
	*c.cur = c.from
}

func (c *chainedOutput[T]) EmitWatermark(wm int64) {
	*c.cur = c.to
	c.op.ProcessWatermark(c.input, wm)
	*c.cur = c.from
}

func (typeInfo[T]) newChained(in any, op Operator, input int, cur *int, from, to int) any {
	return &chainedOutput[T]{in: in.(Input[T]), op: op, input: input, cur: cur, from: from, to: to}
}

// discardOutput drops everything: the output of an operator nobody consumes.
type discardOutput[T any] struct{}

func (discardOutput[T]) Collect(T, int64)    {}
func (discardOutput[T]) EmitWatermark(int64) {}

// exchangeSpec describes the producer end of one job edge in one subtask.
type exchangeSpec struct {
	mode      partitioning
	batchSize int
	// channels, by target subtask (one for forward).
	channels []any // channelWriter[T]
	// keyGroupOf is a func(T) int for hash partitioning.
	keyGroupOf any
	kgTarget   []int32
	start      int
	target     string // name of the consuming operator
}

func (typeInfo[T]) newExchange(ctx context.Context, spec *exchangeSpec) (any, outputWriter, error) {
	w := &exchangeWriter[T]{
		ctx:       ctx,
		mode:      spec.mode,
		batchSize: spec.batchSize,
		kgTarget:  spec.kgTarget,
		next:      spec.start,
		target:    spec.target,
	}
	for _, c := range spec.channels {
		w.chans = append(w.chans, c.(channelWriter[T]))
	}
	w.cur = make([]*batch[T], len(w.chans))
	if len(w.chans) > 0 {
		w.next %= len(w.chans)
	}
	if spec.mode == partHash {
		f, ok := spec.keyGroupOf.(func(T) int)
		if !ok {
			return nil, nil, fmt.Errorf("hash exchange of %s records has no key selector of a matching type (got %T)", reflect.TypeFor[T](), spec.keyGroupOf)
		}
		w.keyGroupOf = f
	}
	return w, w, nil
}

func (typeInfo[T]) newInputReader(target any, remote bool) (inputHandler, error) {
	in, ok := target.(Input[T])
	if !ok {
		return nil, fmt.Errorf("operator input of type %T does not accept %s records", target, reflect.TypeFor[T]())
	}
	r := &inputReader[T]{target: in}
	if remote {
		dec, err := remoteDecoder[T]()
		if err != nil {
			return nil, fmt.Errorf("its records cross processes, so they must be encodable: %w", err)
		}
		r.decode = dec
	}
	return r, nil
}

func (typeInfo[T]) newDiscard() any { return discardOutput[T]{} }

func (typeInfo[T]) newLocalChannel(gate *chan envelope, idx int32, credits, batchSize int) any {
	return newLocalChannel[T](gate, idx, credits, batchSize)
}

func (typeInfo[T]) newRemoteChannel(spec remoteSpec) (any, error) {
	return newRemoteChannel[T](spec)
}
