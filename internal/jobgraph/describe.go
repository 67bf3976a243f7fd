package jobgraph

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
)

// Describe renders the plan as text: tasks with their chained operators,
// parallelism and slot sharing group, then the edges between them.
func Describe(jg *pb.JobGraph) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Job %q  id %s\n", jg.Name, jg.JobId)
	total := 0
	for _, v := range jg.Vertices {
		total += int(v.Parallelism)
	}
	fmt.Fprintf(&b, "%d tasks, %d subtasks\n\n", len(jg.Vertices), total)
	for _, v := range jg.Vertices {
		fmt.Fprintf(&b, "task %d: %s\n", v.Id, v.Name)
		fmt.Fprintf(&b, "    parallelism %d, max parallelism %d, slot sharing group %q\n", v.Parallelism, v.MaxParallelism, v.SlotSharingGroup)
		for i, op := range v.Operators {
			from := ""
			for _, in := range op.Inputs {
				from += fmt.Sprintf(" <-[in %d] #%d", in.Input, in.ChainedOperator)
			}
			fmt.Fprintf(&b, "    #%d %-24s %-16s -> %s%s\n", i, op.Name, op.Kind, orDash(op.OutputType), from)
		}
	}
	if len(jg.Edges) > 0 {
		b.WriteString("\nedges:\n")
	}
	for _, e := range jg.Edges {
		fmt.Fprintf(&b, "    task %d -> task %d  %-9s  %s -> %s (input %d)  %s\n", e.SourceVertex, e.TargetVertex,
			strings.ToLower(e.Partitioning.String()), e.SourceOperator, e.TargetOperator, e.TargetInput, e.RecordType)
	}
	for _, g := range jg.SlotSharingGroups {
		if g.Profile != nil {
			fmt.Fprintf(&b, "\nslot sharing group %q: %d millicores, %d bytes task memory\n", g.Name, g.Profile.CpuMillis, g.Profile.TaskMemoryBytes)
		}
	}
	return b.String()
}

// JSON renders the plan as indented protobuf JSON.
func JSON(jg *pb.JobGraph) ([]byte, error) {
	return protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(jg)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
