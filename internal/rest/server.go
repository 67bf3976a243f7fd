// Package rest owns Weir's REST API: the HTTP server over the jobs of a
// cluster (a session cluster's Dispatcher, or the embedded local cluster of
// one job process), its listener and discovery file, and the client that
// `weir run --jobmanager`, `list`, `savepoint`, `stop` and `cancel` use.
// Paths and JSON shapes are Flink's where they overlap (DESIGN §9), so
// Flink's tools and scripts keep working:
//
//	GET   /overview                          cluster counts
//	GET   /jobs                              {"jobs":[{"id","status"}]}
//	POST  /jobs                              multipart submission → {"jobid","jobUrl"} (session only)
//	HEAD  /artifacts/:digest                 200 if the Dispatcher has the job binary (session only)
//	GET   /taskmanagers                      {"taskmanagers":[…]} (session only)
//	GET   /taskmanagers/:taskmanagerid       one TaskManager with its allocated slots
//	GET   /jobs/overview                     {"jobs":[{"jid","name","state",…}]}
//	GET   /jobs/:jobid                       details and state timestamps
//	PATCH /jobs/:jobid?mode=cancel           cancel (202)
//	GET   /jobs/:jobid/checkpoints           counts, latest completed
//	GET   /jobs/:jobid/exceptions            the failure, if any
//	POST  /jobs/:jobid/savepoints            {"target-directory","cancel-job"} → {"request-id"}
//	POST  /jobs/:jobid/stop                  {"targetDirectory","drain"} → {"request-id"}
//	GET   /jobs/:jobid/savepoints/:triggerid {"status":{"id"},"operation":{"location"|"failure-cause"}}
//
// Every path may carry Flink's /v1 prefix. Errors are {"errors":[…]} with
// the status code saying what kind.
//
// A savepoint is asynchronous, as in Flink: the trigger answers at once
// with a request id, a goroutine owned by the Server waits for
// jobmaster.Control.TriggerSavepoint, and the client polls the status.
package rest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/jobmaster"
)

// Flink's job states, in the order Flink lists them.
var jobStates = []string{"INITIALIZING", "CREATED", "RUNNING", "FAILING", "FAILED", "CANCELLING",
	"CANCELED", "FINISHED", "RESTARTING", "SUSPENDED", "RECONCILING"}

// flinkState spells a job state as Flink does (CANCELLING with two Ls).
func flinkState(s string) string {
	if s == "CANCELING" {
		return "CANCELLING"
	}
	return s
}

// Terminal reports whether a job in state s has ended for good.
func Terminal(s string) bool {
	switch s {
	case "FINISHED", "FAILED", "CANCELED", "SUSPENDED":
		return true
	}
	return false
}

// Options configure a Server.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is Weir's version, shown by GET /overview.
	Version string
	// Cluster is the session cluster's Dispatcher, which takes submissions
	// and knows the TaskManagers; nil for a job's embedded API.
	Cluster Cluster
}

// Server serves the REST API over a registry of jobs. Jobs stay listed
// with their final status after they end, like Flink's job results.
type Server struct {
	now     func() time.Time
	version string
	cluster Cluster
	handler http.Handler

	// ctx ends the savepoint waits on Close; wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		jobs  map[string]jobmaster.Control
		order []string // job ids in the order they were registered
		ops   map[string]*operation
		// changed is closed and replaced when an operation ends or its
		// result is read, for Drain.
		changed chan struct{}
		closed  bool
	}
}

// operation is one savepoint or stop-with-savepoint.
type operation struct {
	id, jobID   string
	targetDir   string
	stop, drain bool
	triggered   time.Time

	// Set when TriggerSavepoint returns.
	done      bool
	finished  time.Time
	location  string
	err       error
	collected bool // a client has read the result
}

