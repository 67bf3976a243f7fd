package main

// Tests of weir list, cancel, savepoint and stop: in-process against a REST
// server over fake job masters, and end to end against a real `weir run`.

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/rest"
)

// fakeJob is a job master as the REST API sees it; savepoint decides how
// TriggerSavepoint answers.
type fakeJob struct {
	mu        sync.Mutex
	status    jobmaster.Status
	cancels   int
	savepoint func(ctx context.Context, dir string, stop, drain bool) (string, error)
}

func newFakeJob(id, name, state string, start time.Time) *fakeJob {
	return &fakeJob{status: jobmaster.Status{JobID: id, Name: name, State: state, StartTime: start,
		Timestamps: map[string]time.Time{state: start}}}
}

func (f *fakeJob) Status() jobmaster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeJob) setState(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.State = s
	if rest.Terminal(s) {
		f.status.EndTime = time.Now()
	}
}

func (f *fakeJob) Cancel() {
	f.mu.Lock()
	f.cancels++
	f.mu.Unlock()
	f.setState("CANCELED")
}

func (f *fakeJob) cancelCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancels
}

// savepointArgs are the arguments of a TriggerSavepoint call.
type savepointArgs struct {
	dir         string
	stop, drain bool
}

func (f *fakeJob) TriggerSavepoint(ctx context.Context, dir string, stop, drain bool) (string, error) {
	if f.savepoint == nil {
		return "", errors.New("savepoints need checkpoints on")
	}
	return f.savepoint(ctx, dir, stop, drain)
}

// serveJobs serves the jobs over loopback HTTP and returns the address.
func serveJobs(t *testing.T, jobs map[string]*fakeJob) string {
	t.Helper()
	return serveJobsWith(t, jobs, func(h http.Handler) http.Handler { return h })
}

// serveJobsWith serves the jobs through a wrapper of the API's handler.
func serveJobsWith(t *testing.T, jobs map[string]*fakeJob, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	s := rest.NewServer(rest.Options{})
	for id, j := range jobs {
		s.Register(id, j)
	}
	srv := httptest.NewServer(wrap(s))
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// testEnv points the commands at defaultAddr and the given announcements,
// with fast polling.
func testEnv(defaultAddr string, announced ...rest.Announcement) jobsEnv {
	return jobsEnv{
		defaultAddr: defaultAddr,
		announced:   func() []rest.Announcement { return announced },
		poll:        time.Millisecond,
		progress:    0,
		endWait:     5 * time.Second,
	}
}

// weirCLI runs one of the commands in-process.
func weirCLI(t *testing.T, env jobsEnv, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var cmd *cobra.Command
	for _, c := range env.commands() {
		if c.Name() == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		t.Fatalf("no command %q", args[0])
	}
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args[1:])
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

const (
	jobRunning = "5f2c9a0e1b7d4c3a8e6f0b1d2c3a4e5f"
	jobEnded   = "5f2c00000000000000000000000000aa"
	jobOther   = "9abcdef0123456789abcdef012345678"
)

var started = time.Date(2025, 3, 1, 12, 0, 0, 0, time.Local)

func TestList(t *testing.T) {
	t.Parallel()
	addr := serveJobs(t, map[string]*fakeJob{
		jobRunning: newFakeJob(jobRunning, "datagen", "RUNNING", started),
		jobEnded:   newFakeJob(jobEnded, "wordcount", "FINISHED", started.Add(-time.Hour)),
	})
	env := testEnv("127.0.0.1:1")
	out, _, err := weirCLI(t, env, "list", "--jobmanager", addr)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "JOB ID") || !strings.Contains(lines[1], jobRunning) ||
		!strings.Contains(lines[1], "RUNNING") || !strings.Contains(lines[1], "datagen") ||
		!strings.Contains(lines[1], "2025-03-01 12:00:00") || strings.Contains(out, "REST API") {
		t.Errorf("weir list:\n%s", out)
	}
	out, _, _ = weirCLI(t, env, "list", "-m", "http://"+addr, "--all")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], jobEnded) || !strings.Contains(lines[1], "FINISHED") {
		t.Errorf("weir list --all (oldest first):\n%s", out)
	}

	empty := serveJobs(t, nil)
	if out, _, err := weirCLI(t, env, "list", "-m", empty); err != nil || out != "No running jobs.\n" {
		t.Errorf("weir list of an idle cluster: %q, %v", out, err)
	}
}

