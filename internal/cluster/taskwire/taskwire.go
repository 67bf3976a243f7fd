// Package taskwire translates the checkpoint types of the executor
// (internal/runtime) to and from the messages of the worker ⇄ JobMaster
// protocol (internal/pb/clusterpb).
//
//	worker                                        JobMaster
//	runtime.TaskAck ── EncodeAck ──▶ clusterpb.TaskAck ── DecodeAck ──▶ runtime.TaskAck
//	runtime.RestoredState ◀── DecodeRestore ── clusterpb.OperatorRestore ◀── EncodeRestore
//
// Keyed state and timers travel in the canonical keyed-state format of
// checkpoint storage (storage.WriteKeyedState), so what a worker
// acknowledges is byte for byte what the JobMaster would write to a state
// file, and the decoder checks the same checksums as a restore from a file.
// Operator state (a source's position, a sink's pending commits) travels
// as the operator wrote it.
//
// Decoding never trusts its input: a damaged or hostile message gives an
// error naming the operator, never a panic.
package taskwire

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// MaxParallelism returns the number of key groups of each operator of g by
// uid: the vertex's max parallelism, or the default derived from its
// parallelism when it sets none (as the JobMaster does when it persists a
// checkpoint). The function returns 0 for a uid g does not have.
func MaxParallelism(g *jobgraphpb.JobGraph) func(uid string) int {
	byUID := map[string]int{}
	for _, v := range g.GetVertices() {
		maxP := int(v.GetMaxParallelism())
		if maxP <= 0 {
			maxP = keygroup.DefaultMaxParallelism(int(v.GetParallelism()))
		}
		for _, op := range v.GetOperators() {
			byUID[op.GetUid()] = maxP
		}
	}
	return func(uid string) int { return byUID[uid] }
}

// EncodeSnapshot encodes one operator instance's state. It completes a
// snapshot the task left to be built later (Materialize) first. Keyed state
// must be canonical: a native snapshot (an incremental checkpoint's local
// files) must be converted by the caller, which knows its key groups.
// maxParallelism is the operator's number of key groups; it is needed only
// when the snapshot has keyed state or timers. A nil snapshot encodes as
// an empty message (no state).
func EncodeSnapshot(s *runtime.OperatorSnapshot, maxParallelism int) (*clusterpb.SubtaskSnapshot, error) {
	p := &clusterpb.SubtaskSnapshot{}
	if s == nil {
		return p, nil
	}
	if s.Materialize != nil {
		if err := s.Materialize(); err != nil {
			return nil, err
		}
	}
	if s.Native != nil {
		return nil, fmt.Errorf("keyed state in a backend's native format (%T) cannot be sent to the JobMaster; convert it to the canonical format first", s.Native)
	}
	if s.Keyed != nil || s.Timers != nil {
		var buf bytes.Buffer
		if err := storage.WriteKeyedState(&buf, maxParallelism, s.Keyed, s.Timers); err != nil {
			return nil, err
		}
		p.Keyed = buf.Bytes()
	}
	if s.Operator != nil {
		p.Operator, p.HasOperator = s.Operator, true
	}
	return p, nil
}

// DecodeSnapshot decodes one operator instance's state; name (e.g.
// `operator "sum" subtask 1`) appears in errors. An empty message (no keyed
// state, no operator state) decodes as nil: no state. Keyed state present
// in the message decodes to non-nil Keyed and Timers, as a restore from a
// state file does.
func DecodeSnapshot(p *clusterpb.SubtaskSnapshot, name string) (s *runtime.OperatorSnapshot, err error) {
	if p == nil || len(p.GetKeyed()) == 0 && !p.GetHasOperator() {
		return nil, nil
	}
	// The reader checks lengths and checksums; this is the last line of
	// defence against a message that slips past them.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%s: undecodable keyed state: %v", name, r)
		}
	}()
	s = &runtime.OperatorSnapshot{}
	if b := p.GetKeyed(); len(b) > 0 {
		kr, err := storage.NewKeyedStateReader(bytes.NewReader(b), int64(len(b)), name)
		if err != nil {
			return nil, err
		}
		keyed, timers, err := kr.Read(keygroup.Range{Start: 0, End: kr.MaxParallelism() - 1})
		if err != nil {
			return nil, err
		}
		s.Keyed, s.Timers = keyed, timers
	}
	if p.GetHasOperator() {
		s.Operator = p.GetOperator()
		if s.Operator == nil {
			s.Operator = []byte{}
		}
	}
	return s, nil
}

// EncodeAck encodes a task's acknowledgement of a checkpoint in attempt;
// maxP gives each operator's number of key groups (MaxParallelism).
func EncodeAck(a runtime.TaskAck, attempt uint32, maxP func(uid string) int) (*clusterpb.TaskAck, error) {
	p := &clusterpb.TaskAck{
		Attempt:    attempt,
		Checkpoint: a.Checkpoint,
		Task:       &clusterpb.TaskRef{Vertex: a.Task.Vertex, Subtask: a.Task.Subtask},
		Operators:  make(map[string]*clusterpb.SubtaskSnapshot, len(a.Operators)),
		Finished:   a.Finished,
	}
	for _, uid := range slices.Sorted(maps.Keys(a.Operators)) {
		s, err := encodeOperator(a.Operators[uid], uid, maxP)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d: operator %q subtask %d: %w", a.Checkpoint, uid, a.Task.Subtask, err)
		}
		p.Operators[uid] = s
	}
	return p, nil
}

