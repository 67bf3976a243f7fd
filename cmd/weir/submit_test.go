package main

// Tests of weir run --jobmanager: in-process against a REST server over a
// fake session cluster, whose jobs are fakeJobs (jobs_test.go).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/stream"
)

// fakeSession is a session cluster's Dispatcher: it records submissions,
// stores artifacts by digest and registers each job as a fakeJob, which
// onSubmit may then drive.
type fakeSession struct {
	server *rest.Server

	mu        sync.Mutex
	artifacts map[string]int64
	submits   []sessionSubmit
	onSubmit  func(id string, j *fakeJob)
}

type sessionSubmit struct {
	req      rest.SubmitRequest
	uploaded bool
	graph    *pb.JobGraph
}

func (f *fakeSession) Submit(ctx context.Context, req rest.SubmitRequest, artifact io.Reader) (string, error) {
	var jg pb.JobGraph
	if err := proto.Unmarshal(req.JobGraph, &jg); err != nil {
		return "", &rest.SubmitError{Msg: err.Error()}
	}
	var size int64
	if artifact != nil {
		h := sha256.New()
		n, err := io.Copy(h, artifact)
		if err != nil {
			return "", err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != req.ArtifactDigest {
			return "", &rest.SubmitError{Msg: "artifact digest mismatch"}
		}
		size = n
	}
	f.mu.Lock()
	if artifact != nil {
		f.artifacts[req.ArtifactDigest] = size
	}
	f.submits = append(f.submits, sessionSubmit{req: req, uploaded: artifact != nil, graph: &jg})
	id := fmt.Sprintf("%032x", 0xbeef0000+len(f.submits))
	on := f.onSubmit
	f.mu.Unlock()
	j := newFakeJob(id, req.JobName, "CREATED", time.Now())
	f.server.Register(id, j)
	if on != nil {
		on(id, j)
	}
	return id, nil
}

func (f *fakeSession) HasArtifact(digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.artifacts[digest]
	return ok
}

func (f *fakeSession) TaskManagers() []rest.TaskManagerInfo { return nil }

func (f *fakeSession) submissions() []sessionSubmit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sessionSubmit(nil), f.submits...)
}

// serveSession serves a fake session cluster and returns it with its
// address.
func serveSession(t *testing.T) (*fakeSession, string) {
	t.Helper()
	f := &fakeSession{artifacts: map[string]int64{}}
	f.server = rest.NewServer(rest.Options{Cluster: f})
	srv := httptest.NewServer(f.server)
	t.Cleanup(func() {
		srv.Close()
		f.server.Close()
	})
	return f, strings.TrimPrefix(srv.URL, "http://")
}

// submitCLI runs weir run --jobmanager in-process, with fast polling;
// interrupts stands for Ctrl-C.
func submitCLI(t *testing.T, o jobOptions, interrupts chan os.Signal, job string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	s, err := o.settings(launch.Plan)
	if err != nil {
		return "", "", err
	}
	var out, errb bytes.Buffer
	env := submitEnv{poll: time.Millisecond, lostAfter: time.Second}
	err = env.submit(&out, &errb, interrupts, &o, s, job, args)
	return out.String(), errb.String(), err
}

func TestJobsSubmitDetached(t *testing.T) {
	f, addr := serveSession(t)
	o := jobOptions{jobmanager: addr, detached: true, parallelism: 3, defines: []string{"execution.checkpointing.interval=1s"},
		fromSavepoint: "sp/savepoint-1", allowNonRestoredState: true}
	stdout, stderr, err := submitCLI(t, o, nil, "builtin:datagen", "--rows", "10")
	if err != nil {
		t.Fatalf("weir run -d: %v\n%s", err, stderr)
	}
	subs := f.submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions, want 1", len(subs))
	}
	id := fmt.Sprintf("%032x", 0xbeef0001)
	if stdout != id+"\n" || !strings.Contains(stderr, "Job has been submitted with JobID "+id) {
		t.Errorf("stdout %q, stderr %q: want the id alone on stdout", stdout, stderr)
	}
	wd, _ := os.Getwd()
	req := subs[0].req
	if req.Builtin != "builtin:datagen" || req.ArtifactDigest != "" || subs[0].uploaded || req.JobName != "datagen" ||
		strings.Join(req.Args, " ") != "--rows 10" || req.Parallelism != 3 || req.Config["execution.checkpointing.interval"] != "1s" ||
		req.SavepointPath != wd+"/sp/savepoint-1" || !req.AllowNonRestoredState {
		t.Errorf("submitted %+v", req)
	}
	// The plan was built here, with the options.
	if g := subs[0].graph; g.GetName() != "datagen" || len(g.GetVertices()) == 0 || g.GetVertices()[0].GetParallelism() != 3 {
		t.Errorf("submitted plan %v", g)
	}
}

