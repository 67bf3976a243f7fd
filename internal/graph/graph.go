// Package graph holds the logical dataflow a job's main() builds through the
// DataStream API: one node per operator, edges with their partitioning. The
// jobgraph package translates it into the chained, serialisable JobGraph.
package graph

import (
	"fmt"

	"github.com/weirstream/weir/internal/runtime"
)

// Partitioning of an edge between two operators.
type Partitioning int

const (
	// Default: forward when parallelism is equal, else rebalance.
	Default Partitioning = iota
	Forward
	Hash
	Rebalance
	Broadcast
)

func (p Partitioning) String() string {
	return [...]string{"default", "forward", "hash", "rebalance", "broadcast"}[p]
}

// Chaining says how an operator may be chained with its predecessors.
type Chaining int

const (
	ChainAlways Chaining = iota // chain with predecessors when the rules allow
	ChainHead                   // start a new chain; successors may chain to it
	ChainNever                  // never chained, on either side
)

// Resources is the resource requirement of a slot sharing group.
type Resources struct {
	CPUMillis          int64
	TaskMemoryBytes    int64
	ManagedMemoryBytes int64
	Extended           map[string]int64
}

// Input is one input of a node.
type Input struct {
	Node         int
	Partitioning Partitioning
}

// Node is one operator of the logical graph.
type Node struct {
	ID   int
	UID  string
	Name string
	// Kind names the operator type in plans ("map", "keyed-reduce", …).
	Kind           string
	Parallelism    int // 0: the environment default
	MaxParallelism int // 0: the environment default or derived
	// FixedParallelism is set for operators that must run with parallelism
	// one whatever the default (e.g. a non-parallel source).
	SlotSharingGroup string
	Chaining         Chaining
	Inputs           []Input
	Factory          *runtime.Factory
	// Virtual nodes (union) have no operator: consumers read their inputs.
	Virtual bool
	// Keyed inputs need a hash edge: set by the API for keyed operators.
	KeyedInputs []bool
}

// DefaultSlotSharingGroup is the group of operators that name none.
const DefaultSlotSharingGroup = "default"

// Graph is the logical dataflow of one job.
type Graph struct {
	Nodes []*Node
	// GroupResources holds the resources declared per slot sharing group.
	GroupResources map[string]Resources
}

// Add appends a node and assigns its ID.
func (g *Graph) Add(n *Node) *Node {
	n.ID = len(g.Nodes)
	g.Nodes = append(g.Nodes, n)
	return n
}

// Validate checks what the API cannot check while the graph is built.
func (g *Graph) Validate() error {
	if len(g.Nodes) == 0 {
		return fmt.Errorf("the job defines no operators; add a source and a sink before calling Execute")
	}
	uids := map[string]*Node{}
	hasSource := false
	for _, n := range g.Nodes {
		if n.Virtual {
			continue
		}
		if n.UID == "" {
			return fmt.Errorf("operator %q has an empty uid", n.Name)
		}
		if other, ok := uids[n.UID]; ok {
			return fmt.Errorf("operators %q and %q both have uid %q; operator names double as uids and must be unique in a job, "+
				"so rename one or set a distinct .UID(...)", other.Name, n.Name, n.UID)
		}
		uids[n.UID] = n
		if n.Factory != nil && n.Factory.Source {
			hasSource = true
		}
		if n.Parallelism < 0 {
			return fmt.Errorf("operator %q has parallelism %d; use a positive number (or 0 for the default)", n.Name, n.Parallelism)
		}
		if n.MaxParallelism != 0 && n.Parallelism > n.MaxParallelism {
			return fmt.Errorf("operator %q has parallelism %d above its max parallelism %d; lower the parallelism or raise the max parallelism",
				n.Name, n.Parallelism, n.MaxParallelism)
		}
	}
	if !hasSource {
		return fmt.Errorf("the job has no source; start the pipeline with stream.FromSource")
	}
	return nil
}
