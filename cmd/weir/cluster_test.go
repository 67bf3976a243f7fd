//go:build unix

package main

// Session-cluster tests with real processes on loopback: a master
// (weir cluster start), TaskManagers (weir taskmanager), and jobs
// submitted with weir run --jobmanager, whose workers the TaskManagers
// start. Output is compared with an independent count of the input.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/rest"
)

// cluster is a master and its TaskManagers, each a process of the scenario.
type cluster struct {
	s       *scenario
	weir    string
	dir     string
	master  *proc
	restURL string
	rpc     string
	tms     []*proc
	client  *rest.Client
}

var masterLineRE = regexp.MustCompile(`master running: REST http://(\S+), RPC (\S+) `)

// startCluster starts a master and n TaskManagers with slots slots each,
// and waits until all have registered.
func startCluster(t *testing.T, s *scenario, n, slots int, defines ...string) *cluster {
	t.Helper()
	c := &cluster{s: s, weir: bin(t, "weir"), dir: t.TempDir()}
	args := []string{"cluster", "start", "-D", "rest.port=0", "-D", "jobmanager.rpc.port=0",
		"-D", "cluster.working-dir=" + filepath.Join(c.dir, "master")}
	for _, d := range defines {
		args = append(args, "-D", d)
	}
	c.master = s.start(c.weir, args...)
	var m []string
	c.master.waitFor("the master to listen", func() bool {
		m = masterLineRE.FindStringSubmatch(c.master.stderr.String())
		return m != nil
	})
	if m == nil {
		s.fatalf("the master did not start:\n%s", c.master.stderr.String())
	}
	c.restURL, c.rpc = m[1], m[2]
	var err error
	if c.client, err = rest.NewClient(c.restURL); err != nil {
		s.fatalf("%v", err)
	}
	for range n {
		c.addTaskManager(t, slots)
	}
	c.awaitTaskManagers(n)
	return c
}

// addTaskManager starts a TaskManager with slots slots and the given -D
// settings; it does not wait for it to register.
func (c *cluster) addTaskManager(t *testing.T, slots int, defines ...string) *proc {
	t.Helper()
	i := len(c.tms)
	args := []string{"taskmanager", "--jobmanager", c.rpc, "--slots", fmt.Sprint(slots), "--cpu", fmt.Sprint(slots),
		"--memory", fmt.Sprintf("%dm", 256*slots), "-D", "cluster.working-dir=" + filepath.Join(c.dir, fmt.Sprintf("tm%d", i))}
	for _, d := range defines {
		args = append(args, "-D", d)
	}
	p := c.s.start(c.weir, args...)
	c.tms = append(c.tms, p)
	return p
}

// awaitTaskManagers waits until n TaskManagers are registered.
func (c *cluster) awaitTaskManagers(n int) []rest.TaskManagerInfo {
	var tms []rest.TaskManagerInfo
	c.master.waitFor(fmt.Sprintf("%d TaskManagers to register", n), func() bool {
		var err error
		tms, err = c.client.TaskManagers(context.Background())
		return err == nil && len(tms) == n
	})
	return tms
}

// submit runs weir run --jobmanager with args and returns the process.
func (c *cluster) submit(args ...string) *proc {
	return c.s.start(c.weir, append([]string{"run", "--jobmanager", c.restURL}, args...)...)
}

// submitDetached submits a job and returns its id.
func (c *cluster) submitDetached(args ...string) string {
	p := c.submit(append([]string{"--detached"}, args...)...)
	var out strings.Builder
	p.cmd.Stdout = nil
	p.mustSucceed()
	_ = out
	m := regexp.MustCompile(`[0-9a-f]{32}`).FindString(p.stderr.String())
	if m == "" {
		c.s.fatalf("weir run --detached printed no job id:\n%s", p.stderr.String())
	}
	return m
}

