package operators

// Process operators: the runtime side of the stream package's process
// functions. An operator here knows nothing of the user's function types;
// the stream package adapts each function to a Processor (or its keyed and
// two-input variants), one per subtask, and the operator drives it:
//
//	record ─▶ port ─▶ set key (keyed) ─▶ Processor.ProcessElement ─▶ Scope.Collect ─▶ Output
//	watermark(input i) ─▶ watermarks.update ─▶ min over inputs advanced?
//	                         └─▶ TimerService.AdvanceWatermark ─▶ Processor.OnTimer (event time)
//	                         └─▶ Output.EmitWatermark
//	task clock ─▶ Timers.onClock ─▶ TimerService.AdvanceProcessingTime ─▶ Processor.OnTimer (processing time)
//
// Everything runs on the task goroutine. An error a Processor returns fails
// the task through runtime.Fail, which names the operator; a panic is
// recovered by the task the same way.

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// TimeDomain says which clock a timer belongs to.
type TimeDomain int

const (
	// EventTime timers fire when the operator's watermark reaches them.
	EventTime TimeDomain = iota
	// ProcessingTime timers fire when the wall clock reaches them.
	ProcessingTime
)

func (d TimeDomain) String() string {
	switch d {
	case EventTime:
		return "event time"
	case ProcessingTime:
		return "processing time"
	}
	return fmt.Sprintf("TimeDomain(%d)", int(d))
}

// Scope is what a process function sees while it handles one record or
// timer: the record's timestamp, the operator's output and its clocks. One
// Scope lives as long as its operator and is updated before each call.
type Scope[OUT any] struct {
	op  *runtime.OperatorContext
	out runtime.Output[OUT]
	wm  *watermarks
	// ts is the timestamp of the record or timer being handled.
	ts int64
	// outTs is the timestamp Collect gives emitted records: the record's, an
	// event-time timer's, or none in a processing-time timer.
	outTs int64
}

// OperatorContext returns where the operator runs.
func (s *Scope[OUT]) OperatorContext() *runtime.OperatorContext { return s.op }

// Timestamp returns the timestamp of the record or timer being handled
// (runtime.NoTimestamp for a record without one).
func (s *Scope[OUT]) Timestamp() int64 { return s.ts }

// Collect emits v with the current output timestamp.
func (s *Scope[OUT]) Collect(v OUT) { s.out.Collect(v, s.outTs) }

// CollectWithTimestamp emits v with timestamp ts.
func (s *Scope[OUT]) CollectWithTimestamp(v OUT, ts int64) { s.out.Collect(v, ts) }

// CurrentWatermark returns the operator's event time: the minimum of its
// inputs' watermarks (runtime.MinWatermark before the first).
func (s *Scope[OUT]) CurrentWatermark() int64 { return s.wm.current }

// CurrentProcessingTime returns the task's clock in unix milliseconds.
func (s *Scope[OUT]) CurrentProcessingTime() int64 { return s.op.ProcessingTime.Now() }

// Processor is the operator's view of a one-input process function of one
// subtask.
type Processor[IN, OUT any] interface {
	Open(s *Scope[OUT]) error
	ProcessElement(v IN) error
	Close() error
}

// CoProcessor is the operator's view of a two-input process function of one
// subtask.
type CoProcessor[A, B, OUT any] interface {
	Open(s *Scope[OUT]) error
	ProcessElement1(a A) error
	ProcessElement2(b B) error
	Close() error
}

// FunctionState is implemented by the Processors (of every kind) whose
// function keeps state of its own, outside keyed state: Flink's
// CheckpointedFunction. The operator stores it as operator state with union
// redistribution: on a restore, every new subtask gets the states of all
// old subtasks and picks what it needs.
type FunctionState interface {
	// SnapshotFunctionState returns the function's state at checkpoint id,
	// or nil for none. The operator keeps the bytes; the function must not
	// change them afterwards.
	SnapshotFunctionState(id int64) ([]byte, error)
	// RestoreFunctionState runs before Open when the operator starts from
	// a checkpoint that holds its state: states has one entry per old
	// subtask, by old subtask index, nil where that subtask stored none.
	RestoreFunctionState(ctx *runtime.OperatorContext, states [][]byte) error
}

