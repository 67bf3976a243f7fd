package main

// `weir bench cluster`: figures of a session cluster made of real
// processes on loopback. This weir starts a master and TaskManagers as its
// own children (each in its own process group, all on 127.0.0.1 with
// ports chosen by the kernel); the TaskManagers start the jobs' workers.
//
//	weir bench cluster
//	  submit    1 TaskManager x 2 slots: Submit → every task RUNNING, N times
//	            (cancel, wait for the slots and the worker, next)
//	  failover  2 TaskManagers x 2 slots: SIGKILL the one whose worker runs
//	            the job → the job RUNNING again from its checkpoint, F times
//	            (a fresh TaskManager replaces each killed one)
//	  q5        Nexmark q5 with p=2 on 2 TaskManagers x 1 slot (records cross
//	            processes over TCP), events per core-second of the workers,
//	            against the same run on the embedded cluster
//
// Worker CPU time is read without cgroups: a TaskManager reaps its
// workers, so the kernel adds their user and system time to the
// TaskManager's cutime and cstime (/proc/PID/stat), exactly and after the
// worker has exited.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/procstat"
	"github.com/weirstream/weir/internal/rest"
	weirversion "github.com/weirstream/weir/internal/version"
)

// clusterBenchFlags are the options of `weir bench cluster`.
type clusterBenchFlags struct {
	parts        string
	submissions  int
	failovers    int
	events       int64
	poll         time.Duration
	restartDelay time.Duration
	workDir      string
	asJSON       bool
}

// Targets the figures are held against.
const (
	targetSubmitP50    = 50 * time.Millisecond
	targetSubmitP99    = 200 * time.Millisecond
	targetFailover     = 2 * time.Second
	targetQ5Ratio      = 0.8
	submitWarmups      = 3 // submissions before the measured ones, not counted
	benchWaitTimeout   = 60 * time.Second
	benchProcStopGrace = 5 * time.Second
)

func benchClusterCommand() *cobra.Command {
	var f clusterBenchFlags
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Start a session cluster of real processes here and print submit latency, failover time and cross-process throughput",
		Long: `Starts a master and TaskManagers as child processes of this weir (on 127.0.0.1,
ports chosen by the kernel), measures, and stops them again (also on Ctrl-C):

  submit    submit → every task RUNNING of a small job (datagen, p=2), session mode,
            TaskManager registered; each job is canceled and its slots and worker
            freed before the next. Targets: p50 < 50 ms, p99 < 200 ms.
  failover  SIGKILL of the TaskManager that runs a checkpointed job (wordcount, p=2,
            2 TaskManagers x 2 slots) → every task RUNNING again from its latest
            checkpoint. Target: < 2 s.
  q5        Nexmark q5, p=2 on 2 TaskManagers x 1 slot, in events per CPU-second of
            the workers, against the same query on the embedded cluster (a child
            weir bench nexmark). Target: at least 80% of the embedded figure.

Progress goes to stderr, the table (or with --json one JSON object) to stdout.`,
		Example: `  weir bench cluster
  weir bench cluster --parts submit --submissions 300 --poll 500us
  weir bench cluster --parts q5 --events 20000000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClusterBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.parts, "parts", "submit,failover,q5", "comma-separated parts to run: submit, failover, q5")
	fl.IntVar(&f.submissions, "submissions", 100, "submit: measured submissions")
	fl.IntVar(&f.failovers, "failovers", 5, "failover: TaskManager kills")
	fl.Int64Var(&f.events, "events", 10_000_000, "q5: events")
	fl.DurationVar(&f.poll, "poll", time.Millisecond, "interval between status requests while timing submit and failover")
	fl.DurationVar(&f.restartDelay, "restart-delay", 10*time.Millisecond, "failover: restart-strategy.fixed-delay.delay of the job")
	fl.StringVar(&f.workDir, "work-dir", "", "keep the processes' logs, working directories and checkpoints here (default: a temporary directory, removed)")
	fl.BoolVar(&f.asJSON, "json", false, "print the figures as one JSON object")
	return cmd
}

// clusterBenchResult is what `weir bench cluster --json` prints.
type clusterBenchResult struct {
	Cores   int    `json:"cores"`
	Version string `json:"version"`
	// LoadAverage is the machine's 1-minute load average at the start.
	LoadAverage float64          `json:"load_average"`
	Submit      *submitFigures   `json:"submit,omitempty"`
	Failover    *failoverFigures `json:"failover,omitempty"`
	Q5          *q5Figures       `json:"q5,omitempty"`
}

// submitFigures are the submit part's: latencies in milliseconds.
type submitFigures struct {
	Submissions int     `json:"submissions"`
	PollMs      float64 `json:"poll_ms"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	// Medians of when each phase was first seen, from the Submit call:
	// POST /jobs answered, the TaskManager's worker process exists, every
	// task DEPLOYING (all workers attached, deployments sent), every task
	// RUNNING.
	PostMs     float64 `json:"post_ms"`
	ForkedMs   float64 `json:"worker_forked_ms"`
	DeployedMs float64 `json:"deployed_ms"`
	RunningMs  float64 `json:"running_ms"`
	// ProcessStartMs is the median wall time of `weir version` here: what
	// starting any weir process costs (exec, Go runtime, package init).
	ProcessStartMs float64 `json:"weir_process_start_ms"`
	// CancelFreeMs is the median time from the cancel request until the
	// slots are free and the worker has exited.
	CancelFreeMs float64 `json:"cancel_to_free_ms"`
}

