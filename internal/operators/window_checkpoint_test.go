package operators

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// Window operators in checkpoints: a job of window subtasks is driven by a
// script (records, watermarks, clock ticks), snapshotted midway, restored
// with another parallelism and run to the end; what it emitted before the
// snapshot and after the restore must be exactly what one failure-free
// subtask emits for the whole script.

// winStep is one step of a script: a record, a watermark or a clock tick.
type winStep struct {
	kind byte // 'e' record, 'w' watermark, 'c' processing time
	e    wev
	t    int64
}

// windowScript returns records over keys whose timestamps rise by 0–3 ms
// each, a fifth of them delayed by up to 80 ms, with watermarks trailing
// the largest timestamp by 20 ms (so some records are late, some beyond an
// allowed lateness of 30 ms), and a clock that advances 0–2 ms per record.
func windowScript(seed uint64, n, keys int) []winStep {
	rng := rand.New(rand.NewPCG(seed, 11))
	var steps []winStep
	now, base, maxTS := int64(1_000), int64(-2_000), int64(runtime.MinWatermark)
	for i := range n {
		if d := rng.Int64N(3); d > 0 {
			now += d
			steps = append(steps, winStep{kind: 'c', t: now})
		}
		base += rng.Int64N(4)
		e := wev{Key: fmt.Sprintf("k%d", rng.IntN(keys)), TS: base, V: rng.Int64N(100)}
		if rng.IntN(5) == 0 {
			e.TS -= rng.Int64N(81)
		}
		steps = append(steps, winStep{kind: 'e', e: e})
		maxTS = max(maxTS, e.TS)
		if i%5 == 4 {
			steps = append(steps, winStep{kind: 'w', t: maxTS - 21})
		}
	}
	return steps
}

// winJob is the subtasks of one window operator, driven like tasks behind a
// hash exchange: each gets the records of its key groups and every
// watermark and clock tick.
type winJob struct {
	t    *testing.T
	subs []*winHarness[wev, wres]
	kgs  []keygroup.Range
	now  int64
}

// openWinJob opens p subtasks of the operator f makes, restored from r if
// it is not nil, with the clock at now.
func openWinJob(t *testing.T, f func() *runtime.Factory, p int, r *runtime.RestoredState, now int64) *winJob {
	t.Helper()
	j := &winJob{t: t, now: now}
	for sub := range p {
		h, err := openWinSubtask(f(), p, sub, r, now, true)
		if err != nil {
			t.Fatalf("opening subtask %d of %d: %v", sub, p, err)
		}
		j.subs = append(j.subs, h)
		j.kgs = append(j.kgs, keygroup.RangeForOperator(testMaxP, p, sub))
	}
	return j
}

// openWinSubtask opens one subtask as the task would.
func openWinSubtask(f *runtime.Factory, p, sub int, r *runtime.RestoredState, now int64, checkpointing bool) (*winHarness[wev, wres], error) {
	inst := f.New()
	h := &winHarness[wev, wres]{op: inst.Op, in: inst.Inputs[0].(runtime.Input[wev]), out: &winOutput[wres]{}, clock: &winClock{now: now}}
	inst.SetOutput(runtime.Output[wres](h.out))
	kgs := keygroup.RangeForOperator(testMaxP, p, sub)
	ctx := &runtime.OperatorContext{
		Name: "window", UID: "window", Subtask: sub, Parallelism: p, MaxParallelism: testMaxP,
		KeyGroups: kgs, ProcessingTime: h.clock,
		NewKeyedBackend: func() state.Backend { return state.NewHeapBackend(kgs) },
		SetIdle:         func(bool) {},
		Restored:        r,
		Checkpointing:   checkpointing,
	}
	return h, h.op.Open(ctx)
}

func (j *winJob) step(s winStep) {
	switch s.kind {
	case 'e':
		kg := KeyGroupOf([]byte(s.e.Key), testMaxP)
		for i, h := range j.subs {
			if j.kgs[i].Contains(kg) {
				h.element(counted(s.e), s.e.TS)
			}
		}
	case 'w':
		for _, h := range j.subs {
			h.watermark(s.t)
		}
	case 'c':
		j.now = s.t
		for _, h := range j.subs {
			h.clock.advance(s.t)
		}
	}
}

