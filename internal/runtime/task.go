package runtime

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// ErrCanceled is returned by a task that stopped because its job was canceled.
var ErrCanceled = errors.New("canceled")

// sourceStepper is implemented by source operators: the task calls Step in a
// loop instead of reading an input gate.
type sourceStepper interface {
	Step() (connector.ReadStatus, error)
	// Finish emits the final watermark after the end of input.
	Finish()
}

// opNode is one operator of a task's chain.
type opNode struct {
	inst      Instance
	name      string
	uid       string
	remaining int // inputs not yet ended
	finished  bool
	opened    bool // Open was called: Close is due
	succ      []chainLink
	writers   []outputWriter
}

type chainLink struct{ op, input int }

// gateChannel routes one channel of the input gate.
type gateChannel struct {
	handler int32 // index into task.handlers
	valve   int32 // index into task.valves
	slot    int32 // channel index within the valve
}

// task runs one subtask: a chain of operators on one goroutine.
type task struct {
	name           string
	jobName        string
	subtask        int
	parallelism    int
	maxParallelism int
	keyGroups      keygroup.Range
	config         map[string]string
	newBackend     func(keygroup.Range) state.Backend
	backends       []state.Backend // created by the chain's keyed operators (backends.go)
	ctx            context.Context
	gateCap        int

	gate     chan envelope
	channels []gateChannel
	handlers []inputHandler
	valves   []*valve
	ops      []*opNode
	writers  []outputWriter
	source   sourceStepper
	live     int
	// cur is the chain index of the operator being driven (-1: none).
	cur int

	timers        procTimerHeap
	timerSeq      uint64
	bufferTimeout time.Duration
	lastFlush     time.Time
	idle          bool
	// onExit runs when the task ends (unregistering remote inputs).
	onExit []func()

	// Checkpoints (checkpoint.go).
	id             TaskID
	hooks          CheckpointHooks // nil: checkpoints off
	restore        map[string]*RestoredState
	mail           *mailbox
	release        <-chan struct{}
	chEnded        []bool // per gate channel
	align          *alignment
	replay         []envelope // held envelopes to process before the gate
	lastCheckpoint int64
	triggered      int64 // highest checkpoint triggered while waiting for barriers
	finishedAll    bool  // every operator finished
	// stopID is the stop-with-savepoint a source task has sent its barrier
	// for: it reads nothing more, and ends when the savepoint completes
	// (stopNow) or resumes if it is aborted.
	stopID  int64
	stopNow bool
}

// run executes the task to its end and returns why it ended.
func (t *task) run() (err error) {
	t.cur = -1
	defer func() {
		t.mail.close()
		for _, f := range t.onExit {
			f()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err = t.panicError(r, t.cur)
		}
		for i := len(t.ops) - 1; i >= 0; i-- {
			if cerr := t.closeOp(i); cerr != nil && err == nil {
				err = t.opError(i, cerr)
			}
		}
		t.disposeBackends() // backends.go
	}()
	// Open from the tail of the chain so every operator's consumers are ready.
	for i := len(t.ops) - 1; i >= 0; i-- {
		t.cur = i
		t.ops[i].opened = true
		if err := t.ops[i].inst.Op.Open(t.opContext(i)); err != nil {
			if r := t.restore[t.ops[i].uid]; r != nil {
				// Restoring the same state again would fail the same way.
				err = &RestoreError{Checkpoint: r.Checkpoint, Err: err}
			}
			return t.opError(i, err)
		}
	}
	t.cur = -1
	t.lastFlush = time.Now()
	if t.source != nil {
		t.cur = 0
		err = t.runSource()
	} else {
		t.chEnded = make([]bool, len(t.channels))
		err = t.runGate()
	}
	if err == nil && t.hooks != nil {
		t.cur = -1
		err = t.awaitRelease()
	}
	return err
}

