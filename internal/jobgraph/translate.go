// Package jobgraph translates the logical graph into the JobGraph: operators
// chained into tasks by Flink's rules, edges with their partitioning, and the
// slot sharing groups with their resource profiles.
//
// Chaining rules: an operator joins the chain of its predecessor when
//   - chaining is enabled for the job and neither operator disables it
//     (ChainNever), and the operator does not start a new chain (ChainHead);
//   - every input of the operator comes over a forward edge from the same chain
//     (so a two-input operator whose inputs are both in one chain joins it);
//   - parallelism, max parallelism and slot sharing group are equal;
//   - no input is a union of several streams (a union needs a gate that
//     combines the watermarks of its members).
package jobgraph

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/keygroup"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
)

// Settings are the job-wide inputs of the translation.
type Settings struct {
	JobID              string // generated when empty
	JobName            string
	DefaultParallelism int
	MaxParallelism     int // 0: derived per operator from its parallelism
	DisableChaining    bool
	Config             map[string]string
}

// NewJobID returns a random job id: 32 lower-case hex characters.
func NewJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// physicalInput is an input edge after unions are expanded.
type physicalInput struct {
	from  int
	part  graph.Partitioning
	input int
	union bool
}

// Translate builds the JobGraph of g.
func Translate(g *graph.Graph, s Settings) (*pb.JobGraph, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if s.DefaultParallelism < 1 {
		s.DefaultParallelism = 1
	}
	if s.JobID == "" {
		s.JobID = NewJobID()
	}
	par := make([]int, len(g.Nodes))
	maxPar := make([]int, len(g.Nodes))
	for _, n := range g.Nodes {
		if n.Virtual {
			continue
		}
		p := n.Parallelism
		if p == 0 {
			p = s.DefaultParallelism
		}
		mp := n.MaxParallelism
		if mp == 0 {
			mp = s.MaxParallelism
		}
		if mp == 0 {
			mp = keygroup.DefaultMaxParallelism(p)
		}
		if err := keygroup.CheckParallelism(p, mp); err != nil {
			return nil, fmt.Errorf("operator %q: %w", n.Name, err)
		}
		par[n.ID], maxPar[n.ID] = p, mp
	}
	inputs := make([][]physicalInput, len(g.Nodes))
	for _, n := range g.Nodes {
		if n.Virtual {
			continue
		}
		for i, in := range n.Inputs {
			members := expand(g, in.Node, in.Partitioning)
			for _, m := range members {
				from, part := m.node, m.part
				if part == graph.Default {
					if par[from] == par[n.ID] {
						part = graph.Forward
					} else {
						part = graph.Rebalance
					}
				}
				if part == graph.Forward && par[from] != par[n.ID] {
					return nil, fmt.Errorf("operator %q reads %q over a forward edge, but their parallelism differs (%d and %d); "+
						"give them the same parallelism or use a rebalance", n.Name, g.Nodes[from].Name, par[from], par[n.ID])
				}
				if part == graph.Hash && (i >= len(n.KeyedInputs) || !n.KeyedInputs[i]) {
					return nil, fmt.Errorf("operator %q input %d is hash-partitioned but not keyed", n.Name, i)
				}
				inputs[n.ID] = append(inputs[n.ID], physicalInput{from: from, part: part, input: i, union: len(members) > 1})
			}
		}
	}
	// Assign operators to chains in node order, which is topological.
	chainOf := make([]int, len(g.Nodes))
	var chains [][]int
	for _, n := range g.Nodes {
		if n.Virtual {
			chainOf[n.ID] = -1
			continue
		}
		c := -1
		ins := inputs[n.ID]
		ok := !s.DisableChaining && len(ins) > 0 && n.Chaining == graph.ChainAlways
		for _, in := range ins {
			up := g.Nodes[in.from]
			if !ok {
				break
			}
			if in.part != graph.Forward || in.union || up.Chaining == graph.ChainNever ||
				par[up.ID] != par[n.ID] || maxPar[up.ID] != maxPar[n.ID] ||
				group(up) != group(n) || (c >= 0 && chainOf[up.ID] != c) {
				ok = false
				break
			}
			c = chainOf[up.ID]
		}
		if !ok {
			c = len(chains)
			chains = append(chains, nil)
		}
		chainOf[n.ID] = c
		chains[c] = append(chains[c], n.ID)
	}
	jg := &pb.JobGraph{JobId: s.JobID, Name: s.JobName, Config: s.Config}
	posInChain := make([]int, len(g.Nodes))
	for c, ids := range chains {
		for i, id := range ids {
			posInChain[id] = i
		}
		head := g.Nodes[ids[0]]
		v := &pb.JobVertex{
			Id:               int32(c),
			Parallelism:      int32(par[head.ID]),
			MaxParallelism:   int32(maxPar[head.ID]),
			SlotSharingGroup: group(head),
			IsSource:         head.Factory != nil && head.Factory.Source,
		}
		var names []string
		for _, id := range ids {
			n := g.Nodes[id]
			names = append(names, n.Name)
			op := &pb.ChainedOperator{Uid: n.UID, Name: n.Name, Kind: n.Kind, NumInputs: int32(len(n.Inputs))}
			if n.Factory != nil && n.Factory.OutType != nil {
				op.OutputType = n.Factory.OutType.Name()
			}
			for _, in := range inputs[id] {
				if chainOf[in.from] == c {
					op.Inputs = append(op.Inputs, &pb.OperatorInput{Input: int32(in.input), ChainedOperator: int32(posInChain[in.from])})
				}
			}
			v.Operators = append(v.Operators, op)
		}
		v.Name = strings.Join(names, " -> ")
		if v.IsSource {
			v.Name = "Source: " + v.Name
		}
		jg.Vertices = append(jg.Vertices, v)
	}
	for _, n := range g.Nodes {
		for _, in := range inputs[n.ID] {
			if chainOf[in.from] == chainOf[n.ID] {
				continue
			}
			e := &pb.JobEdge{
				Id:             int32(len(jg.Edges)),
				SourceVertex:   int32(chainOf[in.from]),
				TargetVertex:   int32(chainOf[n.ID]),
				Partitioning:   toProto(in.part),
				SourceOperator: g.Nodes[in.from].UID,
				TargetOperator: n.UID,
				TargetInput:    int32(in.input),
			}
			if f := g.Nodes[in.from].Factory; f != nil && f.OutType != nil {
				e.RecordType = f.OutType.Name()
			}
			jg.Edges = append(jg.Edges, e)
		}
	}
	seen := map[string]bool{}
	for _, v := range jg.Vertices {
		if seen[v.SlotSharingGroup] {
			continue
		}
		seen[v.SlotSharingGroup] = true
		ssg := &pb.SlotSharingGroup{Name: v.SlotSharingGroup}
		if r, ok := g.GroupResources[v.SlotSharingGroup]; ok {
			ssg.Profile = &pb.ResourceProfile{CpuMillis: r.CPUMillis, TaskMemoryBytes: r.TaskMemoryBytes,
				ManagedMemoryBytes: r.ManagedMemoryBytes, Extended: r.Extended}
		}
		jg.SlotSharingGroups = append(jg.SlotSharingGroups, ssg)
	}
	return jg, nil
}