// NewServer returns a Server with no jobs.
func NewServer(o Options) *Server {
	s := &Server{now: o.Now, version: o.Version, cluster: o.Cluster}
	if s.now == nil {
		s.now = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.jobs = map[string]jobmaster.Control{}
	s.mu.ops = map[string]*operation{}
	s.mu.changed = make(chan struct{})

	api := http.NewServeMux()
	api.HandleFunc("/overview", s.methods(map[string]http.HandlerFunc{"GET": s.overview}))
	api.HandleFunc("/jobs", s.methods(map[string]http.HandlerFunc{"GET": s.jobIDs, "POST": s.submit}))
	api.HandleFunc("/jobs/overview", s.methods(map[string]http.HandlerFunc{"GET": s.jobsOverview}))
	api.HandleFunc("/jobs/{jobid}", s.methods(map[string]http.HandlerFunc{"GET": s.jobDetails, "PATCH": s.terminate}))
	api.HandleFunc("/jobs/{jobid}/checkpoints", s.methods(map[string]http.HandlerFunc{"GET": s.checkpoints}))
	api.HandleFunc("/jobs/{jobid}/exceptions", s.methods(map[string]http.HandlerFunc{"GET": s.exceptions}))
	api.HandleFunc("/jobs/{jobid}/savepoints", s.methods(map[string]http.HandlerFunc{"POST": s.triggerSavepoint}))
	api.HandleFunc("/jobs/{jobid}/savepoints/{triggerid}", s.methods(map[string]http.HandlerFunc{"GET": s.savepointStatus}))
	api.HandleFunc("/jobs/{jobid}/stop", s.methods(map[string]http.HandlerFunc{"POST": s.stop}))
	api.HandleFunc("/artifacts/{digest}", s.methods(map[string]http.HandlerFunc{"GET": s.artifactInfo, "HEAD": s.artifactInfo}))
	api.HandleFunc("/taskmanagers", s.methods(map[string]http.HandlerFunc{"GET": s.taskManagers}))
	api.HandleFunc("/taskmanagers/{tmid}", s.methods(map[string]http.HandlerFunc{"GET": s.taskManager}))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not found: %s", r.URL.Path)
	})
	root := http.NewServeMux()
	root.Handle("/v1/", http.StripPrefix("/v1", api))
	root.Handle("/", api)
	s.handler = root
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Register adds a job. Registering an id again replaces its Control (a
// job master that took over the job).
func (s *Server) Register(jobID string, c jobmaster.Control) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.jobs[jobID]; !ok {
		s.mu.order = append(s.mu.order, jobID)
	}
	s.mu.jobs[jobID] = c
}

// Drain waits until no savepoint is in progress and every finished one has
// been read by a client, or ctx ends: a client polling a stop-with-savepoint
// then sees it complete even though the job, and with it the embedded
// cluster's API, ends right after.
func (s *Server) Drain(ctx context.Context) {
	for {
		s.mu.Lock()
		busy := false
		for _, op := range s.mu.ops {
			busy = busy || !op.done || !op.collected
		}
		changed := s.mu.changed
		s.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops the savepoint waits still running and waits for them.
// Requests that trigger savepoints are refused from then on.
func (s *Server) Close() {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// notifyLocked wakes Drain.
func (s *Server) notifyLocked() {
	close(s.mu.changed)
	s.mu.changed = make(chan struct{})
}

// methods dispatches on the request method and answers others with 405.
func (s *Server) methods(m map[string]http.HandlerFunc) http.HandlerFunc {
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	return func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, http.StatusMethodNotAllowed, "%s %s is not supported; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or "))
			return
		}
		h(w, r)
	}
}

// snapshot is a job's status with its Flink spelling.
type snapshot struct {
	id string
	st jobmaster.Status
}

func (s *Server) jobList() []snapshot {
	s.mu.Lock()
	ids := append([]string(nil), s.mu.order...)
	controls := make([]jobmaster.Control, len(ids))
	for i, id := range ids {
		controls[i] = s.mu.jobs[id]
	}
	s.mu.Unlock()
	// Status takes the job master's lock: call it outside ours.
	out := make([]snapshot, len(ids))
	for i, c := range controls {
		out[i] = snapshot{id: ids[i], st: c.Status()}
		out[i].st.State = flinkState(out[i].st.State)
	}
	return out
}

// lookup resolves the request's :jobid, answering 400 or 404 itself.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (string, jobmaster.Control, bool) {
	id := strings.ToLower(r.PathValue("jobid"))
	if !isHexID(id) {
		writeError(w, http.StatusBadRequest, "%q is not a job id: a job id is 32 hex digits (weir list shows them)", r.PathValue("jobid"))
		return "", nil, false
	}
	s.mu.Lock()
	c, ok := s.mu.jobs[id]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Job %s not found", id)
		return "", nil, false
	}
	return id, c, true
}