func (t *task) runGate() error {
	var timer *time.Timer
	for t.live > 0 {
		var env envelope
		if len(t.replay) > 0 {
			env = t.replay[0]
			t.replay = t.replay[1:]
			t.handle(&env)
			continue
		}
		select {
		case env = <-t.gate:
		default:
			// Nothing queued: send what we hold rather than wait for a full batch.
			t.flushAll()
			var timerC <-chan time.Time
			if len(t.timers) > 0 {
				d := time.Until(time.UnixMilli(t.timers[0].ts))
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				timerC = timer.C
			}
			select {
			case env = <-t.gate:
			case <-timerC:
				t.fireTimers(time.Now())
				continue
			case <-t.mail.signal:
				for _, f := range t.mail.take() {
					f(t)
				}
				continue
			case <-t.ctx.Done():
				return ErrCanceled
			}
		}
		t.handle(&env)
		if t.ctx.Err() != nil {
			return ErrCanceled
		}
		t.runMail()
		if len(t.timers) > 0 || t.bufferTimeout > 0 {
			t.housekeeping(time.Now())
		}
	}
	return nil
}

// housekeeping fires due timers and flushes outputs on the buffer timeout
// while the task is too busy to ever be idle.
func (t *task) housekeeping(now time.Time) {
	t.fireTimers(now)
	if t.bufferTimeout > 0 && now.Sub(t.lastFlush) >= t.bufferTimeout {
		t.flushAll()
	}
}

func (t *task) runSource() error {
	var wait *time.Timer
	for {
		for t.stopID != 0 && !t.stopNow {
			select {
			case <-t.mail.signal:
				for _, f := range t.mail.take() {
					f(t)
				}
			case <-t.ctx.Done():
				return ErrCanceled
			}
		}
		if t.stopNow {
			// Stopped with a savepoint: end without the final watermark
			// (a drain has emitted it before the barrier).
			t.finishOp(0)
			t.flushAll()
			return nil
		}
		status, err := t.source.Step()
		if err != nil {
			return t.opError(0, err)
		}
		if t.ctx.Err() != nil {
			return ErrCanceled
		}
		now := time.Now()
		t.housekeeping(now)
		t.runMail()
		switch status {
		case connector.EndOfInput:
			t.source.Finish()
			t.finishOp(0)
			t.flushAll()
			return nil
		case connector.NothingAvailable:
			t.flushAll()
			d := 5 * time.Millisecond
			if len(t.timers) > 0 {
				if u := time.UnixMilli(t.timers[0].ts).Sub(now); u < d {
					d = max(u, 0)
				}
			}
			if wait == nil {
				wait = time.NewTimer(d)
			} else {
				wait.Reset(d)
			}
			select {
			case <-wait.C:
			case <-t.mail.signal:
				for _, f := range t.mail.take() {
					f(t)
				}
			case <-t.ctx.Done():
				return ErrCanceled
			}
		}
	}
}

func (t *task) handle(env *envelope) {
	if a := t.align; a != nil && a.blocked[env.ch] {
		// The channel is past the barrier being aligned: hold its buffers
		// (and their credits) until the other channels catch up.
		a.held = append(a.held, *env)
		return
	}
	gc := t.channels[env.ch]
	h := t.handlers[gc.handler]
	t.cur = t.valves[gc.valve].op
	switch env.kind {
	case kindData:
		h.handleData(env)
		return
	case kindWatermark:
		h.recycle(env)
		t.valves[gc.valve].watermark(int(gc.slot), env.wm)
	case kindEnd:
		h.recycle(env)
		t.channelEnded(env.ch)
		t.valves[gc.valve].end(int(gc.slot))
	case kindBarrier:
		h.recycle(env)
		t.onBarrier(env.ch, env.wm)
	case kindIdle, kindActive:
		h.recycle(env)
		t.valves[gc.valve].setIdle(int(gc.slot), env.kind == kindIdle)
	case kindFailed:
		if env.release != nil {
			env.release()
		}
		panic(failure{env.data.(error)})
	}
}

func (t *task) flushAll() {
	for _, w := range t.writers {
		w.flush()
	}
	t.lastFlush = time.Now()
}

// endInput ends one input of an operator; when it was the last, the operator
// finishes and its successors' inputs end in turn.
func (t *task) endInput(op, input int) {
	n := t.ops[op]
	prev := t.cur
	t.cur = op
	n.inst.Op.EndInput(input)
	t.cur = prev
	n.remaining--
	if n.remaining == 0 {
		t.finishOp(op)
	}
}

func (t *task) finishOp(op int) {
	n := t.ops[op]
	if n.finished {
		return
	}
	n.finished = true
	t.live--
	for _, w := range n.writers {
		w.finish()
	}
	for _, s := range n.succ {
		t.endInput(s.op, s.input)
	}
}