func TestJobsSubmitBinary(t *testing.T) {
	t.Parallel()
	wordcount := bin(t, "wordcount")
	f, addr := serveSession(t)
	dir := t.TempDir()
	input := dir + "/words.txt"
	must(t, os.WriteFile(input, []byte("to be or not to be\n"), 0o644))
	o := jobOptions{jobmanager: addr, detached: true}
	for i := 0; i < 2; i++ {
		if _, stderr, err := submitCLI(t, o, nil, wordcount, "--input", input, "--output", dir+"/counts.txt"); err != nil {
			t.Fatalf("weir run -d %s: %v\n%s", wordcount, err, stderr)
		}
	}
	subs := f.submissions()
	if len(subs) != 2 || !subs[0].uploaded || subs[1].uploaded {
		t.Fatalf("submissions %+v: want the binary uploaded the first time only", subs)
	}
	b, _ := os.ReadFile(wordcount)
	h := sha256.Sum256(b)
	if req := subs[0].req; req.ArtifactDigest != hex.EncodeToString(h[:]) || req.ArtifactName != "wordcount" || req.Builtin != "" ||
		req.Args[0] != "--input" || subs[0].graph.GetName() == "" {
		t.Errorf("submitted %+v", req)
	}
	// Not a job binary: refused before anything is sent.
	if _, _, err := submitCLI(t, o, nil, input); err == nil || !strings.Contains(err.Error(), "not a Weir job binary") {
		t.Errorf("submitting a text file: %v", err)
	}
	if n := len(f.submissions()); n != 2 {
		t.Errorf("%d submissions after a refused binary, want 2", n)
	}
}

func TestJobsSubmitAttached(t *testing.T) {
	// The job runs, restarts once and finishes: exit status 0.
	f, addr := serveSession(t)
	f.onSubmit = func(id string, j *fakeJob) {
		go func() {
			for _, s := range []string{"RUNNING", "RESTARTING", "RUNNING", "FINISHED"} {
				time.Sleep(20 * time.Millisecond)
				j.setState(s)
			}
		}()
	}
	o := jobOptions{jobmanager: addr}
	stdout, stderr, err := submitCLI(t, o, nil, "builtin:datagen", "--rows", "10")
	if err != nil {
		t.Fatalf("weir run: %v\n%s", err, stderr)
	}
	id := fmt.Sprintf("%032x", 0xbeef0001)
	if stdout != "" || !strings.HasPrefix(stderr, "Job "+id+" submitted to "+addr+"\n") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	re := regexp.MustCompile(`(?s)is RUNNING\n.*is RESTARTING\n.*is RUNNING\n.*is FINISHED\n$`)
	if !re.MatchString(stderr) {
		t.Errorf("state changes on stderr:\n%s", stderr)
	}

	// The job fails: its failure is the error.
	f.onSubmit = func(id string, j *fakeJob) {
		j.mu.Lock()
		j.status.State, j.status.Failure = "FAILED", `operator "explode" panicked`
		j.mu.Unlock()
	}
	_, stderr, err = submitCLI(t, o, nil, "builtin:datagen", "--rows", "10")
	if err == nil || !strings.Contains(err.Error(), `failed: operator "explode" panicked`) || !strings.Contains(stderr, "is FAILED") {
		t.Errorf("a failing job: %v\n%s", err, stderr)
	}

	// Ctrl-C cancels the running job: exit status 130.
	running := make(chan *fakeJob, 1)
	f.onSubmit = func(id string, j *fakeJob) {
		j.setState("RUNNING")
		running <- j
	}
	sigs := make(chan os.Signal, 1)
	go func() {
		j := <-running
		for j.Status().State == "RUNNING" && j.cancelCount() == 0 {
			time.Sleep(10 * time.Millisecond)
			select {
			case sigs <- os.Interrupt:
			default:
			}
		}
	}()
	_, stderr, err = submitCLI(t, o, sigs, "builtin:datagen", "--rows", "-1")
	if !errors.Is(err, stream.ErrJobCanceled) || !strings.Contains(stderr, "weir: canceling job") || !strings.Contains(stderr, "is CANCELED") {
		t.Errorf("Ctrl-C while following: %v\n%s", err, stderr)
	}
}

func TestJobsSubmitNoCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, _, err = submitCLI(t, jobOptions{jobmanager: addr}, nil, "builtin:datagen")
	for _, want := range []string{"--jobmanager " + addr, "no session cluster answers there", "weir cluster start", "omit --jobmanager"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("submitting to nothing: %v, want %q", err, want)
		}
	}

	// A job's embedded API is not a session cluster: its overview says so
	// (and, without a version, its refusal of the submission).
	for _, version := range []string{"test", ""} {
		s := rest.NewServer(rest.Options{Version: version})
		srv := httptest.NewServer(s)
		emb := strings.TrimPrefix(srv.URL, "http://")
		_, _, err = submitCLI(t, jobOptions{jobmanager: emb, detached: true}, nil, "builtin:datagen")
		for _, want := range []string{"--jobmanager " + emb + " is the REST API of a job", "weir cluster start", "omit --jobmanager"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("submitting to an embedded API (version %q): %v, want %q", version, err, want)
			}
		}
		srv.Close()
		s.Close()
	}

	if _, _, err := submitCLI(t, jobOptions{jobmanager: "ftp://x"}, nil, "builtin:datagen"); err == nil || !strings.Contains(err.Error(), "--jobmanager") {
		t.Errorf("a bad --jobmanager: %v", err)
	}
}

// TestJobsSubmitProcess runs the weir binary against a fake session
// cluster: the exit statuses a script sees, and Ctrl-C canceling the job.
func TestJobsSubmitProcess(t *testing.T) {
	t.Parallel()
	weir := bin(t, "weir")
	f, addr := serveSession(t)
	var (
		mu   sync.Mutex
		next = "FINISHED"
	)
	f.onSubmit = func(id string, j *fakeJob) {
		mu.Lock()
		end := next
		mu.Unlock()
		j.setState("RUNNING")
		if end != "" {
			go func() {
				time.Sleep(50 * time.Millisecond)
				if end == "FAILED" {
					j.mu.Lock()
					j.status.Failure = "boom"
					j.mu.Unlock()
				}
				j.setState(end)
			}()
		}
	}
	setNext := func(s string) {
		mu.Lock()
		next = s
		mu.Unlock()
	}

	r := run(t, weir, "run", "--jobmanager", addr, "-d", "builtin:datagen", "--rows", "10")
	if r.code != 0 || !regexp.MustCompile(`^[0-9a-f]{32}\n$`).MatchString(r.stdout) || !strings.Contains(r.stderr, "Job has been submitted with JobID") {
		t.Errorf("weir run -d: status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, weir, "run", "-m", addr, "builtin:datagen", "--rows", "10")
	if r.code != 0 || !strings.Contains(r.stderr, "is FINISHED") {
		t.Errorf("weir run of a job that finishes: status %d, stderr %q", r.code, r.stderr)
	}
	setNext("FAILED")
	r = run(t, weir, "run", "-m", addr, "builtin:datagen", "--rows", "10")
	if r.code != 1 || !strings.Contains(r.stderr, "failed: boom") {
		t.Errorf("weir run of a job that fails: status %d, stderr %q", r.code, r.stderr)
	}

	setNext("")
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, weir, "run", "-m", addr, "builtin:datagen", "--rows", "-1")
	cmd.Env = cleanEnv()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	for !strings.Contains(stderr.String(), "is RUNNING") {
		if ctx.Err() != nil {
			t.Fatalf("the job was not followed; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "weir: canceling job") ||
		!strings.Contains(stderr.String(), "weir: job canceled") {
		t.Errorf("Ctrl-C: %v; stderr:\n%s", err, stderr.String())
	}
}
