package rest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/internal/jobmaster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	jobA = "0123456789abcdef0123456789abcdef"
	jobB = "fedcba9876543210fedcba9876543210"
)

// newTestServer serves a running job A and a finished job B, with the
// clock at t0+1m.
func newTestServer(t *testing.T) (*Server, *fakeControl, *fakeControl) {
	t.Helper()
	s := NewServer(Options{Now: func() time.Time { return t0.Add(time.Minute) }, Version: "test"})
	t.Cleanup(s.Close)
	a := newFake(jobA, "datagen", "RUNNING")
	a.set(func(st *jobmaster.Status) {
		st.CompletedCheckpoints, st.FailedCheckpoints, st.LatestCheckpoint = 7, 1, 9
	})
	b := newFake(jobB, "wordcount", "FINISHED")
	b.set(func(st *jobmaster.Status) { st.EndTime = t0.Add(10 * time.Second) })
	s.Register(jobA, a)
	s.Register(jobB, b)
	return s, a, b
}

// call sends one request to h and decodes the JSON answer.
func call(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, want JSON", method, path, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %v\n%s", method, path, err, rec.Body.String())
	}
	return rec.Code, m
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// remarshal turns a JSON-decoded value into v.
func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

func TestListings(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, prefix := range []string{"", "/v1"} {
		code, m := call(t, s, "GET", prefix+"/jobs", "")
		want := map[string]any{"jobs": []any{
			map[string]any{"id": jobA, "status": "RUNNING"},
			map[string]any{"id": jobB, "status": "FINISHED"},
		}}
		if code != 200 || !reflect.DeepEqual(m, want) {
			t.Errorf("GET %s/jobs = %d %v, want 200 %v", prefix, code, m, want)
		}
	}

	code, m := call(t, s, "GET", "/jobs/overview", "")
	var ov MultipleJobsDetails
	remarshal(t, m, &ov)
	wantOv := []JobOverview{
		{ID: jobA, Name: "datagen", State: "RUNNING", StartTime: t0.UnixMilli(), EndTime: -1,
			Duration: time.Minute.Milliseconds(), LastModification: t0.Add(time.Second).UnixMilli()},
		{ID: jobB, Name: "wordcount", State: "FINISHED", StartTime: t0.UnixMilli(), EndTime: t0.Add(10 * time.Second).UnixMilli(),
			Duration: 10_000, LastModification: t0.Add(time.Second).UnixMilli()},
	}
	if code != 200 || !reflect.DeepEqual(ov.Jobs, wantOv) {
		t.Errorf("GET /jobs/overview = %d %+v, want %+v", code, ov.Jobs, wantOv)
	}
	// Flink's field names, exactly.
	first := m["jobs"].([]any)[0].(map[string]any)
	if got, want := keys(first), []string{"duration", "end-time", "jid", "last-modification", "name", "start-time", "state"}; !reflect.DeepEqual(got, want) {
		t.Errorf("job overview fields %v, want %v", got, want)
	}

	code, m = call(t, s, "GET", "/overview", "")
	var co ClusterOverview
	remarshal(t, m, &co)
	if code != 200 || co.JobsRunning != 1 || co.JobsFinished != 1 || co.JobsCancelled != 0 || co.JobsFailed != 0 || co.WeirVersion != "test" {
		t.Errorf("GET /overview = %d %+v", code, co)
	}
	for _, k := range []string{"taskmanagers", "slots-total", "slots-available", "jobs-running", "jobs-finished", "jobs-cancelled", "jobs-failed"} {
		if _, ok := m[k]; !ok {
			t.Errorf("GET /overview lacks Flink's %q: %v", k, m)
		}
	}
}

func TestEmptyRegistry(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	for _, path := range []string{"/jobs", "/jobs/overview"} {
		if code, m := call(t, s, "GET", path, ""); code != 200 || !reflect.DeepEqual(m, map[string]any{"jobs": []any{}}) {
			t.Errorf("GET %s with no jobs = %d %v, want an empty list", path, code, m)
		}
	}
}

