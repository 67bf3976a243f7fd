package worker

import (
	"fmt"

	"github.com/weirstream/weir/internal/cluster/taskwire"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state/pebblestate"
)

// graphInfo is what the worker needs to know of its job graph.
type graphInfo struct {
	parallelism map[int32]int // by vertex id
	maxP        func(uid string) int
}

func newGraphInfo(g *jobgraphpb.JobGraph) *graphInfo {
	gi := &graphInfo{parallelism: map[int32]int{}, maxP: taskwire.MaxParallelism(g)}
	for _, v := range g.GetVertices() {
		gi.parallelism[v.GetId()] = int(v.GetParallelism())
	}
	return gi
}

// placement checks a deployment against the job graph and returns which
// subtasks run here and where the others run.
func (gi *graphInfo) placement(d *clusterpb.Deploy) (local map[runtime.TaskID]bool, addrs map[runtime.TaskID]string, err error) {
	check := func(what string, v, s int32) error {
		p, ok := gi.parallelism[v]
		switch {
		case !ok:
			return fmt.Errorf("attempt %d: the deployment names %s vertex %d, which the job graph this worker built does not have; "+
				"the job binary the TaskManager started differs from the submitted job", d.GetAttempt(), what, v)
		case s < 0 || int(s) >= p:
			return fmt.Errorf("attempt %d: the deployment names %s subtask %d of vertex %d, which has parallelism %d in the job graph this worker built; "+
				"the job binary the TaskManager started differs from the submitted job", d.GetAttempt(), what, s, v, p)
		}
		return nil
	}
	local = map[runtime.TaskID]bool{}
	for _, t := range d.GetTasks() {
		if err := check("task", t.GetVertex(), t.GetSubtask()); err != nil {
			return nil, nil, err
		}
		local[runtime.TaskID{Vertex: t.GetVertex(), Subtask: t.GetSubtask()}] = true
	}
	addrs = map[runtime.TaskID]string{}
	for _, p := range d.GetPeers() {
		if err := check("peer", p.GetVertex(), p.GetSubtask()); err != nil {
			return nil, nil, err
		}
		addrs[runtime.TaskID{Vertex: p.GetVertex(), Subtask: p.GetSubtask()}] = p.GetDataAddress()
	}
	for v, p := range gi.parallelism {
		for s := range int32(p) {
			id := runtime.TaskID{Vertex: v, Subtask: s}
			if !local[id] && addrs[id] == "" {
				return nil, nil, fmt.Errorf("attempt %d: the deployment says neither that %v runs here nor where it runs", d.GetAttempt(), id)
			}
		}
	}
	return local, addrs, nil
}

func decodeRestoreState(ops []*clusterpb.OperatorRestore) (map[string]*runtime.RestoredState, error) {
	return taskwire.DecodeRestore(ops)
}

// hooks receive the checkpoint answers of one attempt's tasks, on the task
// goroutines, and queue them for the JobMaster without blocking.
type hooks struct {
	w       *worker
	attempt uint32
}

func (h *hooks) Ack(a runtime.TaskAck) {
	h.w.out.putLater(func() *clusterpb.WorkerMessage { return h.w.encodeAck(h.attempt, a) })
}

func (h *hooks) Decline(id int64, task runtime.TaskID, err error) {
	h.w.out.put(decline(h.attempt, id, task, err))
}

func (h *hooks) Finished(task runtime.TaskID) {
	h.w.out.put(&clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Finished{Finished: &clusterpb.TaskFinished{
		Attempt: h.attempt, Task: taskRef(task)}}})
}

func decline(attempt uint32, id int64, task runtime.TaskID, err error) *clusterpb.WorkerMessage {
	return &clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Decline{Decline: &clusterpb.TaskDecline{
		Attempt: attempt, Checkpoint: id, Task: taskRef(task), Error: err.Error()}}}
}

// encodeAck completes and encodes a task's acknowledgement, off the task
// goroutine; if that fails, the task declines the checkpoint instead.
func (w *worker) encodeAck(attempt uint32, a runtime.TaskAck) *clusterpb.WorkerMessage {
	for uid, s := range a.Operators {
		if s.Materialize != nil {
			if err := s.Materialize(); err != nil {
				return decline(attempt, a.Checkpoint, a.Task, fmt.Errorf("operator %q: %w", uid, err))
			}
		}
		if err := w.canonicalize(uid, a.Task, s); err != nil {
			return decline(attempt, a.Checkpoint, a.Task, fmt.Errorf("operator %q: %w", uid, err))
		}
	}
	p, err := taskwire.EncodeAck(a, attempt, w.graph.maxP)
	if err != nil {
		return decline(attempt, a.Checkpoint, a.Task, err)
	}
	return &clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Ack{Ack: p}}
}

// canonicalize turns native keyed state (a pebble backend taking
// incremental checkpoints) into the canonical format, which is what the
// protocol carries, and removes the native checkpoint's local files.
func (w *worker) canonicalize(uid string, task runtime.TaskID, s *runtime.OperatorSnapshot) error {
	if s.Native == nil {
		return nil
	}
	f, ok := s.Native.(*pebblestate.Files)
	if !ok {
		return fmt.Errorf("keyed state of type %T cannot be sent to the JobMaster", s.Native)
	}
	defer func() { _ = f.Remove() }()
	w.nativeOnce.Do(func() {
		w.log("incremental checkpoints (execution.checkpointing.incremental) are not yet supported in cluster mode; " +
			"this worker acknowledges full checkpoints in the canonical format")
	})
	maxP, p := w.graph.maxP(uid), w.graph.parallelism[task.Vertex]
	if maxP <= 0 || p <= 0 || int(task.Subtask) >= p {
		return fmt.Errorf("the job graph does not place %v of operator %q", task, uid)
	}
	keyed, err := f.ReadCanonical(keygroup.RangeForOperator(maxP, p, int(task.Subtask)))
	if err != nil {
		return err
	}
	s.Keyed, s.Native = keyed, nil
	return nil
}
