package jobgraph_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/keygroup"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
)

// builder assembles a logical graph node by node, in topological order, the
// way the DataStream API does. Operators emit ints; translation never calls
// a factory's New, so the factories carry only their type and source flag.
type builder struct{ g graph.Graph }

type mod func(*graph.Node)

func par(p int) mod                  { return func(n *graph.Node) { n.Parallelism = p } }
func maxPar(p int) mod               { return func(n *graph.Node) { n.MaxParallelism = p } }
func chaining(c graph.Chaining) mod  { return func(n *graph.Node) { n.Chaining = c } }
func slotGroup(name string) mod      { return func(n *graph.Node) { n.SlotSharingGroup = name } }
func named(name string) mod          { return func(n *graph.Node) { n.Name = name } }
func keyed(inputs ...bool) mod       { return func(n *graph.Node) { n.KeyedInputs = inputs } }
func in(node int) graph.Input        { return graph.Input{Node: node} }
func fwd(node int) graph.Input       { return graph.Input{Node: node, Partitioning: graph.Forward} }
func hash(node int) graph.Input      { return graph.Input{Node: node, Partitioning: graph.Hash} }
func rebalance(node int) graph.Input { return graph.Input{Node: node, Partitioning: graph.Rebalance} }

func (b *builder) add(n *graph.Node, mods []mod) int {
	for _, m := range mods {
		m(n)
	}
	return b.g.Add(n).ID
}

func (b *builder) source(uid string, mods ...mod) int {
	f := &runtime.Factory{OutType: runtime.TypeOf[int](), Source: true}
	return b.add(&graph.Node{UID: uid, Name: uid, Kind: "source", Factory: f}, mods)
}

func (b *builder) op(uid string, inputs []graph.Input, mods ...mod) int {
	f := &runtime.Factory{OutType: runtime.TypeOf[int]()}
	for range inputs {
		f.InTypes = append(f.InTypes, runtime.TypeOf[int]())
	}
	return b.add(&graph.Node{UID: uid, Name: uid, Kind: "map", Factory: f, Inputs: inputs}, mods)
}

func (b *builder) sink(uid string, input graph.Input, mods ...mod) int {
	f := &runtime.Factory{InTypes: []runtime.TypeInfo{runtime.TypeOf[int]()}}
	return b.add(&graph.Node{UID: uid, Name: uid, Kind: "sink", Factory: f, Inputs: []graph.Input{input}}, mods)
}

func (b *builder) union(inputs ...graph.Input) int {
	return b.g.Add(&graph.Node{Name: "union", Kind: "union", Virtual: true, Inputs: inputs}).ID
}

func ins(inputs ...graph.Input) []graph.Input { return inputs }

type wantVertex struct {
	uids   []string
	par    int32
	maxPar int32
}

type wantEdge struct {
	from, to int32
	part     pb.Partitioning
	input    int32
}

func (e wantEdge) String() string {
	return fmt.Sprintf("%d->%d %s in %d", e.from, e.to, strings.ToLower(e.part.String()), e.input)
}

var (
	forward    = pb.Partitioning_FORWARD
	hashed     = pb.Partitioning_HASH
	rebalanced = pb.Partitioning_REBALANCE
)