func TestJobDetails(t *testing.T) {
	s, a, _ := newTestServer(t)
	code, m := call(t, s, "GET", "/jobs/"+jobA, "")
	var d JobDetails
	remarshal(t, m, &d)
	if code != 200 || d.ID != jobA || d.Name != "datagen" || d.State != "RUNNING" || d.StartTime != t0.UnixMilli() ||
		d.EndTime != -1 || d.Duration != 60_000 || d.Now != t0.Add(time.Minute).UnixMilli() || d.Vertices == nil {
		t.Errorf("GET /jobs/:jobid = %d %+v", code, d)
	}
	if len(d.Timestamps) != len(jobStates) || d.Timestamps["RUNNING"] != t0.Add(time.Second).UnixMilli() ||
		d.Timestamps["INITIALIZING"] != t0.UnixMilli() || d.Timestamps["FAILED"] != 0 {
		t.Errorf("timestamps %v: want every Flink state, 0 for those never entered", d.Timestamps)
	}

	// Weir's CANCELING is Flink's CANCELLING.
	a.set(func(st *jobmaster.Status) {
		st.State = "CANCELING"
		st.Timestamps["CANCELING"] = t0.Add(2 * time.Second)
	})
	_, m = call(t, s, "GET", "/jobs/"+strings.ToUpper(jobA), "")
	remarshal(t, m, &d)
	if d.State != "CANCELLING" || d.Timestamps["CANCELLING"] != t0.Add(2*time.Second).UnixMilli() {
		t.Errorf("a canceling job shows as %s with timestamps %v, want CANCELLING", d.State, d.Timestamps)
	}
	if _, m := call(t, s, "GET", "/jobs", ""); m["jobs"].([]any)[0].(map[string]any)["status"] != "CANCELLING" {
		t.Errorf("GET /jobs: %v, want CANCELLING", m)
	}
}

func TestErrors(t *testing.T) {
	s, _, _ := newTestServer(t)
	cases := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/jobs/" + strings.Repeat("9", 32), "", 404, "not found"},
		{"GET", "/jobs/xyz", "", 400, "32 hex digits"},
		{"GET", "/jobs/" + jobA + "/checkpoints/details/1", "", 404, "Not found"},
		{"GET", "/nope", "", 404, "Not found: /nope"},
		{"DELETE", "/jobs/" + jobA, "", 405, "GET or PATCH"},
		{"GET", "/jobs/" + jobA + "/savepoints", "", 405, "POST"},
		{"POST", "/jobs/" + jobA + "/savepoints", "{", 400, "expected format"},
		{"POST", "/jobs/" + jobA + "/savepoints", `{"target-dir":"/x"}`, 400, `unknown field "target-dir"`},
		{"POST", "/jobs/" + jobA + "/savepoints", `{"formatType":"NATIVE"}`, 400, "canonical"},
		{"POST", "/jobs/" + jobA + "/savepoints", `{"triggerId":"zz"}`, 400, "32 hex digits"},
		{"POST", "/jobs/" + jobA + "/stop", `{"target-directory":"/x"}`, 400, `unknown field "target-directory"`},
		{"PATCH", "/jobs/" + jobA + "?mode=stop", "", 400, "/stop"},
		{"PATCH", "/jobs/" + jobA + "?mode=kill", "", 400, "unknown mode"},
		{"PATCH", "/jobs/" + jobB, "", 409, "already ended"},
		{"POST", "/jobs/" + jobB + "/savepoints", "", 409, "FINISHED"},
		{"POST", "/jobs/" + jobB + "/stop", "", 409, "FINISHED"},
		{"GET", "/jobs/" + jobA + "/savepoints/" + strings.Repeat("a", 32), "", 404, "no savepoint operation"},
	}
	for _, c := range cases {
		code, m := call(t, s, c.method, c.path, c.body)
		errs, _ := m["errors"].([]any)
		if code != c.code || len(errs) != 1 || !strings.Contains(errs[0].(string), c.want) {
			t.Errorf("%s %s %s = %d %v, want %d with an error containing %q", c.method, c.path, c.body, code, m, c.code, c.want)
		}
	}
}

func TestCancel(t *testing.T) {
	s, a, _ := newTestServer(t)
	for _, path := range []string{"/jobs/" + jobA, "/jobs/" + jobA + "?mode=cancel"} {
		a.set(func(st *jobmaster.Status) { st.State = "RUNNING" })
		if code, m := call(t, s, "PATCH", path, ""); code != 202 || len(m) != 0 {
			t.Errorf("PATCH %s = %d %v, want 202 {}", path, code, m)
		}
	}
	if a.cancels != 2 {
		t.Errorf("Cancel called %d times, want 2", a.cancels)
	}
}

