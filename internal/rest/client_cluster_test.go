package rest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recordRequests wraps h and records the method and path of each request.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

func TestClientSubmit(t *testing.T) {
	s, fc := newSessionServer(t)
	var log requestLog
	c := apiClient(t, log.wrap(s))
	ctx := context.Background()

	bin := bytes.Repeat([]byte("binary"), 3<<20) // 18 MiB, more than any buffer on the way
	path := filepath.Join(t.TempDir(), "myjob")
	must(t, os.WriteFile(path, bin, 0o755))
	req := SubmitRequest{JobName: "myjob", Args: []string{"--in", "x"}, JobGraph: testGraph(t)}

	id, err := c.Submit(ctx, req, path)
	if err != nil || !isHexID(id) {
		t.Fatalf("Submit = %q, %v", id, err)
	}
	digest := digestOf(bin)
	subs := fc.submissions()
	if len(subs) != 1 || subs[0].uploaded != int64(len(bin)) || subs[0].req.ArtifactDigest != digest ||
		subs[0].req.ArtifactName != "myjob" || subs[0].req.Args[1] != "x" {
		t.Fatalf("first Submit: the cluster got %+v", subs)
	}
	if got := log.take(); strings.Join(got, ", ") != "HEAD /artifacts/"+digest+", POST /jobs" {
		t.Errorf("first Submit sent %v", got)
	}
	if d, err := c.Job(ctx, id); err != nil || d.Name != "myjob" {
		t.Errorf("the submitted job: %+v, %v", d, err)
	}

	// Again: the Dispatcher has the binary, so it is not sent.
	id2, err := c.Submit(ctx, req, path)
	if err != nil || id2 == id {
		t.Fatalf("second Submit = %q, %v", id2, err)
	}
	subs = fc.submissions()
	if len(subs) != 2 || subs[1].uploaded != -1 || subs[1].req.ArtifactDigest != digest {
		t.Errorf("second Submit: the cluster got %+v, want no upload", subs[1])
	}

	// A built-in job: no artifact, no HEAD.
	log.take()
	if _, err := c.Submit(ctx, SubmitRequest{JobName: "wc", Builtin: "builtin:wordcount", JobGraph: testGraph(t)}, ""); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || got[0] != "POST /jobs" {
		t.Errorf("a built-in submission sent %v", got)
	}

	// Refused while the binary is still being sent: the API's error, not
	// a broken connection.
	fc.fail = func(SubmitRequest) error { return &SubmitError{Msg: "no TaskManager offers 8 CPU"} }
	other := filepath.Join(t.TempDir(), "other")
	must(t, os.WriteFile(other, append(bin, 1), 0o755))
	_, err = c.Submit(ctx, req, other)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(err.Error(), "no TaskManager offers 8 CPU") {
		t.Errorf("a refused submission: %v", err)
	}
	_, err = c.Submit(ctx, SubmitRequest{JobName: "bad", JobGraph: nil, Builtin: "builtin:x"}, "")
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "no jobGraph") {
		t.Errorf("a submission without a graph: %v", err)
	}

	if _, err := c.Submit(ctx, req, filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing binary: %v", err)
	}
}

func TestClientSubmitElsewhere(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "myjob")
	must(t, os.WriteFile(path, []byte("binary"), 0o755))
	req := SubmitRequest{JobName: "myjob", JobGraph: []byte{0x0a, 0x01, 'x'}}

	// A job's embedded API says to use a session cluster.
	emb, _, _ := newTestServer(t)
	_, err := apiClient(t, emb).Submit(ctx, req, path)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 405 || !strings.Contains(err.Error(), "weir cluster start") {
		t.Errorf("Submit to an embedded API: %v", err)
	}

	// Some other web server.
	other := apiClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		w.Write([]byte("<html>Not Found</html>"))
	}))
	var na *NotAPIError
	if _, err := other.Submit(ctx, req, path); !errors.As(err, &na) || !strings.Contains(err.Error(), "POST /jobs") {
		t.Errorf("Submit to another server: %v", err)
	}

	// A server that answers the submission with a bad id.
	odd := apiClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 202, SubmitResponse{JobID: "42"})
	}))
	var me *MalformedError
	if _, err := odd.Submit(ctx, SubmitRequest{Builtin: "builtin:x"}, ""); !errors.As(err, &me) {
		t.Errorf("a submission answered with a bad id: %v", err)
	}
}

func TestClientTaskManagers(t *testing.T) {
	s, fc := newSessionServer(t)
	fc.tms = testTMs()
	c := apiClient(t, s)
	ctx := context.Background()
	tms, err := c.TaskManagers(ctx)
	if err != nil || len(tms) != 2 || tms[0].ID != "tm-1" || tms[0].SlotsNumber != 4 || tms[0].AllocatedSlots != nil ||
		tms[0].TotalResource.CPUCores != 4 || tms[0].Workers[0].Slots != 3 {
		t.Errorf("TaskManagers = %+v, %v", tms, err)
	}
	d, err := c.TaskManager(ctx, "tm-1")
	if err != nil || len(d.AllocatedSlots) != 3 {
		t.Errorf("TaskManager = %+v, %v", d, err)
	}
	if _, err := c.TaskManager(ctx, "tm-9"); !IsNotFound(err) {
		t.Errorf("an unknown TaskManager: %v", err)
	}
	if _, err := apiClient(t, http.NotFoundHandler()).TaskManagers(ctx); err == nil {
		t.Error("TaskManagers of a plain 404 server succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
