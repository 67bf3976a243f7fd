package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/artifact"
	"github.com/weirstream/weir/internal/jobmaster"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
)

// fakeCluster is a Dispatcher as the REST API sees it. It records every
// submission, keeps the digests of the artifacts it received (checking the
// bytes, as the real store must), and registers each submitted job with
// the server as a RUNNING fake.
type fakeCluster struct {
	server *Server

	mu        sync.Mutex
	artifacts map[string]int64 // digest → size
	submits   []submission
	tms       []TaskManagerInfo
	// fail, if set, decides Submit's error.
	fail func(req SubmitRequest) error
	// read, if set, sees every chunk of an artifact as Submit reads it.
	read func(n int64)
}

type submission struct {
	req      SubmitRequest
	uploaded int64 // bytes of artifact; -1: none sent
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{artifacts: map[string]int64{}}
}

func (f *fakeCluster) Submit(ctx context.Context, req SubmitRequest, a io.Reader) (string, error) {
	f.mu.Lock()
	fail, read := f.fail, f.read
	f.mu.Unlock()
	if fail != nil {
		if err := fail(req); err != nil {
			return "", err
		}
	}
	sub := submission{req: req, uploaded: -1}
	if a != nil {
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for {
			n, err := a.Read(buf)
			h.Write(buf[:n])
			sub.uploaded += int64(n)
			if read != nil && n > 0 {
				read(sub.uploaded + 1)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return "", err
			}
		}
		sub.uploaded++ // from -1
		if got := hex.EncodeToString(h.Sum(nil)); got != req.ArtifactDigest {
			return "", &SubmitError{Msg: fmt.Sprintf("artifact %s: its bytes have digest %s", req.ArtifactDigest, got)}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if a != nil {
		f.artifacts[req.ArtifactDigest] = sub.uploaded
	}
	f.submits = append(f.submits, sub)
	id := fmt.Sprintf("%032x", 0xc0ffee00+len(f.submits))
	if f.server != nil {
		f.server.Register(id, newFake(id, req.JobName, "RUNNING"))
	}
	return id, nil
}

func (f *fakeCluster) HasArtifact(digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.artifacts[digest]
	return ok
}

func (f *fakeCluster) TaskManagers() []TaskManagerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]TaskManagerInfo(nil), f.tms...)
}

func (f *fakeCluster) submissions() []submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]submission(nil), f.submits...)
}

var _ Cluster = (*fakeCluster)(nil)

// newSessionServer serves a fake session cluster.
func newSessionServer(t *testing.T) (*Server, *fakeCluster) {
	t.Helper()
	fc := newFakeCluster()
	s := NewServer(Options{Now: func() time.Time { return t0.Add(time.Minute) }, Version: "test", Cluster: fc})
	fc.server = s
	t.Cleanup(s.Close)
	return s, fc
}

