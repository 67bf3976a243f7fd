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

// Operator state. A function that is not keyed (ProcessUnkeyed,
// CoProcess) keeps what it must remember in its own fields; to have that
// survive a failure, it implements CheckpointedFunction, as in Flink:
//
//	type countingFilter struct{ seen int64 }
//
//	func (f *countingFilter) SnapshotState(*stream.SnapshotContext) ([]byte, error) {
//		return binary.AppendVarint(nil, f.seen), nil
//	}
//
//	func (f *countingFilter) RestoreState(ctx *stream.RestoreContext) error {
//		if ctx.Subtask() != 0 {
//			return nil // subtask 0 takes the count of all old subtasks
//		}
//		for _, b := range ctx.States() {
//			if n, w := binary.Varint(b); w > 0 {
//				f.seen += n
//			}
//		}
//		return nil
//	}
//
// Map, FlatMap, Filter, CoMap and CoFlatMap take plain functions, which
// cannot have checkpointed state: write a ProcessFunction (or
// CoProcessFunction) instead. Keyed functions keep their state in keyed
// state, which checkpoints hold and rescale by key; they may implement
// CheckpointedFunction too, for state that belongs to the subtask rather
// than to a key.

// CheckpointedFunction is implemented by functions that keep state of their
// own outside keyed state. Each subtask's copy of the function stores its
// state in every checkpoint, as bytes it encodes itself; when the job
// restarts from a checkpoint or savepoint, every subtask of the new job sees
// the states of all subtasks of the old one (Flink's union redistribution)
// and takes what is its own. The parallelism may have changed in between.
type CheckpointedFunction interface {
	// SnapshotState returns the subtask's state at a checkpoint; nil stores
	// nothing. It runs between two records, so it must be quick, and the
	// function must not change the returned bytes afterwards. An error
	// fails the checkpoint, not the job.
	SnapshotState(ctx *SnapshotContext) ([]byte, error)
	// RestoreState runs before Open when the job starts from a checkpoint
	// or savepoint that holds the operator's state. An error fails the
	// job: the state or the function must change.
	RestoreState(ctx *RestoreContext) error
}

// SnapshotContext describes the checkpoint a function's state is taken for.
type SnapshotContext struct {
	checkpoint           int64
	subtask, parallelism int
}

// CheckpointID returns the id of the checkpoint.
func (c *SnapshotContext) CheckpointID() int64 { return c.checkpoint }

// Subtask returns the index of the subtask taking its snapshot, from 0.
func (c *SnapshotContext) Subtask() int { return c.subtask }

// Parallelism returns the number of subtasks of the operator.
func (c *SnapshotContext) Parallelism() int { return c.parallelism }

// RestoreContext is what a function restores its state from: the states
// all subtasks of the operator stored in the checkpoint.
type RestoreContext struct {
	checkpoint           int64
	states               [][]byte
	subtask, parallelism int
}

// CheckpointID returns the id of the checkpoint or savepoint.
func (c *RestoreContext) CheckpointID() int64 { return c.checkpoint }

// States returns the state each old subtask stored, by old subtask index:
// len(States()) is the old parallelism. An entry is nil where that
// subtask stored nothing. The function may keep the slices.
func (c *RestoreContext) States() [][]byte { return c.states }

// OldParallelism returns the number of subtasks that took the checkpoint.
func (c *RestoreContext) OldParallelism() int { return len(c.states) }

// Subtask returns the index of the restoring subtask, from 0.
func (c *RestoreContext) Subtask() int { return c.subtask }

// Parallelism returns the number of subtasks of the restored operator.
func (c *RestoreContext) Parallelism() int { return c.parallelism }

// Rescaled reports whether the parallelism changed since the checkpoint.
func (c *RestoreContext) Rescaled() bool { return len(c.states) != c.parallelism }

// Own returns the state of the old subtask with this subtask's index, the
// whole state of this subtask when the parallelism has not changed; nil if
// there was no such subtask or it stored nothing.
func (c *RestoreContext) Own() []byte {
	if c.subtask < len(c.states) {
		return c.states[c.subtask]
	}
	return nil
}
