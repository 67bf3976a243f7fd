package stream

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
)

// TimeWindow is a window of time: the unix milliseconds [Start, End), End
// exclusive. Window results carry the timestamp MaxTimestamp() = End-1.
type TimeWindow = operators.TimeWindow

// WindowAssigner assigns records to windows. Build one with
// TumblingEventTimeWindows, SlidingEventTimeWindows, EventTimeSessionWindows
// or their processing-time counterparts; WithOffset shifts tumbling and
// sliding windows.
//
// Event-time windows use the records' timestamps and fire when the
// watermark passes their end; processing-time windows use the clock of the
// subtask that processes a record and fire when that clock passes their end
// (and, in a bounded job, at the end of the input).
type WindowAssigner = operators.WindowAssigner

// ProcessWindowFunction computes the results of one key's window. It
// receives the key, the window and its contents: every element
// (WindowProcess) or the one reduced or aggregated value (WindowReduce,
// WindowAggregateWith). elements is valid only during the call. An error
// fails the job.
type ProcessWindowFunction[K comparable, IN, OUT any] = operators.ProcessWindowFunction[K, IN, OUT]

// TumblingEventTimeWindows assigns each record to the window of the given
// size that holds its timestamp; windows are [k*size, (k+1)*size) in unix
// milliseconds (see WithOffset).
func TumblingEventTimeWindows(size time.Duration) WindowAssigner {
	return operators.TumblingWindows(size, false)
}

// SlidingEventTimeWindows assigns each record to every window of the given
// size, one starting each slide, that holds its timestamp (size/slide
// windows when slide divides size).
func SlidingEventTimeWindows(size, slide time.Duration) WindowAssigner {
	return operators.SlidingWindows(size, slide, false)
}

// EventTimeSessionWindows groups each key's records into sessions that end
// after gap of event time without a record of that key. A record at t opens
// the window [t, t+gap), which merges with every window of its key that it
// overlaps or touches.
func EventTimeSessionWindows(gap time.Duration) WindowAssigner {
	return operators.SessionWindows(gap, false)
}

// TumblingProcessingTimeWindows is TumblingEventTimeWindows on the clock of
// the subtask that processes each record.
func TumblingProcessingTimeWindows(size time.Duration) WindowAssigner {
	return operators.TumblingWindows(size, true)
}

// SlidingProcessingTimeWindows is SlidingEventTimeWindows on the clock of
// the subtask that processes each record.
func SlidingProcessingTimeWindows(size, slide time.Duration) WindowAssigner {
	return operators.SlidingWindows(size, slide, true)
}

// ProcessingTimeSessionWindows is EventTimeSessionWindows on the clock of
// the subtask that processes each record.
func ProcessingTimeSessionWindows(gap time.Duration) WindowAssigner {
	return operators.SessionWindows(gap, true)
}

// WindowedStream is a keyed stream grouped into windows. Finish it with
// Reduce, WindowReduce, WindowAggregate, WindowAggregateWith or
// WindowProcess, which add the window operator.
//
// Checkpoints hold the open windows as keyed state, so a job restored from
// one, with the same or another parallelism, emits exactly the results of
// a run without failure (processing-time windows: up to the clock). Their
// contents (the reduced value, the accumulator, or the buffered records of
// WindowProcess) are then encoded, so their types must have no funcs,
// channels or interfaces; with checkpoints on, a job whose windows cannot
// be encoded fails when it starts.
type WindowedStream[T any, K comparable] struct {
	k        *KeyedStream[T, K]
	assigner WindowAssigner
	lateness time.Duration
}

// Window groups each key's records into the windows a assigns them to.
func Window[T any, K comparable](k *KeyedStream[T, K], a WindowAssigner) *WindowedStream[T, K] {
	if err := a.Err(); err != nil {
		k.in.env.fail(fmt.Errorf("Window after %q: %w", k.in.node.Name, err))
	}
	return &WindowedStream[T, K]{k: k, assigner: a}
}