// failoverFigures are the failover part's: times in milliseconds from the
// SIGKILL.
type failoverFigures struct {
	Failovers []failoverRun `json:"failovers"`
	MedianMs  float64       `json:"median_ms"`
	MaxMs     float64       `json:"max_ms"`
}

type failoverRun struct {
	// RestartingMs is when the job entered RESTARTING (the master's
	// timestamp): the failure detected and the old attempt ended.
	RestartingMs float64 `json:"restarting_ms"`
	// RunningMs is when every task was RUNNING again.
	RunningMs float64 `json:"running_ms"`
	// Checkpoint is the checkpoint the job restarted from (0: none).
	Checkpoint int64 `json:"checkpoint"`
}

// q5Figures are the q5 part's.
type q5Figures struct {
	Events int64 `json:"events"`
	// Cluster: Submit until FINISHED; CPU of the two workers, and of the
	// master and TaskManagers (control plane) beside.
	ClusterSeconds             float64 `json:"cluster_seconds"`
	ClusterWorkerCPUSeconds    float64 `json:"cluster_worker_cpu_seconds"`
	ClusterWorkerSysSeconds    float64 `json:"cluster_worker_system_cpu_seconds"`
	ClusterControlCPUSeconds   float64 `json:"cluster_control_cpu_seconds"`
	ClusterEventsPerSecond     float64 `json:"cluster_events_per_second"`
	ClusterEventsPerCoreSecond float64 `json:"cluster_events_per_core_second"`
	// ClusterOtherLoad is how many cores, on average, processes other than
	// the benchmark's kept busy during the cluster run: a figure taken on
	// a busy machine is worth less.
	ClusterOtherLoad float64 `json:"cluster_other_load_cores"`
	// Embedded: weir bench nexmark --queries q5 -p 2 in a child process,
	// once before the cluster run and once after, so that a change of the
	// machine's load shows; the figures compared are their mean.
	Embedded                    []embeddedRun `json:"embedded_runs"`
	EmbeddedEventsPerCoreSecond float64       `json:"embedded_events_per_core_second"`
	// Ratio is cluster over embedded events per core-second.
	Ratio float64 `json:"ratio"`
}