func TestTranslateChaining(t *testing.T) {
	mp := int32(keygroup.DefaultMaxParallelism(4))
	tests := []struct {
		name     string
		build    func(b *builder)
		settings jobgraph.Settings
		vertices []wantVertex
		edges    []wantEdge
	}{
		{
			name: "forward chain",
			build: func(b *builder) {
				s := b.source("src")
				m := b.op("map", ins(in(s)))
				b.sink("sink", in(m))
			},
			vertices: []wantVertex{{[]string{"src", "map", "sink"}, 4, mp}},
		},
		{
			name: "explicit forward chains like default",
			build: func(b *builder) {
				s := b.source("src", par(2))
				b.sink("sink", fwd(s), par(2))
			},
			vertices: []wantVertex{{[]string{"src", "sink"}, 2, 128}},
		},
		{
			name: "different parallelism rebalances and does not chain",
			build: func(b *builder) {
				s := b.source("src", par(2))
				m := b.op("map", ins(in(s)), par(3))
				b.sink("sink", in(m), par(3))
			},
			vertices: []wantVertex{{[]string{"src"}, 2, 128}, {[]string{"map", "sink"}, 3, 128}},
			edges:    []wantEdge{{0, 1, rebalanced, 0}},
		},
		{
			name: "explicit rebalance with equal parallelism does not chain",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", rebalance(s))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, rebalanced, 0}},
		},
		{
			name: "hash edge breaks the chain",
			build: func(b *builder) {
				s := b.source("src")
				m := b.op("map", ins(in(s)))
				r := b.op("reduce", ins(hash(m)), keyed(true))
				b.sink("sink", in(r))
			},
			vertices: []wantVertex{{[]string{"src", "map"}, 4, mp}, {[]string{"reduce", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, hashed, 0}},
		},
		{
			name: "chain head downstream starts a chain its successors join",
			build: func(b *builder) {
				s := b.source("src")
				a := b.op("a", ins(in(s)))
				h := b.op("head", ins(in(a)), chaining(graph.ChainHead))
				b.sink("sink", in(h))
			},
			vertices: []wantVertex{{[]string{"src", "a"}, 4, mp}, {[]string{"head", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}},
		},
		{
			name: "chain head upstream lets successors join",
			build: func(b *builder) {
				s := b.source("src", chaining(graph.ChainHead))
				a := b.op("a", ins(in(s)))
				b.sink("sink", in(a))
			},
			vertices: []wantVertex{{[]string{"src", "a", "sink"}, 4, mp}},
		},
		{
			name: "chain never downstream stands alone",
			build: func(b *builder) {
				s := b.source("src")
				a := b.op("never", ins(in(s)), chaining(graph.ChainNever))
				b.sink("sink", in(a))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"never"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}, {1, 2, forward, 0}},
		},
		{
			name: "chain never upstream stands alone",
			build: func(b *builder) {
				s := b.source("src", chaining(graph.ChainNever))
				a := b.op("a", ins(in(s)))
				b.sink("sink", in(a))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"a", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}},
		},
		{
			name: "different slot sharing group breaks the chain",
			build: func(b *builder) {
				s := b.source("src")
				a := b.op("a", ins(in(s)), slotGroup("heavy"))
				b.sink("sink", in(a), slotGroup("heavy"))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"a", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}},
		},
		{
			name: "explicit default slot sharing group chains with the unnamed one",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s), slotGroup(graph.DefaultSlotSharingGroup))
			},
			vertices: []wantVertex{{[]string{"src", "sink"}, 4, mp}},
		},
		{
			name: "different max parallelism breaks the chain",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s), maxPar(256))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"sink"}, 4, 256}},
			edges:    []wantEdge{{0, 1, forward, 0}},
		},
		{
			name: "global disable chaining",
			build: func(b *builder) {
				s := b.source("src")
				a := b.op("a", ins(in(s)))
				b.sink("sink", in(a))
			},
			settings: jobgraph.Settings{DisableChaining: true},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"a"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}, {1, 2, forward, 0}},
		},
		{
			name: "fork chains both successors",
			build: func(b *builder) {
				s := b.source("src")
				l := b.op("left", ins(in(s)))
				r := b.op("right", ins(in(s)))
				b.sink("sink-l", in(l))
				b.sink("sink-r", in(r))
			},
			vertices: []wantVertex{{[]string{"src", "left", "right", "sink-l", "sink-r"}, 4, mp}},
		},
		{
			name: "fork with one branch at another parallelism",
			build: func(b *builder) {
				s := b.source("src")
				l := b.op("left", ins(in(s)))
				r := b.op("right", ins(in(s)), par(2))
				b.sink("sink-l", in(l))
				b.sink("sink-r", in(r), par(2))
			},
			vertices: []wantVertex{{[]string{"src", "left", "sink-l"}, 4, mp}, {[]string{"right", "sink-r"}, 2, 128}},
			edges:    []wantEdge{{0, 1, rebalanced, 0}},
		},
		{
			name: "two-input operator fed by one chain joins it (DAG chain)",
			build: func(b *builder) {
				s := b.source("src")
				l := b.op("left", ins(in(s)))
				r := b.op("right", ins(in(s)))
				j := b.op("join", ins(in(l), in(r)))
				b.sink("sink", in(j))
			},
			vertices: []wantVertex{{[]string{"src", "left", "right", "join", "sink"}, 4, mp}},
		},
		{
			name: "two-input operator fed by two chains stands alone",
			build: func(b *builder) {
				s1 := b.source("src1")
				s2 := b.source("src2")
				j := b.op("join", ins(in(s1), in(s2)))
				b.sink("sink", in(j))
			},
			vertices: []wantVertex{{[]string{"src1"}, 4, mp}, {[]string{"src2"}, 4, mp}, {[]string{"join", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 2, forward, 0}, {1, 2, forward, 1}},
		},
		{
			name: "two-input operator with one non-forward input stands alone",
			build: func(b *builder) {
				s := b.source("src")
				j := b.op("join", ins(in(s), rebalance(s)))
				b.sink("sink", in(j))
			},
			vertices: []wantVertex{{[]string{"src"}, 4, mp}, {[]string{"join", "sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}, {0, 1, rebalanced, 1}},
		},
		{
			name: "union feeding an operator is never chained",
			build: func(b *builder) {
				s1 := b.source("src1")
				s2 := b.source("src2")
				u := b.union(in(s1), in(s2))
				b.sink("sink", in(u))
			},
			vertices: []wantVertex{{[]string{"src1"}, 4, mp}, {[]string{"src2"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 2, forward, 0}, {1, 2, forward, 0}},
		},
		{
			name: "union of one chain with itself is not chained",
			build: func(b *builder) {
				s := b.source("src")
				m := b.op("map", ins(in(s)))
				u := b.union(in(s), in(m))
				b.sink("sink", in(u))
			},
			vertices: []wantVertex{{[]string{"src", "map"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 1, forward, 0}, {0, 1, forward, 0}},
		},
		{
			name: "union members of different parallelism",
			build: func(b *builder) {
				s1 := b.source("src1", par(2))
				s2 := b.source("src2", par(3))
				u := b.union(in(s1), in(s2))
				b.sink("sink", in(u), par(2))
			},
			vertices: []wantVertex{{[]string{"src1"}, 2, 128}, {[]string{"src2"}, 3, 128}, {[]string{"sink"}, 2, 128}},
			edges:    []wantEdge{{0, 2, forward, 0}, {1, 2, rebalanced, 0}},
		},
		{
			name: "union into the second input of a two-input operator",
			build: func(b *builder) {
				s1 := b.source("src1")
				s2 := b.source("src2")
				s3 := b.source("src3")
				u := b.union(in(s2), in(s3))
				b.op("join", ins(in(s1), in(u)))
			},
			vertices: []wantVertex{{[]string{"src1"}, 4, mp}, {[]string{"src2"}, 4, mp}, {[]string{"src3"}, 4, mp}, {[]string{"join"}, 4, mp}},
			edges:    []wantEdge{{0, 3, forward, 0}, {1, 3, forward, 1}, {2, 3, forward, 1}},
		},
		{
			name: "nested unions expand to every member",
			build: func(b *builder) {
				s1 := b.source("src1")
				s2 := b.source("src2")
				s3 := b.source("src3")
				u1 := b.union(in(s1), in(s2))
				u2 := b.union(in(u1), in(s3))
				b.sink("sink", rebalance(u2))
			},
			vertices: []wantVertex{{[]string{"src1"}, 4, mp}, {[]string{"src2"}, 4, mp}, {[]string{"src3"}, 4, mp}, {[]string{"sink"}, 4, mp}},
			edges:    []wantEdge{{0, 3, rebalanced, 0}, {1, 3, rebalanced, 0}, {2, 3, rebalanced, 0}},
		},
		{
			name: "hash from a union",
			build: func(b *builder) {
				s1 := b.source("src1")
				s2 := b.source("src2")
				u := b.union(in(s1), in(s2))
				b.op("reduce", ins(hash(u)), keyed(true))
			},
			vertices: []wantVertex{{[]string{"src1"}, 4, mp}, {[]string{"src2"}, 4, mp}, {[]string{"reduce"}, 4, mp}},
			edges:    []wantEdge{{0, 2, hashed, 0}, {1, 2, hashed, 0}},
		},
		{
			name: "max parallelism derived from each operator's parallelism",
			build: func(b *builder) {
				s := b.source("src", par(1))
				b.sink("sink", in(s), par(200))
			},
			vertices: []wantVertex{
				{[]string{"src"}, 1, int32(keygroup.DefaultMaxParallelism(1))},
				{[]string{"sink"}, 200, int32(keygroup.DefaultMaxParallelism(200))},
			},
			edges: []wantEdge{{0, 1, rebalanced, 0}},
		},
		{
			name: "job max parallelism applies to every operator",
			build: func(b *builder) {
				s := b.source("src", par(1))
				b.sink("sink", in(s), par(200))
			},
			settings: jobgraph.Settings{MaxParallelism: 1000},
			vertices: []wantVertex{{[]string{"src"}, 1, 1000}, {[]string{"sink"}, 200, 1000}},
			edges:    []wantEdge{{0, 1, rebalanced, 0}},
		},
		{
			name: "operator max parallelism wins over the job's",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s), maxPar(16))
			},
			settings: jobgraph.Settings{MaxParallelism: 64},
			vertices: []wantVertex{{[]string{"src"}, 4, 64}, {[]string{"sink"}, 4, 16}},
			edges:    []wantEdge{{0, 1, forward, 0}},
		},
		{
			name: "default parallelism below one means one",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s))
			},
			settings: jobgraph.Settings{DefaultParallelism: -3},
			vertices: []wantVertex{{[]string{"src", "sink"}, 1, 128}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &builder{}
			tc.build(b)
			s := tc.settings
			if s.DefaultParallelism == 0 {
				s.DefaultParallelism = 4
			}
			jg, err := jobgraph.Translate(&b.g, s)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			checkPlan(t, jg, tc.vertices, tc.edges)
		})
	}
}

