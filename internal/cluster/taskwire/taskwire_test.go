package taskwire

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

const testMaxP = 128

func keyedState() *state.Snapshot {
	return &state.Snapshot{KeyGroups: []state.KeyGroupState{
		{KeyGroup: 3, Entries: []state.Entry{
			{State: "count", Kind: state.KindValue, Key: []byte("a"), Value: []byte{1}},
			{State: "count", Kind: state.KindValue, Key: []byte("b"), Value: []byte{2}},
			{State: "seen", Kind: state.KindMap, Key: []byte("a"), Namespace: []byte("w1"), UserKey: []byte("k"), Value: []byte("v")},
		}},
		{KeyGroup: 100, Entries: []state.Entry{
			{State: "list", Kind: state.KindList, Key: []byte("z"), Value: []byte("xyz")},
		}},
	}}
}

func timers() *state.TimerSnapshot {
	return &state.TimerSnapshot{KeyGroups: []state.TimerKeyGroup{
		{KeyGroup: 3, EventTime: []state.Timer{{Timestamp: 10, Key: []byte("a")}, {Timestamp: 20, Key: []byte("b"), Namespace: []byte("w1")}}},
		{KeyGroup: 7, ProcessingTime: []state.Timer{{Timestamp: -5, Key: []byte("q")}}},
	}}
}

// normal makes nil and empty equal, as the wire does not tell them apart
// for keyed state (a restore from a state file does not either).
func normal(s *runtime.OperatorSnapshot) *runtime.OperatorSnapshot {
	if s == nil {
		return nil
	}
	c := &runtime.OperatorSnapshot{Operator: s.Operator}
	if s.Keyed != nil && len(s.Keyed.KeyGroups) > 0 {
		c.Keyed = s.Keyed
	}
	if s.Timers != nil && len(s.Timers.KeyGroups) > 0 {
		c.Timers = s.Timers
	}
	if c.Keyed == nil && c.Timers == nil && c.Operator == nil {
		return nil
	}
	return c
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *runtime.OperatorSnapshot
	}{
		{"nil", nil},
		{"empty", &runtime.OperatorSnapshot{}},
		{"keyed", &runtime.OperatorSnapshot{Keyed: keyedState()}},
		{"timers only", &runtime.OperatorSnapshot{Timers: timers()}},
		{"keyed and timers", &runtime.OperatorSnapshot{Keyed: keyedState(), Timers: timers()}},
		{"empty keyed", &runtime.OperatorSnapshot{Keyed: &state.Snapshot{}}},
		{"operator", &runtime.OperatorSnapshot{Operator: []byte("position 42")}},
		{"empty operator", &runtime.OperatorSnapshot{Operator: []byte{}}},
		{"everything", &runtime.OperatorSnapshot{Keyed: keyedState(), Timers: timers(), Operator: []byte{0, 1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := EncodeSnapshot(tc.in, testMaxP)
			if err != nil {
				t.Fatal(err)
			}
			// Through the wire, as the worker sends it.
			b, err := proto.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var q clusterpb.SubtaskSnapshot
			if err := proto.Unmarshal(b, &q); err != nil {
				t.Fatal(err)
			}
			got, err := DecodeSnapshot(&q, "op")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normal(got), normal(tc.in)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", normal(got), normal(tc.in))
			}
			// Operator state: nil and empty are different things (an empty
			// position is still a position).
			if tc.in != nil && tc.in.Operator != nil && (got == nil || got.Operator == nil) {
				t.Fatal("empty operator state decoded as none")
			}
		})
	}
}

func TestEncodeMaterializes(t *testing.T) {
	s := &runtime.OperatorSnapshot{}
	calls := 0
	s.Materialize = func() error { calls++; s.Keyed, s.Timers = keyedState(), timers(); return nil }
	p, err := EncodeSnapshot(s, testMaxP)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(p, "op")
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !reflect.DeepEqual(got.Keyed, keyedState()) || !reflect.DeepEqual(got.Timers, timers()) {
		t.Fatalf("materialized %d times, got %+v", calls, got)
	}
	boom := errors.New("boom")
	if _, err := EncodeSnapshot(&runtime.OperatorSnapshot{Materialize: func() error { return boom }}, testMaxP); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the Materialize error", err)
	}
	if _, err := EncodeSnapshot(&runtime.OperatorSnapshot{Native: struct{}{}}, testMaxP); err == nil || !strings.Contains(err.Error(), "native") {
		t.Fatalf("native state: got %v, want an error", err)
	}
}

func graph() *jobgraphpb.JobGraph {
	return &jobgraphpb.JobGraph{Vertices: []*jobgraphpb.JobVertex{
		{Id: 1, Parallelism: 2, Operators: []*jobgraphpb.ChainedOperator{{Uid: "src"}, {Uid: "map"}}},
		{Id: 2, Parallelism: 3, MaxParallelism: testMaxP, Operators: []*jobgraphpb.ChainedOperator{{Uid: "sum"}}},
	}}
}

func TestMaxParallelism(t *testing.T) {
	maxP := MaxParallelism(graph())
	for uid, want := range map[string]int{"src": keygroup.DefaultMaxParallelism(2), "map": keygroup.DefaultMaxParallelism(2), "sum": testMaxP, "nope": 0} {
		if got := maxP(uid); got != want {
			t.Errorf("%s: %d, want %d", uid, got, want)
		}
	}
}