// waitDone waits until the operation has its outcome.
func waitDone(t *testing.T, s *Server, id string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		op := s.mu.ops[id]
		done, changed := op != nil && op.done, s.mu.changed
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("operation %s did not complete", id)
		}
	}
}

func nextCall(t *testing.T, f *fakeControl) savepointCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not call TriggerSavepoint")
		return savepointCall{}
	}
}

func TestSavepoint(t *testing.T) {
	s, a, _ := newTestServer(t)
	code, m := call(t, s, "POST", "/jobs/"+jobA+"/savepoints", `{"target-directory":"/sp","cancel-job":false}`)
	id, _ := m["request-id"].(string)
	if code != 202 || !isHexID(id) {
		t.Fatalf("POST savepoints = %d %v, want 202 with a request-id", code, m)
	}
	c := nextCall(t, a)
	if c.dir != "/sp" || c.stop || c.drain {
		t.Errorf("TriggerSavepoint(%q, stop=%v, drain=%v), want (/sp, false, false)", c.dir, c.stop, c.drain)
	}
	status := "/jobs/" + jobA + "/savepoints/" + id
	if code, m := call(t, s, "GET", status, ""); code != 200 || !reflect.DeepEqual(m, map[string]any{"status": map[string]any{"id": "IN_PROGRESS"}}) {
		t.Errorf("GET %s while in progress = %d %v", status, code, m)
	}
	// A savepoint in progress counts as a checkpoint in progress.
	if _, m := call(t, s, "GET", "/jobs/"+jobA+"/checkpoints", ""); m["counts"].(map[string]any)["in_progress"] != 1.0 {
		t.Errorf("checkpoint counts %v, want in_progress 1", m["counts"])
	}
	c.reply <- savepointAnswer{path: "/sp/savepoint-0123"}
	waitDone(t, s, id)
	want := map[string]any{"status": map[string]any{"id": "COMPLETED"}, "operation": map[string]any{"location": "/sp/savepoint-0123"}}
	if code, m := call(t, s, "GET", "/v1"+status, ""); code != 200 || !reflect.DeepEqual(m, want) {
		t.Errorf("GET %s when done = %d %v, want %v", status, code, m, want)
	}
	// The operation belongs to its job.
	if code, _ := call(t, s, "GET", "/jobs/"+jobB+"/savepoints/"+id, ""); code != 404 {
		t.Errorf("another job's operation: %d, want 404", code)
	}
	_, m = call(t, s, "GET", "/jobs/"+jobA+"/checkpoints", "")
	var cs CheckpointingStatistics
	remarshal(t, m, &cs)
	if cs.Counts != (CheckpointCounts{Total: 8, Completed: 7, Failed: 1}) ||
		cs.Latest.Completed == nil || cs.Latest.Completed.ID != 9 || cs.Latest.Completed.Status != "COMPLETED" ||
		cs.Latest.Savepoint == nil || cs.Latest.Savepoint.ExternalPath != "/sp/savepoint-0123" || !cs.Latest.Savepoint.IsSavepoint ||
		cs.History == nil {
		t.Errorf("GET checkpoints = %+v (latest completed %+v, savepoint %+v)", cs, cs.Latest.Completed, cs.Latest.Savepoint)
	}
}

func TestSavepointFailure(t *testing.T) {
	s, a, _ := newTestServer(t)
	_, m := call(t, s, "POST", "/jobs/"+jobA+"/savepoints", "")
	id := m["request-id"].(string)
	c := nextCall(t, a)
	if c.dir != "" {
		t.Errorf("an empty body asks for directory %q, want the default (empty)", c.dir)
	}
	c.reply <- savepointAnswer{err: errors.New("no savepoint directory: give one")}
	waitDone(t, s, id)
	_, m = call(t, s, "GET", "/jobs/"+jobA+"/savepoints/"+id, "")
	var r AsynchronousOperationResult
	remarshal(t, m, &r)
	if r.Status.ID != Completed || r.Operation == nil || r.Operation.FailureCause == nil || r.Operation.Location != "" ||
		!strings.Contains(r.Operation.FailureCause.StackTrace, "no savepoint directory") || r.Operation.FailureCause.Class == "" {
		t.Errorf("failed savepoint: %v", m)
	}
}

