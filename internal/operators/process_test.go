package operators

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// The process operators are driven here through their Instance ports, as the
// task drives them, by a harness that records everything they emit and owns
// a manual processing-time clock.

// procEvent is one thing an operator emitted: a record or a watermark.
type procEvent[T any] struct {
	watermark bool
	v         T
	ts        int64
}

func (e procEvent[T]) String() string {
	if e.watermark {
		return "wm:" + procTime(e.ts)
	}
	return fmt.Sprintf("%v@%s", e.v, procTime(e.ts))
}

func procTime(ts int64) string {
	switch ts {
	case runtime.NoTimestamp:
		return "none"
	case runtime.MaxWatermark:
		return "max"
	}
	return fmt.Sprint(ts)
}

// procOutput records what an operator emits.
type procOutput[T any] struct{ events []procEvent[T] }

func (o *procOutput[T]) Collect(v T, ts int64) {
	o.events = append(o.events, procEvent[T]{v: v, ts: ts})
}
func (o *procOutput[T]) EmitWatermark(wm int64) {
	o.events = append(o.events, procEvent[T]{watermark: true, ts: wm})
}

// take returns what was emitted since the last take, one string per event.
func (o *procOutput[T]) take() string {
	var s []string
	for _, e := range o.events {
		s = append(s, e.String())
	}
	o.events = nil
	return strings.Join(s, " ")
}

// procClock is a manual processing-time service: callbacks run when a test
// advances it, in time order, as the task runs them.
type procClock struct {
	now     int64
	seq     int
	pending []procCallback
}

type procCallback struct {
	ts  int64
	seq int
	cb  func(now int64)
}

func (c *procClock) Now() int64 { return c.now }

func (c *procClock) Register(ts int64, cb func(now int64)) {
	c.seq++
	c.pending = append(c.pending, procCallback{ts, c.seq, cb})
}

// advance moves the clock to now and runs every callback due by then,
// including ones that callbacks register.
func (c *procClock) advance(now int64) {
	c.now = now
	for {
		i := slices.IndexFunc(c.pending, func(p procCallback) bool { return p.ts <= now })
		if i < 0 {
			return
		}
		for j, p := range c.pending {
			if p.ts <= now && (p.ts < c.pending[i].ts || (p.ts == c.pending[i].ts && p.seq < c.pending[i].seq)) {
				i = j
			}
		}
		p := c.pending[i]
		c.pending = slices.Delete(c.pending, i, i+1)
		p.cb(now)
	}
}

const procMaxParallelism = 128

// procHarness runs one operator instance.
type procHarness[OUT any] struct {
	t     *testing.T
	inst  runtime.Instance
	out   *procOutput[OUT]
	clock *procClock
}

func newProcHarness[OUT any](t *testing.T, f *runtime.Factory) *procHarness[OUT] {
	t.Helper()
	kgs := keygroup.Range{Start: 0, End: procMaxParallelism - 1}
	h := &procHarness[OUT]{t: t, inst: f.New(), out: &procOutput[OUT]{}, clock: &procClock{now: 1_000}}
	ctx := &runtime.OperatorContext{
		JobName: "test", UID: "proc", Name: "proc",
		Subtask: 0, Parallelism: 1, MaxParallelism: procMaxParallelism, KeyGroups: kgs,
		ProcessingTime:  h.clock,
		Cancel:          context.Background(),
		NewKeyedBackend: func() state.Backend { return state.NewHeapBackend(kgs) },
		SetIdle:         func(bool) {},
	}
	h.inst.SetOutput(h.out)
	if err := h.inst.Op.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := h.inst.Op.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// procIn returns input i of the harness's operator, typed.
func procIn[T, OUT any](h *procHarness[OUT], i int) runtime.Input[T] {
	return h.inst.Inputs[i].(runtime.Input[T])
}

func (h *procHarness[OUT]) watermark(input int, wm int64) { h.inst.Op.ProcessWatermark(input, wm) }
func (h *procHarness[OUT]) endInput(input int)            { h.inst.Op.EndInput(input) }

// expect checks what the operator emitted since the last check.
func (h *procHarness[OUT]) expect(want string) {
	h.t.Helper()
	if got := h.out.take(); got != want {
		h.t.Fatalf("emitted\n  %s\nwant\n  %s", got, want)
	}
}

// procFailure runs f and returns the message of the runtime.Fail (or other
// panic) it raises, "" if none.
func procFailure(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = procFailureError(r).Error()
		}
	}()
	f()
	return ""
}

