package stream

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// DataStream is a stream of records of type T produced by one operator.
// Its methods configure that operator.
type DataStream[T any] struct {
	env  *Environment
	node *graph.Node
	// part is the partitioning of the edge to the next operator.
	part graph.Partitioning
}

// Collector receives the records a FlatMap or process function emits.
type Collector[T any] = operators.Collector[T]

// AggregateFunction aggregates records of type IN into an accumulator ACC
// and produces OUT; Merge combines two accumulators (session windows).
type AggregateFunction[IN, ACC, OUT any] = state.AggregateFunction[IN, ACC, OUT]

// addNode adds an operator reading the given inputs.
func addNode(env *Environment, name, kind string, f *runtime.Factory, inputs ...graph.Input) *graph.Node {
	if name == "" {
		env.fail(fmt.Errorf("a %s operator has an empty name; every operator needs a unique name", kind))
	}
	return env.graph.Add(&graph.Node{UID: name, Name: name, Kind: kind, Factory: f, Inputs: inputs})
}

func (d *DataStream[T]) input() graph.Input {
	return graph.Input{Node: d.node.ID, Partitioning: d.part}
}

func derive[T, U any](d *DataStream[T], n *graph.Node) *DataStream[U] {
	return &DataStream[U]{env: d.env, node: n}
}

// Name returns the operator's name.
func (d *DataStream[T]) Name() string { return d.node.Name }

// UID sets the operator's stable identity (default: its name). State in
// savepoints is matched by uid.
func (d *DataStream[T]) UID(uid string) *DataStream[T] {
	d.node.UID = uid
	return d
}

// SetParallelism sets how many parallel subtasks run the operator.
func (d *DataStream[T]) SetParallelism(p int) *DataStream[T] {
	if p < 1 {
		d.env.fail(fmt.Errorf("operator %q: SetParallelism(%d): parallelism must be at least 1", d.node.Name, p))
		return d
	}
	d.node.Parallelism = p
	return d
}

// SetMaxParallelism sets the operator's number of key groups.
func (d *DataStream[T]) SetMaxParallelism(p int) *DataStream[T] {
	d.node.MaxParallelism = p
	return d
}

// SlotSharingGroup puts the operator into a named slot sharing group
// (default: "default"). Operators of different groups never share a slot.
func (d *DataStream[T]) SlotSharingGroup(name string) *DataStream[T] {
	d.node.SlotSharingGroup = name
	return d
}

// DisableChaining keeps the operator out of any chain.
func (d *DataStream[T]) DisableChaining() *DataStream[T] {
	d.node.Chaining = graph.ChainNever
	return d
}

// StartNewChain starts a new chain at this operator.
func (d *DataStream[T]) StartNewChain() *DataStream[T] {
	d.node.Chaining = graph.ChainHead
	return d
}

// Rebalance distributes records round-robin to the next operator's subtasks.
func (d *DataStream[T]) Rebalance() *DataStream[T] {
	c := *d
	c.part = graph.Rebalance
	return &c
}

// Broadcast sends every record to every subtask of the next operator.
func (d *DataStream[T]) Broadcast() *DataStream[T] {
	c := *d
	c.part = graph.Broadcast
	return &c
}

// Forward sends records to the next operator's subtask of the same index;
// both operators must have the same parallelism.
func (d *DataStream[T]) Forward() *DataStream[T] {
	c := *d
	c.part = graph.Forward
	return &c
}

// Union merges streams of the same type into one.
func (d *DataStream[T]) Union(others ...*DataStream[T]) *DataStream[T] {
	inputs := []graph.Input{d.input()}
	for _, o := range others {
		if o.env != d.env {
			d.env.fail(fmt.Errorf("union of %q with %q: streams belong to different environments", d.node.Name, o.node.Name))
		}
		inputs = append(inputs, o.input())
	}
	n := d.env.graph.Add(&graph.Node{Name: "union", Kind: "union", Virtual: true, Inputs: inputs})
	return &DataStream[T]{env: d.env, node: n}
}

// SetResources declares the resources one slot of the named slot sharing
// group needs; the resource manager uses it to size slots.
func (e *Environment) SetResources(group string, cpuCores float64, taskMemory string) *Environment {
	mem, err := config.ParseBytes(taskMemory)
	if err != nil {
		e.fail(fmt.Errorf("slot sharing group %q: task memory %q: %w", group, taskMemory, err))
		return e
	}
	if e.graph.GroupResources == nil {
		e.graph.GroupResources = map[string]graph.Resources{}
	}
	e.graph.GroupResources[group] = graph.Resources{CPUMillis: int64(cpuCores * 1000), TaskMemoryBytes: mem}
	return e
}

