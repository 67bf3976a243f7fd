package stream

import (
	"errors"
	"fmt"

	"github.com/weirstream/weir/internal/state"
)

// Keyed state. A keyed function creates its states by name in Open and
// keeps them in its fields; every access then reads or writes the entry of
// the key being handled. Names identify state in checkpoints and
// savepoints: keep a state's name, kind and types when changing a job that
// must restore it. Asking twice for the same name returns the same state.
//
//	type counter struct{ count stream.ValueState[int] }
//
//	func (c *counter) Open(rc *stream.RuntimeContext) (err error) {
//		c.count, err = stream.ValueStateOf[int](rc, "count")
//		return err
//	}
//
//	func (c *counter) ProcessElement(ctx *stream.KeyedContext[string, int], w string) error {
//		n, _ := c.count.Value()
//		c.count.Update(n + 1)
//		ctx.Collect(n + 1)
//		return nil
//	}
//
// State accessors return no errors; a failure to read or write state (a
// disk error, bytes that no longer decode) fails the job.

// ValueState holds one value per key.
type ValueState[V any] = state.ValueState[V]

// ListState holds a list per key.
type ListState[V any] = state.ListState[V]

// MapState holds a map per key; an empty map is no entry.
type MapState[UK comparable, UV any] = state.MapState[UK, UV]

// ReducingState folds the values added for a key with a reduce function.
type ReducingState[V any] = state.ReducingState[V]

// AggregatingState folds the values added for a key with an
// AggregateFunction.
type AggregatingState[IN, OUT any] = state.AggregatingState[IN, OUT]

// ValueStateOf returns the value state called name of the keyed function
// that rc belongs to.
func ValueStateOf[V any](rc *RuntimeContext, name string) (ValueState[V], error) {
	b, err := rc.keyedBackend(name)
	if err != nil {
		return nil, err
	}
	return state.NewValueState[V](b, name)
}

// ListStateOf returns the list state called name of the keyed function
// that rc belongs to.
func ListStateOf[V any](rc *RuntimeContext, name string) (ListState[V], error) {
	b, err := rc.keyedBackend(name)
	if err != nil {
		return nil, err
	}
	return state.NewListState[V](b, name)
}

// MapStateOf returns the map state called name of the keyed function that
// rc belongs to.
func MapStateOf[UK comparable, UV any](rc *RuntimeContext, name string) (MapState[UK, UV], error) {
	b, err := rc.keyedBackend(name)
	if err != nil {
		return nil, err
	}
	return state.NewMapState[UK, UV](b, name)
}

// ReducingStateOf returns the reducing state called name of the keyed
// function that rc belongs to, folding added values with reduce.
func ReducingStateOf[V any](rc *RuntimeContext, name string, reduce func(a, b V) V) (ReducingState[V], error) {
	b, err := rc.keyedBackend(name)
	if err != nil {
		return nil, err
	}
	return state.NewReducingState(b, name, reduce)
}

// AggregatingStateOf returns the aggregating state called name of the
// keyed function that rc belongs to, folding added values with agg. The
// accumulator ACC is what is stored.
func AggregatingStateOf[IN, ACC, OUT any](rc *RuntimeContext, name string, agg AggregateFunction[IN, ACC, OUT]) (AggregatingState[IN, OUT], error) {
	b, err := rc.keyedBackend(name)
	if err != nil {
		return nil, err
	}
	return state.NewAggregatingState(b, name, agg)
}

// errNotKeyed is returned when a function that does not run on a keyed
// stream asks for keyed state.
var errNotKeyed = errors.New("keyed state is only available to functions on a keyed stream")

// keyedBackend returns the keyed state backend, or an error that says how
// to get one.
func (rc *RuntimeContext) keyedBackend(name string) (state.Backend, error) {
	if rc == nil {
		return nil, fmt.Errorf("state %q: the RuntimeContext is nil; create state in Open with the context it is given", name)
	}
	if rc.backend == nil {
		return nil, fmt.Errorf("state %q: %w; key the stream with KeyBy and use Process (or ConnectKeyed and KeyedCoProcess)",
			name, errNotKeyed)
	}
	return rc.backend, nil
}
