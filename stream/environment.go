package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"syscall"
	"time"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/minicluster"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/worker"
)

// ErrJobCanceled is returned by Execute when the job was canceled (Ctrl-C).
var ErrJobCanceled = errors.New("job canceled")

// Environment is the context in which a job's dataflow is built and run.
type Environment struct {
	graph  graph.Graph
	cfg    *config.Config
	launch *launch.Settings
	err    error
}

// NewEnvironment returns an environment configured by the launch (the
// options of `weir run`), or with defaults when the binary runs directly.
func NewEnvironment() *Environment {
	ls := launch.Get()
	cfg, err := config.FromMap(ls.Config)
	if err != nil {
		cfg = config.New()
	}
	e := &Environment{cfg: cfg, launch: ls, err: err}
	if ls.Parallelism > 0 {
		_ = e.cfg.Set(config.Parallelism.Name, fmt.Sprint(ls.Parallelism))
	}
	return e
}

// SetParallelism sets the default parallelism of the job's operators.
func (e *Environment) SetParallelism(p int) *Environment {
	if p < 1 {
		e.fail(fmt.Errorf("SetParallelism(%d): parallelism must be at least 1", p))
		return e
	}
	// An explicit -p from the CLI wins over the job's own default.
	if e.launch.Parallelism == 0 {
		_ = e.cfg.Set(config.Parallelism.Name, fmt.Sprint(p))
	}
	return e
}

// Parallelism returns the default parallelism operators run with.
func (e *Environment) Parallelism() int {
	if p := e.cfg.Int(config.Parallelism); p > 0 {
		return p
	}
	return goruntime.NumCPU()
}

// SetMaxParallelism sets the number of key groups of keyed operators: the
// upper bound to which the job can later be rescaled.
func (e *Environment) SetMaxParallelism(p int) *Environment {
	if err := e.cfg.Set(config.MaxParallelism.Name, fmt.Sprint(p)); err != nil {
		e.fail(err)
	}
	return e
}

// DisableOperatorChaining runs every operator as its own task.
func (e *Environment) DisableOperatorChaining() *Environment {
	_ = e.cfg.Set(config.OperatorChaining.Name, "false")
	return e
}

// Configure sets a configuration key (Flink key names), like -D on the CLI.
func (e *Environment) Configure(key, value string) error {
	return e.cfg.Set(key, value)
}

