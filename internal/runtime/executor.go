package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/network"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/state"
)

// Job is what an executor runs: the plan and the operators it names.
type Job struct {
	Graph *pb.JobGraph
	// Factories holds the operator factories by uid; the job binary's main()
	// registers them when it builds its graph.
	Factories map[string]*Factory
}

// Options tune execution.
type Options struct {
	// Credits is the number of batches in flight per channel.
	Credits int
	// BatchSize is the number of records per batch.
	BatchSize int
	// BufferTimeout bounds how long a record may wait in a partly filled
	// batch while its task is busy.
	BufferTimeout time.Duration
	// NewKeyedBackend creates the keyed state backend of one subtask.
	NewKeyedBackend func(r keygroup.Range) state.Backend
	// Placement, if set, makes this executor run only its share of the
	// subtasks and exchange data with the executors of the others over the
	// network. Nil runs every subtask here.
	Placement *Placement
	// Checkpoints receives the tasks' checkpoint acknowledgements; nil
	// turns checkpoints off. With it set, finished tasks wait for
	// Running.Release.
	Checkpoints CheckpointHooks
	// Restore holds the state to start from, by operator uid.
	Restore map[string]*RestoredState

	release <-chan struct{} // set by Start
}

func (o *Options) defaults() {
	if o.Credits <= 0 {
		o.Credits = 4
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.NewKeyedBackend == nil {
		o.NewKeyedBackend = func(r keygroup.Range) state.Backend { return state.NewHeapBackend(r) }
	}
}

// Execute runs every subtask of job in this process (or, with a Placement,
// this process's share of them) until the job finishes, fails or ctx is
// canceled. The first task failure cancels the others and is returned;
// cancellation returns ErrCanceled.
func Execute(ctx context.Context, job *Job, opts Options) error {
	r, err := Start(ctx, job, opts)
	if err != nil {
		return err
	}
	return r.Wait()
}

// Start builds the job's tasks and starts them; Running.Wait returns what
// Execute would.
func Start(ctx context.Context, job *Job, opts Options) (*Running, error) {
	opts.defaults()
	if err := opts.Placement.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{done: make(chan struct{}), release: make(chan struct{})}
	opts.release = r.release
	tasks, err := build(ctx, job, &opts)
	if err != nil {
		cancel()
		return nil, err
	}
	r.tasks = tasks
	go func() {
		defer cancel()
		r.err = runTasks(ctx, cancel, tasks)
		close(r.done)
	}()
	return r, nil
}

// runTasks runs every task on its own goroutine and returns the job's result.
func runTasks(ctx context.Context, cancel context.CancelFunc, tasks []*task) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.run()
			if err == nil {
				return
			}
			mu.Lock()
			if firstErr == nil || (errors.Is(firstErr, ErrCanceled) && !errors.Is(err, ErrCanceled)) {
				firstErr = err
			}
			mu.Unlock()
			cancel()
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ErrCanceled
	}
	return firstErr
}

