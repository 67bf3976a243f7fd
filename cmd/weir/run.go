package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	weirversion "github.com/weirstream/weir/internal/version"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/artifact"
	"github.com/weirstream/weir/internal/builtin"
	_ "github.com/weirstream/weir/internal/builtin/jobs" // registers the built-in jobs
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/stream"
)

// jobOptions are Weir's own options, given before JOB as with `flink run`.
type jobOptions struct {
	parallelism int
	defines     []string
	jobmanager  string
	detached    bool

	fromSavepoint         string
	allowNonRestoredState bool
}

func (o *jobOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.SetInterspersed(false) // everything after JOB belongs to the job
	f.IntVarP(&o.parallelism, "parallelism", "p", 0, "default parallelism of the job (default: config, else the number of cores)")
	f.StringArrayVarP(&o.defines, "define", "D", nil, "configuration key=value (Flink key names), repeatable")
	f.StringVarP(&o.jobmanager, "jobmanager", "m", "", "REST address of a session cluster to submit to, HOST:PORT or http://HOST:PORT (default: run on an embedded local cluster)")
	f.StringVarP(&o.fromSavepoint, "from-savepoint", "s", "", "start from this savepoint or retained checkpoint directory (…/<job-id>/chk-<n>)")
	f.BoolVarP(&o.allowNonRestoredState, "allow-non-restored-state", "n", false,
		"with --from-savepoint: skip state of operators the job no longer has instead of failing")
}

// settings validates the options into launch settings.
func (o *jobOptions) settings(mode launch.Mode) (*launch.Settings, error) {
	if o.parallelism < 0 {
		return nil, fmt.Errorf("-p %d: parallelism must be at least 1", o.parallelism)
	}
	cfg := map[string]string{}
	for _, d := range o.defines {
		k, v, err := config.ParseAssignment(d)
		if err != nil {
			return nil, err
		}
		cfg[k] = v
	}
	if _, err := config.FromMap(cfg); err != nil {
		return nil, err
	}
	if o.allowNonRestoredState && o.fromSavepoint == "" {
		return nil, fmt.Errorf("--allow-non-restored-state needs --from-savepoint PATH")
	}
	return &launch.Settings{Mode: mode, Parallelism: o.parallelism, Config: cfg,
		FromSavepoint: o.fromSavepoint, AllowNonRestoredState: o.allowNonRestoredState}, nil
}

func runCommand() *cobra.Command {
	var o jobOptions
	cmd := &cobra.Command{
		Use:   "run [options] JOB [job arguments...]",
		Short: "Run a job: builtin:NAME or a Go job binary",
		Long: `Run a job on the embedded local cluster, or with --jobmanager submit it to a session cluster.

JOB is builtin:NAME for a job compiled into weir (` + strings.Join(builtin.Names(), ", ") + `),
or the path of a Go program built with Weir's DataStream API.
Weir's options come before JOB; everything after JOB is passed to the job.

With --jobmanager, weir builds the job's plan here, uploads the job binary unless
the cluster has it already, and follows the job until it ends: Ctrl-C cancels it.
With --detached it prints the job's id and returns at once.`,
		Example: `  weir run builtin:wordcount --input words.txt --output counts.txt
  weir run -p 2 builtin:nexmark --query q5 --events 10000000
  weir run -D execution.buffer-timeout=10ms ./myjob --my-flag 1
  weir run --jobmanager localhost:8081 -d ./myjob --my-flag 1`,
		Args: needJob,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.jobmanager == "" {
				if o.detached {
					return errors.New("--detached needs --jobmanager HOST:PORT: a job on the embedded local cluster runs in this process; " +
						"start a session cluster (weir cluster start) and submit to it")
				}
				s, err := o.settings(launch.Run)
				if err != nil {
					return err
				}
				return runJob(s, args[0], args[1:])
			}
			s, err := o.settings(launch.Plan)
			if err != nil {
				return err
			}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			return defaultSubmitEnv.submit(cmd.OutOrStdout(), cmd.ErrOrStderr(), sigs, &o, s, args[0], args[1:])
		},
	}
	o.register(cmd)
	cmd.Flags().BoolVarP(&o.detached, "detached", "d", false,
		"with --jobmanager: print the job's id and return once it is submitted, instead of following it")
	return cmd
}

// submitEnv is what submitting to a session cluster depends on besides
// its arguments, so that tests can clock it faster.
type submitEnv struct {
	// poll is the interval between job status requests while following a
	// job; lostAfter how long the cluster may fail to answer before weir
	// gives up following.
	poll, lostAfter time.Duration
}

var defaultSubmitEnv = submitEnv{poll: 200 * time.Millisecond, lostAfter: 30 * time.Second}