// testGraph is a JobGraph in protobuf binary form.
func testGraph(t *testing.T) []byte {
	t.Helper()
	b, err := proto.Marshal(&pb.JobGraph{Name: "q5", Vertices: []*pb.JobVertex{{Id: 1, Name: "Source: bids", Parallelism: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// part is one part of a multipart body.
type part struct {
	name, contentType string
	body              []byte
}

// multipartBody builds a submission body.
func multipartBody(t *testing.T, parts ...part) (contentType string, body *bytes.Buffer) {
	t.Helper()
	body = &bytes.Buffer{}
	mw := multipart.NewWriter(body)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, p.name))
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.body)
	}
	mw.Close()
	return mw.FormDataContentType(), body
}

func requestPart(t *testing.T, req any) part {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return part{name: "request", contentType: "application/json", body: b}
}

// post sends a submission body to h and decodes the JSON answer.
func post(t *testing.T, h http.Handler, contentType string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("POST", "/jobs", body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("POST /jobs: answer is not a JSON object: %v\n%s", err, rec.Body.String())
	}
	return rec.Code, m
}

func TestSubmitBuiltin(t *testing.T) {
	s, fc := newSessionServer(t)
	req := SubmitRequest{JobName: "nexmark-q5", Builtin: "builtin:nexmark", Args: []string{"--query", "q5"}, Parallelism: 4,
		Config: map[string]string{"execution.checkpointing.interval": "1s"}, JobGraph: testGraph(t),
		SavepointPath: "/sp/savepoint-1", AllowNonRestoredState: true}
	ct, body := multipartBody(t, requestPart(t, req))
	code, m := post(t, s, ct, body)
	id, _ := m["jobid"].(string)
	if code != 202 || !isHexID(id) || m["jobUrl"] != "/jobs/"+id {
		t.Fatalf("POST /jobs = %d %v, want 202 with jobid and jobUrl", code, m)
	}
	subs := fc.submissions()
	if len(subs) != 1 || subs[0].uploaded != -1 || !reflect.DeepEqual(subs[0].req, req) {
		t.Errorf("Submit got %+v, want %+v without an artifact", subs, req)
	}
	// The submitted job is served like any other.
	if code, m := call(t, s, "GET", "/jobs/"+id, ""); code != 200 || m["name"] != "nexmark-q5" || m["state"] != "RUNNING" {
		t.Errorf("GET /jobs/%s = %d %v", id, code, m)
	}
	if _, m := call(t, s, "GET", "/v1/jobs", ""); len(m["jobs"].([]any)) != 1 {
		t.Errorf("GET /jobs after a submission: %v", m)
	}
}

// TestSubmitStreamsArtifact sends half of a large artifact and waits for
// the cluster to have read it before sending the rest: a server that
// buffered the upload before calling Submit would never get there.
func TestSubmitStreamsArtifact(t *testing.T) {
	s, fc := newSessionServer(t)
	srv := httptest.NewServer(s)
	defer srv.Close()

	const size = 32 << 20
	bin := bytes.Repeat([]byte("weir job binary\x00"), size/16)
	digest := digestOf(bin)
	halfRead := make(chan struct{})
	var once sync.Once
	fc.read = func(n int64) {
		if n >= size/2 {
			once.Do(func() { close(halfRead) })
		}
	}

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	writeErr := make(chan error, 1)
	go func() {
		writeErr <- func() error {
			w, err := mw.CreateFormField("request")
			if err != nil {
				return err
			}
			b, _ := json.Marshal(SubmitRequest{JobName: "myjob", ArtifactDigest: digest, ArtifactName: "myjob", JobGraph: testGraph(t)})
			w.Write(b)
			w, err = mw.CreateFormFile("artifact", "myjob")
			if err != nil {
				return err
			}
			if _, err := w.Write(bin[:size/2]); err != nil {
				return err
			}
			select {
			case <-halfRead:
			case <-time.After(10 * time.Second):
				return errors.New("the cluster did not see the first half of the artifact before the rest was sent")
			}
			if _, err := w.Write(bin[size/2:]); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.Close()
	}()
	resp, err := http.Post(srv.URL+"/jobs", mw.FormDataContentType(), pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 {
		t.Fatalf("POST /jobs with a streamed artifact = %d %s", resp.StatusCode, b)
	}
	subs := fc.submissions()
	if len(subs) != 1 || subs[0].uploaded != size || subs[0].req.ArtifactName != "myjob" || !fc.HasArtifact(digest) {
		t.Errorf("Submit got %+v, want the whole %d-byte artifact", subs, size)
	}
}

func TestSubmitErrors(t *testing.T) {
	s, fc := newSessionServer(t)
	graph := testGraph(t)
	bin := []byte("\x7fELF pretend")
	known := digestOf([]byte("already stored"))
	fc.artifacts[known] = 14
	good := SubmitRequest{JobName: "j", ArtifactDigest: digestOf(bin), JobGraph: graph}
	with := func(fn func(r *SubmitRequest)) SubmitRequest {
		r := good
		fn(&r)
		return r
	}
	fc.fail = func(req SubmitRequest) error {
		switch req.JobName {
		case "refused":
			return &SubmitError{Status: http.StatusConflict, Msg: "job j is already running"}
		case "refused-plain":
			return &SubmitError{Msg: "slot sharing group \"default\" asks for 8 CPU"}
		case "not-a-job":
			return fmt.Errorf("storing artifact: %w", &artifact.Error{Path: "myjob", Problem: "is a shell script", Fix: "go build it"})
		case "broken":
			return errors.New("disk full")
		}
		return nil
	}
	type tc struct {
		name        string
		contentType string
		parts       []part
		code        int
		want        string
	}
	cases := []tc{
		{"not multipart", "application/json", nil, 400, `"request" part`},
		{"no parts", "", nil, 400, "no parts"},
		{"artifact first", "", []part{{name: "artifact", body: bin}, requestPart(t, good)}, 400, `the first part is "artifact"`},
		{"bad JSON", "", []part{{name: "request", body: []byte("{")}}, 400, "did not match the expected format"},
		{"Flink's request", "", []part{{name: "request", body: []byte(`{"jobGraphFileName":"x"}`)}}, 400, `unknown field "jobGraphFileName"`},
		{"no job", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.ArtifactDigest = "" }))}, 400, "names no job"},
		{"both", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.Builtin = "builtin:wordcount" }))}, 400, "give one"},
		{"builtin without prefix", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.ArtifactDigest, r.Builtin = "", "wordcount" }))}, 400, "builtin:NAME"},
		{"bad digest", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.ArtifactDigest = "abc" }))}, 400, "64 hex digits"},
		{"negative parallelism", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.Parallelism = -1 }))}, 400, "at least 1"},
		{"no graph", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobGraph = nil }))}, 400, "no jobGraph"},
		{"bad graph", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobGraph = []byte{0xff, 0xff} }))}, 400, "not a JobGraph"},
		{"unknown part", "", []part{requestPart(t, good), {name: "jar", body: bin}}, 400, `unexpected part "jar"`},
		{"builtin with artifact", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.ArtifactDigest, r.Builtin = "", "builtin:wordcount" })), {name: "artifact", body: bin}}, 400, "send no artifact"},
		{"missing artifact", "", []part{requestPart(t, good)}, 400, "has no artifact " + good.ArtifactDigest},
		{"wrong bytes", "", []part{requestPart(t, good), {name: "artifact", body: []byte("other")}}, 400, "its bytes have digest"},
		{"refused", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobName = "refused" })), {name: "artifact", body: bin}}, 409, "already running"},
		{"refused without status", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobName = "refused-plain" })), {name: "artifact", body: bin}}, 400, "8 CPU"},
		{"artifact error", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobName = "not-a-job" })), {name: "artifact", body: bin}}, 400, "myjob is a shell script; go build it"},
		{"internal", "", []part{requestPart(t, with(func(r *SubmitRequest) { r.JobName = "broken" })), {name: "artifact", body: bin}}, 500, "disk full"},
	}
	for _, c := range cases {
		ct, body := multipartBody(t, c.parts...)
		if c.contentType != "" {
			ct = c.contentType
		}
		code, m := post(t, s, ct, body)
		errs, _ := m["errors"].([]any)
		if code != c.code || len(errs) != 1 || !strings.Contains(errs[0].(string), c.want) {
			t.Errorf("%s: POST /jobs = %d %v, want %d with an error containing %q", c.name, code, m, c.code, c.want)
		}
	}
	if n := len(fc.submissions()); n != 0 {
		t.Errorf("%d refused submissions were recorded", n)
	}
	// A known artifact needs no upload.
	ct, body := multipartBody(t, requestPart(t, with(func(r *SubmitRequest) { r.ArtifactDigest = known })))
	if code, m := post(t, s, ct, body); code != 202 {
		t.Errorf("a submission of a stored artifact = %d %v", code, m)
	}

	// A job's embedded API takes no submissions, and says where to go.
	emb, _, _ := newTestServer(t)
	ct, body = multipartBody(t, requestPart(t, good))
	code, m := post(t, emb, ct, body)
	if errs, _ := m["errors"].([]any); code != 405 || len(errs) != 1 || !strings.Contains(errs[0].(string), "weir cluster start") {
		t.Errorf("POST /jobs to an embedded API = %d %v, want 405 pointing at a session cluster", code, m)
	}
}