// awaitState polls a job until it is in one of states.
func (c *cluster) awaitState(job string, states ...string) string {
	deadline := time.Now().Add(procTimeout)
	for {
		d, err := c.client.Job(context.Background(), job)
		if err == nil {
			for _, s := range states {
				if d.State == s {
					return s
				}
			}
			if rest.Terminal(d.State) {
				c.s.fatalf("job %s is %s, want %v\nmaster:\n%s", job, d.State, states, c.master.stderr.String())
			}
		}
		if time.Now().After(deadline) {
			c.s.fatalf("job %s did not reach %v within %v (last: %v %v)", job, states, procTimeout, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) freeSlots() int {
	tms, err := c.client.TaskManagers(context.Background())
	if err != nil {
		c.s.fatalf("GET /taskmanagers: %v", err)
	}
	n := 0
	for _, tm := range tms {
		n += tm.FreeSlots
	}
	return n
}

func TestClusterWordcountAcrossTaskManagers(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 2, 2)
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	// p=3 needs slots of both TaskManagers: records cross processes.
	p := c.submit("-p", "3", "-D", "execution.checkpointing.interval=200ms", "builtin:wordcount", "--input", input, "--output", out)
	p.mustSucceed()
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))
	if n := c.freeSlots(); n != 4 {
		s.fatalf("after the job ended %d slots are free, want 4", n)
	}
}

func TestClusterTwoJobsAndCancel(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 2, 2)
	input, _ := writeText(t)
	a := c.submitDetached("-p", "2", "builtin:wordcount", "--input", input, "--output", filepath.Join(t.TempDir(), "a"), "--rate", "2000")
	b := c.submitDetached("-p", "2", "builtin:wordcount", "--input", input, "--output", filepath.Join(t.TempDir(), "b"), "--rate", "2000")
	c.awaitState(a, "RUNNING")
	c.awaitState(b, "RUNNING")
	if n := c.freeSlots(); n != 0 {
		s.fatalf("two jobs of parallelism 2 leave %d of 4 slots free, want 0", n)
	}
	cancel := c.s.start(c.weir, "cancel", "--jobmanager", c.restURL, a)
	cancel.mustSucceed()
	c.awaitState(a, "CANCELED")
	c.master.waitFor("the canceled job's slots to be free", func() bool { return c.freeSlots() == 2 })
	cancel = c.s.start(c.weir, "cancel", "--jobmanager", c.restURL, b)
	cancel.mustSucceed()
	c.awaitState(b, "CANCELED")
	c.master.waitFor("all slots to be free", func() bool { return c.freeSlots() == 4 })
}

func TestClusterSlotRequestTimeout(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 1, 2)
	p := c.submit("-p", "5", "-D", "slot.request.timeout=1s", "builtin:datagen", "--rows", "10")
	if code := p.wait(); code != 1 {
		s.fatalf("a job that cannot get its slots: exit status %d, want 1", code)
	}
	for _, want := range []string{"5 slots", "1 TaskManager", "2 slots", "slot.request.timeout"} {
		if !strings.Contains(p.stderr.String(), want) {
			s.errorf("the error does not say %q:\n%s", want, p.stderr.String())
		}
	}
	if n := c.freeSlots(); n != 2 {
		s.fatalf("after the timeout %d slots are free, want 2", n)
	}
}

func TestClusterTaskManagerKilled(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 2, 2)
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	ckdir := t.TempDir()
	p := c.submit("-p", "2", "-D", "execution.checkpointing.interval=100ms", "-D", "state.checkpoints.dir=file://"+ckdir,
		"-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.delay=10ms",
		"builtin:wordcount", "--input", input, "--output", out, "--rate", "40000")
	// Find the TaskManager that runs the job (Pack puts both slots on one).
	var victim *proc
	p.waitFor("a completed checkpoint", func() bool {
		ids, _ := filepath.Glob(filepath.Join(ckdir, "*", "chk-*", "_metadata"))
		return len(ids) > 0
	})
	for i, tm := range c.tms {
		if len(childPIDs(tm.cmd.Process.Pid)) > 0 {
			victim = c.tms[i]
		}
	}
	if victim == nil {
		s.fatalf("no TaskManager runs a worker")
	}
	killed := time.Now()
	victim.kill()
	p.waitFor("the job to restart", func() bool { return strings.Contains(c.master.stderr.String(), "restarting from") })
	s.logf("restart began %v after the kill", time.Since(killed).Round(time.Millisecond))
	p.mustSucceed()
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))
	_ = os.Remove
}

