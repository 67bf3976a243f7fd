package operators

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/runtime"
)

// recordingSink opens recordingWriters and records what the sink operator
// asks of them.
type recordingSink struct {
	twoPhase bool
	opened   []connector.SinkContext
	log      []string
}

type recordingWriter struct {
	s       *recordingSink
	sub     int
	written int
}

func (s *recordingSink) Open(ctx connector.SinkContext) (connector.SinkWriter[string], error) {
	s.opened = append(s.opened, ctx)
	w := &recordingWriter{s: s, sub: ctx.Subtask}
	if s.twoPhase {
		return &twoPhaseWriter{w}, nil
	}
	return w, nil
}

func (w *recordingWriter) Write(v string, _ int64) error { w.written++; return nil }
func (w *recordingWriter) Finish() error {
	w.s.log = append(w.s.log, fmt.Sprintf("%d:finish", w.sub))
	return nil
}
func (w *recordingWriter) Close() error { return nil }

type twoPhaseWriter struct{ *recordingWriter }

// PrepareCommit describes what was written since the last call.
func (w *twoPhaseWriter) PrepareCommit(id int64) ([]byte, error) {
	w.s.log = append(w.s.log, fmt.Sprintf("%d:prepare %d", w.sub, id))
	if w.written == 0 {
		return nil, nil
	}
	d := fmt.Sprintf("s%d-c%d-n%d", w.sub, id, w.written)
	w.written = 0
	return []byte(d), nil
}

func (w *twoPhaseWriter) Commit(ds [][]byte) error {
	var s []string
	for _, d := range ds {
		s = append(s, string(d))
	}
	w.s.log = append(w.s.log, fmt.Sprintf("%d:commit %s", w.sub, strings.Join(s, ",")))
	return nil
}

func (s *recordingSink) take() string {
	out := strings.Join(s.log, "; ")
	s.log = nil
	return out
}

func openSinkOp(t *testing.T, s *recordingSink, sub, p int, checkpointing bool, restored *runtime.RestoredState) runtime.Instance {
	t.Helper()
	inst := NewSink[string](s).New()
	err := inst.Op.Open(&runtime.OperatorContext{Name: "out", Subtask: sub, Parallelism: p, Checkpointing: checkpointing, Restored: restored})
	if err != nil {
		t.Fatalf("Open(subtask %d of %d): %v", sub, p, err)
	}
	return inst
}

func sinkFeed(inst runtime.Instance, vals ...string) {
	for _, v := range vals {
		inst.Inputs[0].(runtime.Input[string]).ProcessElement(v, runtime.NoTimestamp)
	}
}

func sinkSnapshot(t *testing.T, inst runtime.Instance, id int64) *runtime.OperatorSnapshot {
	t.Helper()
	snap, err := inst.Op.(runtime.Snapshotter).SnapshotState(id)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func sinkNotify(t *testing.T, inst runtime.Instance, id int64) {
	t.Helper()
	if err := inst.Op.(runtime.CheckpointListener).NotifyCheckpointComplete(id); err != nil {
		t.Fatal(err)
	}
}

func TestSinkCommitsWithCheckpoints(t *testing.T) {
	s := &recordingSink{twoPhase: true}
	op := openSinkOp(t, s, 0, 1, true, nil)
	if !s.opened[0].Checkpointing {
		t.Fatal("the writer was not told that checkpoints are on")
	}
	sinkFeed(op, "a", "b")
	sinkSnapshot(t, op, 1)
	sinkFeed(op, "c")
	sinkSnapshot(t, op, 2)
	sinkSnapshot(t, op, 3) // nothing new
	if got, want := s.take(), "0:prepare 1; 0:prepare 2; 0:prepare 3"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	sinkNotify(t, op, 1)
	sinkNotify(t, op, 1) // again: nothing left to commit
	// Checkpoint 2's notification was skipped; 3 subsumes it.
	sinkNotify(t, op, 3)
	if got, want := s.take(), "0:commit s0-c1-n2; 0:commit s0-c2-n1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Finish only flushes; the checkpoint after it commits the rest.
	sinkFeed(op, "d")
	op.Op.EndInput(0)
	snap := sinkSnapshot(t, op, 4)
	sinkNotify(t, op, 4)
	if got, want := s.take(), "0:finish; 0:prepare 4; 0:commit s0-c4-n1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if ps, err := decodePendingCommits(snap.Operator); err != nil || len(ps) != 1 || string(ps[0].desc) != "s0-c4-n1" {
		t.Fatalf("snapshot 4 holds %v (%v), want checkpoint 4's description", ps, err)
	}
}