// member is one operator behind a (possibly virtual) input, with the
// partitioning of its edge to the consumer.
type member struct {
	node int
	part graph.Partitioning
}

// expand resolves virtual (union) nodes to the operators they combine. The
// partitioning closest to the consumer that is not Default wins, as in
// Flink: a.Rebalance().Union(b) rebalances a's records into the consumer.
func expand(g *graph.Graph, id int, part graph.Partitioning) []member {
	n := g.Nodes[id]
	if !n.Virtual {
		return []member{{id, part}}
	}
	var out []member
	for _, in := range n.Inputs {
		p := part
		if p == graph.Default {
			p = in.Partitioning
		}
		out = append(out, expand(g, in.Node, p)...)
	}
	return out
}

func group(n *graph.Node) string {
	if n.SlotSharingGroup == "" {
		return graph.DefaultSlotSharingGroup
	}
	return n.SlotSharingGroup
}

func toProto(p graph.Partitioning) pb.Partitioning {
	switch p {
	case graph.Forward:
		return pb.Partitioning_FORWARD
	case graph.Hash:
		return pb.Partitioning_HASH
	case graph.Rebalance:
		return pb.Partitioning_REBALANCE
	case graph.Broadcast:
		return pb.Partitioning_BROADCAST
	}
	return pb.Partitioning_PARTITIONING_UNSPECIFIED
}