// updateIdle marks the task's outputs idle when every open input channel is
// idle, so idleness travels past task boundaries (a source task manages its
// own status through its operators).
func (t *task) updateIdle() {
	if t.source != nil {
		return
	}
	anyIdle, anyActive := false, false
	for _, v := range t.valves {
		i, a := v.idleState()
		anyIdle, anyActive = anyIdle || i, anyActive || a
	}
	t.setIdle(anyIdle && !anyActive)
}

func (t *task) setIdle(idle bool) {
	if t.idle == idle {
		return
	}
	t.idle = idle
	for _, w := range t.writers {
		w.setIdle(idle)
	}
}

func (t *task) opContext(i int) *OperatorContext {
	return &OperatorContext{
		JobName:        t.jobName,
		MaxParallelism: t.maxParallelism,
		KeyGroups:      t.keyGroups,
		Config:         t.config,
		NewKeyedBackend: func() state.Backend {
			return t.newKeyedBackend(i) // backends.go
		},
		UID:            t.ops[i].uid,
		Name:           t.ops[i].name,
		Subtask:        t.subtask,
		Parallelism:    t.parallelism,
		ProcessingTime: &opTime{t: t, op: i},
		Cancel:         t.ctx,
		SetIdle:        t.setIdle,
		Restored:       t.restore[t.ops[i].uid],
		Checkpointing:  t.hooks != nil,
	}
}

func (t *task) opError(i int, err error) error {
	var oe *OperatorError
	if errors.As(err, &oe) || errors.Is(err, ErrCanceled) {
		return err
	}
	return &OperatorError{Operator: t.ops[i].name, UID: t.ops[i].uid, Subtask: t.subtask, Parallel: t.parallelism, Err: err}
}

// panicError turns a recovered panic into the task's error. A panic inside a
// chain cannot tell which operator raised it, so the stack names it.
func (t *task) panicError(r any, cur int) error {
	switch p := r.(type) {
	case canceledPanic:
		return ErrCanceled
	case failure:
		return t.opError(t.culprit(cur), p.err)
	}
	stack := userFrames(string(debug.Stack()))
	for _, w := range t.writers {
		if target, ok := w.inKeySelector(); ok {
			// The panic came from the KeyBy function of the consumer,
			// which the producer runs to route the record.
			return &OperatorError{Operator: target, UID: target, Subtask: t.subtask, Parallel: t.parallelism,
				Panic: true, KeySelector: true, Err: fmt.Errorf("%v", r), Stack: stack}
		}
	}
	i := t.culprit(cur)
	return &OperatorError{
		Operator: t.ops[i].name, UID: t.ops[i].uid, Subtask: t.subtask, Parallel: t.parallelism,
		Panic: true, Err: fmt.Errorf("%v", r), Stack: stack,
	}
}

// culprit picks the operator to blame: the one being driven, else the head.
func (t *task) culprit(cur int) int {
	if cur >= 0 {
		return cur
	}
	return 0
}

// userFrames keeps the part of a panic stack that is about user code, to
// point at the line that panicked without a runtime dump.
func userFrames(stack string) string {
	lines := strings.Split(stack, "\n")
	var out []string
	for i := 0; i+1 < len(lines); i++ {
		fn := strings.TrimSpace(lines[i])
		if strings.HasPrefix(fn, "goroutine ") || strings.HasPrefix(fn, "runtime/debug.") ||
			strings.HasPrefix(fn, "panic(") || strings.HasPrefix(fn, "runtime.") ||
			isWeirFrame(fn) || strings.HasPrefix(fn, "created by") {
			if strings.HasPrefix(lines[i], "\t") {
				continue
			}
			i++ // skip its file:line
			continue
		}
		if !strings.HasPrefix(lines[i], "\t") && i+1 < len(lines) {
			// "pkg.fn(0x1, 0x2)" and "\t/path/file.go:12 +0x1f" become
			// "at pkg.fn (/path/file.go:12)".
			if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j]
			}
			loc, _, _ := strings.Cut(strings.TrimSpace(lines[i+1]), " +0x")
			out = append(out, "  at "+fn+" ("+loc+")")
			i++
		}
		if len(out) >= 4 {
			break
		}
	}
	return strings.Join(out, "\n")
}