// restoredFrom builds the state of a checkpoint whose old subtasks had the
// given descriptions pending.
func sinkRestoredFrom(id int64, pending ...[]string) *runtime.RestoredState {
	r := &runtime.RestoredState{Checkpoint: id}
	for _, ds := range pending {
		var ps []pendingCommit
		for _, d := range ds {
			ps = append(ps, pendingCommit{checkpoint: id, desc: []byte(d)})
		}
		r.Snapshots = append(r.Snapshots, &runtime.OperatorSnapshot{Operator: encodePendingCommits(ps)})
	}
	return r
}

func TestSinkRestoreCommitsEachPendingOnce(t *testing.T) {
	restored := sinkRestoredFrom(7, []string{"a1", "a2"}, []string{"b1"}, nil)
	restored.Snapshots[2] = nil // a subtask without state
	// Same parallelism: each subtask commits its own old subtask's.
	s := &recordingSink{twoPhase: true}
	for sub := range 3 {
		openSinkOp(t, s, sub, 3, true, restored)
	}
	if got, want := s.take(), "0:commit a1,a2; 1:commit b1"; got != want {
		t.Fatalf("same parallelism: %q, want %q", got, want)
	}
	for _, ctx := range s.opened {
		if ctx.RestoredCheckpoint != 7 || !slices.EqualFunc(ctx.Restored, [][]byte{[]byte("a1"), []byte("a2"), []byte("b1")}, slices.Equal) {
			t.Fatalf("subtask %d was opened with %d, %q; want every old description", ctx.Subtask, ctx.RestoredCheckpoint, ctx.Restored)
		}
	}
	// Rescaled: subtask 0 commits them all.
	for _, p := range []int{2, 5} {
		s = &recordingSink{twoPhase: true}
		for sub := range p {
			openSinkOp(t, s, sub, p, true, restored)
		}
		if got, want := s.take(), "0:commit a1,a2,b1"; got != want {
			t.Fatalf("p=%d: %q, want %q", p, got, want)
		}
	}
	// A restored job without checkpoints still commits what it restored.
	s = &recordingSink{twoPhase: true}
	op := openSinkOp(t, s, 0, 3, false, restored)
	if got, want := s.take(), "0:commit a1,a2"; got != want {
		t.Fatalf("without checkpoints: %q, want %q", got, want)
	}
	if snap := sinkSnapshot(t, op, 8); snap != nil {
		t.Fatalf("without checkpoints the sink snapshotted %v", snap)
	}
}

func TestSinkWithoutTwoPhaseCommit(t *testing.T) {
	s := &recordingSink{}
	op := openSinkOp(t, s, 0, 1, true, nil)
	sinkFeed(op, "a")
	if snap := sinkSnapshot(t, op, 1); snap != nil {
		t.Fatalf("a sink without two-phase commits snapshotted %v", snap)
	}
	sinkNotify(t, op, 1)
	// It cannot commit what a checkpoint holds.
	inst := NewSink[string](s).New()
	err := inst.Op.Open(&runtime.OperatorContext{Name: "out", Parallelism: 1, Checkpointing: true, Restored: sinkRestoredFrom(3, []string{"x"})})
	if err == nil || !strings.Contains(err.Error(), "cannot commit it") {
		t.Fatalf("Open with pending output and a writer that cannot commit: %v", err)
	}
}

func TestSinkCorruptState(t *testing.T) {
	good := encodePendingCommits([]pendingCommit{{checkpoint: 3, desc: []byte("abc")}})
	for _, bad := range [][]byte{{}, {2, 0}, good[:len(good)-1], append(slices.Clone(good), 9), {1, 200}} {
		inst := NewSink[string](&recordingSink{twoPhase: true}).New()
		r := &runtime.RestoredState{Checkpoint: 3, Snapshots: []*runtime.OperatorSnapshot{{Operator: bad}}}
		err := inst.Op.Open(&runtime.OperatorContext{Name: "out", Parallelism: 1, Checkpointing: true, Restored: r})
		if err == nil || !strings.Contains(err.Error(), "sink state of subtask 0 of 1") || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("state %x: %v, want a corrupt-state error", bad, err)
		}
	}
}
