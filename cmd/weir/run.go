package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weirstream/weir/internal/builtin"
	_ "github.com/weirstream/weir/internal/builtin/jobs" // registers the built-in jobs
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/stream"
)

// jobOptions are Weir's own options, given before JOB as with `flink run`.
type jobOptions struct {
	parallelism int
	defines     []string
	jobmanager  string

	fromSavepoint         string
	allowNonRestoredState bool
}

func (o *jobOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.SetInterspersed(false) // everything after JOB belongs to the job
	f.IntVarP(&o.parallelism, "parallelism", "p", 0, "default parallelism of the job (default: config, else the number of cores)")
	f.StringArrayVarP(&o.defines, "define", "D", nil, "configuration key=value (Flink key names), repeatable")
	f.StringVar(&o.jobmanager, "jobmanager", "", "address of a session cluster to submit to (default: run on an embedded local cluster)")
	f.StringVarP(&o.fromSavepoint, "from-savepoint", "s", "", "start from this savepoint or retained checkpoint directory (…/<job-id>/chk-<n>)")
	f.BoolVarP(&o.allowNonRestoredState, "allow-non-restored-state", "n", false,
		"with --from-savepoint: skip state of operators the job no longer has instead of failing")
}

// settings validates the options into launch settings.
func (o *jobOptions) settings(mode launch.Mode) (*launch.Settings, error) {
	if o.jobmanager != "" {
		return nil, fmt.Errorf("--jobmanager %s: this build of weir runs jobs on the embedded local cluster only; "+
			"omit --jobmanager to run the job in this process", o.jobmanager)
	}
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
		Long: `Run a job on the embedded local cluster.

JOB is builtin:NAME for a job compiled into weir (` + strings.Join(builtin.Names(), ", ") + `),
or the path of a Go program built with Weir's DataStream API.
Weir's options come before JOB; everything after JOB is passed to the job.`,
		Example: `  weir run builtin:wordcount --input words.txt --output counts.txt
  weir run -p 2 builtin:nexmark --query q5 --events 10000000
  weir run -D execution.buffer-timeout=10ms ./myjob --my-flag 1`,
		Args: needJob,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.settings(launch.Run)
			if err != nil {
				return err
			}
			return runJob(s, args[0], args[1:])
		},
	}
	o.register(cmd)
	return cmd
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
			fmt.Println("weir", version)
		},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"