// watermarks combines the watermarks of an operator's inputs: the operator's
// event time is the minimum over its inputs, where an input that has ended
// counts as MaxWatermark: it will send nothing more, so it no longer holds
// event time back. (An input normally sends MaxWatermark before it ends,
// but need not have.)
type watermarks struct {
	in      []int64
	ended   []bool
	nEnded  int
	current int64
}

func newWatermarks(inputs int) watermarks {
	w := watermarks{in: make([]int64, inputs), ended: make([]bool, inputs), current: runtime.MinWatermark}
	for i := range w.in {
		w.in[i] = runtime.MinWatermark
	}
	return w
}

// update records input i's watermark and returns the combined watermark and
// whether it advanced.
func (w *watermarks) update(input int, wm int64) (int64, bool) {
	if wm > w.in[input] {
		w.in[input] = wm
	}
	return w.combine()
}

// end records that input i has ended; the combined watermark may advance.
func (w *watermarks) end(input int) (int64, bool) {
	if !w.ended[input] {
		w.ended[input] = true
		w.nEnded++
		w.in[input] = runtime.MaxWatermark
	}
	return w.combine()
}

func (w *watermarks) allEnded() bool { return w.nEnded == len(w.ended) }

// restore sets the inputs' watermarks to those of a checkpoint, so that
// event time does not go back when the restored sources start over below
// them (watermarks at or below an input's are ignored).
func (w *watermarks) restore(in []int64) {
	copy(w.in, in)
	w.current = slices.Min(w.in)
}

func (w *watermarks) combine() (int64, bool) {
	low := w.in[0]
	for _, wm := range w.in[1:] {
		low = min(low, wm)
	}
	if low <= w.current {
		return w.current, false
	}
	w.current = low
	return low, true
}

// processCore is what the non-keyed process operators share: the scope,
// watermark tracking and the Processor's lifecycle.
type processCore[OUT any] struct {
	scope  Scope[OUT]
	wm     watermarks
	opened bool
	open   func(*Scope[OUT]) error
	close  func() error
	// fnState is the processor if it implements FunctionState, else nil.
	fnState FunctionState
}

func (c *processCore[OUT]) setOutput(o any) { c.scope.out = o.(runtime.Output[OUT]) }

func (c *processCore[OUT]) Open(ctx *runtime.OperatorContext) error {
	c.scope.op = ctx
	c.scope.wm = &c.wm
	c.scope.ts, c.scope.outTs = runtime.NoTimestamp, runtime.NoTimestamp
	if err := restoreOperatorState(ctx, &c.wm, c.fnState); err != nil {
		return err
	}
	c.opened = true
	return c.open(&c.scope)
}

// SnapshotState implements runtime.Snapshotter: the watermarks and the
// function's own state.
func (c *processCore[OUT]) SnapshotState(id int64) (*runtime.OperatorSnapshot, error) {
	b, err := snapshotOperatorState(id, &c.wm, c.fnState)
	if err != nil {
		return nil, err
	}
	return &runtime.OperatorSnapshot{Operator: b}, nil
}

func (c *processCore[OUT]) ProcessWatermark(input int, wm int64) {
	if w, ok := c.wm.update(input, wm); ok {
		c.scope.out.EmitWatermark(w)
	}
}

func (c *processCore[OUT]) EndInput(input int) {
	if w, ok := c.wm.end(input); ok {
		c.scope.out.EmitWatermark(w)
	}
}

// Close closes the Processor if it was opened; the task closes every
// operator of a chain, also those it never opened.
func (c *processCore[OUT]) Close() error {
	if !c.opened {
		return nil
	}
	return c.close()
}

// begin prepares the scope for a record with timestamp ts.
func (c *processCore[OUT]) begin(ts int64) {
	c.scope.ts, c.scope.outTs = ts, ts
}

type processOp[IN, OUT any] struct {
	processCore[OUT]
	proc Processor[IN, OUT]
}

func (p *processOp[IN, OUT]) ProcessElement(v IN, ts int64) {
	p.begin(ts)
	if err := p.proc.ProcessElement(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record: %w", err))
	}
}