func TestStop(t *testing.T) {
	s, a, _ := newTestServer(t)
	tid := strings.Repeat("ab", 16)
	body := `{"targetDirectory":"/sp","drain":true,"triggerId":"` + tid + `"}`
	code, m := call(t, s, "POST", "/jobs/"+jobA+"/stop", body)
	if code != 202 || m["request-id"] != tid {
		t.Fatalf("POST stop = %d %v, want 202 with the given triggerId", code, m)
	}
	// A retry with the same trigger id is the same operation.
	if code, m := call(t, s, "POST", "/jobs/"+jobA+"/stop", body); code != 202 || m["request-id"] != tid {
		t.Errorf("retried POST stop = %d %v", code, m)
	}
	c := nextCall(t, a)
	if c.dir != "/sp" || !c.stop || !c.drain {
		t.Errorf("TriggerSavepoint(%q, stop=%v, drain=%v), want (/sp, true, true)", c.dir, c.stop, c.drain)
	}
	select {
	case extra := <-a.calls:
		t.Errorf("the retry triggered a second savepoint: %+v", extra)
	default:
	}
	// cancel-job on the savepoint trigger also ends the job.
	call(t, s, "POST", "/jobs/"+jobA+"/savepoints", `{"cancel-job":true}`)
	if c2 := nextCall(t, a); !c2.stop {
		t.Error("cancel-job=true did not ask for the job to end")
	}
}

func TestDrainWaitsForResultsToBeRead(t *testing.T) {
	s, a, _ := newTestServer(t)
	s.Drain(context.Background()) // nothing pending: returns at once

	_, m := call(t, s, "POST", "/jobs/"+jobA+"/stop", "")
	id := m["request-id"].(string)
	c := nextCall(t, a)
	drained := make(chan struct{})
	go func() {
		s.Drain(context.Background())
		close(drained)
	}()
	c.reply <- savepointAnswer{path: "/sp/x"}
	waitDone(t, s, id)
	select {
	case <-drained:
		t.Fatal("Drain returned before the result was read")
	default:
	}
	call(t, s, "GET", "/jobs/"+jobA+"/savepoints/"+id, "")
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return once the result was read")
	}

	// An unread result holds Drain only until its context ends.
	call(t, s, "POST", "/jobs/"+jobA+"/savepoints", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Drain(ctx)
}

func TestCloseEndsSavepointWaits(t *testing.T) {
	s, a, _ := newTestServer(t)
	_, m := call(t, s, "POST", "/jobs/"+jobA+"/savepoints", "")
	id := m["request-id"].(string)
	nextCall(t, a) // never answered
	s.Close()
	_, m = call(t, s, "GET", "/jobs/"+jobA+"/savepoints/"+id, "")
	var r AsynchronousOperationResult
	remarshal(t, m, &r)
	if r.Status.ID != Completed || r.Operation == nil || r.Operation.FailureCause == nil || r.Operation.FailureCause.Class != "weir.Canceled" {
		t.Errorf("a savepoint cut short by Close: %v", m)
	}
	if code, m := call(t, s, "POST", "/jobs/"+jobA+"/savepoints", ""); code != 503 {
		t.Errorf("POST savepoints after Close = %d %v, want 503", code, m)
	}
}

func TestExceptions(t *testing.T) {
	s, a, _ := newTestServer(t)
	if _, m := call(t, s, "GET", "/jobs/"+jobA+"/exceptions", ""); m["root-exception"] != nil {
		t.Errorf("a healthy job's exceptions: %v", m)
	}
	a.set(func(st *jobmaster.Status) {
		st.State, st.Failure = "FAILED", "operator \"x\" panicked"
		st.Timestamps["FAILED"] = t0.Add(time.Minute)
	})
	_, m := call(t, s, "GET", "/jobs/"+jobA+"/exceptions", "")
	if m["root-exception"] != `operator "x" panicked` || m["timestamp"] != float64(t0.Add(time.Minute).UnixMilli()) {
		t.Errorf("a failed job's exceptions: %v", m)
	}
}