// build creates and wires the tasks of every subtask of the job.
func build(ctx context.Context, job *Job, opts *Options) ([]*task, error) {
	g := job.Graph
	vertices := map[int32]*pb.JobVertex{}
	tasks := map[int32][]*task{}
	var all []*task
	for _, v := range g.Vertices {
		vertices[v.Id] = v
		if v.Parallelism < 1 {
			return nil, fmt.Errorf("vertex %q has parallelism %d; it must be at least 1", v.Name, v.Parallelism)
		}
		for _, op := range v.Operators {
			if job.Factories[op.Uid] == nil {
				return nil, fmt.Errorf("the job plan names operator uid %q (%s) but this binary has no operator with that uid; "+
					"submit the plan built by the same binary, and keep graph building deterministic", op.Uid, op.Name)
			}
		}
		// tasks[v][s] is nil where another executor runs the subtask.
		tasks[v.Id] = make([]*task, v.Parallelism)
		for s := range int(v.Parallelism) {
			if !opts.Placement.local(v.Id, s) {
				continue
			}
			t, err := newTask(ctx, job, v, s, opts)
			if err != nil {
				return nil, err
			}
			tasks[v.Id][s] = t
			all = append(all, t)
		}
	}
	// Group incoming edges by the operator input they feed: a union feeds one
	// input from several edges, and one valve must cover all their channels.
	type inputKey struct {
		vertex int32
		op     string
		input  int32
	}
	byInput := map[inputKey][]*pb.JobEdge{}
	var order []inputKey
	for _, e := range g.Edges {
		if vertices[e.SourceVertex] == nil || vertices[e.TargetVertex] == nil {
			return nil, fmt.Errorf("edge %d connects unknown vertices %d -> %d", e.Id, e.SourceVertex, e.TargetVertex)
		}
		k := inputKey{e.TargetVertex, e.TargetOperator, e.TargetInput}
		if byInput[k] == nil {
			order = append(order, k)
		}
		byInput[k] = append(byInput[k], e)
	}
	// writers[edge][producer subtask] collects the channels of each producer.
	type edgeWiring struct {
		channels [][]any // [producer][target]
	}
	wiring := map[int32]*edgeWiring{}
	type remoteInput struct {
		t    *task
		idx  int32
		id   network.ChannelID
		desc string
	}
	var remoteInputs []remoteInput
	for _, k := range order {
		edges := byInput[k]
		tv := vertices[k.vertex]
		opIdx := operatorIndex(tv, k.op)
		if opIdx < 0 {
			return nil, fmt.Errorf("edge targets operator %q which is not in vertex %q", k.op, tv.Name)
		}
		for _, e := range edges {
			sv := vertices[e.SourceVertex]
			if e.Partitioning == pb.Partitioning_FORWARD && sv.Parallelism != tv.Parallelism {
				return nil, fmt.Errorf("forward edge %q -> %q needs equal parallelism, got %d and %d",
					sv.Name, tv.Name, sv.Parallelism, tv.Parallelism)
			}
			w := &edgeWiring{channels: make([][]any, sv.Parallelism)}
			for p := range w.channels {
				n := int(tv.Parallelism)
				if e.Partitioning == pb.Partitioning_FORWARD {
					n = 1
				}
				w.channels[p] = make([]any, n)
			}
			wiring[e.Id] = w
		}
		for s, t := range tasks[k.vertex] {
			if t == nil {
				continue
			}
			var slots []struct {
				edge *pb.JobEdge
				prod int
			}
			for _, e := range edges {
				sv := vertices[e.SourceVertex]
				if e.Partitioning == pb.Partitioning_FORWARD {
					slots = append(slots, struct {
						edge *pb.JobEdge
						prod int
					}{e, s})
					continue
				}
				for p := 0; p < int(sv.Parallelism); p++ {
					slots = append(slots, struct {
						edge *pb.JobEdge
						prod int
					}{e, p})
				}
			}
			vi := int32(len(t.valves))
			t.valves = append(t.valves, newValve(t, opIdx, int(k.input), len(slots)))
			handlers := map[int32]int32{}
			for slot, sl := range slots {
				e := sl.edge
				sv := vertices[e.SourceVertex]
				remote := !opts.Placement.local(sv.Id, sl.prod)
				h, ok := handlers[e.Id]
				if !ok {
					srcF := job.Factories[e.SourceOperator]
					target := t.ops[opIdx].inst.Inputs
					if int(e.TargetInput) >= len(target) {
						return nil, fmt.Errorf("edge into %q input %d, but the operator has %d inputs", k.op, e.TargetInput, len(target))
					}
					ih, err := srcF.OutType.newInputReader(target[e.TargetInput], edgeHasRemote(opts.Placement, e, sv, s))
					if err != nil {
						return nil, fmt.Errorf("edge %q -> %q: %w", e.SourceOperator, e.TargetOperator, err)
					}
					h = int32(len(t.handlers))
					t.handlers = append(t.handlers, ih)
					handlers[e.Id] = h
				}
				idx := int32(len(t.channels))
				t.channels = append(t.channels, gateChannel{handler: h, valve: vi, slot: int32(slot)})
				t.gateCap += opts.Credits
				if remote {
					// The producer runs elsewhere: it sends over the network,
					// and the gate has room for one failure report besides.
					t.gateCap++
					remoteInputs = append(remoteInputs, remoteInput{t: t, idx: idx, id: opts.Placement.channelID(e, sl.prod, s),
						desc: channelDesc(e, sv, tv, sl.prod, s)})
					continue
				}
				srcF := job.Factories[e.SourceOperator]
				ch := srcF.OutType.newLocalChannel(&t.gate, idx, opts.Credits, opts.BatchSize)
				target := s
				if e.Partitioning == pb.Partitioning_FORWARD {
					target = 0
				}
				wiring[e.Id].channels[sl.prod][target] = ch
			}
		}
	}
	for _, t := range all {
		t.gate = make(chan envelope, t.gateCap+1)
	}
	// Remote inputs are registered once their gates exist: a producer may
	// send as soon as a channel is registered.
	for _, ri := range remoteInputs {
		if err := registerRemoteInput(ri.t, opts.Placement, ri.id, ri.idx, opts.Credits, ri.desc); err != nil {
			for _, t := range all {
				for _, f := range t.onExit {
					f()
				}
			}
			return nil, err
		}
	}
	// Producer side: one exchange writer per edge per producer subtask.
	outs := map[*task]map[int][]any{} // task → op index → outputs
	for _, e := range g.Edges {
		sv, tv := vertices[e.SourceVertex], vertices[e.TargetVertex]
		srcF := job.Factories[e.SourceOperator]
		opIdx := operatorIndex(sv, e.SourceOperator)
		if opIdx < 0 {
			return nil, fmt.Errorf("edge from operator %q which is not in vertex %q", e.SourceOperator, sv.Name)
		}
		for p, t := range tasks[sv.Id] {
			if t == nil {
				continue
			}
			channels := wiring[e.Id].channels[p]
			for i, ch := range channels {
				if ch != nil {
					continue
				}
				// The consumer runs elsewhere.
				target := i
				if e.Partitioning == pb.Partitioning_FORWARD {
					target = p
				}
				rc, err := srcF.OutType.newRemoteChannel(remoteSpec{
					client:    opts.Placement.Client,
					addr:      opts.Placement.DataAddr(tv.Id, target),
					id:        opts.Placement.channelID(e, p, target),
					batchSize: opts.BatchSize,
					desc:      channelDesc(e, sv, tv, p, target),
				})
				if err != nil {
					return nil, err
				}
				channels[i] = rc
			}
			spec := &exchangeSpec{batchSize: opts.BatchSize, channels: channels, start: p, target: targetName(tv, e.TargetOperator)}
			switch e.Partitioning {
			case pb.Partitioning_FORWARD:
				spec.mode = partForward
			case pb.Partitioning_REBALANCE:
				spec.mode = partRebalance
			case pb.Partitioning_BROADCAST:
				spec.mode = partBroadcast
			case pb.Partitioning_HASH:
				spec.mode = partHash
				tf := job.Factories[e.TargetOperator]
				if int(e.TargetInput) >= len(tf.InputKeys) || tf.InputKeys[e.TargetInput] == nil {
					return nil, fmt.Errorf("hash edge into %q input %d, but that input is not keyed", e.TargetOperator, e.TargetInput)
				}
				maxP := int(tv.MaxParallelism)
				spec.keyGroupOf = tf.InputKeys[e.TargetInput](maxP)
				spec.kgTarget = make([]int32, maxP)
				for kg := range spec.kgTarget {
					spec.kgTarget[kg] = int32(keygroup.OperatorIndex(kg, maxP, int(tv.Parallelism)))
				}
			default:
				return nil, fmt.Errorf("edge %q -> %q has no partitioning", e.SourceOperator, e.TargetOperator)
			}
			out, w, err := srcF.OutType.newExchange(t.ctx, spec)
			if err != nil {
				return nil, err
			}
			t.writers = append(t.writers, w)
			t.ops[opIdx].writers = append(t.ops[opIdx].writers, w)
			if outs[t] == nil {
				outs[t] = map[int][]any{}
			}
			outs[t][opIdx] = append(outs[t][opIdx], out)
		}
	}
	// Chain wiring and output binding.
	for _, v := range g.Vertices {
		for _, t := range tasks[v.Id] {
			if t == nil {
				continue
			}
			for j, op := range v.Operators {
				for _, in := range op.Inputs {
					i := int(in.Input)
					from := int(in.ChainedOperator)
					if from < 0 || from >= j {
						return nil, fmt.Errorf("operator %q input %d is chained from operator %d, which does not precede it", op.Uid, i, from)
					}
					f := job.Factories[v.Operators[from].Uid]
					target := t.ops[j].inst
					if i >= len(target.Inputs) {
						return nil, fmt.Errorf("operator %q has %d inputs, the plan feeds input %d", op.Uid, len(target.Inputs), i)
					}
					out := f.OutType.newChained(target.Inputs[i], target.Op, i, &t.cur, from, j)
					if outs[t] == nil {
						outs[t] = map[int][]any{}
					}
					outs[t][from] = append(outs[t][from], out)
					t.ops[from].succ = append(t.ops[from].succ, chainLink{op: j, input: i})
				}
			}
			for j, op := range v.Operators {
				f := job.Factories[op.Uid]
				n := t.ops[j]
				if n.inst.SetOutput == nil {
					continue
				}
				list := outs[t][j]
				if len(list) == 0 {
					n.inst.SetOutput(f.OutType.newDiscard())
				} else {
					n.inst.SetOutput(f.OutType.newFanout(list))
				}
			}
		}
	}
	return all, nil
}