// end sends the final watermark and ends the input.
func (j *winJob) end() {
	for _, h := range j.subs {
		h.watermark(runtime.MaxWatermark)
		h.op.EndInput(0)
	}
}

// take returns what the subtasks emitted since the last take, sorted.
func (j *winJob) take() []wres {
	var out []wres
	for _, h := range j.subs {
		out = append(out, withTS(h.out.take())...)
	}
	sortAllResults(out)
	return out
}

// sortAllResults sorts results totally: a window that fires again has
// results that differ only in their contents.
func sortAllResults(rs []wres) {
	slices.SortFunc(rs, func(a, b wres) int {
		return cmp.Or(cmp.Compare(a.End, b.End), cmp.Compare(a.Start, b.Start), cmp.Compare(a.Key, b.Key),
			cmp.Compare(a.TS, b.TS), cmp.Compare(a.Count, b.Count), cmp.Compare(a.Sum, b.Sum))
	})
}

// snapshot returns every subtask's snapshot.
func (j *winJob) snapshot(id int64) []*runtime.OperatorSnapshot {
	j.t.Helper()
	var snaps []*runtime.OperatorSnapshot
	for i, h := range j.subs {
		s, err := h.op.(runtime.Snapshotter).SnapshotState(id)
		if err != nil {
			j.t.Fatalf("subtask %d: SnapshotState: %v", i, err)
		}
		snaps = append(snaps, s)
	}
	return snaps
}

// throughStorage writes the snapshots in the checkpoint storage's keyed
// state format and reads each back for its old subtask's key groups, as a
// restore from checkpoint files does; the format checks that entries are
// sorted and well-formed.
func throughStorage(t *testing.T, id int64, snaps []*runtime.OperatorSnapshot) *runtime.RestoredState {
	t.Helper()
	r := &runtime.RestoredState{Checkpoint: id}
	for i, s := range snaps {
		var buf bytes.Buffer
		if err := storage.WriteKeyedState(&buf, testMaxP, s.Keyed, s.Timers); err != nil {
			t.Fatalf("subtask %d: writing its keyed state: %v", i, err)
		}
		kgs := keygroup.RangeForOperator(testMaxP, len(snaps), i)
		keyed, timers, err := storage.ReadKeyedState(bytesFile{bytes.NewReader(buf.Bytes())}, "window", kgs)
		if err != nil {
			t.Fatalf("subtask %d: reading its keyed state: %v", i, err)
		}
		r.Snapshots = append(r.Snapshots, &runtime.OperatorSnapshot{Keyed: keyed, Timers: timers, Operator: slices.Clone(s.Operator)})
	}
	return r
}

type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error { return nil }

// snapshotCounts counts the windows in snapshots, those that have fired and
// wait for their allowed lateness (event-time timers pending, but not the
// firing one), and the processing-time timers.
func snapshotCounts(snaps []*runtime.OperatorSnapshot) (windows, fired, procTimers int) {
	for _, s := range snaps {
		windows += s.Keyed.Len()
		pending, firing := map[string]bool{}, map[string]bool{}
		for _, g := range s.Timers.KeyGroups {
			procTimers += len(g.ProcessingTime)
			for _, tm := range g.EventTime {
				id := string(tm.Key) + string(tm.Namespace)
				pending[id] = true
				if w, _ := decodeWindowNamespace(tm.Namespace); tm.Timestamp == w.MaxTimestamp() {
					firing[id] = true
				}
			}
		}
		for id := range pending {
			if !firing[id] {
				fired++
			}
		}
	}
	return windows, fired, procTimers
}