// embeddedRun is one run of weir bench nexmark.
type embeddedRun struct {
	Seconds             float64 `json:"seconds"`
	CPUSeconds          float64 `json:"cpu_seconds"`
	EventsPerSecond     float64 `json:"events_per_second"`
	EventsPerCoreSecond float64 `json:"events_per_core_second"`
	OtherLoad           float64 `json:"other_load_cores"`
	// ProcessCPUSeconds and ProcessSysSeconds are the child's CPU time
	// from start to exit, and the system part of it.
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`
	ProcessSysSeconds float64 `json:"process_system_cpu_seconds"`
}

func runClusterBench(stdout, stderr io.Writer, f clusterBenchFlags) error {
	parts := map[string]bool{}
	for _, p := range strings.Split(f.parts, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "submit", "failover", "q5":
			parts[p] = true
		default:
			return fmt.Errorf("--parts: unknown part %q; choose from submit, failover, q5", p)
		}
	}
	switch {
	case len(parts) == 0:
		return errors.New("--parts: name at least one of submit, failover, q5")
	case parts["submit"] && f.submissions < 1:
		return fmt.Errorf("--submissions %d: give at least 1", f.submissions)
	case parts["failover"] && f.failovers < 1:
		return fmt.Errorf("--failovers %d: give at least 1", f.failovers)
	case parts["q5"] && f.events < 1:
		return fmt.Errorf("--events %d: give a positive number of events", f.events)
	case f.poll <= 0:
		return fmt.Errorf("--poll %v: give a positive interval, e.g. 1ms", f.poll)
	case f.restartDelay < 0:
		return fmt.Errorf("--restart-delay %v: give a delay of 0 or more", f.restartDelay)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errors.New("weir bench cluster reads worker processes and CPU times from /proc; it runs on Linux only")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the weir binary to start the cluster's processes with: %w", err)
	}
	dir := f.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "weir-bench-cluster-*"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--work-dir: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &clusterBench{f: f, exe: exe, dir: dir, log: stderr, procs: map[*benchProc]bool{}}
	defer b.stopAll()

	res := clusterBenchResult{Cores: goruntime.NumCPU(), Version: weirversion.Version, LoadAverage: loadAverage()}
	run := func(name string, part func(context.Context) error) error {
		if !parts[name] {
			return nil
		}
		if err := part(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted during the %s part; the cluster's processes are stopped", name)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := run("submit", func(ctx context.Context) (err error) { res.Submit, err = b.submitPart(ctx); return }); err != nil {
		return err
	}
	if err := run("failover", func(ctx context.Context) (err error) { res.Failover, err = b.failoverPart(ctx); return }); err != nil {
		return err
	}
	if err := run("q5", func(ctx context.Context) (err error) { res.Q5, err = b.q5Part(ctx); return }); err != nil {
		return err
	}
	if f.asJSON {
		out, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(out))
		return nil
	}
	printClusterBench(stdout, res)
	return nil
}

// clusterBench runs the parts; it owns every process it starts.
type clusterBench struct {
	f   clusterBenchFlags
	exe string
	dir string
	log io.Writer

	mu    sync.Mutex
	procs map[*benchProc]bool // started and not yet seen to exit
}

func (b *clusterBench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "weir bench cluster: "+format+"\n", args...)
}

// benchProc is a child process of the benchmark.
type benchProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once reaped
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

func (p *benchProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logText is the process's output so far.
func (p *benchProc) logText() string {
	bs, _ := os.ReadFile(p.logPath)
	return string(bs)
}

// start starts weir with args as a child in its own process group, its
// output in logs/NAME.log. The kernel kills it if this process dies.
func (b *clusterBench) start(name string, args ...string) (*benchProc, error) {
	if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	p := &benchProc{name: name, logPath: filepath.Join(b.dir, "logs", name+".log"), exited: make(chan struct{})}
	out, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	p.cmd = exec.Command(b.exe, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// Its own process group: Ctrl-C at the terminal reaches this weir
	// only, which stops its children in order.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	bindChild(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s %s): %w", name, b.exe, strings.Join(args, " "), err)
	}
	b.mu.Lock()
	b.procs[p] = true
	b.mu.Unlock()
	go func() {
		_ = p.cmd.Wait()
		b.mu.Lock()
		delete(b.procs, p)
		b.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// kill sends SIGKILL to p (by its pid, not its group) and waits for it.
func (p *benchProc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// stopProcs asks the processes to end with SIGTERM (the TaskManagers stop
// their workers, the master cancels its jobs), waits for them, and kills
// those still running benchProcStopGrace later.
func stopProcs(ps ...*benchProc) {
	for _, p := range ps {
		if p != nil && p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	grace := time.NewTimer(benchProcStopGrace)
	defer grace.Stop()
	late := false
	for _, p := range ps {
		if p == nil {
			continue
		}
		if !late {
			select {
			case <-p.exited:
				continue
			case <-grace.C:
				late = true
			}
		}
		p.kill()
	}
}

// stopAll stops every process still running.
func (b *clusterBench) stopAll() {
	b.mu.Lock()
	var ps []*benchProc
	for p := range b.procs {
		ps = append(ps, p)
	}
	b.mu.Unlock()
	stopProcs(ps...)
}

// benchCluster is a session cluster of the benchmark: a master and the
// TaskManagers currently running.
type benchCluster struct {
	b        *clusterBench
	name     string
	dir      string
	master   *benchProc
	restAddr string
	rpcAddr  string
	client   *rest.Client
	tms      []*benchProc
	started  int // TaskManagers started so far, for their names
}

var benchMasterLineRE = regexp.MustCompile(`master running: REST http://(\S+), RPC (\S+) `)

// startCluster starts a master and waits until it listens.
func (b *clusterBench) startCluster(ctx context.Context, name string) (*benchCluster, error) {
	c := &benchCluster{b: b, name: name, dir: filepath.Join(b.dir, name)}
	args := []string{"cluster", "start", "-D", "rest.port=0", "-D", "jobmanager.rpc.port=0",
		"-D", "rest.address=127.0.0.1", "-D", "rest.bind-address=127.0.0.1",
		"-D", "jobmanager.rpc.address=127.0.0.1", "-D", "jobmanager.bind-host=127.0.0.1",
		"-D", "cluster.working-dir=" + filepath.Join(c.dir, "master")}
	var err error
	if c.master, err = b.start(name+"-master", args...); err != nil {
		return nil, err
	}
	var m []string
	err = pollUntil(ctx, "the master to listen", 20*time.Millisecond, benchWaitTimeout, func() (bool, error) {
		if !c.master.alive() {
			return false, fmt.Errorf("the master exited:\n%s", tail(c.master.logText()))
		}
		m = benchMasterLineRE.FindStringSubmatch(c.master.logText())
		return m != nil, nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	c.restAddr, c.rpcAddr = m[1], m[2]
	if c.client, err = rest.NewClient(c.restAddr); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// addTaskManager starts a TaskManager with slots slots of cpu cores and
// memory in all.
func (c *benchCluster) addTaskManager(slots int, cpu, memory string) (*benchProc, error) {
	name := fmt.Sprintf("%s-tm%d", c.name, c.started)
	c.started++
	p, err := c.b.start(name, "taskmanager", "--jobmanager", c.rpcAddr, "--slots", strconv.Itoa(slots),
		"--cpu", cpu, "--memory", memory, "-D", "taskmanager.host=127.0.0.1",
		"-D", "cluster.working-dir="+filepath.Join(c.dir, name))
	if err != nil {
		return nil, err
	}
	c.tms = append(c.tms, p)
	return p, nil
}

// awaitTaskManagers waits until the registered TaskManagers are exactly
// the running ones: the new ones have registered, the master has noticed
// that the killed ones are gone.
func (c *benchCluster) awaitTaskManagers(ctx context.Context) error {
	want := map[int]bool{}
	for _, tm := range c.tms {
		want[tm.pid()] = true
	}
	return pollUntil(ctx, fmt.Sprintf("%d TaskManagers to register", len(want)), 5*time.Millisecond, benchWaitTimeout, func() (bool, error) {
		for _, tm := range c.tms {
			if !tm.alive() {
				return false, fmt.Errorf("TaskManager %s exited:\n%s", tm.name, tail(tm.logText()))
			}
		}
		tms, err := c.client.TaskManagers(ctx)
		if err != nil {
			return false, nil
		}
		got := map[int]bool{}
		for _, tm := range tms {
			got[tm.PID] = true
		}
		return len(got) == len(want) && len(tms) == len(want) && allIn(got, want), nil
	})
}

func allIn(got, want map[int]bool) bool {
	for p := range want {
		if !got[p] {
			return false
		}
	}
	return true
}

// awaitIdle waits until every slot is free and no TaskManager has a
// worker process left.
func (c *benchCluster) awaitIdle(ctx context.Context, every time.Duration) error {
	return pollUntil(ctx, "the slots to be free and the workers to exit", every, benchWaitTimeout, func() (bool, error) {
		for _, tm := range c.tms {
			if len(procChildren(tm.pid())) > 0 {
				return false, nil
			}
		}
		tms, err := c.client.TaskManagers(ctx)
		if err != nil {
			return false, nil
		}
		for _, tm := range tms {
			if tm.FreeSlots != tm.SlotsNumber {
				return false, nil
			}
		}
		return true, nil
	})
}

func (c *benchCluster) stop() {
	stopProcs(append([]*benchProc{c.master}, c.tms...)...)
}

// failure describes why a job is not running, for errors.
func (c *benchCluster) failure(ctx context.Context, id string) string {
	if ex, err := c.client.Exceptions(ctx, id); err == nil && ex.RootException != "" {
		return ex.RootException
	}
	return "see " + c.master.logPath
}

// builtinSubmission builds a built-in job's plan here, as weir run
// --jobmanager does, and returns its submission.
func builtinSubmission(job string, parallelism int, cfg map[string]string, args ...string) (rest.SubmitRequest, error) {
	if cfg == nil {
		cfg = map[string]string{}
	}
	s := &launch.Settings{Mode: launch.Plan, Parallelism: parallelism, Config: cfg}
	jg, err := planOf(s, job, args)
	if err != nil {
		return rest.SubmitRequest{}, err
	}
	graph, err := proto.Marshal(jg)
	if err != nil {
		return rest.SubmitRequest{}, fmt.Errorf("encoding the plan of %s: %w", job, err)
	}
	return rest.SubmitRequest{JobName: jg.GetName(), Builtin: job, Args: args, Parallelism: parallelism,
		Config: cfg, JobGraph: graph}, nil
}

// tasksIn counts a job's subtasks that are in one of states, and all of
// them.
func tasksIn(d *rest.JobDetails, states ...string) (in, total int) {
	for _, v := range d.Vertices {
		total += v.Parallelism
		for _, s := range states {
			in += v.Tasks[s]
		}
	}
	return in, total
}

func allRunning(d *rest.JobDetails) bool {
	in, total := tasksIn(d, "RUNNING")
	return d.State == "RUNNING" && total > 0 && in == total
}

// ---- submit ----

func (b *clusterBench) submitPart(ctx context.Context) (*submitFigures, error) {
	n := b.f.submissions
	b.progress("submit: starting a master and 1 TaskManager (2 slots)")
	c, err := b.startCluster(ctx, "submit")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	tm, err := c.addTaskManager(2, "2", "512m")
	if err != nil {
		return nil, err
	}
	if err := c.awaitTaskManagers(ctx); err != nil {
		return nil, err
	}
	req, err := builtinSubmission("builtin:datagen", 2, nil, "--rows", "-1", "--rate", "1000")
	if err != nil {
		return nil, err
	}
	fig := &submitFigures{Submissions: n, PollMs: ms(b.f.poll)}
	var total, post, forked, deployed, running, freed []time.Duration
	b.progress("submit: %d submissions of builtin:datagen -p 2 (after %d not counted), polling every %v", n, submitWarmups, b.f.poll)
	for i := -submitWarmups; i < n; i++ {
		s, err := c.timeSubmission(ctx, req, tm, b.f.poll)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			total = append(total, s.running)
			post, forked, deployed, running = append(post, s.post), append(forked, s.forked), append(deployed, s.deployed), append(running, s.running)
			freed = append(freed, s.freed)
			if (i+1)%max(1, n/10) == 0 || i+1 == n {
				b.progress("submit: %d/%d, last %.1f ms (POST %.1f, worker forked %.1f, deployed %.1f, running %.1f ms); p50 so far %.1f ms",
					i+1, n, ms(s.running), ms(s.post), ms(s.forked), ms(s.deployed), ms(s.running), ms(percentile(total, 50)))
			}
		}
	}
	fig.P50Ms, fig.P90Ms, fig.P99Ms = ms(percentile(total, 50)), ms(percentile(total, 90)), ms(percentile(total, 99))
	fig.MaxMs = ms(slices.Max(total))
	fig.PostMs, fig.ForkedMs, fig.DeployedMs, fig.RunningMs = ms(percentile(post, 50)), ms(percentile(forked, 50)), ms(percentile(deployed, 50)), ms(percentile(running, 50))
	fig.CancelFreeMs = ms(percentile(freed, 50))
	if fig.ProcessStartMs, err = b.processStart(ctx); err != nil {
		return nil, err
	}
	return fig, nil
}

// submission is when the phases of one submission were first seen, from
// the Submit call.
type submission struct {
	post, forked, deployed, running time.Duration
	freed                           time.Duration // from the cancel request
}

// timeSubmission submits req, polls until every task runs, then cancels
// the job and waits for its slots and worker to be gone.
func (c *benchCluster) timeSubmission(ctx context.Context, req rest.SubmitRequest, tm *benchProc, poll time.Duration) (submission, error) {
	var s submission
	t0 := time.Now()
	id, err := c.client.Submit(ctx, req, "")
	if err != nil {
		return s, err
	}
	s.post = time.Since(t0)
	err = pollUntil(ctx, "job "+id+" to run all its tasks", poll, benchWaitTimeout, func() (bool, error) {
		if s.forked == 0 && len(procChildren(tm.pid())) > 0 {
			s.forked = time.Since(t0)
		}
		d, err := c.client.Job(ctx, id)
		if err != nil {
			return false, err
		}
		now := time.Since(t0)
		if rest.Terminal(d.State) {
			return false, fmt.Errorf("job %s is %s: %s", id, d.State, c.failure(ctx, id))
		}
		if in, total := tasksIn(d, "DEPLOYING", "INITIALIZING", "RUNNING"); s.deployed == 0 && total > 0 && in == total {
			s.deployed = now
		}
		if allRunning(d) {
			s.running = now
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return s, err
	}
	if s.forked == 0 {
		s.forked = s.running
	}
	t1 := time.Now()
	if err := c.client.Cancel(ctx, id); err != nil {
		return s, fmt.Errorf("canceling job %s: %w", id, err)
	}
	err = pollUntil(ctx, "job "+id+" to be canceled", poll, benchWaitTimeout, func() (bool, error) {
		d, err := c.client.Job(ctx, id)
		if err != nil {
			return false, err
		}
		return d.State == "CANCELED", nil
	})
	if err != nil {
		return s, err
	}
	if err := c.awaitIdle(ctx, poll); err != nil {
		return s, err
	}
	s.freed = time.Since(t1)
	return s, nil
}

// processStart is the median wall time of running `weir version`: what
// any weir process, a worker too, costs to start and exit.
func (b *clusterBench) processStart(ctx context.Context) (float64, error) {
	var ds []time.Duration
	for range 20 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, b.exe, "version")
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("%s version: %w", b.exe, err)
		}
		ds = append(ds, time.Since(t0))
	}
	return ms(percentile(ds, 50)), nil
}

// ---- failover ----

var restartedFromRE = regexp.MustCompile(`job ([0-9a-f]{32}): restarting from (?:checkpoint (\d+)|the beginning)`)

func (b *clusterBench) failoverPart(ctx context.Context) (*failoverFigures, error) {
	const rate = 2000 // lines per second
	b.progress("failover: starting a master and 2 TaskManagers (2 slots each)")
	c, err := b.startCluster(ctx, "failover")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	for range 2 {
		if _, err := c.addTaskManager(2, "2", "512m"); err != nil {
			return nil, err
		}
	}
	// The job reads at rate lines/s; give it input for well beyond the
	// expected run (a kill, a restart and a new TaskManager take seconds).
	input := filepath.Join(c.dir, "words.txt")
	if err := writeBenchWords(input, rate*(30+10*b.f.failovers)); err != nil {
		return nil, err
	}
	ckdir := filepath.Join(c.dir, "checkpoints")
	cfg := map[string]string{
		"execution.checkpointing.interval":      "100ms",
		"state.checkpoints.dir":                 "file://" + ckdir,
		"restart-strategy.type":                 "fixed-delay",
		"restart-strategy.fixed-delay.delay":    b.f.restartDelay.String(),
		"restart-strategy.fixed-delay.attempts": strconv.Itoa(2*b.f.failovers + 10),
	}
	req, err := builtinSubmission("builtin:wordcount", 2, cfg, "--input", input, "--output", filepath.Join(c.dir, "counts.txt"),
		"--rate", strconv.Itoa(rate))
	if err != nil {
		return nil, err
	}
	if err := c.awaitTaskManagers(ctx); err != nil {
		return nil, err
	}
	id, err := c.client.Submit(ctx, req, "")
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.client.Cancel(cctx, id)
	}()
	b.progress("failover: job %s (builtin:wordcount -p 2, checkpoints every 100ms, restart delay %v)", id, b.f.restartDelay)
	if _, err := c.awaitRunning(ctx, id, 10*time.Millisecond); err != nil {
		return nil, err
	}
	jobCk := filepath.Join(ckdir, id)
	fig := &failoverFigures{}
	var totals []time.Duration
	seenCk := int64(0)
	for i := range b.f.failovers {
		err := pollUntil(ctx, "a checkpoint of the running attempt to complete", 10*time.Millisecond, benchWaitTimeout, func() (bool, error) {
			return latestCheckpoint(jobCk) > seenCk, nil
		})
		if err != nil {
			return nil, err
		}
		var victim *benchProc
		for _, tm := range c.tms {
			if len(procChildren(tm.pid())) > 0 {
				victim = tm
			}
		}
		if victim == nil {
			return nil, fmt.Errorf("no TaskManager has a worker of job %s", id)
		}
		d, err := c.client.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		before := d.Timestamps["RESTARTING"]
		logBefore := len(c.master.logText())

		killed := time.Now()
		victim.kill()
		var run failoverRun
		err = pollUntil(ctx, "job "+id+" to run again", b.f.poll, benchWaitTimeout, func() (bool, error) {
			d, err := c.client.Job(ctx, id)
			if err != nil {
				return false, err
			}
			if rest.Terminal(d.State) {
				return false, fmt.Errorf("job %s is %s after the kill: %s", id, d.State, c.failure(ctx, id))
			}
			if d.Timestamps["RESTARTING"] > before && allRunning(d) {
				run.RunningMs = ms(time.Since(killed))
				run.RestartingMs = float64(d.Timestamps["RESTARTING"]) - float64(killed.UnixMicro())/1e3
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		seenCk = latestCheckpoint(jobCk)
		if m := restartedFromRE.FindAllStringSubmatch(c.master.logText()[logBefore:], -1); len(m) > 0 {
			run.Checkpoint, _ = strconv.ParseInt(m[len(m)-1][2], 10, 64)
		}
		fig.Failovers = append(fig.Failovers, run)
		totals = append(totals, time.Duration(run.RunningMs*float64(time.Millisecond)))
		from := "the beginning (no checkpoint)"
		if run.Checkpoint > 0 {
			from = fmt.Sprintf("checkpoint %d", run.Checkpoint)
		}
		b.progress("failover %d/%d: killed %s (pid %d); RESTARTING after %.0f ms, every task RUNNING after %.0f ms, from %s",
			i+1, b.f.failovers, victim.name, victim.pid(), run.RestartingMs, run.RunningMs, from)

		// A fresh TaskManager replaces the killed one.
		c.tms = slices.DeleteFunc(c.tms, func(p *benchProc) bool { return p == victim })
		if _, err := c.addTaskManager(2, "2", "512m"); err != nil {
			return nil, err
		}
		if err := c.awaitTaskManagers(ctx); err != nil {
			return nil, err
		}
	}
	fig.MedianMs = ms(percentile(totals, 50))
	fig.MaxMs = ms(slices.Max(totals))
	return fig, nil
}

// awaitRunning polls a job until every task runs.
func (c *benchCluster) awaitRunning(ctx context.Context, id string, every time.Duration) (*rest.JobDetails, error) {
	var d *rest.JobDetails
	err := pollUntil(ctx, "job "+id+" to run all its tasks", every, benchWaitTimeout, func() (bool, error) {
		var err error
		if d, err = c.client.Job(ctx, id); err != nil {
			return false, err
		}
		if rest.Terminal(d.State) {
			return false, fmt.Errorf("job %s is %s: %s", id, d.State, c.failure(ctx, id))
		}
		return allRunning(d), nil
	})
	return d, err
}

// latestCheckpoint is the highest id of the job's completed checkpoints
// (those with their _metadata, written last), 0 if none.
func latestCheckpoint(jobDir string) int64 {
	ms, _ := filepath.Glob(filepath.Join(jobDir, "chk-*", "_metadata"))
	var latest int64
	for _, m := range ms {
		n, err := strconv.ParseInt(strings.TrimPrefix(filepath.Base(filepath.Dir(m)), "chk-"), 10, 64)
		if err == nil && n > latest {
			latest = n
		}
	}
	return latest
}

// writeBenchWords writes lines lines of eight words from a vocabulary of
// 1000 to path.
func writeBenchWords(path string, lines int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	x := uint64(1)
	for range lines {
		for k := range 8 {
			x = x*6364136223846793005 + 1442695040888963407
			if k > 0 {
				w.WriteByte(' ')
			}
			fmt.Fprintf(w, "word%d", (x>>33)%1000)
		}
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---- q5 ----

func (b *clusterBench) q5Part(ctx context.Context) (*q5Figures, error) {
	fig := &q5Figures{Events: b.f.events}
	n := strconv.FormatInt(b.f.events, 10)
	embedded := func(which string) error {
		b.progress("q5: embedded (%s): weir bench nexmark --queries q5 --events %s -p 2", which, n)
		r, err := b.embeddedQ5(ctx, which, n)
		if err != nil {
			return err
		}
		fig.Embedded = append(fig.Embedded, r)
		b.progress("q5: embedded (%s): %.2f s, %.2f CPU s, %.0f events/core-s (other load %.2f cores)",
			which, r.Seconds, r.CPUSeconds, r.EventsPerCoreSecond, r.OtherLoad)
		return nil
	}
	if err := embedded("before"); err != nil {
		return nil, err
	}

	b.progress("q5: starting a master and 2 TaskManagers (1 slot, 1 core each)")
	c, err := b.startCluster(ctx, "q5")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	for range 2 {
		if _, err := c.addTaskManager(1, "1", "1g"); err != nil {
			return nil, err
		}
	}
	if err := c.awaitTaskManagers(ctx); err != nil {
		return nil, err
	}
	req, err := builtinSubmission("builtin:nexmark", 2, nil, "--query", "q5", "--events", n)
	if err != nil {
		return nil, err
	}
	before, err := c.cpuTimes()
	if err != nil {
		return nil, err
	}
	sys0, self0 := systemCPUSeconds(), procstat.CPUSeconds()
	t0 := time.Now()
	id, err := c.client.Submit(ctx, req, "")
	if err != nil {
		return nil, err
	}
	b.progress("q5: cluster: job %s (builtin:nexmark --query q5 --events %s, p=2)", id, n)
	split := false
	err = pollUntil(ctx, "job "+id+" to finish", 5*time.Millisecond, 30*time.Minute, func() (bool, error) {
		d, err := c.client.Job(ctx, id)
		if err != nil {
			return false, err
		}
		if !split && allRunning(d) {
			k := 0
			for _, tm := range c.tms {
				if len(procChildren(tm.pid())) > 0 {
					k++
				}
			}
			split = k == 2
		}
		switch d.State {
		case "FINISHED":
			return true, nil
		case "FAILED", "CANCELED", "SUSPENDED":
			return false, fmt.Errorf("job %s is %s: %s", id, d.State, c.failure(ctx, id))
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0).Seconds()
	if !split {
		return nil, fmt.Errorf("job %s did not run in two worker processes, one per TaskManager", id)
	}
	// The workers' CPU time reaches their TaskManagers' cutime once they
	// have exited and been reaped.
	if err := c.awaitIdle(ctx, 5*time.Millisecond); err != nil {
		return nil, err
	}
	after, err := c.cpuTimes()
	if err != nil {
		return nil, err
	}
	busy := systemCPUSeconds() - sys0
	elapsed := time.Since(t0).Seconds()
	fig.ClusterSeconds = wall
	fig.ClusterWorkerCPUSeconds = after.workers - before.workers
	fig.ClusterWorkerSysSeconds = after.workersSys - before.workersSys
	fig.ClusterControlCPUSeconds = after.control - before.control
	fig.ClusterEventsPerSecond = float64(b.f.events) / wall
	fig.ClusterOtherLoad = max(0, busy-fig.ClusterWorkerCPUSeconds-fig.ClusterControlCPUSeconds-(procstat.CPUSeconds()-self0)) / elapsed
	if fig.ClusterWorkerCPUSeconds > 0 {
		fig.ClusterEventsPerCoreSecond = float64(b.f.events) / fig.ClusterWorkerCPUSeconds
	}
	b.progress("q5: cluster: %.2f s, workers %.2f CPU s (master and TaskManagers %.2f), %.0f events/core-s (other load %.2f cores)",
		wall, fig.ClusterWorkerCPUSeconds, fig.ClusterControlCPUSeconds, fig.ClusterEventsPerCoreSecond, fig.ClusterOtherLoad)
	c.stop()

	if err := embedded("after"); err != nil {
		return nil, err
	}
	var cpu float64
	for _, r := range fig.Embedded {
		cpu += r.CPUSeconds
	}
	if cpu > 0 {
		fig.EmbeddedEventsPerCoreSecond = float64(b.f.events) * float64(len(fig.Embedded)) / cpu
		fig.Ratio = fig.ClusterEventsPerCoreSecond / fig.EmbeddedEventsPerCoreSecond
	}
	b.progress("q5: cluster / embedded per core-second: %.0f%%", 100*fig.Ratio)
	return fig, nil
}

// embeddedQ5 runs weir bench nexmark for q5 in a child process.
func (b *clusterBench) embeddedQ5(ctx context.Context, which, events string) (embeddedRun, error) {
	sys0 := systemCPUSeconds()
	t0 := time.Now()
	p, err := b.start("q5-embedded-"+which, "bench", "nexmark", "--queries", "q5", "--events", events, "-p", "2", "--json")
	if err != nil {
		return embeddedRun{}, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.kill()
		return embeddedRun{}, ctx.Err()
	}
	busy, elapsed := systemCPUSeconds()-sys0, time.Since(t0).Seconds()
	if !p.cmd.ProcessState.Success() {
		return embeddedRun{}, fmt.Errorf("the embedded run failed (%s):\n%s", p.cmd.ProcessState, tail(p.logText()))
	}
	var r benchResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(p.logText())), &r); err != nil {
		return embeddedRun{}, fmt.Errorf("reading the embedded run's figures: %v:\n%s", err, tail(p.logText()))
	}
	// The child's CPU time from its start to its exit, some of which its
	// own figure (Execute only) leaves out.
	sys := p.cmd.ProcessState.SystemTime().Seconds()
	child := p.cmd.ProcessState.UserTime().Seconds() + sys
	return embeddedRun{Seconds: r.Seconds, CPUSeconds: r.CPUSeconds, EventsPerSecond: r.EventsPerSecond,
		EventsPerCoreSecond: r.EventsPerCoreSecond, OtherLoad: max(0, busy-child) / elapsed,
		ProcessCPUSeconds: child, ProcessSysSeconds: sys}, nil
}

// loadAverage is the 1-minute load average, from /proc/loadavg.
func loadAverage() float64 {
	bs, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(bs))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// systemCPUSeconds is the CPU time all processors have spent busy (not
// idle or waiting for I/O) since boot, from /proc/stat.
func systemCPUSeconds() float64 {
	bs, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(bs), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		busy += n
	}
	return float64(busy) / clockTicks
}

// clusterCPU is CPU seconds of a cluster's processes.
type clusterCPU struct {
	workers    float64 // reaped children of the TaskManagers
	workersSys float64 // their system time
	control    float64 // the master and the TaskManagers themselves
}

func (c *benchCluster) cpuTimes() (clusterCPU, error) {
	var t clusterCPU
	m, err := readProcStat(c.master.pid())
	if err != nil {
		return t, err
	}
	t.control += m.self
	for _, tm := range c.tms {
		s, err := readProcStat(tm.pid())
		if err != nil {
			return t, err
		}
		t.control += s.self
		t.workers += s.children
		t.workersSys += s.childrenSys
	}
	return t, nil
}

// procCPU is a process's CPU seconds from /proc/PID/stat: its own
// (utime+stime) and its reaped children's (cutime+cstime).
type procCPU struct{ self, children, childrenSys float64 }

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func readProcStat(pid int) (procCPU, error) {
	bs, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procCPU{}, err
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(bs, ')')
	if i < 0 {
		return procCPU{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(bs[i+1:]))
	// Fields after comm start at field 3 (state); utime is field 14.
	if len(f) < 15 {
		return procCPU{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var v [4]float64
	for k := range v {
		n, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil {
			return procCPU{}, fmt.Errorf("/proc/%d/stat: field %d: %v", pid, 14+k, err)
		}
		v[k] = float64(n) / clockTicks
	}
	return procCPU{self: v[0] + v[1], children: v[2] + v[3], childrenSys: v[3]}, nil
}

// procChildren returns the pids of process pid's children.
func procChildren(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		bs, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(bs)) {
			if c, err := strconv.Atoi(field); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// ---- helpers ----

// pollUntil calls cond every interval until it holds, fails, ctx ends or
// timeout passes.
func pollUntil(ctx context.Context, what string, every, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %v waiting for %s", timeout, what)
		}
		t.Reset(every)
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// tail is the last lines of a log, for errors.
func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func printClusterBench(w io.Writer, r clusterBenchResult) {
	fmt.Fprintf(w, "weir bench cluster: weir %s, %d cores, load average %.2f at the start\n\n", r.Version, r.Cores, r.LoadAverage)
	fmt.Fprintf(w, "%-9s %-62s %14s  %s\n", "part", "figure", "value", "target")
	row := func(part, figure, value, target string) {
		fmt.Fprintf(w, "%-9s %-62s %14s  %s\n", part, figure, value, target)
	}
	check := func(ok bool, target string) string {
		if ok {
			return target + "  ok"
		}
		return target + "  MISSED"
	}
	if s := r.Submit; s != nil {
		n := fmt.Sprintf("(%d, poll %.1f ms)", s.Submissions, s.PollMs)
		row("submit", "submit → all tasks RUNNING p50 "+n, fmt.Sprintf("%.1f ms", s.P50Ms), check(s.P50Ms < ms(targetSubmitP50), "< 50 ms"))
		row("submit", "  p90", fmt.Sprintf("%.1f ms", s.P90Ms), "")
		row("submit", "  p99", fmt.Sprintf("%.1f ms", s.P99Ms), check(s.P99Ms < ms(targetSubmitP99), "< 200 ms"))
		row("submit", "  max", fmt.Sprintf("%.1f ms", s.MaxMs), "")
		row("submit", "  median: POST /jobs answered", fmt.Sprintf("%.1f ms", s.PostMs), "")
		row("submit", "  median: worker process forked", fmt.Sprintf("%.1f ms", s.ForkedMs), "")
		row("submit", "  median: all tasks DEPLOYING (workers attached)", fmt.Sprintf("%.1f ms", s.DeployedMs), "")
		row("submit", "  median: all tasks RUNNING", fmt.Sprintf("%.1f ms", s.RunningMs), "")
		row("submit", "  reference: `weir version` start to exit", fmt.Sprintf("%.1f ms", s.ProcessStartMs), "")
		row("submit", "cancel → slots free, worker exited (median)", fmt.Sprintf("%.1f ms", s.CancelFreeMs), "")
	}
	if f := r.Failover; f != nil {
		for i, run := range f.Failovers {
			from := "no checkpoint"
			if run.Checkpoint > 0 {
				from = fmt.Sprintf("chk %d", run.Checkpoint)
			}
			row("failover", fmt.Sprintf("kill %d → RUNNING (RESTARTING at %.0f ms, %s)", i+1, run.RestartingMs, from),
				fmt.Sprintf("%.0f ms", run.RunningMs), "")
		}
		row("failover", "SIGKILL of a TaskManager → RUNNING, median", fmt.Sprintf("%.0f ms", f.MedianMs), check(f.MedianMs < ms(targetFailover), "< 2 s"))
		row("failover", "  max", fmt.Sprintf("%.0f ms", f.MaxMs), "")
	}
	if q := r.Q5; q != nil {
		row("q5", fmt.Sprintf("%d events, p=2", q.Events), "", "")
		for i, e := range q.Embedded {
			when := "before"
			if i > 0 {
				when = "after"
			}
			row("q5", fmt.Sprintf("  embedded (%s): %.2f s, %.2f CPU s (%.0f%% sys), other load %.2f", when, e.Seconds, e.CPUSeconds,
				100*e.ProcessSysSeconds/max(e.ProcessCPUSeconds, 1e-9), e.OtherLoad),
				fmt.Sprintf("%.0f", e.EventsPerCoreSecond), "events/core-s")
		}
		row("q5", fmt.Sprintf("  cluster: %.2f s, workers %.2f CPU s (%.0f%% sys), other load %.2f", q.ClusterSeconds, q.ClusterWorkerCPUSeconds,
			100*q.ClusterWorkerSysSeconds/max(q.ClusterWorkerCPUSeconds, 1e-9), q.ClusterOtherLoad),
			fmt.Sprintf("%.0f", q.ClusterEventsPerCoreSecond), "events/core-s")
		row("q5", fmt.Sprintf("  cluster: master + TaskManagers beside: %.2f CPU s", q.ClusterControlCPUSeconds), "", "")
		row("q5", "  cluster events/s", fmt.Sprintf("%.0f", q.ClusterEventsPerSecond), "")
		row("q5", "cluster / embedded (mean) per core-second", fmt.Sprintf("%.0f%%", 100*q.Ratio), check(q.Ratio >= targetQ5Ratio, "≥ 80%"))
	}
}