// isWeirFrame reports whether a stack frame's function belongs to Weir's
// own packages rather than to user code (which may live in the same module,
// like the examples and tests).
func isWeirFrame(fn string) bool {
	rest, ok := strings.CutPrefix(fn, "github.com/weirstream/weir/")
	if !ok {
		return false
	}
	for _, p := range []string{"internal/", "stream.", "source.", "sink.", "connector."} {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
}

// Processing-time timers of a task.

type procTimer struct {
	ts  int64
	seq uint64
	cb  func(now int64)
}

type procTimerHeap []procTimer

func (h procTimerHeap) Len() int { return len(h) }
func (h procTimerHeap) Less(i, j int) bool {
	return h[i].ts < h[j].ts || (h[i].ts == h[j].ts && h[i].seq < h[j].seq)
}
func (h procTimerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *procTimerHeap) Push(x any)   { *h = append(*h, x.(procTimer)) }
func (h *procTimerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (t *task) fireTimers(now time.Time) {
	ms := now.UnixMilli()
	for len(t.timers) > 0 && t.timers[0].ts <= ms {
		pt := heap.Pop(&t.timers).(procTimer)
		pt.cb(ms)
	}
}

// opTime is an operator's view of its task's processing-time timers.
type opTime struct {
	t  *task
	op int
}

func (o *opTime) Now() int64 { return time.Now().UnixMilli() }

func (o *opTime) Register(ts int64, cb func(now int64)) {
	t := o.t
	t.timerSeq++
	op := o.op
	heap.Push(&t.timers, procTimer{ts: ts, seq: t.timerSeq, cb: func(now int64) {
		prev := t.cur
		t.cur = op
		cb(now)
		t.cur = prev
	}})
}

// valve combines the watermarks of the channels of one operator input.
type valve struct {
	t       *task
	op      int
	input   int
	wm      []int64
	ended   []bool
	idle    []bool
	nEnded  int
	current int64
}

func newValve(t *task, op, input, channels int) *valve {
	v := &valve{t: t, op: op, input: input, wm: make([]int64, channels), ended: make([]bool, channels),
		idle: make([]bool, channels), current: MinWatermark}
	for i := range v.wm {
		v.wm[i] = MinWatermark
	}
	return v
}

func (v *valve) watermark(ch int, wm int64) {
	if wm <= v.wm[ch] {
		return
	}
	v.wm[ch] = wm
	if v.idle[ch] {
		v.idle[ch] = false
		v.t.updateIdle() // active again before the watermark goes on
	}
	v.advance()
}

func (v *valve) setIdle(ch int, idle bool) {
	if v.idle[ch] == idle {
		return
	}
	v.idle[ch] = idle
	if idle {
		// Release what the active channels allow, then tell consumers.
		v.advance()
		v.t.updateIdle()
		return
	}
	v.t.updateIdle()
	v.advance()
}

// idleState reports whether the valve has idle and active open channels.
func (v *valve) idleState() (anyIdle, anyActive bool) {
	for i := range v.idle {
		if v.ended[i] {
			continue
		}
		if v.idle[i] {
			anyIdle = true
		} else {
			anyActive = true
		}
	}
	return anyIdle, anyActive
}

func (v *valve) end(ch int) {
	if v.ended[ch] {
		return
	}
	v.ended[ch] = true
	v.nEnded++
	if v.nEnded == len(v.ended) {
		v.t.endInput(v.op, v.input)
		return
	}
	v.advance()
}

// advance forwards the minimum watermark of the active channels; when every
// open channel is idle it releases the highest of them, as Flink's
// StatusWatermarkValve does, so the order channels go idle in does not matter.
func (v *valve) advance() {
	low := MaxWatermark
	active := false
	for i, w := range v.wm {
		if v.ended[i] || v.idle[i] {
			continue
		}
		active = true
		if w < low {
			low = w
		}
	}
	if !active {
		low = MinWatermark
		open := false
		for i, w := range v.wm {
			if !v.ended[i] {
				open = true
				low = max(low, w)
			}
		}
		if !open {
			return
		}
	}
	if low <= v.current {
		return
	}
	v.current = low
	v.t.ops[v.op].inst.Op.ProcessWatermark(v.input, low)
}

// closeOp closes one operator, turning a panic in Close into an error.
func (t *task) closeOp(i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while closing: %v", r)
		}
	}()
	if !t.ops[i].opened {
		return nil
	}
	return t.ops[i].inst.Op.Close()
}
