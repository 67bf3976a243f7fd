package operators

import (
	"fmt"

	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// keyContext sets the current key of a keyed operator's state backend from
// each record.
type keyContext[T any, K comparable] struct {
	keying  *Keying[T, K]
	backend state.Backend
	maxP    int
	buf     []byte
	key     K
}

func (k *keyContext[T, K]) open(ctx *runtime.OperatorContext) error {
	k.backend = ctx.NewKeyedBackend()
	k.maxP = ctx.MaxParallelism
	if r := ctx.Restored; r != nil {
		if err := r.RestoreKeyed(k.backend); err != nil {
			return fmt.Errorf("restoring keyed state from checkpoint %d: %w", r.Checkpoint, err)
		}
	}
	return nil
}

// SnapshotState implements runtime.Snapshotter.
func (k *keyContext[T, K]) SnapshotState(int64) (*runtime.OperatorSnapshot, error) {
	s, err := k.backend.Snapshot()
	if err != nil {
		return nil, err
	}
	return &runtime.OperatorSnapshot{Keyed: s}, nil
}

// setKeyOf makes the key of v current and returns it.
func (k *keyContext[T, K]) setKeyOf(v T) K {
	key := k.keying.Select(v)
	k.buf = k.keying.Encoder.Append(k.buf[:0], key)
	k.backend.SetCurrentKey(k.buf, KeyGroupOf(k.buf, k.maxP))
	k.key = key
	return key
}

// keyedFactory builds the factory of a one-input keyed operator.
func keyedFactory[IN, OUT any, K comparable](keying *Keying[IN, K], mk func() (runtime.Operator, runtime.Input[IN], func(any))) *runtime.Factory {
	f := oneInput[IN, OUT](mk)
	f.InputKeys = []func(int) any{keying.KeyGroupFunc}
	return f
}

type keyedReduceOp[T any, K comparable] struct {
	base[T]
	keyContext[T, K]
	reduce func(a, b T) T
	acc    state.ValueState[T]
}

// NewKeyedReduce returns the factory of a rolling keyed reduce: for each
// record it emits the reduction of all records of its key so far.
func NewKeyedReduce[T any, K comparable](keying *Keying[T, K], reduce func(a, b T) T) *runtime.Factory {
	return keyedFactory[T, T](keying, func() (runtime.Operator, runtime.Input[T], func(any)) {
		op := &keyedReduceOp[T, K]{keyContext: keyContext[T, K]{keying: keying}, reduce: reduce}
		return op, op, op.setOutput
	})
}

func (r *keyedReduceOp[T, K]) Open(ctx *runtime.OperatorContext) error {
	r.base.Open(ctx)
	if err := r.keyContext.open(ctx); err != nil {
		return err
	}
	var err error
	r.acc, err = state.NewValueState[T](r.backend, "reduce")
	return err
}

func (r *keyedReduceOp[T, K]) ProcessElement(v T, ts int64) {
	r.setKeyOf(v)
	if cur, ok := r.acc.Value(); ok {
		v = r.reduce(cur, v)
	}
	r.acc.Update(v)
	r.out.Collect(v, ts)
}

type keyedAggregateOp[IN any, K comparable, ACC, OUT any] struct {
	base[OUT]
	keyContext[IN, K]
	agg state.AggregateFunction[IN, ACC, OUT]
	acc state.ValueState[ACC]
}

// NewKeyedAggregate returns the factory of a rolling keyed aggregation: for
// each record it emits the aggregate of all records of its key so far.
func NewKeyedAggregate[IN any, K comparable, ACC, OUT any](keying *Keying[IN, K], agg state.AggregateFunction[IN, ACC, OUT]) *runtime.Factory {
	return keyedFactory[IN, OUT](keying, func() (runtime.Operator, runtime.Input[IN], func(any)) {
		op := &keyedAggregateOp[IN, K, ACC, OUT]{keyContext: keyContext[IN, K]{keying: keying}, agg: agg}
		return op, op, op.setOutput
	})
}

func (a *keyedAggregateOp[IN, K, ACC, OUT]) Open(ctx *runtime.OperatorContext) error {
	a.base.Open(ctx)
	if err := a.keyContext.open(ctx); err != nil {
		return err
	}
	var err error
	a.acc, err = state.NewValueState[ACC](a.backend, "aggregate")
	return err
}

func (a *keyedAggregateOp[IN, K, ACC, OUT]) ProcessElement(v IN, ts int64) {
	a.setKeyOf(v)
	acc, ok := a.acc.Value()
	if !ok {
		acc = a.agg.CreateAccumulator()
	}
	acc = a.agg.Add(v, acc)
	a.acc.Update(acc)
	a.out.Collect(a.agg.GetResult(acc), ts)
}