// checkPlan compares the vertices and edges of jg with the expected ones and
// checks the invariants every plan must meet.
func checkPlan(t *testing.T, jg *pb.JobGraph, vertices []wantVertex, edges []wantEdge) {
	t.Helper()
	var gotV []wantVertex
	for i, v := range jg.Vertices {
		if v.Id != int32(i) {
			t.Errorf("vertex %d has id %d", i, v.Id)
		}
		w := wantVertex{par: v.Parallelism, maxPar: v.MaxParallelism}
		for _, op := range v.Operators {
			w.uids = append(w.uids, op.Uid)
		}
		gotV = append(gotV, w)
	}
	if !slices.EqualFunc(gotV, vertices, func(a, b wantVertex) bool {
		return slices.Equal(a.uids, b.uids) && a.par == b.par && a.maxPar == b.maxPar
	}) {
		t.Errorf("vertices:\n got  %v\n want %v\n%s", gotV, vertices, jobgraph.Describe(jg))
	}
	var gotE []wantEdge
	for i, e := range jg.Edges {
		if e.Id != int32(i) {
			t.Errorf("edge %d has id %d", i, e.Id)
		}
		gotE = append(gotE, wantEdge{e.SourceVertex, e.TargetVertex, e.Partitioning, e.TargetInput})
		if e.RecordType != "int" {
			t.Errorf("edge %d: record type %q, want int", i, e.RecordType)
		}
		if !hasOp(jg, e.SourceVertex, e.SourceOperator) || !hasOp(jg, e.TargetVertex, e.TargetOperator) {
			t.Errorf("edge %d names operators %q -> %q that are not in vertices %d -> %d", i, e.SourceOperator, e.TargetOperator, e.SourceVertex, e.TargetVertex)
		}
	}
	if !slices.Equal(gotE, edges) {
		t.Errorf("edges:\n got  %v\n want %v\n%s", gotE, edges, jobgraph.Describe(jg))
	}
	// Every input of a chained operator that does not arrive over an edge
	// comes from an operator before it in its chain.
	for _, v := range jg.Vertices {
		for j, op := range v.Operators {
			fromEdges := 0
			for _, e := range jg.Edges {
				if e.TargetOperator == op.Uid {
					fromEdges++
				}
			}
			if j > 0 && fromEdges > 0 {
				t.Errorf("vertex %d: chained operator %q also reads %d edges", v.Id, op.Uid, fromEdges)
			}
			for _, in := range op.Inputs {
				if in.ChainedOperator < 0 || int(in.ChainedOperator) >= j {
					t.Errorf("vertex %d: operator %q reads chained operator %d, which does not precede it", v.Id, op.Uid, in.ChainedOperator)
				}
			}
			if j > 0 && len(op.Inputs) != int(op.NumInputs) {
				t.Errorf("vertex %d: chained operator %q has %d of its %d inputs chained", v.Id, op.Uid, len(op.Inputs), op.NumInputs)
			}
		}
	}
}