func TestListFindsTheJobsOfThisHost(t *testing.T) {
	t.Parallel()
	def := serveJobs(t, map[string]*fakeJob{jobRunning: newFakeJob(jobRunning, "datagen", "RUNNING", started)})
	other := serveJobs(t, map[string]*fakeJob{jobOther: newFakeJob(jobOther, "nexmark", "RUNNING", started.Add(time.Minute))})
	ann := []rest.Announcement{
		{Address: "http://" + other, JobID: jobOther, PID: 1},
		// The default API announced itself too: listed once.
		{Address: "http://" + def, JobID: jobRunning, PID: 1},
		// A job whose API has just gone.
		{Address: "http://127.0.0.1:1", JobID: jobEnded, PID: 1},
	}
	out, _, err := weirCLI(t, testEnv(def, ann...), "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, jobRunning) != 1 || !strings.Contains(out, jobOther) || !strings.Contains(out, "REST API") ||
		!strings.Contains(out, "http://"+other) {
		t.Errorf("weir list without --jobmanager:\n%s", out)
	}

	// Nothing at the default address: the announced jobs are enough.
	out, _, err = weirCLI(t, testEnv("127.0.0.1:1", ann[0]), "list")
	if err != nil || !strings.Contains(out, jobOther) {
		t.Errorf("weir list with only an announced API: %v\n%s", err, out)
	}
	// Nothing anywhere.
	_, _, err = weirCLI(t, testEnv("127.0.0.1:1", ann[2]), "list")
	if err == nil || !strings.Contains(err.Error(), "no Weir REST API at 127.0.0.1:1: is the job running? give --jobmanager") {
		t.Errorf("weir list with nothing listening: %v", err)
	}
	// With --jobmanager, only there.
	out, _, _ = weirCLI(t, testEnv(def, ann...), "list", "--jobmanager", other)
	if strings.Contains(out, jobRunning) || !strings.Contains(out, jobOther) {
		t.Errorf("weir list --jobmanager looked elsewhere:\n%s", out)
	}
}

func TestJobArgument(t *testing.T) {
	t.Parallel()
	running := newFakeJob(jobRunning, "datagen", "RUNNING", started)
	addr := serveJobs(t, map[string]*fakeJob{
		jobRunning: running,
		jobEnded:   newFakeJob(jobEnded, "wordcount", "FINISHED", started),
		jobOther:   newFakeJob(jobOther, "nexmark", "RUNNING", started),
	})
	env := testEnv(addr)
	// 5F2C names two jobs, of which one runs.
	for _, job := range []string{"5F2C", jobRunning} {
		running.setState("RUNNING")
		if out, _, err := weirCLI(t, env, "cancel", job); err != nil || !strings.Contains(out, jobRunning) {
			t.Errorf("weir cancel %s: %q, %v", job, out, err)
		}
	}
	for _, c := range []struct{ job, want string }{
		{"5f2c9b", "no job 5f2c9b at " + addr + "; `weir list` shows the jobs"},
		{"", "not a job id"},
		{"5f2g", "not a job id"},
		{jobRunning + "0", "not a job id"},
	} {
		_, _, err := weirCLI(t, env, "cancel", c.job)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("weir cancel %q: %v, want an error containing %q", c.job, err, c.want)
		}
	}
	// Two running jobs share the prefix.
	both := serveJobs(t, map[string]*fakeJob{
		jobRunning: newFakeJob(jobRunning, "datagen", "RUNNING", started),
		jobEnded:   newFakeJob(jobEnded, "wordcount", "RUNNING", started),
	})
	_, _, err := weirCLI(t, testEnv(both), "cancel", "5f2c")
	if err == nil || !strings.Contains(err.Error(), "matches 2 jobs") || !strings.Contains(err.Error(), "more of its digits") {
		t.Errorf("an ambiguous prefix: %v", err)
	}
	if _, _, err := weirCLI(t, env, "cancel"); err == nil || !strings.Contains(err.Error(), "no job given") {
		t.Errorf("weir cancel without JOB: %v", err)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	j := newFakeJob(jobRunning, "datagen", "RUNNING", started)
	addr := serveJobs(t, map[string]*fakeJob{jobRunning: j})
	out, _, err := weirCLI(t, testEnv("127.0.0.1:1"), "cancel", "-m", addr, "5f2c")
	if err != nil || j.cancelCount() != 1 || out != "Canceled job "+jobRunning+" (datagen).\n" {
		t.Errorf("weir cancel: %q, %v; %d cancels", out, err, j.cancelCount())
	}
	// Canceling it again: the API says why not.
	_, _, err = weirCLI(t, testEnv("127.0.0.1:1"), "cancel", "-m", addr, jobRunning)
	if err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Errorf("weir cancel of a canceled job: %v", err)
	}
}