var jobIDRE = regexp.MustCompile(`[0-9a-f]{32}`)

// TestClusterWorkerKilled kills a job's worker process, not its
// TaskManager: the TaskManager reports the exit and stays registered
// with its slots, and the job restarts from its checkpoint with a new
// worker and commits exactly its output.
func TestClusterWorkerKilled(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 1, 2)
	before := c.awaitTaskManagers(1)[0]
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	ckdir := t.TempDir()
	p := c.submit("-p", "2", "-D", "execution.checkpointing.interval=100ms", "-D", "state.checkpoints.dir=file://"+ckdir,
		"-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.delay=10ms",
		"builtin:wordcount", "--input", input, "--output", out, "--rate", "5000")
	var job string
	p.waitFor("the job's id", func() bool { job = jobIDRE.FindString(p.stderr.String()); return job != "" })
	// Two: the first is surely the JobMaster's latest by the time the
	// second's metadata is written.
	p.waitFor("two completed checkpoints", func() bool {
		ids, _ := filepath.Glob(filepath.Join(ckdir, job, "chk-*", "_metadata"))
		return len(ids) >= 2
	})
	tm := c.tms[0]
	workers := childPIDs(tm.cmd.Process.Pid)
	if len(workers) != 1 {
		s.fatalf("the TaskManager runs %d child processes %v, want the job's one worker", len(workers), workers)
	}
	if err := syscall.Kill(workers[0], syscall.SIGKILL); err != nil {
		s.fatalf("kill -9 %d: %v", workers[0], err)
	}
	s.logf("kill -9 of the worker, pid %d", workers[0])

	exited := regexp.MustCompile(`worker exited: job ` + job + `, worker \S+, pid ` + fmt.Sprint(workers[0]) + `: signal: killed`)
	tm.waitFor("the TaskManager to report the worker's death", func() bool { return exited.MatchString(tm.stderr.String()) })
	p.waitFor("the job to restart from its checkpoint", func() bool {
		return strings.Contains(c.master.stderr.String(), "restarting from checkpoint ")
	})
	p.mustSucceed()
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))

	// The TaskManager carried on: the same process, registered all along,
	// started a second worker for the restart, and has its slots back.
	if tm.exited() {
		s.fatalf("the TaskManager exited (status %d) after its worker was killed", tm.code())
	}
	if n := strings.Count(tm.stderr.String(), "worker started: job "+job); n < 2 {
		s.errorf("the TaskManager started %d workers for the job, want a second one for the restart", n)
	}
	for _, bad := range []string{"lost the master", "refused"} {
		if strings.Contains(tm.stderr.String(), bad) {
			s.errorf("the TaskManager's log says %q", bad)
		}
	}
	if strings.Contains(c.master.stderr.String(), "TaskManager "+before.ID+" lost") {
		s.errorf("the master lost the TaskManager when its worker was killed")
	}
	c.master.waitFor("the job's slots to be free", func() bool { return c.freeSlots() == 2 })
	after := c.awaitTaskManagers(1)[0]
	if after.ID != before.ID || after.PID != before.PID || after.SlotsNumber != 2 {
		s.fatalf("TaskManager after the worker's death: %s pid %d with %d slots, want %s pid %d with 2",
			after.ID, after.PID, after.SlotsNumber, before.ID, before.PID)
	}
}