func isHexID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}

// times returns a job's start, end (-1 while it runs) and duration.
func (s *Server) times(st jobmaster.Status, now time.Time) (start, end, duration int64) {
	start, end = millis(st.StartTime), millis(st.EndTime)
	switch {
	case st.StartTime.IsZero():
		duration = -1
	case st.EndTime.IsZero():
		duration = now.Sub(st.StartTime).Milliseconds()
	default:
		duration = st.EndTime.Sub(st.StartTime).Milliseconds()
	}
	return start, end, duration
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	o := ClusterOverview{TaskManagers: 1, WeirVersion: s.version, Session: s.cluster != nil}
	if s.cluster != nil {
		tms := s.cluster.TaskManagers()
		o.TaskManagers = len(tms)
		for _, tm := range tms {
			o.SlotsTotal += tm.SlotsNumber
			o.SlotsAvailable += tm.FreeSlots
		}
	}
	for _, j := range s.jobList() {
		switch j.st.State {
		case "FINISHED":
			o.JobsFinished++
		case "CANCELED":
			o.JobsCancelled++
		case "FAILED":
			o.JobsFailed++
		default:
			o.JobsRunning++
		}
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) jobIDs(w http.ResponseWriter, r *http.Request) {
	body := JobIDsWithStatus{Jobs: []JobIDWithStatus{}}
	for _, j := range s.jobList() {
		body.Jobs = append(body.Jobs, JobIDWithStatus{ID: j.id, Status: j.st.State})
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) jobsOverview(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	body := MultipleJobsDetails{Jobs: []JobOverview{}}
	for _, j := range s.jobList() {
		start, end, duration := s.times(j.st, now)
		var last time.Time
		for _, t := range j.st.Timestamps {
			if t.After(last) {
				last = t
			}
		}
		body.Jobs = append(body.Jobs, JobOverview{ID: j.id, Name: j.st.Name, State: j.st.State,
			StartTime: start, EndTime: end, Duration: duration, LastModification: millis(last)})
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) status(c jobmaster.Control) jobmaster.Status {
	st := c.Status()
	st.State = flinkState(st.State)
	return st
}

func (s *Server) jobDetails(w http.ResponseWriter, r *http.Request) {
	id, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	st := s.status(c)
	now := s.now()
	start, end, duration := s.times(st, now)
	d := JobDetails{ID: id, Name: st.Name, State: st.State, StartTime: start, EndTime: end, Duration: duration,
		MaxParallelism: -1, Now: now.UnixMilli(), Timestamps: map[string]int64{},
		Vertices: []JobVertex{}, StatusCounts: map[string]int{}}
	for _, state := range jobStates {
		d.Timestamps[state] = 0
	}
	for state, t := range st.Timestamps {
		d.Timestamps[flinkState(state)] = t.UnixMilli()
	}
	d.Vertices, d.StatusCounts, d.MaxParallelism = vertices(st.Vertices)
	writeJSON(w, http.StatusOK, d)
}

// Flink's execution states, the keys of a vertex's tasks and of a job's
// status-counts. Note CANCELING with one L, unlike the job state.
var executionStates = []string{"CREATED", "SCHEDULED", "DEPLOYING", "RUNNING", "FINISHED", "CANCELING",
	"CANCELED", "FAILED", "RECONCILING", "INITIALIZING"}

// vertices turns the job master's vertices into Flink's: the vertex list,
// how many vertices are in each execution state, and the job's max
// parallelism (the largest vertex's, -1 if none is known).
func vertices(vs []jobmaster.VertexStatus) ([]JobVertex, map[string]int, int64) {
	out := make([]JobVertex, 0, len(vs))
	counts := map[string]int{}
	for _, state := range executionStates {
		counts[state] = 0
	}
	maxPar := int64(-1)
	for _, v := range vs {
		tasks := map[string]int{}
		for _, state := range executionStates {
			tasks[state] = 0
		}
		for state, n := range v.Counts {
			tasks[executionState(state)] += n
		}
		state := executionState(v.State)
		counts[state]++
		mp := v.MaxParallelism
		if mp > 0 {
			maxPar = max(maxPar, int64(mp))
		} else {
			mp = -1
		}
		out = append(out, JobVertex{ID: vertexID(v.ID), Name: v.Name, MaxParallelism: mp, Parallelism: v.Parallelism,
			Status: state, StartTime: -1, EndTime: -1, Duration: -1, Tasks: tasks})
	}
	return out, counts, maxPar
}

// executionState spells an execution state as Flink does.
func executionState(s string) string {
	if s == "CANCELLING" {
		return "CANCELING"
	}
	return s
}

// vertexID writes a JobGraph vertex id as Flink's JobVertexID: 32 hex
// digits.
func vertexID(id int32) string {
	return fmt.Sprintf("%032x", uint32(id))
}

// terminate is PATCH /jobs/:jobid: mode=cancel (the default) cancels.
func (s *Server) terminate(w http.ResponseWriter, r *http.Request) {
	id, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	switch mode := strings.ToLower(r.URL.Query().Get("mode")); mode {
	case "", "cancel":
	case "stop":
		writeError(w, http.StatusBadRequest, "mode=stop is not supported; POST /jobs/%s/stop stops the job with a savepoint", id)
		return
	default:
		writeError(w, http.StatusBadRequest, "unknown mode %q; the only mode is cancel", mode)
		return
	}
	if st := s.status(c); Terminal(st.State) {
		writeError(w, http.StatusConflict, "Job %s has already ended: it is %s", id, st.State)
		return
	}
	c.Cancel()
	writeJSON(w, http.StatusAccepted, struct{}{})
}

func (s *Server) checkpoints(w http.ResponseWriter, r *http.Request) {
	id, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	st := s.status(c)
	body := CheckpointingStatistics{History: []CheckpointStatistics{}}
	body.Counts.Completed = int64(st.CompletedCheckpoints)
	body.Counts.Failed = int64(st.FailedCheckpoints)
	if st.LatestCheckpoint > 0 {
		body.Latest.Completed = &CheckpointStatistics{ClassName: "completed", ID: st.LatestCheckpoint,
			Status: "COMPLETED", CheckpointType: "CHECKPOINT"}
	}
	// The savepoints this API triggered: in progress ones, and the newest
	// completed one.
	s.mu.Lock()
	var latest *operation
	for _, op := range s.mu.ops {
		switch {
		case op.jobID != id:
		case !op.done:
			body.Counts.InProgress++
		case op.err == nil && (latest == nil || op.finished.After(latest.finished)):
			latest = op
		}
	}
	if latest != nil {
		kind := "SAVEPOINT"
		if latest.stop {
			kind = "SYNC_SAVEPOINT"
		}
		body.Latest.Savepoint = &CheckpointStatistics{ClassName: "completed", Status: "COMPLETED", IsSavepoint: true,
			CheckpointType: kind, TriggerTimestamp: latest.triggered.UnixMilli(),
			LatestAckTimestamp: latest.finished.UnixMilli(), ExternalPath: latest.location}
	}
	s.mu.Unlock()
	body.Counts.Total = body.Counts.Completed + body.Counts.Failed + body.Counts.InProgress
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) exceptions(w http.ResponseWriter, r *http.Request) {
	_, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	st := s.status(c)
	body := JobExceptions{AllExceptions: []any{}, RootException: st.Failure}
	if st.Failure != "" {
		if t, ok := st.Timestamps["FAILED"]; ok {
			body.Timestamp = t.UnixMilli()
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// maxBody bounds request bodies; the largest real one is a few hundred
// bytes.
const maxBody = 1 << 20

// decodeBody reads a JSON request body into v; an empty body leaves v as
// is. Unknown fields are refused, so a misspelt option is not ignored.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body: %v", err)
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "Request did not match expected format: %v", err)
		return false
	}
	return true
}

func checkFormat(w http.ResponseWriter, format string) bool {
	switch strings.ToUpper(format) {
	case "", "CANONICAL":
		return true
	case "NATIVE":
		writeError(w, http.StatusBadRequest, "formatType NATIVE is not supported: Weir takes savepoints in the canonical format only; omit formatType")
	default:
		writeError(w, http.StatusBadRequest, "unknown formatType %q; use CANONICAL", format)
	}
	return false
}

func (s *Server) triggerSavepoint(w http.ResponseWriter, r *http.Request) {
	id, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req SavepointTriggerRequest
	if !decodeBody(w, r, &req) || !checkFormat(w, req.FormatType) {
		return
	}
	s.trigger(w, id, c, &operation{targetDir: req.TargetDirectory, stop: req.CancelJob}, req.TriggerID)
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	id, c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req StopRequest
	if !decodeBody(w, r, &req) || !checkFormat(w, req.FormatType) {
		return
	}
	s.trigger(w, id, c, &operation{targetDir: req.TargetDirectory, stop: true, drain: req.Drain}, req.TriggerID)
}

// trigger starts a savepoint operation and answers with its request id.
func (s *Server) trigger(w http.ResponseWriter, jobID string, c jobmaster.Control, op *operation, triggerID string) {
	if triggerID != "" {
		triggerID = strings.ToLower(triggerID)
		if !isHexID(triggerID) {
			writeError(w, http.StatusBadRequest, "triggerId %q is not 32 hex digits", triggerID)
			return
		}
	}
	if st := s.status(c); Terminal(st.State) {
		writeError(w, http.StatusConflict, "Job %s has ended (%s): only a running job can take a savepoint", jobID, st.State)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		writeError(w, http.StatusServiceUnavailable, "the job's REST API is shutting down; the job has ended")
		return
	}
	if triggerID != "" {
		if prev, ok := s.mu.ops[triggerID]; ok {
			if prev.jobID != jobID {
				writeError(w, http.StatusConflict, "triggerId %s belongs to another job's operation", triggerID)
				return
			}
			// A retry of the same trigger: the same operation.
			writeJSON(w, http.StatusAccepted, TriggerResponse{RequestID: triggerID})
			return
		}
	} else {
		triggerID = newTriggerID()
	}
	op.id, op.jobID, op.triggered = triggerID, jobID, s.now()
	s.mu.ops[triggerID] = op
	s.wg.Add(1)
	go s.await(c, op)
	writeJSON(w, http.StatusAccepted, TriggerResponse{RequestID: triggerID})
}

// await takes the savepoint and records its outcome.
func (s *Server) await(c jobmaster.Control, op *operation) {
	defer s.wg.Done()
	path, err := c.TriggerSavepoint(s.ctx, op.targetDir, op.stop, op.drain)
	if err == nil && path == "" {
		err = errors.New("the job master reported no savepoint path")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	op.done, op.finished, op.location, op.err = true, s.now(), path, err
	s.notifyLocked()
}

func (s *Server) savepointStatus(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.lookup(w, r)
	if !ok {
		return
	}
	tid := strings.ToLower(r.PathValue("triggerid"))
	s.mu.Lock()
	op, found := s.mu.ops[tid]
	if !found || op.jobID != id {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "There is no savepoint operation with triggerId=%s for job %s", tid, id)
		return
	}
	body := AsynchronousOperationResult{Status: QueueStatus{ID: InProgress}}
	if op.done {
		body.Status.ID = Completed
		body.Operation = &SavepointInfo{Location: op.location}
		if op.err != nil {
			body.Operation = &SavepointInfo{FailureCause: failureCause(op)}
		}
		if !op.collected {
			op.collected = true
			s.notifyLocked()
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// failureCause describes why a savepoint failed.
func failureCause(op *operation) *FailureCause {
	class := "weir.SavepointFailure"
	switch {
	case errors.Is(op.err, context.Canceled):
		class = "weir.Canceled"
	case errors.Is(op.err, context.DeadlineExceeded):
		class = "weir.Timeout"
	}
	what := "savepoint"
	if op.stop {
		what = "stop-with-savepoint"
	}
	return &FailureCause{Class: class, StackTrace: fmt.Sprintf("%s of job %s failed: %v", what, op.jobID, op.err)}
}

func newTriggerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"errors":["encoding the response failed"]}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, ErrorResponse{Errors: []string{fmt.Sprintf(format, args...)}})
}