func hasOp(jg *pb.JobGraph, vertex int32, uid string) bool {
	if vertex < 0 || int(vertex) >= len(jg.Vertices) {
		return false
	}
	return slices.ContainsFunc(jg.Vertices[vertex].Operators, func(op *pb.ChainedOperator) bool { return op.Uid == uid })
}

// TestTranslateChainedInputs checks which chained operator feeds which input
// inside one vertex, for a straight chain and a DAG chain.
func TestTranslateChainedInputs(t *testing.T) {
	b := &builder{}
	s := b.source("src")
	l := b.op("left", ins(in(s)))
	r := b.op("right", ins(in(s)))
	j := b.op("join", ins(in(r), in(l)))
	b.sink("sink", in(j))
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{DefaultParallelism: 2, JobName: "dag"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jg.Vertices) != 1 {
		t.Fatalf("want one vertex, got\n%s", jobgraph.Describe(jg))
	}
	v := jg.Vertices[0]
	type link struct{ input, from int32 }
	want := map[string][]link{
		"src":   nil,
		"left":  {{0, 0}},
		"right": {{0, 0}},
		"join":  {{0, 2}, {1, 1}},
		"sink":  {{0, 3}},
	}
	for _, op := range v.Operators {
		var got []link
		for _, in := range op.Inputs {
			got = append(got, link{in.Input, in.ChainedOperator})
		}
		if !slices.Equal(got, want[op.Uid]) {
			t.Errorf("operator %q chained inputs %v, want %v", op.Uid, got, want[op.Uid])
		}
		if wantN := int32(len(want[op.Uid])); op.NumInputs != wantN {
			t.Errorf("operator %q: NumInputs %d, want %d", op.Uid, op.NumInputs, wantN)
		}
	}
	if !v.IsSource || v.Name != "Source: src -> left -> right -> join -> sink" {
		t.Errorf("vertex name %q (source %v)", v.Name, v.IsSource)
	}
	if got := v.Operators[0].OutputType; got != "int" {
		t.Errorf("output type %q, want int", got)
	}
	if got := v.Operators[4].OutputType; got != "" {
		t.Errorf("sink output type %q, want none", got)
	}
}