// submit builds the job's plan here and submits it to the session cluster
// at o.jobmanager: a built-in job by name, a binary with its bytes (which
// the client uploads only if the Dispatcher lacks them). Then it prints
// the job's id (detached) or follows the job to its end. An interrupt
// before the job is submitted stops the submission; after, it cancels
// the job; a second one stops following.
//
//	weir run --jobmanager ADDR JOB ARGS
//	  GET /overview                the cluster answers?
//	  planOf(JOB ARGS)             main() in plan mode → JobGraph
//	  HEAD /artifacts/:sha256      binary stored already?
//	  POST /jobs                   request (+ binary) → job id
//	  GET /jobs/:id every poll     state changes on stderr, until the job ends
func (e submitEnv) submit(stdout, stderr io.Writer, interrupts <-chan os.Signal, o *jobOptions, s *launch.Settings, job string, args []string) error {
	c, err := rest.NewClient(o.jobmanager)
	if err != nil {
		return fmt.Errorf("--jobmanager: %w", err)
	}
	// The first interrupt ends the submission; once the job is submitted
	// it cancels the job instead.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-interrupts:
			cancel()
		case <-watching:
		}
	}()
	id, err := e.submitJob(ctx, c, o, s, job, args)
	close(watching)
	<-watched
	interrupted := ctx.Err() != nil
	switch {
	case err != nil && interrupted:
		return fmt.Errorf("submission of %s interrupted; if it reached the cluster, `weir list --jobmanager %s` shows the job", job, o.jobmanager)
	case err != nil:
		return err
	}
	if o.detached {
		fmt.Fprintf(stderr, "Job has been submitted with JobID %s\n", id)
		fmt.Fprintln(stdout, id)
		if interrupted {
			fmt.Fprintf(stderr, "weir: interrupted as the job was submitted; it runs on: weir cancel --jobmanager %s %s\n", o.jobmanager, id)
		}
		return nil
	}
	fmt.Fprintf(stderr, "Job %s submitted to %s\n", id, c.Addr)
	return e.follow(stderr, interrupts, interrupted, c, id)
}

// submitJob checks that the cluster answers, builds the plan and submits
// it; it returns the new job's id.
func (e submitEnv) submitJob(ctx context.Context, c *rest.Client, o *jobOptions, s *launch.Settings, job string, args []string) (string, error) {
	// Ask before building the plan, which runs the job's main().
	ov, err := c.Overview(ctx)
	if err != nil {
		return "", clusterError(o.jobmanager, err)
	}
	if ov.WeirVersion != "" && !ov.Session {
		// Flink's API sends no weir-version; its refusal of the
		// submission says enough.
		return "", notSessionError(o.jobmanager)
	}
	jg, err := planOf(s, job, args)
	if err != nil {
		return "", err
	}
	graph, err := proto.Marshal(jg)
	if err != nil {
		return "", fmt.Errorf("encoding the plan of %s: %w", job, err)
	}
	req := rest.SubmitRequest{JobName: jg.GetName(), Args: append([]string{}, args...), Parallelism: o.parallelism,
		Config: s.Config, JobGraph: graph, AllowNonRestoredState: o.allowNonRestoredState}
	if req.SavepointPath = o.fromSavepoint; req.SavepointPath != "" && !strings.Contains(req.SavepointPath, "://") {
		// The master resolves a relative path against its own directory,
		// not this one.
		if req.SavepointPath, err = filepath.Abs(req.SavepointPath); err != nil {
			return "", err
		}
	}
	artifactPath := ""
	if strings.HasPrefix(job, "builtin:") {
		req.Builtin = job
	} else {
		artifactPath = job // planOf has run checkJobBinary on it
		req.ArtifactName = filepath.Base(job)
	}
	id, err := c.Submit(ctx, req, artifactPath)
	if err != nil {
		return "", clusterError(o.jobmanager, err)
	}
	return id, nil
}

// clusterError says what to do when there is no session cluster at addr.
func clusterError(addr string, err error) error {
	var ue *rest.UnreachableError
	var ae *rest.APIError
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("--jobmanager %s: no session cluster answers there (%v); start one with `weir cluster start`, "+
			"or omit --jobmanager to run the job on an embedded local cluster", addr, ue.Err)
	case errors.As(err, &ae) && ae.StatusCode == http.StatusMethodNotAllowed:
		// POST /jobs of a job's embedded API.
		return notSessionError(addr)
	}
	return err
}

func notSessionError(addr string) error {
	return fmt.Errorf("--jobmanager %s is the REST API of a job running on its own embedded cluster, not a session cluster: "+
		"start one with `weir cluster start` and give its address, or omit --jobmanager to run the job on an embedded local cluster", addr)
}

