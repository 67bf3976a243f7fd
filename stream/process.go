package stream

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

const (
	// NoTimestamp is the timestamp of a record that has none.
	NoTimestamp int64 = runtime.NoTimestamp
	// MaxWatermark is the watermark at the end of a bounded input: all
	// event time has passed and every event-time timer fires.
	MaxWatermark int64 = runtime.MaxWatermark
)

// TimeDomain says which clock a timer belongs to.
type TimeDomain int

const (
	// EventTime timers fire when the operator's watermark reaches them.
	EventTime = TimeDomain(operators.EventTime)
	// ProcessingTime timers fire when the wall clock reaches them.
	ProcessingTime = TimeDomain(operators.ProcessingTime)
)

func (d TimeDomain) String() string { return operators.TimeDomain(d).String() }

// RuntimeContext tells a function where it runs. Keyed functions create
// their state through it in Open (ValueStateOf, ListStateOf, …).
type RuntimeContext struct {
	op *runtime.OperatorContext
	// backend is the keyed state backend; nil for non-keyed functions.
	backend state.Backend
}

// OperatorName returns the name of the operator running the function.
func (rc *RuntimeContext) OperatorName() string { return rc.op.Name }

// JobName returns the name of the job.
func (rc *RuntimeContext) JobName() string { return rc.op.JobName }

// Subtask returns the index of this parallel instance, from 0.
func (rc *RuntimeContext) Subtask() int { return rc.op.Subtask }

// Parallelism returns the number of parallel instances of the operator.
func (rc *RuntimeContext) Parallelism() int { return rc.op.Parallelism }

// MaxParallelism returns the operator's number of key groups: the largest
// parallelism its keyed state can be rescaled to.
func (rc *RuntimeContext) MaxParallelism() int { return rc.op.MaxParallelism }

// Opener is implemented by functions that prepare before the first record,
// typically by creating their keyed state. Open runs once per subtask, on
// that subtask's copy of the function; an error fails the job.
type Opener interface {
	Open(rc *RuntimeContext) error
}

// Closer is implemented by functions that release resources when their
// operator stops, whether the job finished, failed or was canceled. Each
// subtask's copy is closed once, after Open, even if Open failed.
type Closer interface {
	Close() error
}

// KeyedProcessFunction processes the records of a keyed stream, one key at
// a time, with keyed state and timers (Flink's KeyedProcessFunction). It may
// also implement Opener, Closer and KeyedTimerHandler, and
// CheckpointedFunction for state of the subtask rather than of a key.
type KeyedProcessFunction[K comparable, IN, OUT any] interface {
	ProcessElement(ctx *KeyedContext[K, OUT], in IN) error
}

// KeyedProcessFunc adapts a function to a KeyedProcessFunction.
type KeyedProcessFunc[K comparable, IN, OUT any] func(ctx *KeyedContext[K, OUT], in IN) error

// ProcessElement calls f.
func (f KeyedProcessFunc[K, IN, OUT]) ProcessElement(ctx *KeyedContext[K, OUT], in IN) error {
	return f(ctx, in)
}

// KeyedTimerHandler is implemented by keyed functions that register timers.
// OnTimer is called once per timer, with the timer's key current: its state
// is the key's state, and ctx.Key() returns it.
type KeyedTimerHandler[K comparable, OUT any] interface {
	OnTimer(ctx *KeyedContext[K, OUT], timestamp int64, domain TimeDomain) error
}

// KeyedContext is what a keyed function sees while it handles one record
// or timer. It is valid only during that call.
type KeyedContext[K comparable, OUT any] struct {
	s      *operators.KeyedScope[K, OUT]
	timers TimerService
}

// Key returns the key of the record or timer being handled.
func (c *KeyedContext[K, OUT]) Key() K { return c.s.Key() }

// Timestamp returns the event timestamp of the record being handled
// (NoTimestamp if it has none), or the time of the firing timer.
func (c *KeyedContext[K, OUT]) Timestamp() int64 { return c.s.Timestamp() }

// Collect emits v. It carries the record's timestamp, or in OnTimer the
// timer's for an event-time timer and none for a processing-time timer.
func (c *KeyedContext[K, OUT]) Collect(v OUT) { c.s.Collect(v) }

// CollectWithTimestamp emits v with event timestamp ts (unix ms).
func (c *KeyedContext[K, OUT]) CollectWithTimestamp(v OUT, ts int64) {
	c.s.CollectWithTimestamp(v, ts)
}

// TimerService returns the operator's clocks and the current key's timers.
func (c *KeyedContext[K, OUT]) TimerService() *TimerService { return &c.timers }

