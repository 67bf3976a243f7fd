package stream

import (
	"fmt"

	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
)

// ConnectedStreams are two streams, possibly of different types, that one
// two-input operator reads: CoMap, CoFlatMap or CoProcess. The operator's
// event time is the minimum of both inputs' watermarks; an input that has
// ended no longer holds it back.
type ConnectedStreams[A, B any] struct {
	first  *DataStream[A]
	second *DataStream[B]
}

// Connect connects two streams for a two-input operator. Each input keeps
// its partitioning (e.g. b.Broadcast() sends every record of b to every
// subtask).
func Connect[A, B any](a *DataStream[A], b *DataStream[B]) *ConnectedStreams[A, B] {
	if a.env != b.env {
		a.env.fail(fmt.Errorf("Connect(%q, %q): the streams belong to different environments", a.node.Name, b.node.Name))
	}
	return &ConnectedStreams[A, B]{first: a, second: b}
}

// CoProcessFunction processes the records of two connected streams that are
// not keyed: ProcessElement1 those of the first, ProcessElement2 those of
// the second, never concurrently. It may implement Opener and Closer, and
// CheckpointedFunction to keep state of its own in checkpoints.
type CoProcessFunction[A, B, OUT any] interface {
	ProcessElement1(ctx *Context[OUT], a A) error
	ProcessElement2(ctx *Context[OUT], b B) error
}

// CoProcess applies a two-input process function. Each subtask runs its
// own copy of f, as with Process.
func CoProcess[A, B, OUT any](c *ConnectedStreams[A, B], name string, f CoProcessFunction[A, B, OUT]) *DataStream[OUT] {
	env := c.first.env
	checkFunction(env, fmt.Sprintf("co-process %q", name), f)
	factory := operators.NewCoProcess(func() operators.CoProcessor[A, B, OUT] {
		fn := cloneFunction(f)
		return &coProcessAdapter[A, B, OUT]{function: function[OUT]{fn: fn}, fn: fn}
	})
	return addTwoInput[A, B, OUT](c, name, "co-process", factory)
}

// CoMap maps the records of the first stream with map1 and those of the
// second with map2 into one stream. The functions cannot keep state in
// checkpoints; use CoProcess with a CheckpointedFunction for that.
func CoMap[A, B, OUT any](c *ConnectedStreams[A, B], name string, map1 func(A) OUT, map2 func(B) OUT) *DataStream[OUT] {
	if map1 == nil || map2 == nil {
		c.first.env.fail(fmt.Errorf("co-map %q: both map functions are needed, got a nil one", name))
	}
	factory := operators.NewCoProcess(func() operators.CoProcessor[A, B, OUT] {
		return &coMapProcessor[A, B, OUT]{map1: map1, map2: map2}
	})
	return addTwoInput[A, B, OUT](c, name, "co-map", factory)
}

// CoFlatMap calls flatMap1 for each record of the first stream and flatMap2
// for each of the second; each emits zero or more records.
func CoFlatMap[A, B, OUT any](c *ConnectedStreams[A, B], name string, flatMap1 func(A, Collector[OUT]), flatMap2 func(B, Collector[OUT])) *DataStream[OUT] {
	if flatMap1 == nil || flatMap2 == nil {
		c.first.env.fail(fmt.Errorf("co-flat-map %q: both flat-map functions are needed, got a nil one", name))
	}
	factory := operators.NewCoProcess(func() operators.CoProcessor[A, B, OUT] {
		return &coFlatMapProcessor[A, B, OUT]{flatMap1: flatMap1, flatMap2: flatMap2}
	})
	return addTwoInput[A, B, OUT](c, name, "co-flat-map", factory)
}

// addTwoInput adds the operator that reads both connected streams.
func addTwoInput[A, B, OUT any](c *ConnectedStreams[A, B], name, kind string, f *runtime.Factory) *DataStream[OUT] {
	n := addNode(c.first.env, name, kind, f, c.first.input(), c.second.input())
	return &DataStream[OUT]{env: c.first.env, node: n}
}

// KeyedConnectedStreams are two keyed streams with the same key type that
// one keyed two-input operator reads: records of either stream with equal
// keys go to the same subtask and share its keyed state and timers.
type KeyedConnectedStreams[A, B any, K comparable] struct {
	first  *KeyedStream[A, K]
	second *KeyedStream[B, K]
}

