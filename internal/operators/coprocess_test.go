package operators

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// newCoProcHarness runs a non-keyed two-input operator of ints on both
// inputs: the same record type, on distinct ports.
func newCoProcHarness(t *testing.T) (*procHarness[string], *procFuncs[int, int, string]) {
	f := &procFuncs[int, int, string]{
		process1: func(s *Scope[string], v int) error {
			s.Collect(fmt.Sprint("one:", v))
			return nil
		},
		process2: func(s *Scope[string], v int) error {
			s.Collect(fmt.Sprint("two:", v))
			return nil
		},
	}
	return newProcHarness[string](t, NewCoProcess(func() CoProcessor[int, int, string] { return f })), f
}

func TestCoProcessRoutesInputs(t *testing.T) {
	h, f := newCoProcHarness(t)
	procIn[int](h, 0).ProcessElement(1, 10)
	procIn[int](h, 1).ProcessElement(2, 20)
	h.expect("one:1@10 two:2@20")
	if f.opened != 1 {
		t.Fatalf("opened %d times", f.opened)
	}
}

func TestCoProcessWatermarkIsMinOfInputs(t *testing.T) {
	h, _ := newCoProcHarness(t)
	h.watermark(0, 10)
	h.expect("") // input 1 is still at the minimum
	h.watermark(1, 5)
	h.expect("wm:5")
	h.watermark(1, 20)
	h.expect("wm:10")
	h.watermark(1, 25) // input 0 holds it at 10
	h.expect("")
	h.watermark(0, 30)
	h.expect("wm:25")
	h.watermark(0, runtime.MaxWatermark)
	h.watermark(1, runtime.MaxWatermark)
	h.expect("wm:max")
}

func TestCoProcessEndedInputStopsHoldingBack(t *testing.T) {
	h, _ := newCoProcHarness(t)
	h.watermark(0, 10)
	h.expect("")
	// Input 1 ends without ever sending a watermark: it no longer counts.
	h.endInput(1)
	h.expect("wm:10")
	h.watermark(0, 12)
	h.expect("wm:12")
	// With both ended, no input holds event time back at all.
	h.endInput(0)
	h.expect("wm:max")
}

// newKeyedCoProcHarness runs a keyed two-input operator: input 1 carries
// procRec, input 2 plain strings whose key is the string.
func newKeyedCoProcHarness(t *testing.T, f *keyedProcFuncs[string, procRec, string, string]) *procHarness[string] {
	enc, err := NewKeyEncoder[string]()
	if err != nil {
		t.Fatal(err)
	}
	k2 := &Keying[string, string]{Select: func(s string) string { return s }, Encoder: enc}
	factory := NewKeyedCoProcess(procRecKeying(t), k2, func() KeyedCoProcessor[string, procRec, string, string] { return f })
	if len(factory.InputKeys) != 2 || factory.InputKeys[0] == nil || factory.InputKeys[1] == nil {
		t.Fatalf("both inputs of a keyed co-process must be keyed, got %d key functions", len(factory.InputKeys))
	}
	return newProcHarness[string](t, factory)
}

// TestKeyedCoProcessSharesStateAcrossInputs joins input 1's values with
// input 2's lookups through state both inputs see per key.
func TestKeyedCoProcessSharesStateAcrossInputs(t *testing.T) {
	var sum state.ValueState[int]
	f := &keyedProcFuncs[string, procRec, string, string]{
		open: func(s *KeyedScope[string, string]) (err error) {
			sum, err = state.NewValueState[int](s.Backend(), "sum")
			return err
		},
		process1: func(s *KeyedScope[string, string], r procRec) error {
			n, _ := sum.Value()
			sum.Update(n + r.V)
			return nil
		},
		process2: func(s *KeyedScope[string, string], key string) error {
			n, ok := sum.Value()
			s.Collect(fmt.Sprint(s.Key(), "=", n, ok))
			return nil
		},
	}
	h := newKeyedCoProcHarness(t, f)
	in1, in2 := procIn[procRec](h, 0), procIn[string](h, 1)
	in1.ProcessElement(procRec{"a", 1}, 0)
	in1.ProcessElement(procRec{"b", 10}, 0)
	in1.ProcessElement(procRec{"a", 2}, 0)
	in2.ProcessElement("a", 1)
	in2.ProcessElement("b", 2)
	in2.ProcessElement("c", 3)
	h.expect("a=3 true@1 b=10 true@2 c=0 false@3")
}

// TestKeyedCoProcessTimersFollowMinWatermark checks that event-time timers
// fire at the combined watermark, that an ended input stops holding them
// back, and that both inputs' registrations land in one timer service.
func TestKeyedCoProcessTimersFollowMinWatermark(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, string, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error {
			s.Timers().RegisterEventTimeTimer(int64(r.V))
			return nil
		},
		process2: func(s *KeyedScope[string, string], key string) error {
			s.Timers().RegisterEventTimeTimer(s.Timestamp())
			return nil
		},
		onTimer: func(s *KeyedScope[string, string], ts int64, d TimeDomain) error {
			s.Collect(fmt.Sprint(s.Key(), ts))
			return nil
		},
	}
	h := newKeyedCoProcHarness(t, f)
	in1, in2 := procIn[procRec](h, 0), procIn[string](h, 1)
	in1.ProcessElement(procRec{"a", 10}, 0)
	in2.ProcessElement("b", 20)
	in2.ProcessElement("a", 10) // same key and time as input 1's: one timer
	h.watermark(0, 50)
	h.expect("")
	h.watermark(1, 15)
	h.expect("a10@10 wm:15")
	h.watermark(1, 40)
	h.expect("b20@20 wm:40")
	in1.ProcessElement(procRec{"c", 45}, 0)
	in1.ProcessElement(procRec{"d", 60}, 0)
	// Input 1 sends MaxWatermark and ends; input 2 is at 40 and holds the
	// timers at 45 and 60 back until it ends too.
	h.watermark(0, runtime.MaxWatermark)
	h.endInput(0)
	h.expect("")
	h.endInput(1)
	h.expect("c45@45 d60@60 wm:max")
}

func TestKeyedCoProcessErrorsNameInputAndKey(t *testing.T) {
	f := &keyedProcFuncs[string, procRec, string, string]{
		process1: func(s *KeyedScope[string, string], r procRec) error { return nil },
		process2: func(s *KeyedScope[string, string], key string) error { return fmt.Errorf("no match for %s", key) },
	}
	h := newKeyedCoProcHarness(t, f)
	msg := procFailure(func() { procIn[string](h, 1).ProcessElement("zz", 0) })
	if !strings.Contains(msg, "input 2 with key zz") || !strings.Contains(msg, "no match for zz") {
		t.Fatalf("failure %q does not name the input, key and error", msg)
	}
}