// AllowedLateness keeps event-time windows for d after they fired: a record
// at most d late (by the watermark) is added to its windows, which fire
// again with all their contents, so downstream sees an updated result for
// the same window. Records later than that are dropped (and counted). The
// default is 0. Processing-time windows ignore it, as in Flink.
func (w *WindowedStream[T, K]) AllowedLateness(d time.Duration) *WindowedStream[T, K] {
	if d < 0 {
		w.k.in.env.fail(fmt.Errorf("window after %q: AllowedLateness(%v): allowed lateness must not be negative", w.k.in.node.Name, d))
		return w
	}
	w.lateness = d
	return w
}

func (w *WindowedStream[T, K]) spec() operators.WindowSpec {
	return operators.WindowSpec{Assigner: w.assigner, AllowedLateness: w.lateness}
}

// addWindow adds a window operator reading the keyed stream.
func addWindow[T any, K comparable, OUT any](w *WindowedStream[T, K], name, kind string, f *runtime.Factory) *DataStream[OUT] {
	env := w.k.in.env
	n := addNode(env, name, kind, f, w.k.hashInput())
	n.KeyedInputs = []bool{true}
	return &DataStream[OUT]{env: env, node: n}
}

func (w *WindowedStream[T, K]) checkNil(name string, what string, isNil bool) {
	if isNil {
		w.k.in.env.fail(fmt.Errorf("window operator %q: the %s is nil", name, what))
	}
}

// Reduce emits, for each key and window, the reduction of the window's
// records with f (f(a, b) folds b into a, in arrival order).
func (w *WindowedStream[T, K]) Reduce(name string, f func(a, b T) T) *DataStream[T] {
	w.checkNil(name, "reduce function", f == nil)
	return addWindow[T, K, T](w, name, "window-reduce", operators.NewWindowReduce(w.k.keying, w.spec(), f))
}

// WindowReduce reduces each key's window with f, as Reduce, and passes the
// reduced value (the one element of elements) to p with the key and window.
func WindowReduce[T any, K comparable, OUT any](w *WindowedStream[T, K], name string, f func(a, b T) T, p ProcessWindowFunction[K, T, OUT]) *DataStream[OUT] {
	w.checkNil(name, "reduce function", f == nil)
	w.checkNil(name, "process window function", p == nil)
	return addWindow[T, K, OUT](w, name, "window-reduce", operators.NewWindowReduceProcess(w.k.keying, w.spec(), f, p))
}

// WindowAggregate emits, for each key and window, agg's result over the
// window's records. Session windows combine accumulators with agg.Merge.
func WindowAggregate[T any, K comparable, ACC, OUT any](w *WindowedStream[T, K], name string, agg AggregateFunction[T, ACC, OUT]) *DataStream[OUT] {
	w.checkNil(name, "aggregate function", agg == nil)
	return addWindow[T, K, OUT](w, name, "window-aggregate", operators.NewWindowAggregate(w.k.keying, w.spec(), agg))
}

// WindowAggregateWith aggregates each key's window with agg, as
// WindowAggregate, and passes the result (the one element of elements) to p
// with the key and window.
func WindowAggregateWith[T any, K comparable, ACC, V, OUT any](w *WindowedStream[T, K], name string, agg AggregateFunction[T, ACC, V], p ProcessWindowFunction[K, V, OUT]) *DataStream[OUT] {
	w.checkNil(name, "aggregate function", agg == nil)
	w.checkNil(name, "process window function", p == nil)
	return addWindow[T, K, OUT](w, name, "window-aggregate", operators.NewWindowAggregateProcess(w.k.keying, w.spec(), agg, p))
}

// WindowProcess buffers each key's window and passes all its records, in
// arrival order, to p with the key and window. It keeps every record until
// its windows fire; prefer Reduce or WindowAggregate where they fit.
func WindowProcess[T any, K comparable, OUT any](w *WindowedStream[T, K], name string, p ProcessWindowFunction[K, T, OUT]) *DataStream[OUT] {
	w.checkNil(name, "process window function", p == nil)
	return addWindow[T, K, OUT](w, name, "window-process", operators.NewWindowProcess(w.k.keying, w.spec(), p))
}