func TestAckRoundTrip(t *testing.T) {
	maxP := MaxParallelism(graph())
	in := runtime.TaskAck{Checkpoint: 7, Task: runtime.TaskID{Vertex: 2, Subtask: 1}, Finished: true,
		Operators: map[string]*runtime.OperatorSnapshot{
			"sum": {Keyed: keyedState(), Timers: timers()},
			"src": {Operator: []byte("pos")},
			"map": {},
		}}
	p, err := EncodeAck(in, 3, maxP)
	if err != nil {
		t.Fatal(err)
	}
	if p.Attempt != 3 || p.Checkpoint != 7 || p.Task.Vertex != 2 || p.Task.Subtask != 1 || !p.Finished {
		t.Fatalf("header: %v", p)
	}
	got, err := DecodeAck(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Checkpoint != 7 || got.Task != in.Task || !got.Finished || len(got.Operators) != 3 {
		t.Fatalf("decoded %+v", got)
	}
	for uid, s := range in.Operators {
		if got.Operators[uid] == nil {
			t.Fatalf("operator %s: nil snapshot in the decoded ack", uid)
		}
		if !reflect.DeepEqual(normal(got.Operators[uid]), normal(s)) {
			t.Fatalf("operator %s: got %+v, want %+v", uid, got.Operators[uid], s)
		}
	}
	// Keyed state of an operator the graph does not have.
	in.Operators = map[string]*runtime.OperatorSnapshot{"ghost": {Keyed: keyedState()}}
	if _, err := EncodeAck(in, 3, maxP); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("unknown uid: got %v", err)
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	maxP := MaxParallelism(graph())
	in := map[string]*runtime.RestoredState{
		"sum": {Checkpoint: 4, Snapshots: []*runtime.OperatorSnapshot{{Keyed: keyedState()}, nil, {Timers: timers()}}},
		"src": {Checkpoint: 4, Snapshots: []*runtime.OperatorSnapshot{{Operator: []byte("a")}, {Operator: []byte("b")}}},
		"map": {Checkpoint: 4, Snapshots: []*runtime.OperatorSnapshot{nil, nil}},
	}
	ops, err := EncodeRestore(in, maxP)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 || ops[0].Uid != "map" || ops[1].Uid != "src" || ops[2].Uid != "sum" {
		t.Fatalf("operators not sorted by uid: %v", ops)
	}
	got, err := DecodeRestore(ops)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d operators, want %d", len(got), len(in))
	}
	for uid, rs := range in {
		g := got[uid]
		if g == nil || g.Checkpoint != rs.Checkpoint || len(g.Snapshots) != len(rs.Snapshots) {
			t.Fatalf("%s: got %+v", uid, g)
		}
		for i := range rs.Snapshots {
			if !reflect.DeepEqual(normal(g.Snapshots[i]), normal(rs.Snapshots[i])) {
				t.Fatalf("%s subtask %d: got %+v, want %+v", uid, i, g.Snapshots[i], rs.Snapshots[i])
			}
		}
	}
	if got, err := DecodeRestore(nil); got != nil || err != nil {
		t.Fatalf("no restore: %v %v", got, err)
	}
	if _, err := DecodeRestore([]*clusterpb.OperatorRestore{{Uid: "x"}, {Uid: "x"}}); err == nil {
		t.Fatal("duplicate uid accepted")
	}
}

// TestCorruptInput damages encoded state at random and checks that
// decoding fails with an error naming the operator, or (for damage the
// format cannot see, e.g. in operator bytes) succeeds, but never panics.
func TestCorruptInput(t *testing.T) {
	p, err := EncodeSnapshot(&runtime.OperatorSnapshot{Keyed: keyedState(), Timers: timers(), Operator: []byte("pos")}, testMaxP)
	if err != nil {
		t.Fatal(err)
	}
	good := p.Keyed
	rng := rand.New(rand.NewPCG(1, 2))
	mutations := []func([]byte) []byte{
		func(b []byte) []byte { b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255)); return b },
		func(b []byte) []byte { return b[:rng.IntN(len(b))] },
		func(b []byte) []byte { return append(b, byte(rng.IntN(256))) },
		func(b []byte) []byte {
			for range 1 + rng.IntN(8) {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
			return b
		},
		func(b []byte) []byte { i := rng.IntN(len(b)); return append(b[:i:i], b[i+1:]...) },
	}
	failures := 0
	for i := range 5000 {
		b := mutations[i%len(mutations)](append([]byte(nil), good...))
		q := &clusterpb.SubtaskSnapshot{Keyed: b, Operator: []byte("pos"), HasOperator: true}
		s, err := DecodeSnapshot(q, `operator "sum" subtask 0`)
		if err != nil {
			failures++
			if !strings.Contains(err.Error(), `operator "sum" subtask 0`) {
				t.Fatalf("error does not name the operator: %v", err)
			}
			continue
		}
		if s == nil {
			t.Fatal("corrupt state decoded as none")
		}
	}
	if failures < 4000 {
		t.Fatalf("only %d of 5000 damaged inputs were refused", failures)
	}
	// Random bytes, and random bytes behind a valid magic number.
	for range 2000 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if rng.IntN(2) == 0 && len(b) > 8 {
			copy(b, good[:8])
		}
		if _, err := DecodeSnapshot(&clusterpb.SubtaskSnapshot{Keyed: b}, "op"); err == nil && len(b) > 0 {
			t.Fatalf("random bytes %x decoded", b)
		}
	}
	// An ack whose state is damaged names the operator and checkpoint.
	ack := &clusterpb.TaskAck{Checkpoint: 9, Task: &clusterpb.TaskRef{Vertex: 1, Subtask: 2},
		Operators: map[string]*clusterpb.SubtaskSnapshot{"sum": {Keyed: good[:len(good)-3]}}}
	if _, err := DecodeAck(ack); err == nil || !strings.Contains(err.Error(), `operator "sum" subtask 2 in checkpoint 9`) ||
		!errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("damaged ack: got %v", err)
	}
}