// TimerService reads the operator's clocks and registers timers for the
// current key. A timer is identified by its key and time: registering it
// twice fires it once.
//
// Event-time timers fire when the operator's watermark (the minimum of its
// inputs' watermarks) reaches them, before that watermark goes downstream.
// At the end of a bounded input the watermark becomes MaxWatermark and
// every event-time timer fires, including ones registered while firing, so
// a timer that re-registers itself must stop once CurrentWatermark() is
// MaxWatermark.
//
// Processing-time timers fire when the wall clock reaches them. At the end
// of input, pending processing-time timers are dropped without firing (as
// in Flink): a bounded job does not wait for the clock.
type TimerService struct {
	t *operators.Timers
}

// CurrentWatermark returns the operator's event time in unix milliseconds
// (math.MinInt64 before the first watermark).
func (t *TimerService) CurrentWatermark() int64 { return t.t.CurrentWatermark() }

// CurrentProcessingTime returns the wall clock in unix milliseconds.
func (t *TimerService) CurrentProcessingTime() int64 { return t.t.CurrentProcessingTime() }

// RegisterEventTimeTimer registers a timer at event time ts for the current
// key. A timer at or before the current watermark fires at the next
// watermark.
func (t *TimerService) RegisterEventTimeTimer(ts int64) { t.t.RegisterEventTimeTimer(ts) }

// DeleteEventTimeTimer deletes the current key's event-time timer at ts, if any.
func (t *TimerService) DeleteEventTimeTimer(ts int64) { t.t.DeleteEventTimeTimer(ts) }

// RegisterProcessingTimeTimer registers a timer at wall-clock time ts (unix
// ms) for the current key.
func (t *TimerService) RegisterProcessingTimeTimer(ts int64) { t.t.RegisterProcessingTimeTimer(ts) }

// DeleteProcessingTimeTimer deletes the current key's processing-time timer
// at ts, if any.
func (t *TimerService) DeleteProcessingTimeTimer(ts int64) { t.t.DeleteProcessingTimeTimer(ts) }

// Process applies a keyed process function to every record of the keyed
// stream: the general operator, with keyed state (created in Open through
// the RuntimeContext) and event- and processing-time timers.
//
// Each parallel subtask runs its own copy of f: when f is a pointer to a
// struct, the struct is copied (shallowly, as a Go assignment copies) for
// every subtask, so Open can keep state handles in its fields. Fields that
// are pointers, maps or slices still share what they point to.
//
// An error returned by f fails the job, naming the operator and the key.
func Process[T any, K comparable, OUT any](k *KeyedStream[T, K], name string, f KeyedProcessFunction[K, T, OUT]) *DataStream[OUT] {
	env := k.in.env
	checkKeyedFunction[K, OUT](env, fmt.Sprintf("keyed process %q", name), f)
	factory := operators.NewKeyedProcess(k.keying, func() operators.KeyedProcessor[K, T, OUT] {
		fn := cloneFunction(f)
		return &keyedProcessAdapter[K, T, OUT]{keyedFunction: newKeyedFunction[K, OUT](fn), fn: fn}
	})
	n := addNode(env, name, "keyed-process", factory, k.hashInput())
	n.KeyedInputs = []bool{true}
	return &DataStream[OUT]{env: env, node: n}
}

// ProcessFunction processes the records of a stream that is not keyed
// (Flink's ProcessFunction). It has no keyed state and no timers; it may
// implement Opener and Closer, and CheckpointedFunction to keep state of
// its own in checkpoints.
type ProcessFunction[IN, OUT any] interface {
	ProcessElement(ctx *Context[OUT], in IN) error
}

// ProcessFunc adapts a function to a ProcessFunction.
type ProcessFunc[IN, OUT any] func(ctx *Context[OUT], in IN) error

// ProcessElement calls f.
func (f ProcessFunc[IN, OUT]) ProcessElement(ctx *Context[OUT], in IN) error { return f(ctx, in) }

// Context is what a non-keyed function sees while it handles one record.
// It is valid only during that call.
type Context[OUT any] struct {
	s *operators.Scope[OUT]
}

// Timestamp returns the event timestamp of the record being handled, or
// NoTimestamp if it has none.
func (c *Context[OUT]) Timestamp() int64 { return c.s.Timestamp() }

// Collect emits v with the timestamp of the record being handled.
func (c *Context[OUT]) Collect(v OUT) { c.s.Collect(v) }

// CollectWithTimestamp emits v with event timestamp ts (unix ms).
func (c *Context[OUT]) CollectWithTimestamp(v OUT, ts int64) { c.s.CollectWithTimestamp(v, ts) }

// CurrentWatermark returns the operator's event time in unix milliseconds
// (math.MinInt64 before the first watermark).
func (c *Context[OUT]) CurrentWatermark() int64 { return c.s.CurrentWatermark() }

