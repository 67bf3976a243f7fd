package rest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewClientAddresses(t *testing.T) {
	cases := map[string]string{
		"localhost:8081":               "http://localhost:8081",
		" 8081 ":                       "http://localhost:8081",
		"http://10.0.0.1:8081/":        "http://10.0.0.1:8081",
		"https://proxy.example/flink/": "https://proxy.example/flink",
		"[::1]:8081":                   "http://[::1]:8081",
	}
	for in, want := range cases {
		c, err := NewClient(in)
		if err != nil || c.base != want {
			t.Errorf("NewClient(%q) = %v, %v; want base %s", in, c, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x:1", "http://", "http://h:1/?q=1"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
}

// apiClient serves s over loopback HTTP.
func apiClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientAgainstServer(t *testing.T) {
	s, a, _ := newTestServer(t)
	c := apiClient(t, s)
	ctx := context.Background()

	jobs, err := c.Jobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].ID != jobA || jobs[1].State != "FINISHED" {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}
	if o, err := c.Overview(ctx); err != nil || o.JobsRunning != 1 {
		t.Errorf("Overview = %+v, %v", o, err)
	}
	if d, err := c.Job(ctx, jobA); err != nil || d.Name != "datagen" {
		t.Errorf("Job = %+v, %v", d, err)
	}
	_, err = c.Job(ctx, strings.Repeat("9", 32))
	if !IsNotFound(err) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Job of an unknown id: %v", err)
	}
	if err := c.Cancel(ctx, jobB); err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Errorf("Cancel of a finished job: %v", err)
	}

	// Savepoint: trigger, then poll to completion.
	id, err := c.TriggerSavepoint(ctx, jobA, "/sp", false)
	if err != nil {
		t.Fatal(err)
	}
	call := nextCall(t, a)
	polls := 0
	done := make(chan struct{})
	var loc string
	go func() {
		defer close(done)
		loc, err = c.AwaitSavepoint(ctx, jobA, id, time.Millisecond, func() {
			if polls++; polls == 3 {
				call.reply <- savepointAnswer{path: "/sp/savepoint-1"}
			}
		})
	}()
	<-done
	if err != nil || loc != "/sp/savepoint-1" || polls < 3 {
		t.Errorf("AwaitSavepoint = %q, %v after %d polls", loc, err, polls)
	}

	// Stop, failing.
	id, err = c.StopWithSavepoint(ctx, jobA, "", true)
	if err != nil {
		t.Fatal(err)
	}
	call = nextCall(t, a)
	if !call.stop || !call.drain {
		t.Errorf("stop asked for stop=%v drain=%v", call.stop, call.drain)
	}
	call.reply <- savepointAnswer{err: errors.New("savepoints need checkpoints on")}
	_, err = c.AwaitSavepoint(ctx, jobA, id, time.Millisecond, nil)
	var se *SavepointError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "savepoints need checkpoints on") {
		t.Errorf("a failed stop: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := NewClient(addr)
	_, err = c.Jobs(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no Weir REST API at "+addr+": is the job running? give --jobmanager") {
		t.Errorf("nothing listening: %v", err)
	}

	// Some other web server.
	other := apiClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jobs/overview" {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
			return
		}
		http.NotFound(w, r)
	}))
	var na *NotAPIError
	if _, err := other.Jobs(ctx); !errors.As(err, &na) || !strings.Contains(err.Error(), "not a Weir or Flink REST API") ||
		!strings.Contains(err.Error(), "text/html") {
		t.Errorf("an HTML page: %v", err)
	}
	if _, err := other.Job(ctx, jobA); !errors.As(err, &na) || !strings.Contains(err.Error(), "404") {
		t.Errorf("a plain 404: %v", err)
	}

	// JSON, but not the API's.
	jsonServer := func(code int, body string) *Client {
		return apiClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			w.Write([]byte(body))
		}))
	}
	if _, err := jsonServer(200, `{"status":"ok"}`).Jobs(ctx); !errors.As(err, &na) || !strings.Contains(err.Error(), `"jobs"`) {
		t.Errorf("JSON without jobs: %v", err)
	}
	var me *MalformedError
	if _, err := jsonServer(200, `{"jobs":[{"jid":1}]}`).Jobs(ctx); !errors.As(err, &me) {
		t.Errorf("jobs of the wrong type: %v", err)
	}
	if _, err := jsonServer(200, `{"jobs":[{"name":"x"}]}`).Jobs(ctx); !errors.As(err, &me) {
		t.Errorf("a job without an id: %v", err)
	}
	if _, err := jsonServer(200, `{"status":{"id":"DONE"}}`).SavepointStatus(ctx, jobA, jobB); !errors.As(err, &me) {
		t.Errorf("an unknown operation status: %v", err)
	}
	if _, err := jsonServer(200, `{"status":{"id":"COMPLETED"}}`).SavepointStatus(ctx, jobA, jobB); !errors.As(err, &me) {
		t.Errorf("a completed operation without result: %v", err)
	}
	if _, err := jsonServer(202, `{}`).TriggerSavepoint(ctx, jobA, "", false); !errors.As(err, &me) {
		t.Errorf("a trigger without request-id: %v", err)
	}
	// Flink's errors come through as they are.
	var ae *APIError
	_, err = jsonServer(500, `{"errors":["Internal server error.","<Exception on server side>"]}`).Jobs(ctx)
	if !errors.As(err, &ae) || ae.StatusCode != 500 || !strings.Contains(err.Error(), "Internal server error.") {
		t.Errorf("an API error: %v", err)
	}

	// Not HTTP at all.
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	go func() {
		for {
			conn, err := raw.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			conn.Close()
		}
	}()
	c, _ = NewClient(raw.Addr().String())
	if _, err := c.Jobs(ctx); !errors.As(err, &na) || !strings.Contains(err.Error(), "other than HTTP") {
		t.Errorf("an SSH server: %v", err)
	}
}

func TestAwaitSavepointWhenTheAPIGoesAway(t *testing.T) {
	s, _, _ := newTestServer(t)
	srv := httptest.NewServer(s)
	c, _ := NewClient(srv.URL)
	id, err := c.TriggerSavepoint(context.Background(), jobA, "", false)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err = c.AwaitSavepoint(context.Background(), jobA, id, time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "went away") {
		t.Errorf("AwaitSavepoint after the API ended: %v", err)
	}
}