// procFailureError digs the error out of runtime.Fail's panic value, a struct
// with one unexported error field, as the task does.
func procFailureError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	v := reflect.New(reflect.TypeOf(r)).Elem()
	v.Set(reflect.ValueOf(r))
	if v.Kind() == reflect.Struct && v.NumField() == 1 {
		f := v.Field(0)
		f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
		if err, ok := f.Interface().(error); ok {
			return err
		}
	}
	return fmt.Errorf("panic: %v", r)
}

// keyedProcFuncs is a KeyedProcessor and KeyedCoProcessor built from closures.
type keyedProcFuncs[K comparable, A, B, OUT any] struct {
	s        *KeyedScope[K, OUT]
	open     func(s *KeyedScope[K, OUT]) error
	process1 func(s *KeyedScope[K, OUT], v A) error
	process2 func(s *KeyedScope[K, OUT], v B) error
	onTimer  func(s *KeyedScope[K, OUT], ts int64, d TimeDomain) error
	closed   int
}

func (f *keyedProcFuncs[K, A, B, OUT]) Open(s *KeyedScope[K, OUT]) error {
	f.s = s
	if f.open != nil {
		return f.open(s)
	}
	return nil
}
func (f *keyedProcFuncs[K, A, B, OUT]) ProcessElement(v A) error  { return f.process1(f.s, v) }
func (f *keyedProcFuncs[K, A, B, OUT]) ProcessElement1(v A) error { return f.process1(f.s, v) }
func (f *keyedProcFuncs[K, A, B, OUT]) ProcessElement2(v B) error { return f.process2(f.s, v) }
func (f *keyedProcFuncs[K, A, B, OUT]) OnTimer(ts int64, d TimeDomain) error {
	if f.onTimer == nil {
		return nil
	}
	return f.onTimer(f.s, ts, d)
}
func (f *keyedProcFuncs[K, A, B, OUT]) Close() error { f.closed++; return nil }

// procRec is a test record: a key and a value.
type procRec struct {
	K string
	V int
}

func procRecKeying(t *testing.T) *Keying[procRec, string] {
	enc, err := NewKeyEncoder[string]()
	if err != nil {
		t.Fatal(err)
	}
	return &Keying[procRec, string]{Select: func(r procRec) string { return r.K }, Encoder: enc}
}

// newKeyedProcHarness runs a keyed process operator over procRec records.
func newKeyedProcHarness(t *testing.T, f *keyedProcFuncs[string, procRec, procRec, string]) *procHarness[string] {
	return newProcHarness[string](t, NewKeyedProcess(procRecKeying(t), func() KeyedProcessor[string, procRec, string] { return f }))
}