// CurrentProcessingTime returns the wall clock in unix milliseconds.
func (c *Context[OUT]) CurrentProcessingTime() int64 { return c.s.CurrentProcessingTime() }

// ProcessUnkeyed applies a process function to every record of a stream
// that is not keyed. For keyed state and timers, KeyBy the stream and use
// Process. Each subtask runs its own copy of f, as with Process.
func ProcessUnkeyed[IN, OUT any](d *DataStream[IN], name string, f ProcessFunction[IN, OUT]) *DataStream[OUT] {
	checkFunction(d.env, fmt.Sprintf("process %q", name), f)
	factory := operators.NewProcess(func() operators.Processor[IN, OUT] {
		fn := cloneFunction(f)
		return &processAdapter[IN, OUT]{function: function[OUT]{fn: fn}, fn: fn}
	})
	return derive[IN, OUT](d, addNode(d.env, name, "process", factory, d.input()))
}

// function adapts the lifecycle of a non-keyed user function (Opener,
// Closer) to the operator's.
type function[OUT any] struct {
	fn  any
	ctx Context[OUT]
}

func (f *function[OUT]) Open(s *operators.Scope[OUT]) error {
	f.ctx = Context[OUT]{s: s}
	return openFunction(f.fn, &RuntimeContext{op: s.OperatorContext()})
}

func (f *function[OUT]) Close() error { return closeFunction(f.fn) }

// SnapshotFunctionState implements operators.FunctionState; the runtime
// snapshots only opened operators.
func (f *function[OUT]) SnapshotFunctionState(id int64) ([]byte, error) {
	return snapshotFunction(f.fn, id, f.ctx.s.OperatorContext())
}

// RestoreFunctionState implements operators.FunctionState.
func (f *function[OUT]) RestoreFunctionState(ctx *runtime.OperatorContext, states [][]byte) error {
	return restoreFunction(f.fn, ctx, states)
}

type processAdapter[IN, OUT any] struct {
	function[OUT]
	fn ProcessFunction[IN, OUT]
}

func (p *processAdapter[IN, OUT]) ProcessElement(v IN) error { return p.fn.ProcessElement(&p.ctx, v) }

// keyedFunction adapts the lifecycle and timers of a keyed user function to
// the operator's.
type keyedFunction[K comparable, OUT any] struct {
	fn    any
	timer KeyedTimerHandler[K, OUT] // nil if fn has no OnTimer
	ctx   KeyedContext[K, OUT]
}

func newKeyedFunction[K comparable, OUT any](fn any) keyedFunction[K, OUT] {
	h, _ := fn.(KeyedTimerHandler[K, OUT])
	return keyedFunction[K, OUT]{fn: fn, timer: h}
}

func (f *keyedFunction[K, OUT]) Open(s *operators.KeyedScope[K, OUT]) error {
	f.ctx = KeyedContext[K, OUT]{s: s, timers: TimerService{t: s.Timers()}}
	return openFunction(f.fn, &RuntimeContext{op: s.OperatorContext(), backend: s.Backend()})
}

// OnTimer calls the function's OnTimer; a function without one ignores
// its timers, like Flink's default onTimer.
func (f *keyedFunction[K, OUT]) OnTimer(ts int64, domain operators.TimeDomain) error {
	if f.timer == nil {
		return nil
	}
	return f.timer.OnTimer(&f.ctx, ts, TimeDomain(domain))
}

func (f *keyedFunction[K, OUT]) Close() error { return closeFunction(f.fn) }

// SnapshotFunctionState implements operators.FunctionState; the runtime
// snapshots only opened operators.
func (f *keyedFunction[K, OUT]) SnapshotFunctionState(id int64) ([]byte, error) {
	return snapshotFunction(f.fn, id, f.ctx.s.OperatorContext())
}

// RestoreFunctionState implements operators.FunctionState.
func (f *keyedFunction[K, OUT]) RestoreFunctionState(ctx *runtime.OperatorContext, states [][]byte) error {
	return restoreFunction(f.fn, ctx, states)
}

type keyedProcessAdapter[K comparable, IN, OUT any] struct {
	keyedFunction[K, OUT]
	fn KeyedProcessFunction[K, IN, OUT]
}

func (p *keyedProcessAdapter[K, IN, OUT]) ProcessElement(v IN) error {
	return p.fn.ProcessElement(&p.ctx, v)
}

// snapshotFunction returns the state of fn if it is a CheckpointedFunction.
func snapshotFunction(fn any, id int64, op *runtime.OperatorContext) ([]byte, error) {
	cf, ok := fn.(CheckpointedFunction)
	if !ok {
		return nil, nil
	}
	b, err := cf.SnapshotState(&SnapshotContext{checkpoint: id, subtask: op.Subtask, parallelism: op.Parallelism})
	if err != nil {
		return nil, fmt.Errorf("snapshotting the function's state (SnapshotState of %T): %w", fn, err)
	}
	return b, nil
}

