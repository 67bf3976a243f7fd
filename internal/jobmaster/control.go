package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/coordinator"
	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/config"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/internal/runtime"
)

// Control steers a running job from outside: the REST API and the CLI's
// savepoint, stop and cancel commands. Its methods are safe for concurrent
// use.
type Control interface {
	// Status returns the job's current status.
	Status() Status
	// TriggerSavepoint takes a savepoint into a new directory under dir
	// (state.savepoints.dir when dir is empty) and returns the savepoint's
	// path once it is complete. With stop set the job then ends (FINISHED);
	// drain first advances event time to the end, firing all timers and
	// windows, as `weir stop --drain` does.
	TriggerSavepoint(ctx context.Context, dir string, stop, drain bool) (path string, err error)
	// Cancel cancels the job; it returns at once.
	Cancel()
}

// Status is a job's state as the REST API shows it.
type Status struct {
	JobID string
	Name  string
	// State is one of Flink's job states: INITIALIZING, RUNNING,
	// RESTARTING, FINISHED, FAILED, CANCELLING, CANCELED.
	State     string
	StartTime time.Time
	// EndTime is zero while the job runs.
	EndTime time.Time
	// Timestamps holds when the job entered each state it has been in.
	Timestamps map[string]time.Time
	// Checkpoints counts completed and failed checkpoints; LatestCheckpoint
	// is the id of the newest completed one (0: none).
	CompletedCheckpoints int
	FailedCheckpoints    int
	LatestCheckpoint     int64
	Restarts             int
	// Failure is the error that failed the job, or the last one it
	// restarted from.
	Failure string
	// Vertices are the job's vertices (chained tasks) in the JobGraph's
	// order; nil when the job master does not track them (the embedded
	// cluster's).
	Vertices []VertexStatus
}

// VertexStatus is one vertex of a job as the REST API shows it.
type VertexStatus struct {
	// ID is the JobGraph vertex id.
	ID   int32
	Name string
	// Parallelism is the vertex's number of subtasks; MaxParallelism its
	// number of key groups (0: unknown).
	Parallelism    int
	MaxParallelism int
	// State is the vertex's aggregate execution state, one of Flink's
	// ExecutionStates: CREATED, SCHEDULED, DEPLOYING, INITIALIZING,
	// RUNNING, FINISHED, CANCELING, CANCELED, FAILED.
	State string
	// Counts is how many of its subtasks are in each execution state.
	Counts map[string]int
}

// errNoSavepointDir is returned when a savepoint has nowhere to go.
var errNoSavepointDir = errors.New("no savepoint directory: give one (weir savepoint JOB DIR, weir stop --savepoint-dir DIR) or set state.savepoints.dir")

// Status implements Control.
func (m *master) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Timestamps = maps.Clone(s.Timestamps)
	s.Vertices = cloneVertices(s.Vertices)
	return s
}

// cloneVertices copies vs deeply, so that a Status handed out does not
// share the Counts maps the job master goes on updating.
func cloneVertices(vs []VertexStatus) []VertexStatus {
	if vs == nil {
		return nil
	}
	out := make([]VertexStatus, len(vs))
	for i, v := range vs {
		v.Counts = maps.Clone(v.Counts)
		out[i] = v
	}
	return out
}

// Cancel implements Control.
func (m *master) Cancel() {
	m.setState("CANCELLING")
	m.cancel()
}