// TestWindowCheckpointRestoreIsExact snapshots every kind of window
// operator in the middle of a script, restores it with the same and with
// other parallelisms, and checks that the output before the snapshot and
// after the restore is exactly that of a failure-free run.
func TestWindowCheckpointRestoreIsExact(t *testing.T) {
	ms := time.Millisecond
	steps := windowScript(21, 1500, 40)
	// Cut right before a late record: restored, the operator must judge it
	// by the watermark it had, not by none.
	cut, wm := 0, int64(runtime.MinWatermark)
	for i, s := range steps {
		if s.kind == 'w' {
			wm = s.t
		}
		if i >= len(steps)*2/5 && s.kind == 'e' && s.e.TS <= wm-10 {
			cut = i
			break
		}
	}
	for _, c := range []struct {
		name     string
		a        WindowAssigner
		lateness time.Duration
	}{
		{"tumbling event time", TumblingWindows(50*ms, false), 0},
		{"tumbling event time with lateness", TumblingWindows(50*ms, false), 30 * ms},
		{"sliding event time with lateness", SlidingWindows(60*ms, 20*ms, false), 30 * ms},
		{"session event time", SessionWindows(8*ms, false), 0},
		{"session event time with lateness", SessionWindows(8*ms, false), 30 * ms},
		{"tumbling processing time", TumblingWindows(10*ms, true), 0},
		{"sliding processing time", SlidingWindows(12*ms, 4*ms, true), 0},
		{"session processing time", SessionWindows(30*ms, true), 0},
	} {
		spec := WindowSpec{Assigner: c.a, AllowedLateness: c.lateness}
		for _, flavour := range []string{"reduce", "aggregate", "process"} {
			factory := func() *runtime.Factory { return resultFactories(t, spec)[flavour] }
			// The failure-free run: one subtask, the whole script.
			ref := openWinJob(t, factory, 1, nil, 1_000)
			for _, s := range steps {
				ref.step(s)
			}
			// What fires by the end of the script, and what only at the end
			// of the input (processing-time windows still open).
			want := ref.take()
			ref.end()
			wantAtEnd := ref.take()
			for _, scale := range [][2]int{{1, 1}, {2, 3}, {3, 1}} {
				t.Run(fmt.Sprintf("%s/%s/%d→%d", c.name, flavour, scale[0], scale[1]), func(t *testing.T) {
					first := openWinJob(t, factory, scale[0], nil, 1_000)
					for _, s := range steps[:cut] {
						first.step(s)
					}
					before, cutNow := first.take(), first.now
					snaps := first.snapshot(7)
					windows, fired, procTimers := snapshotCounts(snaps)
					switch {
					case windows == 0:
						t.Fatal("the snapshot holds no windows: the test proves nothing")
					case c.lateness > 0 && fired == 0:
						t.Fatal("no window in the snapshot has fired and waits for its lateness: the test proves nothing")
					case !c.a.IsEventTime() && procTimers == 0:
						t.Fatal("no processing-time timer in the snapshot")
					}
					// The failed run goes on a little; none of it counts, and
					// none of it may leak into the snapshot taken before.
					for _, s := range steps[cut : cut+100] {
						first.step(s)
					}
					restored := throughStorage(t, 7, snaps)

					second := openWinJob(t, factory, scale[1], restored, cutNow)
					for _, s := range steps[cut:] {
						second.step(s)
					}
					got := append(before, second.take()...)
					sortAllResults(got)
					if !slices.Equal(got, want) {
						t.Fatalf("%d results, want %d (%d windows in the snapshot, %d fired); first difference:\n%s",
							len(got), len(want), windows, fired, firstDiff(got, want))
					}
					second.end()
					if got := second.take(); !slices.Equal(got, wantAtEnd) {
						t.Fatalf("at the end of the input: %d results, want %d; first difference:\n%s", len(got), len(wantAtEnd), firstDiff(got, wantAtEnd))
					}
				})
			}
		}
	}
}