func (e *Environment) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// Plan translates the dataflow into the chained JobGraph without running it.
func (e *Environment) plan(name string) (*pb.JobGraph, map[string]*runtime.Factory, error) {
	if e.err != nil {
		return nil, nil, fmt.Errorf("job %q: %w", name, e.err)
	}
	jg, err := jobgraph.Translate(&e.graph, jobgraph.Settings{
		JobName:            name,
		DefaultParallelism: e.Parallelism(),
		MaxParallelism:     e.cfg.Int(config.MaxParallelism),
		DisableChaining:    !e.cfg.Bool(config.OperatorChaining),
		Config:             e.cfg.Map(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("job %q: %w", name, err)
	}
	factories := map[string]*runtime.Factory{}
	for _, n := range e.graph.Nodes {
		if !n.Virtual {
			factories[n.UID] = n.Factory
		}
	}
	return jg, factories, nil
}

// Execute runs the job and returns when it has finished, failed or been
// canceled. With no cluster configured it runs on an embedded local cluster
// in this process. Ctrl-C cancels the job and Execute returns ErrJobCanceled.
func (e *Environment) Execute(name string) error {
	ctx := e.launch.Context
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	return e.ExecuteContext(ctx, name)
}

// ExecuteContext is Execute with a context that cancels the job.
func (e *Environment) ExecuteContext(ctx context.Context, name string) (err error) {
	if e.launch.OnEnd != nil {
		// Tell `weir run`, which started this process, how the job ended.
		defer func() {
			r := launch.Result{State: launch.Finished}
			switch {
			case errors.Is(err, ErrJobCanceled):
				r.State = launch.Canceled
			case err != nil:
				r = launch.Result{State: launch.Failed, Error: err.Error()}
			}
			e.launch.OnEnd(r)
		}()
	}
	jg, factories, err := e.plan(name)
	if err != nil {
		return err
	}
	if e.launch.Mode == launch.Plan {
		if e.launch.OnPlan != nil {
			e.launch.OnPlan(jg)
		}
		return nil
	}
	if e.launch.Mode == launch.Worker {
		return e.serveAsWorker(ctx, jg, factories)
	}
	if e.launch.OnStart != nil {
		e.launch.OnStart(jg)
	}
	start := time.Now()
	api := e.startREST(jg.JobId, name)
	defer api.Close()
	if !e.launch.Quiet {
		fmt.Fprintf(os.Stderr, "weir: job %s (%s) running on the embedded cluster, %d tasks%s\n", name, jg.JobId, countSubtasks(jg), restNote(api))
	}
	err = minicluster.Run(ctx, &runtime.Job{Graph: jg, Factories: factories}, e.cfg, minicluster.RunOptions{
		JobID:                 jg.JobId,
		FromSavepoint:         e.launch.FromSavepoint,
		AllowNonRestoredState: e.launch.AllowNonRestoredState,
		Log:                   e.progress,
		Name:                  name,
		OnControl:             api.Register,
	})
	if errors.Is(err, runtime.ErrCanceled) {
		err = ErrJobCanceled
	}
	if !e.launch.Quiet {
		state := "FINISHED"
		if errors.Is(err, ErrJobCanceled) {
			state = "CANCELED"
		} else if err != nil {
			state = "FAILED"
		}
		fmt.Fprintf(os.Stderr, "weir: job %s %s after %s\n", name, state, time.Since(start).Round(time.Millisecond))
	}
	if err != nil && !errors.Is(err, ErrJobCanceled) {
		return fmt.Errorf("job %q failed: %w", name, err)
	}
	return err
}

// serveAsWorker serves the subtasks the job's JobMaster deploys to this
// process, which a TaskManager started as the job's worker: no embedded
// cluster, no REST API and no progress lines. The worker's tasks use the
// configuration the plan carries (the launch's -D settings and the job's
// own), as the embedded cluster does.
func (e *Environment) serveAsWorker(ctx context.Context, jg *pb.JobGraph, factories map[string]*runtime.Factory) error {
	s := *e.launch
	s.Config = e.cfg.Map()
	return worker.Serve(ctx, &runtime.Job{Graph: jg, Factories: factories}, &s)
}

// progress prints a progress line on stderr unless the launch is quiet.
func (e *Environment) progress(format string, args ...any) {
	if !e.launch.Quiet {
		fmt.Fprintf(os.Stderr, "weir: "+format+"\n", args...)
	}
}

// The embedded cluster's REST API (package rest), through which weir list,
// savepoint, stop and cancel reach the job.

// startREST serves the REST API for the job unless it is off: with
// rest.enabled=false, and for quiet launches (tests and weir bench run many
// jobs at once and steer them in-process). If it cannot listen, the job
// runs without it. A nil *rest.Embedded ignores Register and Close.
func (e *Environment) startREST(jobID, name string) *rest.Embedded {
	if e.launch.Quiet || !e.cfg.Bool(config.RestEnabled) {
		return nil
	}
	api, err := rest.StartEmbedded(e.cfg, jobID, name, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir: %v; the job runs without it (weir list, savepoint, stop and cancel cannot reach it)\n", err)
		return nil
	}
	return api
}

// restNote is the end of the job's "running" line: where its API is.
func restNote(api *rest.Embedded) string {
	if api == nil {
		return ""
	}
	return ", " + api.Describe()
}

func countSubtasks(jg *pb.JobGraph) int {
	n := 0
	for _, v := range jg.Vertices {
		n += int(v.Parallelism)
	}
	return n
}