func encodeOperator(s *runtime.OperatorSnapshot, uid string, maxP func(string) int) (*clusterpb.SubtaskSnapshot, error) {
	n := maxP(uid)
	if s != nil && (s.Keyed != nil || s.Timers != nil || s.Materialize != nil) && n <= 0 {
		return nil, fmt.Errorf("the job graph has no operator with uid %q, so its number of key groups is unknown", uid)
	}
	return EncodeSnapshot(s, n)
}

// DecodeAck decodes a task's acknowledgement. Every operator in the
// message is in the result, with an empty snapshot if it sent no state, so
// that the receiver can treat a TaskAck from a worker as one from a local
// executor.
func DecodeAck(p *clusterpb.TaskAck) (runtime.TaskAck, error) {
	task := runtime.TaskID{Vertex: p.GetTask().GetVertex(), Subtask: p.GetTask().GetSubtask()}
	a := runtime.TaskAck{Checkpoint: p.GetCheckpoint(), Task: task, Finished: p.GetFinished(),
		Operators: make(map[string]*runtime.OperatorSnapshot, len(p.GetOperators()))}
	for uid, sp := range p.GetOperators() {
		name := fmt.Sprintf("operator %q subtask %d in checkpoint %d", uid, task.Subtask, a.Checkpoint)
		s, err := DecodeSnapshot(sp, name)
		if err != nil {
			return runtime.TaskAck{}, err
		}
		if s == nil {
			s = &runtime.OperatorSnapshot{}
		}
		a.Operators[uid] = s
	}
	return a, nil
}

// EncodeRestore encodes the state an attempt restores from, by operator
// uid (sorted, so that equal states give equal messages). A restored
// snapshot in a backend's native format (from an incremental checkpoint)
// is converted to the canonical format, which reads it from checkpoint
// storage.
func EncodeRestore(m map[string]*runtime.RestoredState, maxP func(uid string) int) ([]*clusterpb.OperatorRestore, error) {
	out := make([]*clusterpb.OperatorRestore, 0, len(m))
	for _, uid := range slices.Sorted(maps.Keys(m)) {
		rs := m[uid]
		if rs == nil {
			continue
		}
		op := &clusterpb.OperatorRestore{Uid: uid, Checkpoint: rs.Checkpoint,
			Subtasks: make([]*clusterpb.SubtaskSnapshot, len(rs.Snapshots))}
		for i, s := range rs.Snapshots {
			s, err := canonical(s, maxP(uid))
			if err == nil {
				op.Subtasks[i], err = encodeOperator(s, uid, maxP)
			}
			if err != nil {
				return nil, fmt.Errorf("restoring checkpoint %d: operator %q subtask %d: %w", rs.Checkpoint, uid, i, err)
			}
		}
		out = append(out, op)
	}
	return out, nil
}

// canonical returns s with its native keyed state, if any, read into the
// canonical format.
func canonical(s *runtime.OperatorSnapshot, maxP int) (*runtime.OperatorSnapshot, error) {
	if s == nil || s.Native == nil {
		return s, nil
	}
	n, ok := s.Native.(state.NativeState)
	if !ok {
		return nil, fmt.Errorf("keyed state of type %T cannot be read in the canonical format", s.Native)
	}
	if maxP <= 0 {
		return nil, fmt.Errorf("unknown number of key groups")
	}
	keyed, err := n.ReadCanonical(context.Background(), keygroup.Range{Start: 0, End: maxP - 1})
	if err != nil {
		return nil, err
	}
	c := *s
	c.Keyed, c.Native = keyed, nil
	return &c, nil
}

// DecodeRestore decodes the state an attempt restores from.
func DecodeRestore(ops []*clusterpb.OperatorRestore) (map[string]*runtime.RestoredState, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	out := make(map[string]*runtime.RestoredState, len(ops))
	for _, op := range ops {
		uid := op.GetUid()
		if _, dup := out[uid]; dup {
			return nil, fmt.Errorf("the restore state names operator %q twice", uid)
		}
		rs := &runtime.RestoredState{Checkpoint: op.GetCheckpoint(), Snapshots: make([]*runtime.OperatorSnapshot, len(op.GetSubtasks()))}
		for i, sp := range op.GetSubtasks() {
			name := fmt.Sprintf("operator %q subtask %d of checkpoint %d", uid, i, rs.Checkpoint)
			s, err := DecodeSnapshot(sp, name)
			if err != nil {
				return nil, err
			}
			rs.Snapshots[i] = s
		}
		out[uid] = rs
	}
	return out, nil
}
