package operators

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// The process operators in checkpoints: their watermarks and the
// function's own state (FunctionState) are operator state, which every new
// subtask gets all of.

// openProcSubtask opens subtask sub of p of the operator f makes, restored
// from r if it is not nil.
func openProcSubtask[OUT any](t *testing.T, f *runtime.Factory, p, sub int, r *runtime.RestoredState) (runtime.Instance, *procOutput[OUT], error) {
	t.Helper()
	kgs := keygroup.RangeForOperator(procMaxParallelism, p, sub)
	inst := f.New()
	out := &procOutput[OUT]{}
	inst.SetOutput(runtime.Output[OUT](out))
	err := inst.Op.Open(&runtime.OperatorContext{
		JobName: "test", UID: "proc", Name: "proc",
		Subtask: sub, Parallelism: p, MaxParallelism: procMaxParallelism, KeyGroups: kgs,
		ProcessingTime:  &procClock{now: 1_000},
		Cancel:          context.Background(),
		NewKeyedBackend: func() state.Backend { return state.NewHeapBackend(kgs) },
		SetIdle:         func(bool) {},
		Restored:        r,
		Checkpointing:   true,
	})
	return inst, out, err
}

func snapshotOf(t *testing.T, insts ...runtime.Instance) *runtime.RestoredState {
	t.Helper()
	r := &runtime.RestoredState{Checkpoint: 3}
	for _, inst := range insts {
		s, err := inst.Op.(runtime.Snapshotter).SnapshotState(3)
		if err != nil {
			t.Fatal(err)
		}
		r.Snapshots = append(r.Snapshots, s)
	}
	return r
}

// countingProc counts its records; its count is its checkpointed state,
// and restored it takes the sum of the old subtasks' counts on subtask 0.
type countingProc struct {
	s        *Scope[string]
	count    int
	restored [][]byte
	opened   bool
}

func (p *countingProc) Open(s *Scope[string]) error { p.s = s; p.opened = true; return nil }
func (p *countingProc) ProcessElement(v int) error {
	p.count++
	p.s.Collect(fmt.Sprintf("%d#%d/wm%s", v, p.count, procTime(p.s.CurrentWatermark())))
	return nil
}
func (p *countingProc) Close() error { return nil }

func (p *countingProc) SnapshotFunctionState(int64) ([]byte, error) {
	return strconv.AppendInt(nil, int64(p.count), 10), nil
}

func (p *countingProc) RestoreFunctionState(ctx *runtime.OperatorContext, states [][]byte) error {
	if p.opened {
		return fmt.Errorf("restored after Open")
	}
	p.restored = states
	if ctx.Subtask != 0 {
		return nil
	}
	for _, b := range states {
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return err
		}
		p.count += n
	}
	return nil
}

func TestProcessRestoresWatermarksAndFunctionState(t *testing.T) {
	var procs []*countingProc
	f := NewProcess(func() Processor[int, string] {
		p := &countingProc{}
		procs = append(procs, p)
		return p
	})
	var old []runtime.Instance
	for sub := range 2 {
		inst, _, err := openProcSubtask[string](t, f, 2, sub, nil)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, inst)
	}
	for v := range 5 {
		old[v%2].Inputs[0].(runtime.Input[int]).ProcessElement(v, int64(v))
	}
	old[0].Op.ProcessWatermark(0, 50)
	old[1].Op.ProcessWatermark(0, 40)
	restored := snapshotOf(t, old...)

	for _, c := range []struct {
		p     int
		wms   []string // each subtask's restored watermark
		count []int    // each subtask's restored count
	}{
		{2, []string{"50", "40"}, []int{5, 0}}, // not rescaled: each its own watermark
		{3, []string{"40", "40", "40"}, []int{5, 0, 0}},
	} {
		procs = nil
		for sub := range c.p {
			inst, out, err := openProcSubtask[string](t, f, c.p, sub, restored)
			if err != nil {
				t.Fatalf("p=%d: Open subtask %d: %v", c.p, sub, err)
			}
			p := procs[len(procs)-1]
			if !slices.EqualFunc(p.restored, [][]byte{[]byte("3"), []byte("2")}, slices.Equal) {
				t.Fatalf("p=%d: subtask %d restored %q, want every old subtask's state", c.p, sub, p.restored)
			}
			in := inst.Inputs[0].(runtime.Input[int])
			in.ProcessElement(7, 7)
			inst.Op.ProcessWatermark(0, 30) // the restarted sources start over below
			if got, want := out.take(), fmt.Sprintf("7#%d/wm%s@7", c.count[sub]+1, c.wms[sub]); got != want {
				t.Fatalf("p=%d: subtask %d emitted %q, want %q", c.p, sub, got, want)
			}
			inst.Op.ProcessWatermark(0, 60)
			if got := out.take(); got != "wm:60" {
				t.Fatalf("p=%d: subtask %d emitted %q at watermark 60", c.p, sub, got)
			}
		}
	}

	// A function that stores no state cannot take the state of one that did.
	plain := NewProcess(func() Processor[int, string] {
		return &procFuncs[int, int, string]{process1: func(*Scope[string], int) error { return nil }}
	})
	if _, _, err := openProcSubtask[string](t, plain, 2, 0, restored); err == nil || !strings.Contains(err.Error(), "no longer stores any") {
		t.Fatalf("Open of a function without state from a checkpoint with some: %v", err)
	}
	// Without function state, the watermarks alone restore.
	noFn := &runtime.RestoredState{Checkpoint: 3, Snapshots: []*runtime.OperatorSnapshot{{Operator: encodeOperatorState([]int64{50}, nil)}}}
	if _, _, err := openProcSubtask[string](t, plain, 1, 0, noFn); err != nil {
		t.Fatal(err)
	}
}