// TestClusterJobBinary submits a user's Go job binary (examples/wordcount)
// twice: the TaskManagers fetch and run it, the output is exact, and the
// second submission does not upload the binary again.
func TestClusterJobBinary(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	// Two TaskManagers of one slot each: both fetch the binary, and
	// records cross between their workers.
	c := startCluster(t, s, 2, 1)
	wordcount := bin(t, "wordcount")
	data, err := os.ReadFile(wordcount)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])

	// The client talks to the master through a proxy that records each
	// request and the size of its body.
	var mu sync.Mutex
	var requests []string
	target, _ := url.Parse("http://" + c.restURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &countingReader{r: r.Body}
		r.Body = body
		proxy.ServeHTTP(w, r)
		mu.Lock()
		requests = append(requests, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, body.n))
		mu.Unlock()
	}))
	defer srv.Close()
	takeRequests := func() (heads []string, postBytes []int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range requests {
			f := strings.Fields(r)
			switch {
			case f[0] == "HEAD":
				heads = append(heads, f[1])
			case f[0] == "POST" && f[1] == "/jobs":
				n, _ := strconv.ParseInt(f[2], 10, 64)
				postBytes = append(postBytes, n)
			}
		}
		requests = nil
		return heads, postBytes
	}

	input, text := writeText(t)
	for i, wantUpload := range []bool{true, false} {
		out := filepath.Join(t.TempDir(), "counts.txt")
		p := s.start(c.weir, "run", "--jobmanager", srv.Listener.Addr().String(), "-p", "2", wordcount, "--input", input, "--output", out)
		p.mustSucceed()
		got, hidden, err := committedOutput(out)
		if err != nil || len(hidden) > 0 {
			s.fatalf("submission %d: output: %v, pending files %v", i+1, err, hidden)
		}
		checkCounts(t, parseCounts(t, got), countWords(text))
		heads, posts := takeRequests()
		if len(heads) != 1 || heads[0] != "/artifacts/"+digest || len(posts) != 1 {
			s.fatalf("submission %d: HEAD %v and %d POST /jobs, want HEAD /artifacts/%s and one POST", i+1, heads, len(posts), digest)
		}
		uploaded := posts[0] > int64(len(data))
		if uploaded != wantUpload {
			s.fatalf("submission %d sent %d bytes in POST /jobs for a %d-byte binary; want upload %v", i+1, posts[0], len(data), wantUpload)
		}
	}
	stored, _ := os.ReadDir(filepath.Join(c.dir, "master", "artifacts"))
	if len(stored) != 1 || stored[0].Name() != digest {
		var names []string
		for _, e := range stored {
			names = append(names, e.Name())
		}
		s.fatalf("the master's artifact store holds %v, want just %s", names, digest)
	}
	for i, tm := range c.tms {
		cached, _ := os.ReadDir(filepath.Join(c.dir, fmt.Sprintf("tm%d", i), "artifacts"))
		if len(cached) != 1 || cached[0].Name() != digest {
			s.errorf("TaskManager %d's artifact cache holds %d files, want the binary once", i, len(cached))
		}
		if n := strings.Count(tm.stderr.String(), "worker started"); n != 2 {
			s.errorf("TaskManager %d started %d workers, want one per job", i, n)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// TestClusterTaskManagerHangs freezes the TaskManager that runs a job
// (SIGSTOP: it keeps its connection but answers nothing) and kills the
// job's worker there. The job restarts at once, and its deployment asks
// the frozen TaskManager for a new worker; when the master declares that
// TaskManager lost (heartbeat.timeout) the deployment must start over on
// the other TaskManager rather than wait for a worker that never comes.
// Thawed, the TaskManager registers again.
func TestClusterTaskManagerHangs(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 2, 2)
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	ckdir := t.TempDir()
	p := c.submit("-p", "2", "-D", "execution.checkpointing.interval=100ms", "-D", "state.checkpoints.dir=file://"+ckdir,
		"-D", "restart-strategy.type=fixed-delay", "-D", "restart-strategy.fixed-delay.delay=10ms",
		"builtin:wordcount", "--input", input, "--output", out, "--rate", "5000")
	var job string
	p.waitFor("the job's id", func() bool { job = jobIDRE.FindString(p.stderr.String()); return job != "" })
	p.waitFor("a completed checkpoint", func() bool {
		ids, _ := filepath.Glob(filepath.Join(ckdir, job, "chk-*", "_metadata"))
		return len(ids) > 0
	})
	var victim, other *proc
	var worker int
	for _, tm := range c.tms {
		if w := childPIDs(tm.cmd.Process.Pid); len(w) > 0 {
			victim, worker = tm, w[0]
		} else {
			other = tm
		}
	}
	if victim == nil || other == nil {
		s.fatalf("want the job's worker on one TaskManager (Pack) and none on the other")
	}
	var victimID string
	for _, tm := range c.awaitTaskManagers(2) {
		if tm.PID == victim.cmd.Process.Pid {
			victimID = tm.ID
		}
	}
	if err := syscall.Kill(victim.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		s.fatalf("SIGSTOP: %v", err)
	}
	s.logf("SIGSTOP to TaskManager %s (pid %d)", victimID, victim.cmd.Process.Pid)
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		s.fatalf("kill -9 %d: %v", worker, err)
	}
	s.logf("kill -9 of its worker, pid %d", worker)
	p.waitFor("the master to declare the frozen TaskManager lost", func() bool {
		return regexp.MustCompile(`TaskManager ` + victimID + ` \(.*\) lost: no heartbeat`).MatchString(c.master.stderr.String())
	})
	p.mustSucceed()
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))
	if !strings.Contains(other.stderr.String(), "worker started: job "+job) {
		s.errorf("the job did not move to the other TaskManager")
	}
	if strings.Contains(c.master.stderr.String(), "did not start within") {
		s.errorf("the deployment waited for the frozen TaskManager's worker")
	}

	if err := syscall.Kill(victim.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		s.fatalf("SIGCONT: %v", err)
	}
	s.logf("SIGCONT to TaskManager %s", victimID)
	victim.waitFor("the thawed TaskManager to register again", func() bool {
		return strings.Count(victim.stderr.String(), "registered with the master") == 2
	})
	c.master.waitFor("all slots to be free", func() bool { return c.freeSlots() == 4 })
}