func TestArtifacts(t *testing.T) {
	s, fc := newSessionServer(t)
	have, lack := digestOf([]byte("a")), digestOf([]byte("b"))
	fc.artifacts[have] = 1
	for _, method := range []string{"HEAD", "GET"} {
		for _, c := range []struct {
			path string
			code int
		}{
			{"/artifacts/" + have, 200},
			{"/v1/artifacts/" + strings.ToUpper(have), 200},
			{"/artifacts/" + lack, 404},
			{"/artifacts/nope", 400},
		} {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(method, c.path, nil))
			if rec.Code != c.code {
				t.Errorf("%s %s = %d, want %d", method, c.path, rec.Code, c.code)
			}
		}
	}
	if code, m := call(t, s, "GET", "/artifacts/"+have, ""); code != 200 || m["digest"] != have {
		t.Errorf("GET /artifacts/:digest = %d %v", code, m)
	}
	emb, _, _ := newTestServer(t)
	if code, _ := call(t, emb, "GET", "/artifacts/"+have, ""); code != 404 {
		t.Errorf("GET /artifacts on an embedded API = %d, want 404", code)
	}
}

// testTMs are two TaskManagers: one with a job's slots, one idle.
func testTMs() []TaskManagerInfo {
	profile := func(cpu float64, mb int64) ResourceProfileInfo {
		return ResourceProfileInfo{CPUCores: cpu, TaskHeapMemory: mb, ManagedMemory: mb / 2, NetworkMemory: 64}
	}
	return []TaskManagerInfo{
		{ID: "tm-1", Path: "10.0.0.1:6122", DataPort: 6121, TimeSinceLastHeartbeat: t0.UnixMilli(), SlotsNumber: 4, FreeSlots: 1,
			TotalResource: profile(4, 4096), FreeResource: profile(1, 1024),
			Hardware:       HardwareDescription{CPUCores: 8, PhysicalMemory: 16 << 30, FreeMemory: 8 << 30, ManagedMemory: 2 << 30},
			AllocatedSlots: []SlotInfo{{JobID: jobA, Resource: profile(1, 1024)}, {JobID: jobA, Resource: profile(1, 1024)}, {JobID: jobA, Resource: profile(1, 1024)}},
			Version:        "test", PID: 4242, Workers: []WorkerInfo{{JobID: jobA, PID: 4300, Slots: 3, State: "RUNNING"}}},
		{ID: "tm-2", Path: "10.0.0.2:6122", DataPort: 6121, TimeSinceLastHeartbeat: t0.UnixMilli(), SlotsNumber: 2, FreeSlots: 2,
			TotalResource: profile(2, 2048), FreeResource: profile(2, 2048)},
	}
}