func TestKeyedProcessStateIsPerKey(t *testing.T) {
	var count, sum state.ValueState[int]
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		open: func(s *KeyedScope[string, string]) (err error) {
			if count, err = state.NewValueState[int](s.Backend(), "count"); err != nil {
				return err
			}
			sum, err = state.NewValueState[int](s.Backend(), "sum")
			return err
		},
		process1: func(s *KeyedScope[string, string], r procRec) error {
			n, _ := count.Value()
			total, _ := sum.Value()
			count.Update(n + 1)
			sum.Update(total + r.V)
			s.Collect(fmt.Sprintf("%s:%d/%d", s.Key(), n+1, total+r.V))
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	for i, r := range []procRec{{"a", 1}, {"b", 10}, {"a", 2}, {"c", 100}, {"a", 3}, {"b", 20}} {
		in.ProcessElement(r, int64(i))
	}
	in.ProcessElement(procRec{"a", 4}, runtime.NoTimestamp)
	h.expect("a:1/1@0 b:1/10@1 a:2/3@2 c:1/100@3 a:3/6@4 b:2/30@5 a:4/10@none")
	h.watermark(0, 10)
	h.expect("wm:10")
}

func TestKeyedProcessEventTimerFiresOnceAtWatermark(t *testing.T) {
	var seenWatermark []int64
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			s.Timers().RegisterEventTimeTimer(s.Timestamp() + 10)
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			if d != EventTime || s.Timestamp() != ts {
				return fmt.Errorf("timer %d: domain %v, timestamp %d", ts, d, s.Timestamp())
			}
			seenWatermark = append(seenWatermark, s.CurrentWatermark())
			s.Collect("fired:" + s.Key())
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	in.ProcessElement(procRec{"a", 0}, 5)
	in.ProcessElement(procRec{"a", 0}, 5) // same timer again: still one
	in.ProcessElement(procRec{"b", 0}, 7)
	h.watermark(0, 14)
	h.expect("wm:14")
	h.watermark(0, 15)
	// The timer's output carries its time and precedes the watermark.
	h.expect("fired:a@15 wm:15")
	h.watermark(0, 15) // not an advance
	h.watermark(0, 16)
	h.expect("wm:16")
	h.watermark(0, 30)
	h.expect("fired:b@17 wm:30")
	// A timer at or before the current watermark fires at the next one.
	in.ProcessElement(procRec{"c", 0}, 3)
	h.expect("")
	h.watermark(0, 31)
	h.expect("fired:c@13 wm:31")
	h.watermark(0, runtime.MaxWatermark)
	h.expect("wm:max")
	if !slices.Equal(seenWatermark, []int64{15, 30, 31}) {
		t.Fatalf("CurrentWatermark in OnTimer: %v, want [15 30 31]", seenWatermark)
	}
}

func TestKeyedProcessTimersRegisteredInOnTimer(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			s.Timers().RegisterEventTimeTimer(10)
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			s.Collect(fmt.Sprint(s.Key(), ts))
			switch {
			case ts < 40:
				// Due within this watermark: fires in the same advance.
				s.Timers().RegisterEventTimeTimer(ts + 10)
			case ts == 40:
				// Beyond it: fires at a later watermark.
				s.Timers().RegisterEventTimeTimer(1000)
			}
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	in.ProcessElement(procRec{"a", 0}, 1)
	h.watermark(0, 45)
	h.expect("a10@10 a20@20 a30@30 a40@40 wm:45")
	h.watermark(0, 999)
	h.expect("wm:999")
	h.watermark(0, runtime.MaxWatermark)
	h.expect("a1000@1000 wm:max")
}

func TestKeyedProcessDeletedTimersDoNotFire(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			if r.V < 0 {
				s.Timers().DeleteEventTimeTimer(int64(-r.V))
				s.Timers().DeleteProcessingTimeTimer(int64(-r.V) + 2_000)
				return nil
			}
			s.Timers().RegisterEventTimeTimer(int64(r.V))
			s.Timers().RegisterProcessingTimeTimer(int64(r.V) + 2_000)
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			s.Collect(fmt.Sprint(s.Key(), ts, d))
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	in.ProcessElement(procRec{"a", 10}, 0)
	in.ProcessElement(procRec{"a", 20}, 0)
	in.ProcessElement(procRec{"b", 10}, 0)
	in.ProcessElement(procRec{"a", -10}, 0) // deletes a's timers at 10 and 2010 only
	in.ProcessElement(procRec{"b", -20}, 0) // b has no timer at 20: no-op
	h.watermark(0, 100)
	h.expect("b10 event time@10 a20 event time@20 wm:100")
	h.clock.advance(5_000)
	h.expect("b2010 processing time@none a2020 processing time@none")
}

func TestKeyedProcessProcessingTimeTimers(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			now := s.Timers().CurrentProcessingTime()
			s.Timers().RegisterProcessingTimeTimer(now + int64(r.V))
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			if d != ProcessingTime || s.Timestamp() != ts {
				return fmt.Errorf("timer %d: domain %v, timestamp %d", ts, d, s.Timestamp())
			}
			s.Collect(fmt.Sprintf("%s@%d", s.Key(), ts))
			if s.Key() == "a" && ts < 1_300 {
				// A repeating timer: re-registered from OnTimer.
				s.Timers().RegisterProcessingTimeTimer(ts + 100)
			}
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	in.ProcessElement(procRec{"a", 100}, 0) // 1100
	in.ProcessElement(procRec{"b", 50}, 0)  // 1050: earlier, arms a second callback
	in.ProcessElement(procRec{"c", 500}, 0) // 1500
	h.clock.advance(1_049)
	h.expect("")
	h.clock.advance(1_050)
	// Processing time is not event time: timer output has no timestamp.
	h.expect("b@1050@none")
	h.clock.advance(1_250)
	h.expect("a@1100@none a@1200@none")
	h.clock.advance(2_000)
	h.expect("a@1300@none c@1500@none")
	if n := len(h.clock.pending); n != 0 {
		t.Fatalf("%d clock callbacks still pending with no timer left", n)
	}
	// Superseded callbacks do not pile up: one per registration that was
	// earlier than the armed one at most.
	for i := range 100 {
		in.ProcessElement(procRec{fmt.Sprint("k", i), 1_000 - i}, 0)
	}
	if n := len(h.clock.pending); n > 100 {
		t.Fatalf("%d clock callbacks for 100 timers", n)
	}
	h.clock.advance(10_000)
	if n := len(h.out.events); n != 100 {
		t.Fatalf("%d timers fired, want 100", n)
	}
}

func TestKeyedProcessDropsProcessingTimersAtEndOfInput(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			s.Timers().RegisterProcessingTimeTimer(5_000)
			s.Timers().RegisterEventTimeTimer(int64(r.V))
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			s.Collect(fmt.Sprint(s.Key(), " ", d))
			return nil
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	in.ProcessElement(procRec{"a", 7}, 0)
	h.watermark(0, runtime.MaxWatermark)
	h.expect("a event time@7 wm:max")
	h.endInput(0)
	h.clock.advance(10_000)
	h.expect("")
}

func TestKeyedProcessErrorsFailWithKey(t *testing.T) {
	boom := errors.New("boom")
	f := &keyedProcFuncs[string, procRec, procRec, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			if r.V == 0 {
				return boom
			}
			s.Timers().RegisterEventTimeTimer(int64(r.V))
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			return fmt.Errorf("timer trouble: %w", boom)
		},
	}
	h := newKeyedProcHarness(t, f)
	in := procIn[procRec](h, 0)
	msg := procFailure(func() { in.ProcessElement(procRec{"bad-key", 0}, 0) })
	if !strings.Contains(msg, "key bad-key") || !strings.Contains(msg, "boom") {
		t.Fatalf("failure %q does not name the key and the error", msg)
	}
	in.ProcessElement(procRec{"late", 5}, 0)
	msg = procFailure(func() { h.watermark(0, 10) })
	if !strings.Contains(msg, "event time timer at 5 for key late") || !strings.Contains(msg, "timer trouble") {
		t.Fatalf("failure %q does not name the timer, key and error", msg)
	}
}