// restoreFunction passes the restored states to fn if it is a
// CheckpointedFunction; a function that is not cannot restore any.
func restoreFunction(fn any, op *runtime.OperatorContext, states [][]byte) error {
	cf, ok := fn.(CheckpointedFunction)
	if !ok {
		if i := slices.IndexFunc(states, func(b []byte) bool { return b != nil }); i >= 0 {
			return fmt.Errorf("checkpoint %d holds the state of the function of old subtask %d, but %T is not a stream.CheckpointedFunction "+
				"and cannot restore it; restore with the function that took the checkpoint, or give the operator a new uid to drop its state",
				op.Restored.Checkpoint, i, fn)
		}
		return nil
	}
	ctx := &RestoreContext{checkpoint: op.Restored.Checkpoint, states: states, subtask: op.Subtask, parallelism: op.Parallelism}
	if err := cf.RestoreState(ctx); err != nil {
		return fmt.Errorf("restoring the function's state (RestoreState of %T): %w", fn, err)
	}
	return nil
}

func openFunction(fn any, rc *RuntimeContext) error {
	o, ok := fn.(Opener)
	if !ok {
		return nil
	}
	if err := o.Open(rc); err != nil {
		return fmt.Errorf("opening the function: %w", err)
	}
	return nil
}

func closeFunction(fn any) error {
	c, ok := fn.(Closer)
	if !ok {
		return nil
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("closing the function: %w", err)
	}
	return nil
}

// cloneFunction returns the copy of f that one subtask runs: a new struct
// with the fields of *f when f points to a struct, else f itself. Flink
// gives each parallel instance its own deserialised copy of a function;
// this is the shallow equivalent, so that what Open stores in fields
// (state handles, buffers) is per subtask and not shared across goroutines.
func cloneFunction[F any](f F) F {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return f
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	return c.Interface().(F)
}

// checkFunction records an error in env if f is nil, or if it has an Open
// or Close method that does not match Opener or Closer and so would
// silently never be called.
func checkFunction(env *Environment, op string, f any) {
	if isNil(f) {
		env.fail(fmt.Errorf("%s: the function is nil", op))
		return
	}
	_, ok := f.(Opener)
	checkOptional(env, op, f, "Open", ok, "Open(rc *stream.RuntimeContext) error")
	_, ok = f.(Closer)
	checkOptional(env, op, f, "Close", ok, "Close() error")
	checkCheckpointed(env, op, f)
}

// checkCheckpointed records an error in env if f has a SnapshotState or
// RestoreState method but is not a CheckpointedFunction, whose state would
// silently never be checkpointed.
func checkCheckpointed(env *Environment, op string, f any) {
	if _, ok := f.(CheckpointedFunction); ok {
		return
	}
	t := reflect.TypeOf(f)
	for _, m := range []string{"SnapshotState", "RestoreState"} {
		if _, ok := t.MethodByName(m); ok {
			env.fail(fmt.Errorf("%s: %T has a method %s, but its state would never be checkpointed: a stream.CheckpointedFunction needs both "+
				"SnapshotState(ctx *stream.SnapshotContext) ([]byte, error) and RestoreState(ctx *stream.RestoreContext) error", op, f, m))
			return
		}
	}
}

// checkKeyedFunction is checkFunction for keyed functions, which may also
// have an OnTimer method.
func checkKeyedFunction[K comparable, OUT any](env *Environment, op string, f any) {
	checkFunction(env, op, f)
	if isNil(f) {
		return
	}
	_, ok := f.(KeyedTimerHandler[K, OUT])
	checkOptional(env, op, f, "OnTimer", ok, fmt.Sprintf(
		"OnTimer(ctx *stream.KeyedContext[%s, %s], timestamp int64, domain stream.TimeDomain) error",
		reflect.TypeFor[K](), reflect.TypeFor[OUT]()))
}

func checkOptional(env *Environment, op string, f any, method string, implements bool, signature string) {
	if implements {
		return
	}
	if _, ok := reflect.TypeOf(f).MethodByName(method); ok {
		env.fail(fmt.Errorf("%s: %T has a method %s that would never be called: its signature must be %s", op, f, method, signature))
	}
}

// isNil reports whether a function value is nil, also a nil pointer or func
// inside an interface.
func isNil(f any) bool {
	if f == nil {
		return true
	}
	switch v := reflect.ValueOf(f); v.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan:
		return v.IsNil()
	}
	return false
}