// NewProcess returns the factory of a non-keyed process operator; newProc
// is called once per subtask.
func NewProcess[IN, OUT any](newProc func() Processor[IN, OUT]) *runtime.Factory {
	return oneInput[IN, OUT](func() (runtime.Operator, runtime.Input[IN], func(any)) {
		proc := newProc()
		op := &processOp[IN, OUT]{proc: proc}
		fs, _ := proc.(FunctionState)
		op.processCore = processCore[OUT]{wm: newWatermarks(1), open: proc.Open, close: proc.Close, fnState: fs}
		return op, op, op.setOutput
	})
}

// KeyedScope is what a keyed process function sees while it handles one
// record or timer: in addition to Scope, the current key, the keyed state
// backend and the timers.
type KeyedScope[K comparable, OUT any] struct {
	Scope[OUT]
	key     K
	backend state.Backend
	timers  Timers
}

// Key returns the key of the record or timer being handled.
func (s *KeyedScope[K, OUT]) Key() K { return s.key }

// Backend returns the operator's keyed state backend; its current key is
// the key of the record or timer being handled.
func (s *KeyedScope[K, OUT]) Backend() state.Backend { return s.backend }

// Timers returns the operator's timer service.
func (s *KeyedScope[K, OUT]) Timers() *Timers { return &s.timers }

// Timers is the timer service of one keyed operator instance: it registers
// timers for the current key in a state.TimerService and keeps one callback
// on the task's clock armed for the earliest processing-time timer.
type Timers struct {
	svc   *state.TimerService
	clock runtime.ProcessingTimeService
	wm    *watermarks
	// fireProcessing handles a due processing-time timer (its key is current).
	fireProcessing func(ts int64)
	// armed is the time of the clock callback that stands for the earliest
	// processing-time timer, if hasArmed. Callbacks cannot be withdrawn:
	// when an earlier timer is registered another callback is armed, and a
	// superseded one finds nothing due when it runs.
	armed    int64
	hasArmed bool
	// stopped is set when all inputs have ended: processing-time timers no
	// longer fire (as in Flink, they are dropped at the end of input).
	stopped bool
}

// CurrentWatermark returns the operator's event time.
func (t *Timers) CurrentWatermark() int64 { return t.wm.current }

// CurrentProcessingTime returns the task's clock in unix milliseconds.
func (t *Timers) CurrentProcessingTime() int64 { return t.clock.Now() }

// RegisterEventTimeTimer registers a timer at ts for the current key; it
// fires once, when the watermark reaches ts. Registering it again is a
// no-op; a timer at or before the current watermark fires at the next
// watermark.
func (t *Timers) RegisterEventTimeTimer(ts int64) { t.svc.RegisterEventTimeTimer(ts) }

// DeleteEventTimeTimer deletes the current key's event-time timer at ts, if any.
func (t *Timers) DeleteEventTimeTimer(ts int64) { t.svc.DeleteEventTimeTimer(ts) }

// RegisterProcessingTimeTimer registers a timer at ts (unix ms) for the
// current key; it fires once, when the task's clock reaches ts.
func (t *Timers) RegisterProcessingTimeTimer(ts int64) {
	t.svc.RegisterProcessingTimeTimer(ts)
	t.arm()
}

// DeleteProcessingTimeTimer deletes the current key's processing-time timer
// at ts, if any.
func (t *Timers) DeleteProcessingTimeTimer(ts int64) { t.svc.DeleteProcessingTimeTimer(ts) }

// arm registers a clock callback for the earliest processing-time timer
// unless one at or before it is already armed.
func (t *Timers) arm() {
	if t.stopped {
		return
	}
	next, ok := t.svc.NextProcessingTime()
	if !ok || (t.hasArmed && t.armed <= next) {
		return
	}
	t.armed, t.hasArmed = next, true
	t.clock.Register(next, func(now int64) { t.onClock(next, now) })
}

func (t *Timers) onClock(at, now int64) {
	if t.hasArmed && t.armed == at {
		t.hasArmed = false
	}
	if t.stopped {
		return
	}
	t.svc.AdvanceProcessingTime(now, t.fireProcessing)
	t.arm()
}