func TestTaskManagers(t *testing.T) {
	s, fc := newSessionServer(t)
	fc.tms = testTMs()

	code, m := call(t, s, "GET", "/taskmanagers", "")
	tms, _ := m["taskmanagers"].([]any)
	if code != 200 || len(tms) != 2 {
		t.Fatalf("GET /taskmanagers = %d %v", code, m)
	}
	first := tms[0].(map[string]any)
	// Flink's TaskManagerInfo fields, then Weir's.
	wantKeys := []string{"blocked", "dataPort", "freeResource", "freeSlots", "hardware", "id", "jmxPort", "path", "pid",
		"slotsNumber", "timeSinceLastHeartbeat", "totalResource", "weirVersion", "workers"}
	if got := keys(first); !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("TaskManager fields %v, want %v", got, wantKeys)
	}
	if got, want := keys(first["totalResource"].(map[string]any)),
		[]string{"cpuCores", "extendedResources", "managedMemory", "networkMemory", "taskHeapMemory", "taskOffHeapMemory"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resource fields %v, want %v", got, want)
	}
	if got, want := keys(first["hardware"].(map[string]any)), []string{"cpuCores", "freeMemory", "managedMemory", "physicalMemory"}; !reflect.DeepEqual(got, want) {
		t.Errorf("hardware fields %v, want %v", got, want)
	}
	if first["jmxPort"] != -1.0 || first["timeSinceLastHeartbeat"] != float64(t0.UnixMilli()) || first["freeSlots"] != 1.0 {
		t.Errorf("TaskManager tm-1: %v", first)
	}
	if er := first["freeResource"].(map[string]any)["extendedResources"]; !reflect.DeepEqual(er, map[string]any{}) {
		t.Errorf("extendedResources %v, want {}", er)
	}

	// Details add the allocated slots, always present.
	code, m = call(t, s, "GET", "/taskmanagers/tm-1", "")
	var d TaskManagerDetails
	remarshal(t, m, &d)
	if code != 200 || d.ID != "tm-1" || len(d.AllocatedSlots) != 3 || d.AllocatedSlots[0].JobID != jobA || d.Workers[0].PID != 4300 {
		t.Errorf("GET /taskmanagers/tm-1 = %d %+v", code, d)
	}
	if _, m := call(t, s, "GET", "/taskmanagers/tm-2", ""); !reflect.DeepEqual(m["allocatedSlots"], []any{}) {
		t.Errorf("an idle TaskManager's allocatedSlots: %v, want []", m["allocatedSlots"])
	}
	if code, _ := call(t, s, "GET", "/taskmanagers/tm-9", ""); code != 404 {
		t.Errorf("GET an unknown TaskManager = %d, want 404", code)
	}
	// The cluster's slices are left as they were.
	if fc.tms[1].TotalResource.ExtendedResources != nil || fc.tms[0].AllocatedSlots[0].Resource.ExtendedResources != nil {
		t.Error("the server wrote into the Cluster's TaskManagerInfo")
	}

	code, m = call(t, s, "GET", "/overview", "")
	var o ClusterOverview
	remarshal(t, m, &o)
	if code != 200 || o.TaskManagers != 2 || o.SlotsTotal != 6 || o.SlotsAvailable != 3 || !o.Session {
		t.Errorf("GET /overview = %d %+v, want 2 TaskManagers, 6 slots, 3 free", code, o)
	}

	// An embedded API lists no TaskManagers and counts its own process.
	emb, _, _ := newTestServer(t)
	if code, m := call(t, emb, "GET", "/taskmanagers", ""); code != 200 || !reflect.DeepEqual(m, map[string]any{"taskmanagers": []any{}}) {
		t.Errorf("GET /taskmanagers on an embedded API = %d %v", code, m)
	}
	if _, m := call(t, emb, "GET", "/overview", ""); m["taskmanagers"] != 1.0 || m["weir-session"] != nil {
		t.Errorf("an embedded API's overview: %v", m)
	}
}

