package stream

import (
	"fmt"

	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/operators"
)

// KeyedStream is a stream partitioned by key: records with equal keys go to
// the same subtask, and keyed state and timers are scoped to the key.
type KeyedStream[T any, K comparable] struct {
	in     *DataStream[T]
	keying *operators.Keying[T, K]
}

// KeyBy partitions the stream by the key that f extracts. The key type must
// be plain data (numbers, strings, structs of them…): keys are encoded to pick
// their key group and to address state.
func KeyBy[T any, K comparable](d *DataStream[T], f func(T) K) *KeyedStream[T, K] {
	enc, err := operators.NewKeyEncoder[K]()
	if err != nil {
		d.env.fail(fmt.Errorf("KeyBy after %q: %w", d.node.Name, err))
	}
	return &KeyedStream[T, K]{in: d, keying: &operators.Keying[T, K]{Select: f, Encoder: enc}}
}

// Input returns the graph input of a keyed operator: a hash edge.
func (k *KeyedStream[T, K]) hashInput() graph.Input {
	return graph.Input{Node: k.in.node.ID, Partitioning: graph.Hash}
}

// Reduce emits, for each record, the reduction of all records of its key so
// far (a rolling reduce).
func (k *KeyedStream[T, K]) Reduce(name string, f func(a, b T) T) *DataStream[T] {
	n := addNode(k.in.env, name, "keyed-reduce", operators.NewKeyedReduce(k.keying, f), k.hashInput())
	n.KeyedInputs = []bool{true}
	return &DataStream[T]{env: k.in.env, node: n}
}

// Aggregate emits, for each record, the aggregate of all records of its key
// so far (a rolling aggregation).
func Aggregate[T any, K comparable, ACC, OUT any](k *KeyedStream[T, K], name string, agg AggregateFunction[T, ACC, OUT]) *DataStream[OUT] {
	n := addNode(k.in.env, name, "keyed-aggregate", operators.NewKeyedAggregate(k.keying, agg), k.hashInput())
	n.KeyedInputs = []bool{true}
	return &DataStream[OUT]{env: k.in.env, node: n}
}