// KeyedProcessor is the operator's view of a one-input keyed process
// function of one subtask. ProcessElement and OnTimer find the key and
// timestamp in the KeyedScope given to Open.
type KeyedProcessor[K comparable, IN, OUT any] interface {
	Open(s *KeyedScope[K, OUT]) error
	ProcessElement(v IN) error
	OnTimer(ts int64, domain TimeDomain) error
	Close() error
}

// KeyedCoProcessor is the operator's view of a two-input keyed process
// function of one subtask; both inputs share the key space, state and timers.
type KeyedCoProcessor[K comparable, A, B, OUT any] interface {
	Open(s *KeyedScope[K, OUT]) error
	ProcessElement1(a A) error
	ProcessElement2(b B) error
	OnTimer(ts int64, domain TimeDomain) error
	Close() error
}

// keyedCore is what the keyed process operators share: the scope with its
// backend and timers, watermark tracking, and the processor's lifecycle.
type keyedCore[K comparable, OUT any] struct {
	scope   KeyedScope[K, OUT]
	wm      watermarks
	enc     *KeyEncoder[K] // decodes the keys of firing timers
	maxP    int
	keyBuf  []byte
	opened  bool
	open    func(*KeyedScope[K, OUT]) error
	onTimer func(ts int64, domain TimeDomain) error
	close   func() error
	// fnState is the processor if it implements FunctionState, else nil.
	fnState FunctionState
}

func (c *keyedCore[K, OUT]) setOutput(o any) { c.scope.out = o.(runtime.Output[OUT]) }

func (c *keyedCore[K, OUT]) Open(ctx *runtime.OperatorContext) error {
	c.scope.op = ctx
	c.scope.wm = &c.wm
	c.scope.ts, c.scope.outTs = runtime.NoTimestamp, runtime.NoTimestamp
	c.maxP = ctx.MaxParallelism
	c.scope.backend = ctx.NewKeyedBackend()
	c.scope.timers = Timers{
		svc:            state.NewTimerService(c.scope.backend),
		clock:          ctx.ProcessingTime,
		wm:             &c.wm,
		fireProcessing: c.fireProcessingTimer,
	}
	if r := ctx.Restored; r != nil {
		if err := r.RestoreKeyed(c.scope.backend); err != nil {
			return fmt.Errorf("restoring keyed state from checkpoint %d: %w", r.Checkpoint, err)
		}
		r.RestoreTimers(c.scope.timers.svc)
	}
	if err := restoreOperatorState(ctx, &c.wm, c.fnState); err != nil {
		return err
	}
	c.opened = true
	if err := c.open(&c.scope); err != nil {
		return err
	}
	c.scope.timers.arm() // restored processing-time timers
	return nil
}

// SnapshotState implements runtime.Snapshotter: keyed state and timers,
// and as operator state the watermarks and the function's own state.
func (c *keyedCore[K, OUT]) SnapshotState(id int64) (*runtime.OperatorSnapshot, error) {
	s, err := c.scope.backend.Snapshot()
	if err != nil {
		return nil, err
	}
	b, err := snapshotOperatorState(id, &c.wm, c.fnState)
	if err != nil {
		return nil, err
	}
	return &runtime.OperatorSnapshot{Keyed: s, Timers: c.scope.timers.svc.Snapshot(), Operator: b}, nil
}

// begin makes key current for a record with timestamp ts. enc is the
// encoder of the input's keying; all inputs encode K alike.
func (c *keyedCore[K, OUT]) begin(enc *KeyEncoder[K], key K, ts int64) {
	c.keyBuf = enc.Append(c.keyBuf[:0], key)
	c.scope.backend.SetCurrentKey(c.keyBuf, KeyGroupOf(c.keyBuf, c.maxP))
	c.scope.key = key
	c.scope.ts, c.scope.outTs = ts, ts
}

func (c *keyedCore[K, OUT]) ProcessWatermark(input int, wm int64) {
	if w, ok := c.wm.update(input, wm); ok {
		c.advance(w)
	}
}

// advance fires the event-time timers up to w, then forwards w: what the
// timers emit precedes the watermark that made them fire.
func (c *keyedCore[K, OUT]) advance(w int64) {
	c.scope.timers.svc.AdvanceWatermark(w, c.fireEventTimer)
	c.scope.out.EmitWatermark(w)
}

