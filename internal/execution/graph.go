package execution

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Vertex is one job vertex (a chain of operators) and how many parallel
// subtasks it runs.
type Vertex struct {
	ID          int32
	Name        string
	Parallelism int
}

// Graph tracks the executions of a job's current attempt: for every vertex
// and subtask, its State and when it entered each state. Every change goes
// through Transition, so a Graph never holds a state it could not legally
// have reached.
type Graph struct {
	vertices []Vertex
	index    map[int32]int // vertex ID -> position in vertices
	execs    [][]execution // [vertex position][subtask]
	attempt  int
}

type execution struct {
	state State
	// entered[s] is when the execution entered s in this attempt, if
	// reached[s].
	entered [numStates]time.Time
	reached [numStates]bool
}

func (e *execution) enter(s State, now time.Time) {
	e.state = s
	e.entered[s] = now
	e.reached[s] = true
}

// NewGraph returns a Graph of the given vertices, every execution CREATED at
// now, at attempt 0. Vertex IDs must be unique and every parallelism at
// least 1.
func NewGraph(vertices []Vertex, now time.Time) (*Graph, error) {
	g := &Graph{
		vertices: slices.Clone(vertices),
		index:    make(map[int32]int, len(vertices)),
		execs:    make([][]execution, len(vertices)),
	}
	for i, v := range vertices {
		if _, dup := g.index[v.ID]; dup {
			return nil, fmt.Errorf("execution graph: vertex ID %d is used twice (%q and %q); give every vertex its own ID", v.ID, vertices[g.index[v.ID]].Name, v.Name)
		}
		if v.Parallelism < 1 {
			return nil, fmt.Errorf("execution graph: vertex %d (%q) has parallelism %d; it must be at least 1", v.ID, v.Name, v.Parallelism)
		}
		g.index[v.ID] = i
		g.execs[i] = make([]execution, v.Parallelism)
	}
	g.resetExecutions(now)
	return g, nil
}

func (g *Graph) resetExecutions(now time.Time) {
	for _, subtasks := range g.execs {
		for i := range subtasks {
			subtasks[i] = execution{}
			subtasks[i].enter(Created, now)
		}
	}
}

// lookup returns the execution of subtask of vertex v, or an error naming
// what is unknown.
func (g *Graph) lookup(v int32, subtask int) (*execution, error) {
	i, ok := g.index[v]
	if !ok {
		ids := make([]string, len(g.vertices))
		for j, vx := range g.vertices {
			ids[j] = fmt.Sprint(vx.ID)
		}
		return nil, fmt.Errorf("unknown vertex %d; the job has vertices %s", v, strings.Join(ids, ", "))
	}
	if subtask < 0 || subtask >= len(g.execs[i]) {
		return nil, fmt.Errorf("vertex %d (%q) has no subtask %d; its parallelism is %d (subtasks 0..%d)",
			v, g.vertices[i].Name, subtask, len(g.execs[i]), len(g.execs[i])-1)
	}
	return &g.execs[i][subtask], nil
}

// Set moves subtask of vertex v to state `to` at now. It returns an error,
// and changes nothing, if the vertex or subtask is unknown or Transition
// refuses the move; the error wraps the *TransitionError.
func (g *Graph) Set(v int32, subtask int, to State, now time.Time) error {
	e, err := g.lookup(v, subtask)
	if err != nil {
		return err
	}
	if err := Transition(e.state, to); err != nil {
		return fmt.Errorf("vertex %d (%q) subtask %d: %w", v, g.vertices[g.index[v]].Name, subtask, err)
	}
	e.enter(to, now)
	return nil
}