// TestWindowSnapshotFormat checks the canonical form of a window
// operator's snapshot: one entry per key and window, of the flavour's kind,
// the firing and cleanup timers, the watermark.
func TestWindowSnapshotFormat(t *testing.T) {
	ms := time.Millisecond
	spec := WindowSpec{Assigner: TumblingWindows(10*ms, false), AllowedLateness: 5 * ms}
	for flavour, kind := range map[string]state.Kind{"reduce": state.KindReducing, "aggregate": state.KindAggregating, "process": state.KindList} {
		h, err := openWinSubtask(resultFactories(t, spec)[flavour], 1, 0, nil, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		h.element(counted(wev{"a", 3, 1}), 3)
		h.element(counted(wev{"a", 4, 2}), 4)
		h.watermark(9) // [0,10) fires and waits until 14
		h.element(counted(wev{"a", 12, 4}), 12)
		snap, err := h.op.(runtime.Snapshotter).SnapshotState(1)
		if err != nil {
			t.Fatal(err)
		}
		kg := KeyGroupOf([]byte("a"), testMaxP)
		if len(snap.Keyed.KeyGroups) != 1 || snap.Keyed.KeyGroups[0].KeyGroup != kg || len(snap.Keyed.KeyGroups[0].Entries) != 2 {
			t.Fatalf("%s: keyed state %+v, want two windows in key group %d", flavour, snap.Keyed, kg)
		}
		for i, w := range []TimeWindow{{0, 10}, {10, 20}} {
			e := snap.Keyed.KeyGroups[0].Entries[i]
			if e.State != "window-contents" || e.Kind != kind || string(e.Key) != "a" || !bytes.Equal(e.Namespace, appendWindowNamespace(nil, w)) {
				t.Errorf("%s: entry %d is %s %s %q %x, want window-contents %s a %v", flavour, i, e.State, e.Kind, e.Key, e.Namespace, kind, w)
			}
		}
		var timers []string
		for _, tm := range snap.Timers.KeyGroups[0].EventTime {
			w, _ := decodeWindowNamespace(tm.Namespace)
			timers = append(timers, fmt.Sprintf("%d:%v", tm.Timestamp, w))
		}
		// [0,10) has fired: only its cleanup timer is left.
		if want := []string{"14:[0, 10)", "19:[10, 20)", "24:[10, 20)"}; !slices.Equal(timers, want) {
			t.Errorf("%s: event-time timers %v, want %v", flavour, timers, want)
		}
		if wms, fn, err := decodeOperatorState(snap.Operator); err != nil || !slices.Equal(wms, []int64{9}) || fn != nil {
			t.Errorf("%s: operator state %v %v %v, want watermark 9", flavour, wms, fn, err)
		}
	}
}

// TestRestoredWindowKeepsItsWatermark checks that a restored window operator
// drops watermarks below the restored one and judges lateness by it.
func TestRestoredWindowKeepsItsWatermark(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false), AllowedLateness: 5 * time.Millisecond}
	f := func() *runtime.Factory { return resultFactories(t, spec)["aggregate"] }
	h, err := openWinSubtask(f(), 1, 0, nil, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	h.element(wev{"a", 3, 1}, 3)
	h.watermark(9)
	h.element(wev{"b", 15, 2}, 15)
	h.watermark(16) // [0,10) waits for its lateness until 14: dropped now
	h.out.take()
	snap, _ := h.op.(runtime.Snapshotter).SnapshotState(1)
	r, err := openWinSubtask(f(), 1, 0, &runtime.RestoredState{Checkpoint: 1, Snapshots: []*runtime.OperatorSnapshot{snap}}, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	r.watermark(2) // the restarted source starts over
	r.element(wev{"a", 4, 8}, 4)
	if got := r.out.events; len(got) != 0 || r.late() != 1 {
		t.Fatalf("emitted %v, %d late; want nothing and the record dropped as late", got, r.late())
	}
	r.watermark(19)
	want := []winEvent[wres]{{v: wres{"b", 10, 20, 1, 2, 0}, ts: 19}, {wm: true, ts: 19}}
	if !slices.Equal(r.out.events, want) {
		t.Fatalf("emitted %v, want %v", r.out.events, want)
	}
}

// TestWindowRestoreErrors checks that state a window operator cannot take
// fails its Open with a message that names the problem.
func TestWindowRestoreErrors(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h, err := openWinSubtask(resultFactories(t, spec)["reduce"], 1, 0, nil, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	h.element(counted(wev{"a", 3, 1}), 3)
	good, err := h.op.(runtime.Snapshotter).SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(s *runtime.OperatorSnapshot)) *runtime.RestoredState {
		s := &runtime.OperatorSnapshot{Keyed: &state.Snapshot{}, Timers: good.Timers, Operator: good.Operator}
		for _, g := range good.Keyed.KeyGroups {
			s.Keyed.KeyGroups = append(s.Keyed.KeyGroups, state.KeyGroupState{KeyGroup: g.KeyGroup, Entries: slices.Clone(g.Entries)})
		}
		f(s)
		return &runtime.RestoredState{Checkpoint: 4, Snapshots: []*runtime.OperatorSnapshot{s}}
	}
	entry := func(s *runtime.OperatorSnapshot) *state.Entry { return &s.Keyed.KeyGroups[0].Entries[0] }
	for _, c := range []struct {
		name    string
		flavour string
		r       *runtime.RestoredState
		want    string
	}{
		{"another flavour", "process", edit(func(*runtime.OperatorSnapshot) {}), "as reducing state, but this window operator keeps list state"},
		{"another state", "reduce", edit(func(s *runtime.OperatorSnapshot) { entry(s).State = "count" }), `holds state "count"`},
		{"bad namespace", "reduce", edit(func(s *runtime.OperatorSnapshot) { entry(s).Namespace = []byte{1, 2} }), "namespace has 2 bytes"},
		{"bad value", "reduce", edit(func(s *runtime.OperatorSnapshot) { entry(s).Value = []byte{0xff} }), "window [0, 10) of key"},
		{"corrupt operator state", "reduce", edit(func(s *runtime.OperatorSnapshot) { s.Operator = []byte{9} }), "format version 9"},
		{"function state", "reduce", edit(func(s *runtime.OperatorSnapshot) { s.Operator = encodeOperatorState([]int64{0}, []byte("x")) }), "never stores"},
	} {
		_, err := openWinSubtask(resultFactories(t, spec)[c.flavour], 1, 0, c.r, 0, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open: %v, want an error containing %q", c.name, err, c.want)
		}
	}

	// Contents the codec cannot encode: checkpoints on fail at Open, off
	// do not matter.
	type withFunc struct{ F func() }
	f := NewWindowReduce(&Keying[withFunc, string]{Select: func(withFunc) string { return "k" }, Encoder: wevKeying(t).Encoder}, spec,
		func(a, b withFunc) withFunc { return a })
	for _, checkpointing := range []bool{false, true} {
		inst := f.New()
		inst.SetOutput(runtime.Output[withFunc](&winOutput[withFunc]{}))
		kgs := keygroup.RangeForOperator(testMaxP, 1, 0)
		err := inst.Op.Open(&runtime.OperatorContext{MaxParallelism: testMaxP, KeyGroups: kgs, Parallelism: 1,
			ProcessingTime: &winClock{}, Checkpointing: checkpointing})
		if checkpointing != (err != nil) || err != nil && !strings.Contains(err.Error(), "cannot be stored in checkpoints") {
			t.Errorf("checkpointing %v: Open: %v", checkpointing, err)
		}
	}
}

// TestRestoredProcessingTimeWindowsFireOnTheClock checks that restored
// processing-time windows are armed: they fire when the clock passes their
// end, with no record to remind the operator of them.
func TestRestoredProcessingTimeWindowsFireOnTheClock(t *testing.T) {
	for _, a := range []WindowAssigner{TumblingWindows(10*time.Millisecond, true), SessionWindows(10*time.Millisecond, true)} {
		f := func() *runtime.Factory { return resultFactories(t, WindowSpec{Assigner: a})["aggregate"] }
		h, err := openWinSubtask(f(), 1, 0, nil, 1003, true)
		if err != nil {
			t.Fatal(err)
		}
		h.element(wev{"a", 0, 1}, 0)
		snap, err := h.op.(runtime.Snapshotter).SnapshotState(1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := openWinSubtask(f(), 1, 0, &runtime.RestoredState{Checkpoint: 1, Snapshots: []*runtime.OperatorSnapshot{snap}}, 1005, true)
		if err != nil {
			t.Fatal(err)
		}
		end := int64(1010)
		if a.IsMerging() {
			end = 1013
		}
		r.clock.advance(end - 1)
		if got := r.out.take(); len(got) != 0 {
			t.Fatalf("%v: emitted %v before the window ended", a, got)
		}
		r.clock.advance(end)
		want := []wres{{"a", end - 10, end, 1, 1, end - 1}}
		if got := withTS(r.out.take()); !slices.Equal(got, want) {
			t.Fatalf("%v: emitted %v when the clock passed the window's end, want %v", a, got, want)
		}
	}
}