// follow polls the job until it ends, printing its state changes, and
// returns how it ended: nil when it finished, stream.ErrJobCanceled
// (exit status 130) when it was canceled, the job's failure when it
// failed. An interrupt cancels the job (at once, if interrupted is set);
// a second one stops following and leaves the job to its cancellation.
func (e submitEnv) follow(stderr io.Writer, interrupts <-chan os.Signal, interrupted bool, c *rest.Client, id string) error {
	ctx := context.Background()
	tick := time.NewTicker(e.poll)
	defer tick.Stop()
	canceling := false
	cancelJob := func() error {
		canceling = true
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		err := c.Cancel(cctx, id)
		var ae *rest.APIError
		switch {
		case errors.As(err, &ae) && ae.StatusCode == http.StatusConflict:
			// It ended meanwhile; the next poll says how.
		case err != nil:
			return fmt.Errorf("canceling job %s: %w; it may still be running: weir cancel --jobmanager %s %s", id, err, c.Addr, id)
		default:
			fmt.Fprintf(stderr, "weir: canceling job %s (Ctrl-C again to stop waiting for it)\n", id)
		}
		return nil
	}
	if interrupted {
		if err := cancelJob(); err != nil {
			return err
		}
	}
	last := ""
	var failingSince time.Time
	for {
		d, err := c.Job(ctx, id)
		switch {
		case rest.IsNotFound(err):
			return fmt.Errorf("job %s is no longer known at %s: the cluster lost it (a master without high availability that restarted?)", id, c.Addr)
		case err != nil:
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) >= e.lostAfter {
				return fmt.Errorf("lost the session cluster at %s while following job %s (%w); the job may still be running: weir list --jobmanager %s",
					c.Addr, id, err, c.Addr)
			}
		default:
			failingSince = time.Time{}
			if d.State != last {
				last = d.State
				fmt.Fprintf(stderr, "Job %s is %s\n", id, d.State)
			}
			switch d.State {
			case "FINISHED":
				return nil
			case "CANCELED":
				return stream.ErrJobCanceled
			case "FAILED":
				cause := "see the cluster's logs"
				if ex, err := c.Exceptions(ctx, id); err == nil && ex.RootException != "" {
					cause = ex.RootException
				}
				return fmt.Errorf("job %s (%s) failed: %s", id, d.Name, cause)
			case "SUSPENDED":
				return fmt.Errorf("job %s (%s) was suspended: the master lost its leadership; a new leader resumes it", id, d.Name)
			}
		}
		select {
		case <-tick.C:
		case <-interrupts:
			if canceling {
				fmt.Fprintf(stderr, "weir: stopped waiting; job %s is being canceled: weir list --jobmanager %s shows it\n", id, c.Addr)
				return &exitError{code: 130}
			}
			if err := cancelJob(); err != nil {
				return err
			}
		}
	}
}

// needJob checks that a command was given the job to run.
func needJob(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no job given; name it after weir's options: weir %s [options] builtin:NAME (%s) or the path of a job binary",
			cmd.Name(), strings.Join(builtin.Names(), ", "))
	}
	return nil
}

// runJob runs a built-in job in this process or a job binary as a child.
func runJob(s *launch.Settings, job string, args []string) error {
	if name, ok := strings.CutPrefix(job, "builtin:"); ok {
		j, err := builtin.Lookup(name)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		s.Context = ctx
		launch.Set(s)
		defer launch.Set(nil)
		if err := j.Main(args); !errors.Is(err, builtin.ErrHelp) {
			return err
		}
		return nil
	}
	return runBinary(s, job, args, "")
}

// runBinary runs a user's job binary with the launch settings in its
// environment. In plan mode planFile receives the plan.
func runBinary(s *launch.Settings, path string, args []string, planFile string) error {
	if err := checkJobBinary(path); err != nil {
		return err
	}
	result, err := os.CreateTemp("", "weir-result-*.json")
	if err != nil {
		return err
	}
	result.Close()
	defer os.Remove(result.Name())
	env, err := launch.Encode(s, planFile, result.Name())
	if err != nil {
		return err
	}
	if !strings.ContainsRune(path, filepath.Separator) {
		path = "." + string(filepath.Separator) + path
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), launch.EnvVar+"="+env)
	// The job cancels itself on SIGINT and SIGTERM. Ctrl-C at a terminal
	// reaches it directly; a signal sent to weir alone is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	bindChild(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting job %s: %w", path, err)
	}
	done := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	<-forwarded
	return jobExit(path, err, result.Name())
}