func TestKeyedProcessClosesOnlyWhenOpened(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, procRec, string]{}
	inst := NewKeyedProcess(procRecKeying(t), func() KeyedProcessor[string, procRec, string] { return f }).New()
	if err := inst.Op.Close(); err != nil || f.closed != 0 {
		t.Fatalf("Close of an unopened operator: err %v, function closed %d times", err, f.closed)
	}
	g := &keyedProcFuncs[string, procRec, procRec, string]{open: func(*KeyedScope[string, string]) error { return errors.New("no") }}
	ctx := &runtime.OperatorContext{Name: "proc", MaxParallelism: procMaxParallelism, ProcessingTime: &procClock{},
		NewKeyedBackend: func() state.Backend {
			return state.NewHeapBackend(keygroup.Range{Start: 0, End: procMaxParallelism - 1})
		}}
	inst = NewKeyedProcess(procRecKeying(t), func() KeyedProcessor[string, procRec, string] { return g }).New()
	if err := inst.Op.Open(ctx); err == nil {
		t.Fatal("Open hid the function's error")
	}
	if err := inst.Op.Close(); err != nil || g.closed != 1 {
		t.Fatalf("Close after a failed Open: err %v, function closed %d times, want 1", err, g.closed)
	}
}

// procFuncs is a Processor and CoProcessor built from closures.
type procFuncs[A, B, OUT any] struct {
	s        *Scope[OUT]
	process1 func(s *Scope[OUT], v A) error
	process2 func(s *Scope[OUT], v B) error
	opened   int
	closed   int
}

func (f *procFuncs[A, B, OUT]) Open(s *Scope[OUT]) error  { f.s = s; f.opened++; return nil }
func (f *procFuncs[A, B, OUT]) ProcessElement(v A) error  { return f.process1(f.s, v) }
func (f *procFuncs[A, B, OUT]) ProcessElement1(v A) error { return f.process1(f.s, v) }
func (f *procFuncs[A, B, OUT]) ProcessElement2(v B) error { return f.process2(f.s, v) }
func (f *procFuncs[A, B, OUT]) Close() error              { f.closed++; return nil }

func TestProcessTimestampsAndWatermarks(t *testing.T) {
	f := &procFuncs[int, int, string]{
		process1: func(s *Scope[string], v int) error {
			if v < 0 {
				return errors.New("negative")
			}
			s.Collect(fmt.Sprint("v", v, "/wm", procTime(s.CurrentWatermark())))
			s.CollectWithTimestamp(fmt.Sprint("t", s.Timestamp()), 99)
			return nil
		},
	}
	h := newProcHarness[string](t, NewProcess(func() Processor[int, string] { return f }))
	in := procIn[int](h, 0)
	in.ProcessElement(1, 5)
	h.watermark(0, 7)
	in.ProcessElement(2, runtime.NoTimestamp)
	h.expect("v1/wmnone@5 t5@99 wm:7 v2/wm7@none t-9223372036854775808@99")
	if msg := procFailure(func() { in.ProcessElement(-1, 0) }); !strings.Contains(msg, "negative") {
		t.Fatalf("failure %q", msg)
	}
	// An input that ends without MaxWatermark ends event time all the same.
	h.endInput(0)
	h.expect("wm:max")
	if f.opened != 1 {
		t.Fatalf("opened %d times", f.opened)
	}
}
