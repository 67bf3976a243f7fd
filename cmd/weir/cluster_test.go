//go:build unix

package main

// Session-cluster tests with real processes on loopback: a master
// (weir cluster start), TaskManagers (weir taskmanager), and jobs
// submitted with weir run --jobmanager, whose workers the TaskManagers
// start. Output is compared with an independent count of the input.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

func (c *cluster) addTaskManager(t *testing.T, slots int) *proc {
	t.Helper()
	i := len(c.tms)
	p := c.s.start(c.weir, "taskmanager", "--jobmanager", c.rpc, "--slots", fmt.Sprint(slots), "--cpu", fmt.Sprint(slots),
		"--memory", fmt.Sprintf("%dm", 256*slots), "-D", "cluster.working-dir="+filepath.Join(c.dir, fmt.Sprintf("tm%d", i)))
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