func TestSavepoint(t *testing.T) {
	t.Parallel()
	j := newFakeJob(jobRunning, "datagen", "RUNNING", started)
	calls := make(chan savepointArgs, 1)
	// The savepoint completes once the CLI has found it in progress
	// twice.
	release := make(chan struct{})
	var polls int
	var mu sync.Mutex
	j.savepoint = func(ctx context.Context, dir string, stop, drain bool) (string, error) {
		calls <- savepointArgs{dir, stop, drain}
		<-release
		return dir + "/savepoint-5f2c9a-0123456789ab", nil
	}
	addr := serveJobsWith(t, map[string]*fakeJob{jobRunning: j}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.Method == "GET" && strings.Contains(r.URL.Path, "/savepoints/") {
				mu.Lock()
				if polls++; polls == 2 {
					close(release)
				}
				mu.Unlock()
			}
		})
	})
	out, errOut, err := weirCLI(t, testEnv(addr), "savepoint", "5f2c", "sp")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	got := <-calls
	if got.dir != filepath.Join(wd, "sp") || got.stop || got.drain {
		t.Errorf("the job was asked for %+v, want a savepoint in the absolute %q", got, filepath.Join(wd, "sp"))
	}
	if out != got.dir+"/savepoint-5f2c9a-0123456789ab\n" {
		t.Errorf("stdout %q, want the path alone", out)
	}
	for _, want := range []string{"triggering a savepoint of job " + jobRunning, "in progress", "--from-savepoint " + got.dir} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	// Failing.
	failing := newFakeJob(jobRunning, "datagen", "RUNNING", started)
	addr = serveJobs(t, map[string]*fakeJob{jobRunning: failing})
	_, _, err = weirCLI(t, testEnv(addr), "savepoint", jobRunning)
	if err == nil || !strings.Contains(err.Error(), "savepoint of job "+jobRunning+" failed: ") ||
		!strings.Contains(err.Error(), "savepoints need checkpoints on") {
		t.Errorf("a failed savepoint: %v", err)
	}
	if _, _, err := weirCLI(t, testEnv(addr), "savepoint", jobRunning, "a", "b"); err == nil {
		t.Error("weir savepoint JOB DIR EXTRA was accepted")
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	j := newFakeJob(jobRunning, "datagen", "RUNNING", started)
	calls := make(chan savepointArgs, 1)
	j.savepoint = func(ctx context.Context, dir string, stop, drain bool) (string, error) {
		calls <- savepointArgs{dir, stop, drain}
		j.setState("FINISHED")
		return "s3://bucket/sp/savepoint-1", nil
	}
	addr := serveJobs(t, map[string]*fakeJob{jobRunning: j})
	out, errOut, err := weirCLI(t, testEnv(addr), "stop", "--drain", "--savepoint-dir", "s3://bucket/sp", "5f")
	if err != nil || out != "s3://bucket/sp/savepoint-1\n" {
		t.Fatalf("weir stop --drain: %q, %v\n%s", out, err, errOut)
	}
	if got := <-calls; got != (savepointArgs{"s3://bucket/sp", true, true}) {
		t.Errorf("the job was asked for %+v", got)
	}
	if !strings.Contains(errOut, "draining and stopping job "+jobRunning) || !strings.Contains(errOut, "stopped with a savepoint at s3://bucket/sp/savepoint-1") {
		t.Errorf("stderr:\n%s", errOut)
	}
}

func TestNotTheAPI(t *testing.T) {
	t.Parallel()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<html>Not Found</html>"))
	}))
	defer html.Close()
	garbled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jobs":"none"}`))
	}))
	defer garbled.Close()
	cases := []struct {
		addr string
		args []string
		want []string
	}{
		{html.URL, []string{"list"}, []string{"is not a Weir or Flink REST API", "404 Not Found", "text/html"}},
		{html.URL, []string{"savepoint", jobRunning}, []string{"is not a Weir or Flink REST API"}},
		{garbled.URL, []string{"list"}, []string{"malformed answer from " + garbled.URL + " to GET /jobs/overview"}},
		{"ftp://x", []string{"list"}, []string{"--jobmanager", "not http"}},
	}
	for _, c := range cases {
		args := append([]string{c.args[0], "--jobmanager", c.addr}, c.args[1:]...)
		_, _, err := weirCLI(t, testEnv("127.0.0.1:1"), args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("weir %s: %v, want an error containing %q", strings.Join(args, " "), err, w)
			}
		}
	}
}