// EndInput lets an ended input stop holding back event time. Once every
// input has ended, event time is over and every event-time timer has fired
// (MaxWatermark normally arrives before the end; if not, the end counts as
// it), and processing-time timers are dropped, as in Flink: a bounded job
// does not wait for the wall clock.
func (c *keyedCore[K, OUT]) EndInput(input int) {
	if w, ok := c.wm.end(input); ok {
		c.advance(w)
	}
	if c.wm.allEnded() {
		c.scope.timers.stopped = true
	}
}

// Close closes the processor if it was opened.
func (c *keyedCore[K, OUT]) Close() error {
	if !c.opened {
		return nil
	}
	return c.close()
}

func (c *keyedCore[K, OUT]) fireEventTimer(ts int64) { c.fire(ts, ts, EventTime) }

func (c *keyedCore[K, OUT]) fireProcessingTimer(ts int64) {
	// Processing time is not event time: what the timer emits has no timestamp.
	c.fire(ts, runtime.NoTimestamp, ProcessingTime)
}

// fire calls the processor for a due timer; the timer service has made its
// key current on the backend.
func (c *keyedCore[K, OUT]) fire(ts, outTs int64, domain TimeDomain) {
	key, err := c.enc.Decode(c.scope.backend.CurrentKey())
	if err != nil {
		runtime.Fail(fmt.Errorf("%s timer at %d: decoding its key: %w", domain, ts, err))
	}
	c.scope.key = key
	c.scope.ts, c.scope.outTs = ts, outTs
	if err := c.onTimer(ts, domain); err != nil {
		runtime.Fail(fmt.Errorf("%s timer at %d for key %v: %w", domain, ts, key, err))
	}
}

type keyedProcessOp[IN any, K comparable, OUT any] struct {
	keyedCore[K, OUT]
	keying *Keying[IN, K]
	proc   KeyedProcessor[K, IN, OUT]
}

func (p *keyedProcessOp[IN, K, OUT]) ProcessElement(v IN, ts int64) {
	key := p.keying.Select(v)
	p.begin(p.keying.Encoder, key, ts)
	if err := p.proc.ProcessElement(v); err != nil {
		runtime.Fail(fmt.Errorf("processing a record with key %v: %w", key, err))
	}
}

// NewKeyedProcess returns the factory of a keyed process operator: keyed
// state and event- and processing-time timers scoped to each record's key.
// newProc is called once per subtask.
func NewKeyedProcess[IN any, K comparable, OUT any](keying *Keying[IN, K], newProc func() KeyedProcessor[K, IN, OUT]) *runtime.Factory {
	return keyedFactory[IN, OUT](keying, func() (runtime.Operator, runtime.Input[IN], func(any)) {
		proc := newProc()
		op := &keyedProcessOp[IN, K, OUT]{keying: keying, proc: proc}
		fs, _ := proc.(FunctionState)
		op.keyedCore = keyedCore[K, OUT]{wm: newWatermarks(1), enc: keying.Encoder,
			open: proc.Open, onTimer: proc.OnTimer, close: proc.Close, fnState: fs}
		return op, op, op.setOutput
	})
}

// Operator state.
//
// The non-keyed state of the process and window operators, in
// OperatorSnapshot.Operator:
//
//	byte    version (1)
//	uvarint number of inputs n, then n varint watermarks, one per input
//	uvarint 0 if the function stored no state, else 1+len, then its bytes
//
// Restored watermarks keep event time from going back: after a restore the
// sources start over and may send watermarks below those the operator had
// reached. Without rescaling, each subtask takes its old subtask's; with
// it, each input's minimum over the old subtasks (at an aligned checkpoint
// behind a hash exchange they are all equal anyway).

const operatorStateVersion = 1

func encodeOperatorState(wms []int64, fn []byte) []byte {
	b := []byte{operatorStateVersion}
	b = binary.AppendUvarint(b, uint64(len(wms)))
	for _, wm := range wms {
		b = binary.AppendVarint(b, wm)
	}
	if fn == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(fn))+1)
	return append(b, fn...)
}