// TestTranslateSlotSharingGroups checks the groups listed in the plan and the
// resources declared for them.
func TestTranslateSlotSharingGroups(t *testing.T) {
	b := &builder{}
	s := b.source("src")
	a := b.op("a", ins(in(s)), slotGroup("heavy"))
	b.sink("sink", in(a))
	b.g.GroupResources = map[string]graph.Resources{"heavy": {CPUMillis: 2000, TaskMemoryBytes: 1 << 30}}
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{DefaultParallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, v := range jg.Vertices {
		groups = append(groups, v.SlotSharingGroup)
	}
	if want := []string{"default", "heavy", "default"}; !slices.Equal(groups, want) {
		t.Errorf("vertex groups %v, want %v", groups, want)
	}
	if len(jg.SlotSharingGroups) != 2 {
		t.Fatalf("plan lists %d slot sharing groups, want 2: %v", len(jg.SlotSharingGroups), jg.SlotSharingGroups)
	}
	def, heavy := jg.SlotSharingGroups[0], jg.SlotSharingGroups[1]
	if def.Name != "default" || def.Profile != nil {
		t.Errorf("first group %v, want default without a profile", def)
	}
	if heavy.Name != "heavy" || heavy.Profile.GetCpuMillis() != 2000 || heavy.Profile.GetTaskMemoryBytes() != 1<<30 {
		t.Errorf("second group %v, want heavy with 2000 millicores and 1 GiB", heavy)
	}
}

func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		name     string
		build    func(b *builder)
		settings jobgraph.Settings
		want     []string // substrings of the error
	}{
		{
			name: "explicit forward with different parallelism",
			build: func(b *builder) {
				s := b.source("src", par(2))
				b.sink("sink", fwd(s), par(3))
			},
			want: []string{`"sink" reads "src" over a forward edge`, "(2 and 3)", "rebalance"},
		},
		{
			name: "explicit forward from a union member of different parallelism",
			build: func(b *builder) {
				s1 := b.source("src1", par(2))
				s2 := b.source("src2", par(3))
				u := b.union(in(s1), in(s2))
				b.sink("sink", fwd(u), par(2))
			},
			want: []string{`"sink" reads "src2" over a forward edge`, "(3 and 2)"},
		},
		{
			name: "hash into an input that is not keyed",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", hash(s))
			},
			want: []string{`"sink" input 0 is hash-partitioned but not keyed`},
		},
		{
			name: "explicit parallelism above explicit max parallelism",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s), par(8), maxPar(4))
			},
			want: []string{`"sink"`, "parallelism 8 above its max parallelism 4"},
		},
		{
			name: "default parallelism above the job's max parallelism",
			build: func(b *builder) {
				s := b.source("src")
				b.sink("sink", in(s))
			},
			settings: jobgraph.Settings{DefaultParallelism: 8, MaxParallelism: 4},
			want:     []string{`operator "src"`, "8", "4"},
		},
		{
			name: "max parallelism above the upper bound",
			build: func(b *builder) {
				b.source("src", maxPar(keygroup.UpperBoundMaxParallelism+1))
			},
			want: []string{`operator "src"`, "max parallelism 32769"},
		},
		{
			name: "negative parallelism",
			build: func(b *builder) {
				b.source("src", par(-1))
			},
			want: []string{`"src" has parallelism -1`},
		},
		{
			name: "duplicate uid names both operators",
			build: func(b *builder) {
				s := b.source("src")
				m := b.op("x", ins(in(s)), named("first map"))
				b.op("x", ins(in(m)), named("second map"))
			},
			want: []string{`"first map"`, `"second map"`, `uid "x"`},
		},
		{
			name: "empty uid",
			build: func(b *builder) {
				s := b.source("src")
				b.op("", ins(in(s)), named("nameless"))
			},
			want: []string{`"nameless" has an empty uid`},
		},
		{
			name: "no source",
			build: func(b *builder) {
				a := b.op("a", nil)
				b.sink("sink", in(a))
			},
			want: []string{"the job has no source"},
		},
		{
			name:  "no operators",
			build: func(b *builder) {},
			want:  []string{"defines no operators"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &builder{}
			tc.build(b)
			s := tc.settings
			if s.DefaultParallelism == 0 {
				s.DefaultParallelism = 4
			}
			jg, err := jobgraph.Translate(&b.g, s)
			if err == nil {
				t.Fatalf("Translate succeeded, want an error containing %q; plan:\n%s", tc.want, jobgraph.Describe(jg))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestUnionMemberKeepsItsPartitioning: a partitioning set on a stream before
// it enters a union (a.Rebalance().Union(b) in the API) is stored on the
// union node's input, and must reach the edge from that member.
func TestUnionMemberKeepsItsPartitioning(t *testing.T) {
	b := &builder{}
	s1 := b.source("src1")
	s2 := b.source("src2")
	u := b.union(rebalance(s1), in(s2))
	b.sink("sink", in(u))
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{DefaultParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, jg,
		[]wantVertex{{[]string{"src1"}, 4, 128}, {[]string{"src2"}, 4, 128}, {[]string{"sink"}, 4, 128}},
		[]wantEdge{{0, 2, rebalanced, 0}, {1, 2, forward, 0}})
}

func TestTranslateJobID(t *testing.T) {
	b := &builder{}
	b.source("src")
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jg.JobId) {
		t.Errorf("generated job id %q is not 32 lower-case hex characters", jg.JobId)
	}
	jg, err = jobgraph.Translate(&b.g, jobgraph.Settings{JobID: "given"})
	if err != nil {
		t.Fatal(err)
	}
	if jg.JobId != "given" {
		t.Errorf("job id %q, want the given one", jg.JobId)
	}
}

func TestDescribeAndJSON(t *testing.T) {
	b := &builder{}
	s := b.source("lines")
	m := b.op("split", ins(in(s)))
	r := b.op("count", ins(hash(m)), keyed(true), par(2), slotGroup("heavy"))
	b.sink("out", in(r), par(2), slotGroup("heavy"))
	b.g.GroupResources = map[string]graph.Resources{"heavy": {CPUMillis: 1500, TaskMemoryBytes: 512 << 20}}
	jg, err := jobgraph.Translate(&b.g, jobgraph.Settings{JobName: "wordcount", JobID: "0123", DefaultParallelism: 3,
		Config: map[string]string{"parallelism.default": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	text := jobgraph.Describe(jg)
	for _, w := range []string{
		`Job "wordcount"  id 0123`,
		"2 tasks, 5 subtasks",
		"task 0: Source: lines -> split",
		"task 1: count -> out",
		`parallelism 2, max parallelism 128, slot sharing group "heavy"`,
		"task 0 -> task 1  hash",
		"split -> count (input 0)",
		`slot sharing group "heavy": 1500 millicores`,
	} {
		if !strings.Contains(text, w) {
			t.Errorf("Describe output lacks %q:\n%s", w, text)
		}
	}
	js, err := jobgraph.JSON(jg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Source: lines -> split", "count -> out", `"HASH"`} {
		if !strings.Contains(string(js), w) {
			t.Errorf("JSON lacks %q:\n%s", w, js)
		}
	}
	back := &pb.JobGraph{}
	if err := protojson.Unmarshal(js, back); err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
	if !proto.Equal(jg, back) {
		t.Errorf("JSON round trip changed the plan:\n got  %v\n want %v", back, jg)
	}
}
