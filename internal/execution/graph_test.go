package execution

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func newTestGraph(t *testing.T) *Graph {
	t.Helper()
	g, err := NewGraph([]Vertex{{ID: 1, Name: "Source", Parallelism: 2}, {ID: 5, Name: "Map -> Sink", Parallelism: 3}}, sec(0))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestNewGraphValidates(t *testing.T) {
	_, err := NewGraph([]Vertex{{ID: 1, Name: "a", Parallelism: 1}, {ID: 1, Name: "b", Parallelism: 1}}, t0)
	if err == nil || !strings.Contains(err.Error(), "vertex ID 1 is used twice") {
		t.Errorf("duplicate IDs: err = %v", err)
	}
	_, err = NewGraph([]Vertex{{ID: 2, Name: "a", Parallelism: 0}}, t0)
	if err == nil || !strings.Contains(err.Error(), "parallelism 0") {
		t.Errorf("parallelism 0: err = %v", err)
	}
	g, err := NewGraph(nil, t0)
	if err != nil || !g.AllIn(Running) {
		t.Errorf("empty graph: %v", err)
	}
}

func TestGraphLifecycle(t *testing.T) {
	g := newTestGraph(t)
	if !g.AllIn(Created) || g.Attempt() != 0 {
		t.Fatal("new graph is not all CREATED at attempt 0")
	}
	steps := []State{Scheduled, Deploying, Initializing, Running}
	for i, s := range steps {
		for _, v := range g.Vertices() {
			for st := range v.Parallelism {
				if err := g.Set(v.ID, st, s, sec(i+1)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !g.AllIn(Running) || g.VertexState(1) != Running {
		t.Fatal("not all RUNNING")
	}
	ts := g.Timestamps(5, 2)
	want := map[State]time.Time{Created: sec(0), Scheduled: sec(1), Deploying: sec(2), Initializing: sec(3), Running: sec(4)}
	if len(ts) != len(want) {
		t.Fatalf("Timestamps = %v, want %v", ts, want)
	}
	for s, w := range want {
		if !ts[s].Equal(w) {
			t.Errorf("Timestamps[%v] = %v, want %v", s, ts[s], w)
		}
	}

	// Illegal moves are refused and change nothing.
	err := g.Set(5, 0, Scheduled, sec(9))
	var te *TransitionError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `vertex 5 ("Map -> Sink") subtask 0: illegal execution state transition RUNNING -> SCHEDULED`) {
		t.Errorf("Set RUNNING -> SCHEDULED: err = %v", err)
	}
	if g.State(5, 0) != Running {
		t.Errorf("refused Set changed the state to %v", g.State(5, 0))
	}
	if err := g.Set(9, 0, Running, sec(9)); err == nil || !strings.Contains(err.Error(), "unknown vertex 9; the job has vertices 1, 5") {
		t.Errorf("unknown vertex: err = %v", err)
	}
	if err := g.Set(5, 3, Running, sec(9)); err == nil || !strings.Contains(err.Error(), "has no subtask 3; its parallelism is 3") {
		t.Errorf("unknown subtask: err = %v", err)
	}
	if err := g.Set(5, -1, Running, sec(9)); err == nil {
		t.Error("negative subtask accepted")
	}
	if g.Timestamps(9, 0) != nil || g.Timestamps(5, 7) != nil || g.Counts(9) != nil {
		t.Error("unknown vertex/subtask should give nil")
	}

	// Cancel: one subtask finished meanwhile; everything else goes CANCELING.
	if err := g.Set(1, 0, Finished, sec(10)); err != nil {
		t.Fatal(err)
	}
	if errs := g.SetAll(Canceling, sec(11)); len(errs) != 0 {
		t.Fatalf("SetAll(CANCELING) refused: %v", errs)
	}
	if g.State(1, 0) != Finished || g.State(1, 1) != Canceling {
		t.Errorf("after SetAll(CANCELING): %v %v", g.State(1, 0), g.State(1, 1))
	}
	// Again: already CANCELING executions are skipped, not refused.
	if errs := g.SetAll(Canceling, sec(12)); len(errs) != 0 {
		t.Errorf("second SetAll(CANCELING) refused: %v", errs)
	}
	if ts := g.Timestamps(1, 1); !ts[Canceling].Equal(sec(11)) {
		t.Errorf("repeated SetAll moved the CANCELING timestamp to %v", ts[Canceling])
	}
	if errs := g.SetAll(Canceled, sec(13)); len(errs) != 0 {
		t.Fatalf("SetAll(CANCELED) refused: %v", errs)
	}
	c := g.Counts(1)
	if c[Finished] != 1 || c[Canceled] != 1 || len(c) != len(States()) {
		t.Errorf("Counts(1) = %v", c)
	}
	if g.VertexState(5) != Canceled || g.VertexState(1) != Canceled {
		t.Errorf("VertexState = %v, %v", g.VertexState(1), g.VertexState(5))
	}

	g.Reset(sec(20))
	if !g.AllIn(Created) || g.Attempt() != 1 {
		t.Fatalf("after Reset: attempt %d", g.Attempt())
	}
	if ts := g.Timestamps(1, 0); len(ts) != 1 || !ts[Created].Equal(sec(20)) {
		t.Errorf("Timestamps after Reset = %v", ts)
	}
}

func TestSetAllRefusals(t *testing.T) {
	g := newTestGraph(t)
	// Vertex 1 running, vertex 5 subtask 0 scheduled, others created.
	for st := range 2 {
		for _, s := range []State{Scheduled, Deploying, Initializing, Running} {
			if err := g.Set(1, st, s, sec(1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Set(5, 0, Scheduled, sec(1)); err != nil {
		t.Fatal(err)
	}
	if err := g.Set(5, 1, Failed, sec(1)); err != nil {
		t.Fatal(err)
	}
	// CANCELED directly is only legal from CREATED and SCHEDULED.
	errs := g.SetAll(Canceled, sec(2))
	if len(errs) != 2 {
		t.Fatalf("SetAll(CANCELED) refusals = %v, want 2 (the RUNNING subtasks)", errs)
	}
	for i, err := range errs {
		var te *TransitionError
		if !errors.As(err, &te) || te.From != Running || !strings.Contains(err.Error(), "vertex 1") ||
			!strings.Contains(err.Error(), []string{"subtask 0", "subtask 1"}[i]) {
			t.Errorf("refusal %d = %v", i, err)
		}
	}
	if g.State(1, 0) != Running || g.State(5, 0) != Canceled || g.State(5, 1) != Failed || g.State(5, 2) != Canceled {
		t.Errorf("states after SetAll: %v %v %v %v", g.State(1, 0), g.State(5, 0), g.State(5, 1), g.State(5, 2))
	}
}

func TestStatePanicsOnUnknown(t *testing.T) {
	g := newTestGraph(t)
	for name, f := range map[string]func(){
		"State vertex":  func() { g.State(2, 0) },
		"State subtask": func() { g.State(1, 2) },
		"VertexState":   func() { g.VertexState(2) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestVertexStateAggregation checks Flink's aggregation precedence on
// hand-computed cases.
func TestVertexStateAggregation(t *testing.T) {
	tests := []struct {
		states []State
		want   State
	}{
		{[]State{Created, Created, Created}, Created},
		{[]State{Scheduled, Deploying, Created}, Created},
		{[]State{Deploying, Deploying, Deploying}, Created},
		{[]State{Running, Created, Deploying}, Running},
		{[]State{Running, Initializing, Running}, Initializing},
		{[]State{Finished, Finished, Finished}, Finished},
		{[]State{Finished, Finished, Running}, Running},
		{[]State{Finished, Created, Created}, Running},
		{[]State{Canceled, Canceled, Canceled}, Canceled},
		{[]State{Canceled, Running, Finished}, Canceled},
		{[]State{Canceled, Canceling, Running}, Canceling},
		{[]State{Failed, Canceling, Finished}, Failed},
		{[]State{Running, Running, Failed}, Failed},
	}
	// paths reach each state legally from CREATED.
	paths := map[State][]State{
		Created:      nil,
		Scheduled:    {Scheduled},
		Deploying:    {Scheduled, Deploying},
		Initializing: {Scheduled, Deploying, Initializing},
		Running:      {Scheduled, Deploying, Initializing, Running},
		Finished:     {Scheduled, Deploying, Initializing, Running, Finished},
		Canceling:    {Scheduled, Deploying, Canceling},
		Canceled:     {Canceled},
		Failed:       {Failed},
	}
	for _, tt := range tests {
		g, err := NewGraph([]Vertex{{ID: 3, Name: "v", Parallelism: len(tt.states)}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		for st, s := range tt.states {
			for _, step := range paths[s] {
				if err := g.Set(3, st, step, t0); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := g.VertexState(3); got != tt.want {
			t.Errorf("VertexState(%v) = %v, want %v", tt.states, got, tt.want)
		}
	}
}

// TestRandomWalk applies random moves and checks the graph only ever takes
// legal edges and refuses the rest without changing anything.
func TestRandomWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	g := newTestGraph(t)
	model := map[[2]int]State{}
	for _, v := range g.Vertices() {
		for st := range v.Parallelism {
			model[[2]int{int(v.ID), st}] = Created
		}
	}
	vs := g.Vertices()
	for step := range 20000 {
		v := vs[r.IntN(len(vs))]
		st := r.IntN(v.Parallelism)
		to := State(r.IntN(int(numStates)))
		key := [2]int{int(v.ID), st}
		from := model[key]
		err := g.Set(v.ID, st, to, sec(step))
		if (err == nil) != legal[[2]State{from, to}] {
			t.Fatalf("step %d: Set %v -> %v: err = %v", step, from, to, err)
		}
		if err == nil {
			model[key] = to
		}
		if g.State(v.ID, st) != model[key] {
			t.Fatalf("step %d: state %v, model %v", step, g.State(v.ID, st), model[key])
		}
		if r.IntN(200) == 0 {
			g.Reset(sec(step))
			for k := range model {
				model[k] = Created
			}
		}
	}
}