// ConnectKeyed connects two keyed streams for KeyedCoProcess.
func ConnectKeyed[A, B any, K comparable](a *KeyedStream[A, K], b *KeyedStream[B, K]) *KeyedConnectedStreams[A, B, K] {
	if a.in.env != b.in.env {
		a.in.env.fail(fmt.Errorf("ConnectKeyed(%q, %q): the streams belong to different environments", a.in.node.Name, b.in.node.Name))
	}
	return &KeyedConnectedStreams[A, B, K]{first: a, second: b}
}

// KeyedCoProcessFunction processes the records of two connected keyed
// streams, with keyed state and timers shared by both inputs (Flink's
// KeyedCoProcessFunction). It may also implement Opener, Closer,
// KeyedTimerHandler and CheckpointedFunction.
type KeyedCoProcessFunction[K comparable, A, B, OUT any] interface {
	ProcessElement1(ctx *KeyedContext[K, OUT], a A) error
	ProcessElement2(ctx *KeyedContext[K, OUT], b B) error
}

// KeyedCoProcess applies a keyed two-input process function, e.g. a join
// that buffers each side in keyed state until the other arrives. State and
// timers work as in Process; each subtask runs its own copy of f.
func KeyedCoProcess[A, B any, K comparable, OUT any](c *KeyedConnectedStreams[A, B, K], name string, f KeyedCoProcessFunction[K, A, B, OUT]) *DataStream[OUT] {
	env := c.first.in.env
	checkKeyedFunction[K, OUT](env, fmt.Sprintf("keyed co-process %q", name), f)
	factory := operators.NewKeyedCoProcess(c.first.keying, c.second.keying, func() operators.KeyedCoProcessor[K, A, B, OUT] {
		fn := cloneFunction(f)
		return &keyedCoProcessAdapter[K, A, B, OUT]{keyedFunction: newKeyedFunction[K, OUT](fn), fn: fn}
	})
	n := addNode(env, name, "keyed-co-process", factory, c.first.hashInput(), c.second.hashInput())
	n.KeyedInputs = []bool{true, true}
	return &DataStream[OUT]{env: env, node: n}
}

type coProcessAdapter[A, B, OUT any] struct {
	function[OUT]
	fn CoProcessFunction[A, B, OUT]
}

func (p *coProcessAdapter[A, B, OUT]) ProcessElement1(a A) error {
	return p.fn.ProcessElement1(&p.ctx, a)
}
func (p *coProcessAdapter[A, B, OUT]) ProcessElement2(b B) error {
	return p.fn.ProcessElement2(&p.ctx, b)
}

type keyedCoProcessAdapter[K comparable, A, B, OUT any] struct {
	keyedFunction[K, OUT]
	fn KeyedCoProcessFunction[K, A, B, OUT]
}

func (p *keyedCoProcessAdapter[K, A, B, OUT]) ProcessElement1(a A) error {
	return p.fn.ProcessElement1(&p.ctx, a)
}

func (p *keyedCoProcessAdapter[K, A, B, OUT]) ProcessElement2(b B) error {
	return p.fn.ProcessElement2(&p.ctx, b)
}

// coMapProcessor runs a CoMap: plain functions, no lifecycle.
type coMapProcessor[A, B, OUT any] struct {
	s    *operators.Scope[OUT]
	map1 func(A) OUT
	map2 func(B) OUT
}

func (p *coMapProcessor[A, B, OUT]) Open(s *operators.Scope[OUT]) error { p.s = s; return nil }
func (p *coMapProcessor[A, B, OUT]) ProcessElement1(a A) error          { p.s.Collect(p.map1(a)); return nil }
func (p *coMapProcessor[A, B, OUT]) ProcessElement2(b B) error          { p.s.Collect(p.map2(b)); return nil }
func (p *coMapProcessor[A, B, OUT]) Close() error                       { return nil }

// coFlatMapProcessor runs a CoFlatMap; the scope is the collector.
type coFlatMapProcessor[A, B, OUT any] struct {
	s        *operators.Scope[OUT]
	flatMap1 func(A, Collector[OUT])
	flatMap2 func(B, Collector[OUT])
}

func (p *coFlatMapProcessor[A, B, OUT]) Open(s *operators.Scope[OUT]) error { p.s = s; return nil }
func (p *coFlatMapProcessor[A, B, OUT]) ProcessElement1(a A) error          { p.flatMap1(a, p.s); return nil }
func (p *coFlatMapProcessor[A, B, OUT]) ProcessElement2(b B) error          { p.flatMap2(b, p.s); return nil }
func (p *coFlatMapProcessor[A, B, OUT]) Close() error                       { return nil }