func TestCoProcessRestoresEachInputsWatermark(t *testing.T) {
	h, _ := newCoProcHarness(t)
	h.watermark(0, 10)
	h.watermark(1, 5)
	h.expect("wm:5")
	restored := snapshotOf(t, h.inst)
	_, f := newCoProcHarness(t)
	inst, out, err := openProcSubtask[string](t, NewCoProcess(func() CoProcessor[int, int, string] { return f }), 1, 0, restored)
	if err != nil {
		t.Fatal(err)
	}
	inst.Op.ProcessWatermark(0, 7) // below input 1's 10
	inst.Op.ProcessWatermark(1, 4) // below input 2's 5
	inst.Op.ProcessWatermark(1, 8)
	if got := out.take(); got != "wm:8" {
		t.Fatalf("emitted %q, want wm:8: input 1 still holds event time at 10", got)
	}
}

func TestKeyedProcessRestoresWatermark(t *testing.T) {
	var wms []string
	newF := func() *runtime.Factory {
		return NewKeyedProcess(procRecKeying(t), func() KeyedProcessor[string, procRec, string] {
			return &keyedProcFuncs[string, procRec, procRec, string]{process1: func(s *KeyedScope[string, string], v procRec) error {
				wms = append(wms, procTime(s.CurrentWatermark()))
				s.Timers().RegisterEventTimeTimer(int64(v.V))
				return nil
			}, onTimer: func(s *KeyedScope[string, string], ts int64, _ TimeDomain) error {
				s.Collect(s.Key())
				return nil
			}}
		})
	}
	inst, out, err := openProcSubtask[string](t, newF(), 1, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst.Inputs[0].(runtime.Input[procRec]).ProcessElement(procRec{"a", 25}, 1)
	inst.Op.ProcessWatermark(0, 20)
	out.take()
	restored := snapshotOf(t, inst)
	if _, fn, err := decodeOperatorState(restored.Snapshots[0].Operator); err != nil || fn != nil {
		t.Fatalf("operator state: function state %q, %v; want none", fn, err)
	}
	for _, p := range []int{1, 2} {
		for sub := range p {
			inst, out, err := openProcSubtask[string](t, newF(), p, sub, restored)
			if err != nil {
				t.Fatal(err)
			}
			kgs := keygroup.RangeForOperator(procMaxParallelism, p, sub)
			if !kgs.Contains(KeyGroupOf([]byte("a"), procMaxParallelism)) {
				continue
			}
			wms = nil
			inst.Inputs[0].(runtime.Input[procRec]).ProcessElement(procRec{"a", 30}, 2)
			inst.Op.ProcessWatermark(0, 10)
			inst.Op.ProcessWatermark(0, 26)
			if got := out.take(); !slices.Equal(wms, []string{"20"}) || got != "a@25 wm:26" {
				t.Fatalf("p=%d: watermark %v in ProcessElement, emitted %q; want 20, then the restored timer", p, wms, got)
			}
		}
	}
}

func TestOperatorStateCorrupt(t *testing.T) {
	good := encodeOperatorState([]int64{-5, runtime.MaxWatermark}, []byte("fn"))
	if wms, fn, err := decodeOperatorState(good); err != nil || !slices.Equal(wms, []int64{-5, runtime.MaxWatermark}) || string(fn) != "fn" {
		t.Fatalf("round trip: %v %q %v", wms, fn, err)
	}
	if _, fn, err := decodeOperatorState(encodeOperatorState(nil, []byte{})); err != nil || fn == nil {
		t.Fatalf("empty function state: %q %v, want empty but present", fn, err)
	}
	for _, bad := range [][]byte{{}, {2}, {1}, {1, 5, 0}, good[:len(good)-1], append(slices.Clone(good), 0), {1, 0, 9}} {
		if _, _, err := decodeOperatorState(bad); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("state %x: %v, want a corrupt-state error", bad, err)
		}
	}
	// The watermarks of a one-input operator do not restore a two-input one.
	f := NewCoProcess(func() CoProcessor[int, int, string] { return &procFuncs[int, int, string]{} })
	r := &runtime.RestoredState{Checkpoint: 3, Snapshots: []*runtime.OperatorSnapshot{{Operator: encodeOperatorState([]int64{1}, nil)}}}
	if _, _, err := openProcSubtask[string](t, f, 1, 0, r); err == nil || !strings.Contains(err.Error(), "watermarks of 1 inputs, but the operator has 2") {
		t.Fatalf("Open: %v", err)
	}
}