// TestJobsEndToEnd runs a real endless job with checkpoints and steers it
// with the weir commands through its REST API: list it, take a savepoint,
// stop it with a savepoint.
func TestJobsEndToEnd(t *testing.T) {
	t.Parallel()
	weir := bin(t, "weir")
	dir := t.TempDir()
	// The job's announcement goes to its own TMPDIR, so that weir list
	// without --jobmanager finds it there.
	env := append(cleanEnv(), "TMPDIR="+dir)
	job := exec.Command(weir, "run", "-p", "2", "-D", "execution.checkpointing.interval=100ms",
		"-D", "state.checkpoints.dir="+filepath.Join(dir, "checkpoints"),
		"builtin:datagen", "--rows", "-1", "--rate", "1000")
	job.Env = env
	var jobErr syncBuffer
	job.Stderr = &jobErr
	must(t, job.Start())
	exited := make(chan error, 1)
	go func() { exited <- job.Wait() }()
	ended := false
	t.Cleanup(func() {
		if !ended {
			job.Process.Kill()
			<-exited
		}
	})

	runningRE := regexp.MustCompile(`job datagen \(([0-9a-f]{32})\) running on the embedded cluster.*REST API at (http://\S+)`)
	deadline := time.Now().Add(hangTimeout)
	var m []string
	for m = runningRE.FindStringSubmatch(jobErr.String()); m == nil; m = runningRE.FindStringSubmatch(jobErr.String()) {
		if out := jobErr.String(); strings.Contains(out, "running on the embedded cluster") && strings.Contains(out, "\n") &&
			!strings.Contains(out, "REST API") {
			t.Skipf("the embedded cluster serves no REST API (stream.Environment does not start it):\n%s", out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not say where its REST API is within %s; stderr:\n%s", hangTimeout, jobErr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	id, api := m[1], m[2]

	weirCmd := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, weir, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			t.Fatalf("weir %s did not end within %s; stderr:\n%s", strings.Join(args, " "), hangTimeout, r.stderr)
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return r
	}

	for _, args := range [][]string{{"list", "--jobmanager", api}, {"list"}} {
		r := weirCmd(args...)
		mustSucceed(t, r, "weir "+strings.Join(args, " "))
		if !regexp.MustCompile(id + `\s+RUNNING\s.*datagen`).MatchString(r.stdout) {
			t.Errorf("weir %s does not show the job running:\n%s", strings.Join(args, " "), r.stdout)
		}
	}

	metadata := func(path string) {
		t.Helper()
		path = strings.TrimPrefix(path, "file://")
		if _, err := os.Stat(filepath.Join(path, "_metadata")); err != nil {
			t.Errorf("savepoint %s: %v", path, err)
		}
	}
	r := weirCmd("savepoint", "--jobmanager", api, id[:8], filepath.Join(dir, "savepoints"))
	mustSucceed(t, r, "weir savepoint")
	sp := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(strings.TrimPrefix(sp, "file://"), filepath.Join(dir, "savepoints")) {
		t.Errorf("savepoint at %q, want it under %s", sp, filepath.Join(dir, "savepoints"))
	}
	metadata(sp)

	r = weirCmd("stop", "--savepoint-dir", filepath.Join(dir, "final"), id)
	mustSucceed(t, r, "weir stop")
	final := strings.TrimSpace(r.stdout)
	metadata(final)
	if !strings.Contains(r.stderr, "stopped with a savepoint at "+final) {
		t.Errorf("weir stop stderr:\n%s", r.stderr)
	}
	select {
	case err := <-exited:
		ended = true
		if err != nil || !strings.Contains(jobErr.String(), "weir: job datagen FINISHED") {
			t.Errorf("the stopped job ended with %v; stderr:\n%s", err, jobErr.String())
		}
	case <-time.After(hangTimeout):
		t.Fatalf("the job did not end within %s of weir stop; stderr:\n%s", hangTimeout, jobErr.String())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "weir-rest-*", "*.json")); len(left) != 0 {
		t.Errorf("the job left its announcement behind: %v", left)
	}
}