// edgeHasRemote reports whether consumer subtask s reads any channel of e
// from another executor.
func edgeHasRemote(p *Placement, e *pb.JobEdge, sv *pb.JobVertex, s int) bool {
	if p == nil {
		return false
	}
	if e.Partitioning == pb.Partitioning_FORWARD {
		return !p.local(sv.Id, s)
	}
	for prod := range int(sv.Parallelism) {
		if !p.local(sv.Id, prod) {
			return true
		}
	}
	return false
}

func (p *Placement) channelID(e *pb.JobEdge, producer, consumer int) network.ChannelID {
	return network.ChannelID{Job: p.JobID, Attempt: p.Attempt, Edge: uint32(e.Id), Producer: uint32(producer), Consumer: uint32(consumer)}
}

func channelDesc(e *pb.JobEdge, sv, tv *pb.JobVertex, producer, consumer int) string {
	return fmt.Sprintf("channel %q -> %q (subtask %d -> %d)", sv.Name, tv.Name, producer, consumer)
}

func targetName(v *pb.JobVertex, uid string) string {
	if i := operatorIndex(v, uid); i >= 0 {
		return v.Operators[i].Name
	}
	return uid
}

func operatorIndex(v *pb.JobVertex, uid string) int {
	for i, op := range v.Operators {
		if op.Uid == uid {
			return i
		}
	}
	return -1
}