// TestClusterMasterPause freezes the master (SIGSTOP) for longer than
// heartbeat.timeout: the TaskManagers give it up and register again once
// it answers. The master must take a TaskManager's new registration as
// that TaskManager coming back, not refuse it as a second TaskManager with
// the same resource id (which would end it), and run jobs on it after.
func TestClusterMasterPause(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 2, 1)
	before := c.awaitTaskManagers(2)
	pid := c.master.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		s.fatalf("SIGSTOP: %v", err)
	}
	s.logf("SIGSTOP to the master")
	for _, tm := range c.tms {
		tm.waitFor("the TaskManager to give the master up", func() bool { return strings.Contains(tm.stderr.String(), "lost the master") })
	}
	// Long enough for the TaskManagers to try again while the master is
	// frozen.
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		s.fatalf("SIGCONT: %v", err)
	}
	s.logf("SIGCONT to the master")
	for i, tm := range c.tms {
		tm.waitFor("the TaskManager to register again", func() bool {
			return strings.Count(tm.stderr.String(), "registered with the master") >= 2
		})
		if tm.exited() {
			s.fatalf("TaskManager %d exited (status %d) when the master came back", i, tm.code())
		}
	}
	after := c.awaitTaskManagers(2)
	for i := range before {
		if after[i].ID != before[i].ID || after[i].PID != before[i].PID {
			s.fatalf("TaskManagers after the pause: %+v, want %+v", after, before)
		}
	}
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	c.submit("-p", "2", "builtin:wordcount", "--input", input, "--output", out).mustSucceed()
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))
}