// WatermarkStrategy says how a source assigns event timestamps and generates
// watermarks.
type WatermarkStrategy[T any] = operators.WatermarkStrategy[T]

// ForBoundedOutOfOrderness generates watermarks that trail the largest
// timestamp seen by d: records up to d late are still on time.
func ForBoundedOutOfOrderness[T any](d time.Duration) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{OutOfOrderness: d}
}

// ForMonotonousTimestamps is for sources whose timestamps never decrease.
func ForMonotonousTimestamps[T any]() WatermarkStrategy[T] {
	return WatermarkStrategy[T]{}
}

// NoWatermarks generates no watermarks until the end of a bounded input.
func NoWatermarks[T any]() WatermarkStrategy[T] {
	return WatermarkStrategy[T]{None: true}
}

// WithTimestampAssigner returns the strategy with a function that extracts
// each record's event timestamp in unix milliseconds.
func WithTimestampAssigner[T any](w WatermarkStrategy[T], f func(v T) int64) WatermarkStrategy[T] {
	w.Assign = func(v T, _ int64) int64 { return f(v) }
	return w
}

// WithIdleness returns the strategy marking the source idle after d without
// records, so it does not hold back event time downstream.
func WithIdleness[T any](w WatermarkStrategy[T], d time.Duration) WatermarkStrategy[T] {
	w.Idleness = d
	return w
}

// FromSource starts a stream from a source. Without a watermark strategy the
// source's own timestamps are used and watermarks follow them (monotonous).
func FromSource[T any](env *Environment, name string, src connector.Source[T], wm ...WatermarkStrategy[T]) *DataStream[T] {
	strategy := ForMonotonousTimestamps[T]()
	if len(wm) > 0 {
		strategy = wm[0]
	}
	if src == nil {
		env.fail(fmt.Errorf("source %q is nil", name))
	}
	f := operators.NewSource(src, strategy, env.cfg.Duration(config.AutoWatermarkInterval))
	return &DataStream[T]{env: env, node: addNode(env, name, "source", f)}
}

// Map applies f to every record.
func Map[IN, OUT any](d *DataStream[IN], name string, f func(IN) OUT) *DataStream[OUT] {
	return derive[IN, OUT](d, addNode(d.env, name, "map", operators.NewMap(f), d.input()))
}

// Filter keeps the records for which f returns true.
func Filter[T any](d *DataStream[T], name string, f func(T) bool) *DataStream[T] {
	return derive[T, T](d, addNode(d.env, name, "filter", operators.NewFilter(f), d.input()))
}

// FlatMap calls f for every record; f emits zero or more records.
func FlatMap[IN, OUT any](d *DataStream[IN], name string, f func(IN, Collector[OUT])) *DataStream[OUT] {
	return derive[IN, OUT](d, addNode(d.env, name, "flat-map", operators.NewFlatMap(f), d.input()))
}

// Sink is the operator that writes a stream out.
type Sink struct {
	env  *Environment
	node *graph.Node
}

// SinkTo writes the stream to a sink.
func SinkTo[T any](d *DataStream[T], name string, s connector.Sink[T]) *Sink {
	if s == nil {
		d.env.fail(fmt.Errorf("sink %q is nil", name))
	}
	return &Sink{env: d.env, node: addNode(d.env, name, "sink", operators.NewSink(s), d.input())}
}

// SetParallelism sets the sink's parallelism.
func (s *Sink) SetParallelism(p int) *Sink {
	if p < 1 {
		s.env.fail(fmt.Errorf("sink %q: SetParallelism(%d): parallelism must be at least 1", s.node.Name, p))
		return s
	}
	s.node.Parallelism = p
	return s
}

// UID sets the sink's stable identity.
func (s *Sink) UID(uid string) *Sink { s.node.UID = uid; return s }

// SlotSharingGroup puts the sink into a named slot sharing group.
func (s *Sink) SlotSharingGroup(name string) *Sink { s.node.SlotSharingGroup = name; return s }

// DisableChaining keeps the sink out of any chain.
func (s *Sink) DisableChaining() *Sink { s.node.Chaining = graph.ChainNever; return s }