func newTask(ctx context.Context, job *Job, v *pb.JobVertex, subtask int, opts *Options) (*task, error) {
	maxP := int(v.MaxParallelism)
	if maxP <= 0 {
		maxP = keygroup.DefaultMaxParallelism(int(v.Parallelism))
	}
	if err := keygroup.CheckParallelism(int(v.Parallelism), maxP); err != nil {
		return nil, fmt.Errorf("vertex %q: %w", v.Name, err)
	}
	t := &task{
		name:           v.Name,
		subtask:        subtask,
		parallelism:    int(v.Parallelism),
		maxParallelism: maxP,
		keyGroups:      keygroup.RangeForOperator(maxP, int(v.Parallelism), subtask),
		ctx:            ctx,
		bufferTimeout:  opts.BufferTimeout,
		config:         job.Graph.Config,
		newBackend:     opts.NewKeyedBackend,
		jobName:        job.Graph.Name,
		id:             TaskID{Vertex: v.Id, Subtask: int32(subtask)},
		hooks:          opts.Checkpoints,
		restore:        opts.Restore,
		mail:           newMailbox(),
		release:        opts.release,
	}
	for _, op := range v.Operators {
		f := job.Factories[op.Uid]
		inst := f.New()
		if len(inst.Inputs) != int(op.NumInputs) {
			return nil, fmt.Errorf("operator %q has %d inputs but the plan gives it %d", op.Uid, len(inst.Inputs), op.NumInputs)
		}
		t.ops = append(t.ops, &opNode{inst: inst, name: op.Name, uid: op.Uid, remaining: len(inst.Inputs)})
	}
	t.live = len(t.ops)
	if v.IsSource {
		src, ok := t.ops[0].inst.Op.(sourceStepper)
		if !ok {
			return nil, fmt.Errorf("operator %q is marked as a source but has no source driver (Step/Finish); "+
				"create sources with stream.FromSource", v.Operators[0].Name)
		}
		t.source = src
	}
	return t, nil
}