// jobExit turns how a job process ended into weir's error and exit code.
// When the job's Execute failed or was canceled the job has reported that
// itself, so weir adds no line of its own, only the exit code.
func jobExit(path string, err error, resultFile string) error {
	r, reported := launch.ReadResult(resultFile)
	ended := reported && (r.State == launch.Failed || r.State == launch.Canceled)
	var ee *exec.ExitError
	switch {
	case err == nil && reported && r.State == launch.Failed:
		// main() ignored Execute's error; the run still failed.
		return errors.New(r.Error)
	case err == nil && reported && r.State == launch.Canceled:
		return stream.ErrJobCanceled
	case err == nil:
		return nil
	case !errors.As(err, &ee):
		return fmt.Errorf("job %s: %w", path, err)
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
		if ended {
			return &exitError{code: code}
		}
		return &exitError{code: code, err: fmt.Errorf("job %s was killed by signal %s", path, ws.Signal())}
	}
	if ended {
		return &exitError{code: code}
	}
	return &exitError{code: code, err: fmt.Errorf("job %s exited with status %d", path, code)}
}

// checkJobBinary checks that path is a Go program built with Weir, so that a
// script or a data file given by mistake is refused with a clear message
// rather than run.
func checkJobBinary(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("job %q: no such file; give builtin:NAME (%s) or the path of a job binary built with `go build`",
			path, strings.Join(builtin.Names(), ", "))
	case err != nil:
		return fmt.Errorf("job %q: %w", path, err)
	case st.IsDir():
		return fmt.Errorf("job %q is a directory; build it first (go build -o myjob %s) and pass the binary", path, path)
	}
	what := "give builtin:NAME (" + strings.Join(builtin.Names(), ", ") + ") or a Go program that uses Weir's stream API, built with `go build`"
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("job %q is not a Weir job binary: it is not a Go program; %s", path, what)
	}
	uses := bi.Main.Path == launch.ModulePath
	for _, d := range bi.Deps {
		uses = uses || d.Path == launch.ModulePath
	}
	if !uses {
		return fmt.Errorf("job %q is not a Weir job binary: it is a Go program that does not use Weir (module %s); %s", path, launch.ModulePath, what)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("job %q is not executable; chmod +x it, or build it again with `go build`", path)
	}
	// What is left, above all a binary built for another machine, would
	// fail to start with "exec format error"; the Dispatcher's check says
	// which machine it is for and how to rebuild it.
	if err := artifact.Check(path); err != nil {
		return fmt.Errorf("job %w", err)
	}
	return nil
}

func infoCommand() *cobra.Command {
	var (
		o       jobOptions
		asJSON  bool
		jsonOpt = "json"
	)
	cmd := &cobra.Command{
		Use:   "info [options] JOB [job arguments...]",
		Short: "Print a job's plan: chained tasks, parallelism and edges",
		Args:  needJob,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.jobmanager != "" {
				return fmt.Errorf("--jobmanager %s: weir info builds and prints the plan here; omit --jobmanager", o.jobmanager)
			}
			s, err := o.settings(launch.Plan)
			if err != nil {
				return err
			}
			jg, err := planOf(s, args[0], args[1:])
			if err != nil {
				return err
			}
			if asJSON {
				b, err := jobgraph.JSON(jg)
				if err != nil {
					return err
				}
				fmt.Println(string(b))
				return nil
			}
			fmt.Print(jobgraph.Describe(jg))
			return nil
		},
	}
	o.register(cmd)
	cmd.Flags().BoolVar(&asJSON, jsonOpt, false, "print the plan as JSON")
	return cmd
}

// planOf runs the job's main() in plan mode and returns its JobGraph.
func planOf(s *launch.Settings, job string, args []string) (*pb.JobGraph, error) {
	var jg *pb.JobGraph
	if strings.HasPrefix(job, "builtin:") {
		s.OnPlan = func(g *pb.JobGraph) { jg = g }
		s.Quiet = true
		if err := runJob(s, job, args); err != nil {
			return nil, err
		}
	} else {
		f, err := os.CreateTemp("", "weir-plan-*.json")
		if err != nil {
			return nil, err
		}
		f.Close()
		defer os.Remove(f.Name())
		if err := runBinary(s, job, args, f.Name()); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			jg = &pb.JobGraph{}
			if err := protojson.Unmarshal(b, jg); err != nil {
				return nil, fmt.Errorf("job %s wrote an unreadable plan: %w", job, err)
			}
		}
	}
	if jg == nil {
		return nil, fmt.Errorf("job %s did not build a plan: its main() must call Execute on a stream environment", job)
	}
	return jg, nil
}

func configCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "List the configuration keys with their defaults",
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, k := range config.Keys() {
				fmt.Printf("%-48s %-8s %s\n", k.Name, k.Default, k.Doc)
			}
			return nil
		},
	}
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print weir's version",
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Println("weir", weirversion.Version)
		},
	}
}