// SetAll moves every execution to `to` at now where Transition allows it,
// as cancelling or failing a whole job does. Executions that are terminal or
// already in `to` are skipped silently; for every other execution that may
// not move to `to` (e.g. RUNNING -> CANCELED, which must pass CANCELING), it
// returns an error naming the execution, in vertex then subtask order, and
// leaves that execution as it was.
func (g *Graph) SetAll(to State, now time.Time) []error {
	var refusals []error
	for i, subtasks := range g.execs {
		for j := range subtasks {
			e := &subtasks[j]
			if e.state.Terminal() || e.state == to {
				continue
			}
			if err := Transition(e.state, to); err != nil {
				refusals = append(refusals, fmt.Errorf("vertex %d (%q) subtask %d: %w", g.vertices[i].ID, g.vertices[i].Name, j, err))
				continue
			}
			e.enter(to, now)
		}
	}
	return refusals
}

// Reset starts a new attempt of every execution: all CREATED at now, with
// the timestamps of the previous attempt dropped, and Attempt one higher.
func (g *Graph) Reset(now time.Time) {
	g.attempt++
	g.resetExecutions(now)
}

// Attempt returns the number of the current attempt: 0 for a new Graph, one
// more after each Reset.
func (g *Graph) Attempt() int { return g.attempt }

// State returns the state of subtask of vertex v. Like indexing a slice
// out of range, asking for an unknown vertex or subtask is a bug and panics;
// use Vertices to see what exists.
func (g *Graph) State(v int32, subtask int) State {
	e, err := g.lookup(v, subtask)
	if err != nil {
		panic("execution.Graph.State: " + err.Error())
	}
	return e.state
}

// VertexState returns the aggregate state of vertex v, by the rules of
// Flink's ExecutionJobVertex.getAggregateJobVertexState, first match wins:
// any FAILED -> FAILED; any CANCELING -> CANCELING; any CANCELED ->
// CANCELED; any INITIALIZING -> INITIALIZING; any RUNNING -> RUNNING; all
// FINISHED -> FINISHED, some FINISHED -> RUNNING; otherwise (only CREATED,
// SCHEDULED and DEPLOYING) -> CREATED. An unknown vertex panics, as in State.
func (g *Graph) VertexState(v int32) State {
	c := g.counts(v)
	if c == nil {
		panic(fmt.Sprintf("execution.Graph.VertexState: unknown vertex %d", v))
	}
	switch {
	case c[Failed] > 0:
		return Failed
	case c[Canceling] > 0:
		return Canceling
	case c[Canceled] > 0:
		return Canceled
	case c[Initializing] > 0:
		return Initializing
	case c[Running] > 0:
		return Running
	case c[Finished] > 0:
		if c[Finished] == g.vertices[g.index[v]].Parallelism {
			return Finished
		}
		return Running
	default:
		return Created
	}
}

func (g *Graph) counts(v int32) []int {
	i, ok := g.index[v]
	if !ok {
		return nil
	}
	c := make([]int, numStates)
	for _, e := range g.execs[i] {
		c[e.state]++
	}
	return c
}

// Counts returns how many of vertex v's executions are in each state, with
// an entry (possibly 0) for every state; nil for an unknown vertex.
func (g *Graph) Counts(v int32) map[State]int {
	c := g.counts(v)
	if c == nil {
		return nil
	}
	m := make(map[State]int, numStates)
	for s, n := range c {
		m[State(s)] = n
	}
	return m
}

// AllIn reports whether every execution of the graph is in state s (true for
// a graph without vertices).
func (g *Graph) AllIn(s State) bool {
	for _, subtasks := range g.execs {
		for _, e := range subtasks {
			if e.state != s {
				return false
			}
		}
	}
	return true
}

// Timestamps returns when subtask of vertex v entered each state it has
// reached in the current attempt; nil for an unknown vertex or subtask. The
// map is a copy.
func (g *Graph) Timestamps(v int32, subtask int) map[State]time.Time {
	e, err := g.lookup(v, subtask)
	if err != nil {
		return nil
	}
	m := make(map[State]time.Time)
	for s, t := range e.entered {
		if e.reached[s] {
			m[State(s)] = t
		}
	}
	return m
}

// Vertices returns a copy of the graph's vertices, in the order NewGraph got
// them.
func (g *Graph) Vertices() []Vertex {
	return slices.Clone(g.vertices)
}