func TestJobDetailsVertices(t *testing.T) {
	s, a, _ := newTestServer(t)
	a.set(func(st *jobmaster.Status) {
		st.Vertices = []jobmaster.VertexStatus{
			{ID: 1, Name: "Source: bids", Parallelism: 2, MaxParallelism: 128, State: "RUNNING", Counts: map[string]int{"RUNNING": 2}},
			{ID: 2, Name: "window -> Sink: out", Parallelism: 3, State: "DEPLOYING",
				Counts: map[string]int{"RUNNING": 1, "DEPLOYING": 1, "SCHEDULED": 1}},
		}
	})
	code, m := call(t, s, "GET", "/jobs/"+jobA, "")
	var d JobDetails
	remarshal(t, m, &d)
	if code != 200 || len(d.Vertices) != 2 || d.MaxParallelism != 128 {
		t.Fatalf("GET /jobs/:jobid = %d %+v", code, d)
	}
	v := d.Vertices[1]
	if v.ID != "00000000000000000000000000000002" || v.Name != "window -> Sink: out" || v.Parallelism != 3 || v.MaxParallelism != -1 ||
		v.Status != "DEPLOYING" || v.StartTime != -1 || v.Tasks["RUNNING"] != 1 || v.Tasks["SCHEDULED"] != 1 || v.Tasks["FINISHED"] != 0 ||
		len(v.Tasks) != len(executionStates) {
		t.Errorf("vertex 2: %+v", v)
	}
	if d.StatusCounts["RUNNING"] != 1 || d.StatusCounts["DEPLOYING"] != 1 || len(d.StatusCounts) != len(executionStates) {
		t.Errorf("status-counts %v, want one vertex RUNNING and one DEPLOYING, every state present", d.StatusCounts)
	}
	// Flink's vertex fields, exactly.
	got := keys(m["vertices"].([]any)[0].(map[string]any))
	want := []string{"duration", "end-time", "id", "maxParallelism", "name", "parallelism", "start-time", "status", "tasks"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("vertex fields %v, want %v", got, want)
	}

	// A job master that tracks no vertices: empty, not null.
	_, m = call(t, s, "GET", "/jobs/"+jobB, "")
	if !reflect.DeepEqual(m["vertices"], []any{}) || m["maxParallelism"] != -1.0 || m["status-counts"].(map[string]any)["RUNNING"] != 0.0 {
		t.Errorf("a job without vertices: vertices %v, maxParallelism %v, status-counts %v", m["vertices"], m["maxParallelism"], m["status-counts"])
	}
}