// decodeOperatorState returns the watermarks and the function state (nil
// if none) of an encoded operator state.
func decodeOperatorState(b []byte) (wms []int64, fn []byte, err error) {
	corrupt := func(what string) error {
		return fmt.Errorf("the operator state (%d bytes) is corrupt: %s; restore from another checkpoint, or start the job without one", len(b), what)
	}
	if len(b) == 0 {
		return nil, nil, corrupt("it is empty")
	}
	if b[0] != operatorStateVersion {
		return nil, nil, corrupt(fmt.Sprintf("format version %d, but this build reads version %d", b[0], operatorStateVersion))
	}
	rest := b[1:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || n > uint64(len(rest)) {
		return nil, nil, corrupt("the number of inputs is truncated or too large")
	}
	rest = rest[w:]
	wms = make([]int64, n)
	for i := range wms {
		v, w := binary.Varint(rest)
		if w <= 0 {
			return nil, nil, corrupt(fmt.Sprintf("the watermark of input %d is truncated", i))
		}
		wms[i] = v
		rest = rest[w:]
	}
	l, w := binary.Uvarint(rest)
	if w <= 0 || l > uint64(len(rest)-w)+1 {
		return nil, nil, corrupt("the function state is truncated")
	}
	rest = rest[w:]
	if l > 0 {
		fn = slices.Clone(rest[:l-1])
		if fn == nil {
			fn = []byte{}
		}
		rest = rest[l-1:]
	}
	if len(rest) > 0 {
		return nil, nil, corrupt(fmt.Sprintf("%d unexpected bytes after the end", len(rest)))
	}
	return wms, fn, nil
}

// snapshotOperatorState encodes the watermarks and, if fs is set, the
// function's state at checkpoint id.
func snapshotOperatorState(id int64, wm *watermarks, fs FunctionState) ([]byte, error) {
	var fn []byte
	if fs != nil {
		var err error
		if fn, err = fs.SnapshotFunctionState(id); err != nil {
			return nil, err
		}
	}
	return encodeOperatorState(wm.in, fn), nil // copies fn
}

// restoreOperatorState restores the watermarks, and the function's state
// through fs, from the operator state of every old subtask. It does
// nothing on a fresh start.
func restoreOperatorState(ctx *runtime.OperatorContext, wm *watermarks, fs FunctionState) error {
	r := ctx.Restored
	if r == nil {
		return nil
	}
	wms, fns, err := decodeRestoredOperatorState(ctx, len(wm.in))
	if err != nil {
		return err
	}
	if wms != nil {
		wm.restore(wms)
	}
	if fs != nil {
		return fs.RestoreFunctionState(ctx, fns)
	}
	if i := slices.IndexFunc(fns, func(b []byte) bool { return b != nil }); i >= 0 {
		return fmt.Errorf("checkpoint %d holds state that subtask %d of the operator's function stored, but the function "+
			"no longer stores any; restore with a function that does (stream.CheckpointedFunction), or give the operator a new uid to drop its state",
			r.Checkpoint, i)
	}
	return nil
}

// decodeRestoredOperatorState decodes the operator state of every old
// subtask: the watermarks this subtask restores (nil if no old subtask
// stored any) and the function states by old subtask.
func decodeRestoredOperatorState(ctx *runtime.OperatorContext, inputs int) (wms []int64, fns [][]byte, err error) {
	r := ctx.Restored
	rescaled := r.Rescaled(ctx.Parallelism)
	fns = make([][]byte, len(r.Snapshots))
	for i, snap := range r.Snapshots {
		if snap == nil || snap.Operator == nil {
			continue
		}
		w, fn, err := decodeOperatorState(snap.Operator)
		if err != nil {
			return nil, nil, fmt.Errorf("restoring from checkpoint %d: subtask %d of %d: %w", r.Checkpoint, i, len(r.Snapshots), err)
		}
		if len(w) != inputs {
			return nil, nil, fmt.Errorf("restoring from checkpoint %d: subtask %d of %d stored the watermarks of %d inputs, but the operator has %d; "+
				"the operator's uid now names a different operator", r.Checkpoint, i, len(r.Snapshots), len(w), inputs)
		}
		fns[i] = fn
		switch {
		case !rescaled && i != ctx.Subtask:
		case wms == nil:
			wms = w
		default:
			for j := range wms {
				wms[j] = min(wms[j], w[j])
			}
		}
	}
	return wms, fns, nil
}