// TriggerSavepoint implements Control.
func (m *master) TriggerSavepoint(ctx context.Context, dir string, stop, drain bool) (string, error) {
	if dir == "" {
		dir = m.o.Config.String(config.SavepointsDir)
	}
	if dir == "" {
		return "", errNoSavepointDir
	}
	if !m.enabled {
		// Without periodic checkpoints the tasks do not take part in
		// checkpoints at all.
		return "", fmt.Errorf("savepoints need checkpoints on: run the job with -D %s=…", config.CheckpointingInterval.Name)
	}
	// Check the directory now rather than after the tasks took the
	// savepoint.
	st, err := storage.Open(ctx, absURI(dir))
	if err != nil {
		return "", err
	}
	st.Close()
	req := savepointRequest{dir: absURI(dir), stop: stop, drain: drain, reply: make(chan savepointResult, 1)}
	select {
	case m.requests <- req:
	case <-m.done:
		return "", errors.New("the job has ended")
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.path, r.err
	case <-m.done:
		return "", errors.New("the job ended before the savepoint completed")
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func absURI(dir string) string {
	if strings.Contains(dir, "://") {
		return dir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

func (m *master) setState(state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status.State == state {
		return
	}
	m.status.State = state
	now := time.Now()
	m.status.Timestamps[state] = now
	switch state {
	case "FINISHED", "FAILED", "CANCELED":
		m.status.EndTime = now
	}
}

func (m *master) setFailure(err error) {
	m.mu.Lock()
	m.status.Failure = err.Error()
	m.mu.Unlock()
}

// requestSavepoint starts a savepoint for a request from Control.
func (a *attempt) requestSavepoint(req savepointRequest) {
	a.m.seq++
	rid := coordinator.RequestID(fmt.Sprintf("savepoint-%d", a.m.seq))
	kind := coordinator.Savepoint
	if req.stop {
		kind = coordinator.StopWithSavepoint
	}
	a.requests[rid] = req
	acts := a.coord.Handle(time.Now(), coordinator.TriggerSavepoint{Request: rid, Kind: kind, Drain: req.drain})
	for _, act := range acts {
		if t, ok := act.(coordinator.TriggerCheckpoint); ok && t.Kind.IsSavepoint() {
			a.reqOf[int64(t.ID)] = rid
		}
	}
	for _, act := range acts {
		a.do(act)
	}
}

// savepointDir is the target directory of savepoint id.
func (a *attempt) savepointDir(id int64) string {
	return a.requests[a.reqOf[id]].dir
}

// failRequests answers the requests still open when the attempt ends.
func (a *attempt) failRequests(err error) {
	for rid, req := range a.requests {
		if err == nil {
			err = errors.New("the job ended")
		}
		req.reply <- savepointResult{err: fmt.Errorf("savepoint not taken: %w", err)}
		delete(a.requests, rid)
	}
}

// maybeReleaseStopped lets the tasks of a job stopped with a savepoint
// exit once all have finished.
func (a *attempt) maybeReleaseStopped() {
	if a.stopped && a.finished == len(a.m.tasks) {
		a.exec.Release()
	}
}

// writeSavepoint writes a savepoint into a new directory under dir and
// returns its path.
func writeSavepoint(ctx context.Context, dir, jobID string, ops map[string]operatorInfo, id int64, ts time.Time, acks []runtime.TaskAck) (string, error) {
	if dir == "" {
		return "", errNoSavepointDir
	}
	st, err := storage.Open(ctx, dir)
	if err != nil {
		return "", err
	}
	defer st.Close()
	name := storage.NewSavepointDirName(jobID)
	loc := storage.SavepointLocation(name)
	md, err := buildMetadata(ctx, st, loc, jobID, ops, id, pb.Kind_SAVEPOINT, ts, acks)
	if err == nil {
		_, err = storage.WriteMetadata(ctx, st, loc, md)
	}
	if err != nil {
		st.DeleteAll(context.Background(), name)
		return "", fmt.Errorf("writing savepoint %d: %w", id, err)
	}
	return strings.TrimPrefix(strings.TrimSuffix(st.URI(), "/")+"/"+name, "file://"), nil
}

// removeSavepoint deletes an aborted savepoint's directory.
func removeSavepoint(path string) {
	ctx := context.Background()
	parent, base := pathDir(path), pathBase(path)
	if st, err := storage.Open(ctx, absURI(parent)); err == nil {
		st.DeleteAll(ctx, base)
		st.Close()
	}
}
