package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/rest"
)

// weir list, cancel, savepoint and stop steer running jobs through their
// cluster's REST API, as flink list, cancel, savepoint and stop do; they
// work against Flink's API too. Without --jobmanager they look at
// localhost:8081 and at every embedded cluster on this host that announced
// its API (rest.Announced): each `weir run` serves its own, and only one
// of them gets port 8081.

// jobsEnv is what the commands depend on besides their arguments, so
// that tests can point them at their own servers and clock them faster.
type jobsEnv struct {
	defaultAddr string
	announced   func() []rest.Announcement
	// poll is the interval between savepoint status requests, progress
	// how often a savepoint still in progress is reported, endWait how
	// long cancel and stop wait for the job to end.
	poll, progress, endWait time.Duration
}

var defaultJobsEnv = jobsEnv{
	defaultAddr: "localhost:8081",
	announced:   rest.Announced,
	poll:        250 * time.Millisecond,
	progress:    5 * time.Second,
	endWait:     30 * time.Second,
}

// jobsCommands returns weir list, cancel, savepoint and stop.
func jobsCommands() []*cobra.Command { return defaultJobsEnv.commands() }

func (e jobsEnv) commands() []*cobra.Command {
	return []*cobra.Command{e.listCommand(), e.cancelCommand(), e.savepointCommand(), e.stopCommand()}
}

// target is where a command looks for jobs.
type target struct {
	env        jobsEnv
	jobmanager string
}

func (t *target) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.jobmanager, "jobmanager", "m", "",
		"REST address of the job's cluster, HOST:PORT or http://HOST:PORT (default: "+t.env.defaultAddr+
			" and the jobs running on this host)")
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
}

// endpoint is one REST API to ask.
type endpoint struct {
	client *rest.Client
	// announced is set for the API of an embedded cluster found on this
	// host; jobID is the job it announced.
	announced bool
	jobID     string
}

// endpoints returns the APIs to ask: --jobmanager alone, or the announced
// ones and then the default address.
func (t *target) endpoints() ([]endpoint, error) {
	if t.jobmanager != "" {
		c, err := rest.NewClient(t.jobmanager)
		if err != nil {
			return nil, fmt.Errorf("--jobmanager: %w", err)
		}
		return []endpoint{{client: c}}, nil
	}
	var out []endpoint
	seen := map[string]bool{}
	for _, a := range t.env.announced() {
		addr := a.Address
		if sameServer(addr) == sameServer(t.env.defaultAddr) {
			// Messages name the server as the user knows it.
			addr = t.env.defaultAddr
		}
		c, err := rest.NewClient(addr)
		if err != nil || seen[sameServer(a.Address)] {
			continue
		}
		seen[sameServer(a.Address)] = true
		out = append(out, endpoint{client: c, announced: true, jobID: a.JobID})
	}
	if !seen[sameServer(t.env.defaultAddr)] {
		c, err := rest.NewClient(t.env.defaultAddr)
		if err != nil {
			return nil, err
		}
		out = append(out, endpoint{client: c})
	}
	return out, nil
}

// sameServer normalises an address so that localhost:8081 and
// http://127.0.0.1:8081 compare equal.
func sameServer(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return addr
	}
	host := u.Hostname()
	if host == "localhost" || host == "::1" {
		host = "127.0.0.1"
	}
	return host + ":" + u.Port() + strings.TrimRight(u.Path, "/")
}

// found is a job and the API that serves it.
type found struct {
	client *rest.Client
	job    rest.JobOverview
}

// jobs lists the jobs of every endpoint that answers. With --jobmanager
// its failure is the error; otherwise the announced APIs that do not
// answer are skipped (their jobs have just ended) and the error is the
// default address's when nothing answered.
func (t *target) jobs(ctx context.Context) (jobs []found, answered []*rest.Client, err error) {
	eps, err := t.endpoints()
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	var defaultErr, firstErr error
	for _, ep := range eps {
		list, err := ep.client.Jobs(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if firstErr == nil {
				firstErr = err
			}
			if sameServer(ep.client.Addr) == sameServer(t.env.defaultAddr) {
				defaultErr = err
			}
			continue
		}
		answered = append(answered, ep.client)
		for _, j := range list {
			if !seen[j.ID] {
				seen[j.ID] = true
				jobs = append(jobs, found{ep.client, j})
			}
		}
	}
	if len(answered) == 0 {
		if defaultErr != nil {
			return nil, nil, defaultErr
		}
		return nil, nil, firstErr
	}
	return jobs, answered, nil
}

// resolve finds the job a JOB argument names: its 32 hex digits or a
// prefix that names one job (or one job still running).
func (t *target) resolve(ctx context.Context, arg string) (found, error) {
	id := strings.ToLower(strings.TrimSpace(arg))
	if len(id) == 0 || len(id) > 32 || !isHex(id) {
		return found{}, fmt.Errorf("JOB %q is not a job id: give the 32 hex digits `weir list` shows, or a prefix of them", arg)
	}
	if len(id) == 32 && t.jobmanager == "" {
		// The job's own announcement says where its API is.
		eps, err := t.endpoints()
		if err != nil {
			return found{}, err
		}
		for _, ep := range eps {
			if ep.jobID != id {
				continue
			}
			if d, err := ep.client.Job(ctx, id); err == nil {
				return found{ep.client, rest.JobOverview{ID: d.ID, Name: d.Name, State: d.State}}, nil
			}
		}
	}
	jobs, answered, err := t.jobs(ctx)
	if err != nil {
		return found{}, err
	}
	var matches []found
	for _, j := range jobs {
		if strings.HasPrefix(j.job.ID, id) {
			matches = append(matches, j)
		}
	}
	if len(matches) > 1 {
		var running []found
		for _, m := range matches {
			if !rest.Terminal(m.job.State) {
				running = append(running, m)
			}
		}
		if len(running) == 1 {
			matches = running
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		var where []string
		for _, c := range answered {
			where = append(where, c.Addr)
		}
		hint := "`weir list` shows the jobs"
		if t.jobmanager != "" {
			hint = "`weir list --jobmanager " + t.jobmanager + "` shows its jobs"
		}
		return found{}, fmt.Errorf("no job %s at %s; %s", id, strings.Join(where, ", "), hint)
	}
	var ids []string
	for _, m := range matches {
		ids = append(ids, m.job.ID+" ("+m.job.Name+", "+m.job.State+")")
	}
	return found{}, fmt.Errorf("JOB %s matches %d jobs: %s; give more of its digits", id, len(matches), strings.Join(ids, ", "))
}

func isHex(s string) bool {
	if len(s)%2 == 1 {
		s += "0"
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// interruptible returns a context that Ctrl-C and SIGTERM cancel.
func interruptible(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func (e jobsEnv) listCommand() *cobra.Command {
	t := &target{env: e}
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--jobmanager HOST:PORT] [--all]",
		Short: "List the running jobs",
		Long: `List the jobs of a cluster: those running, with --all also those that have ended.

Without --jobmanager, weir asks ` + e.defaultAddr + ` and every job running on the
embedded cluster of a weir process on this host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd)
			defer stop()
			jobs, answered, err := t.jobs(ctx)
			if err != nil {
				return err
			}
			return printJobs(cmd.OutOrStdout(), jobs, all, len(answered) > 1)
		},
	}
	t.register(cmd)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list jobs that have ended")
	return cmd
}

func printJobs(w io.Writer, jobs []found, all, showAPI bool) error {
	var shown []found
	for _, j := range jobs {
		if all || !rest.Terminal(j.job.State) {
			shown = append(shown, j)
		}
	}
	if len(shown) == 0 {
		if all {
			_, err := fmt.Fprintln(w, "No jobs.")
			return err
		}
		_, err := fmt.Fprintln(w, "No running jobs.")
		return err
	}
	sort.SliceStable(shown, func(i, j int) bool { return shown[i].job.StartTime < shown[j].job.StartTime })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "JOB ID\tSTATE\tSTARTED\tDURATION\tNAME"
	if showAPI {
		header += "\tREST API"
	}
	fmt.Fprintln(tw, header)
	for _, j := range shown {
		started := "-"
		if j.job.StartTime > 0 {
			started = time.UnixMilli(j.job.StartTime).Format("2006-01-02 15:04:05")
		}
		duration := "-"
		if j.job.Duration >= 0 {
			duration = (time.Duration(j.job.Duration) * time.Millisecond).Round(time.Second).String()
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", j.job.ID, j.job.State, started, duration, j.job.Name)
		if showAPI {
			line += "\t" + j.client.Addr
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func (e jobsEnv) cancelCommand() *cobra.Command {
	t := &target{env: e}
	cmd := &cobra.Command{
		Use:   "cancel [--jobmanager HOST:PORT] JOB",
		Short: "Cancel a running job",
		Long: `Cancel a job: its tasks stop at once, without a savepoint (weir stop takes one).
JOB is the job's id as weir list shows it, or a prefix of it that names one job.`,
		Args: exactlyOneJob,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd)
			defer stop()
			f, err := t.resolve(ctx, args[0])
			if err != nil {
				return err
			}
			if err := f.client.Cancel(ctx, f.job.ID); err != nil {
				return fmt.Errorf("canceling job %s: %w", f.job.ID, err)
			}
			state := e.awaitEnd(ctx, f)
			switch {
			case state == "" || state == "CANCELED":
				fmt.Fprintf(cmd.OutOrStdout(), "Canceled job %s (%s).\n", f.job.ID, f.job.Name)
			case rest.Terminal(state):
				fmt.Fprintf(cmd.OutOrStdout(), "Job %s (%s) ended %s before it was canceled.\n", f.job.ID, f.job.Name, state)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "Canceling job %s (%s); it is still %s after %s.\n", f.job.ID, f.job.Name, state, e.endWait)
			}
			return nil
		},
	}
	t.register(cmd)
	return cmd
}

// exactlyOneJob checks a command's JOB argument.
func exactlyOneJob(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return fmt.Errorf("no job given: weir %s JOB, with the job id weir list shows", cmd.Name())
	case len(args) > 1:
		return fmt.Errorf("too many arguments %q: weir %s takes one JOB", args, cmd.Name())
	}
	return nil
}

// awaitEnd waits up to endWait for the job to end and returns its last
// known state; "" means its API went away, as an embedded cluster's does
// when its job ends.
func (e jobsEnv) awaitEnd(ctx context.Context, f found) string {
	ctx, cancel := context.WithTimeout(ctx, e.endWait)
	defer cancel()
	tick := time.NewTicker(e.poll)
	defer tick.Stop()
	state := f.job.State
	for {
		d, err := f.client.Job(ctx, f.job.ID)
		var ue *rest.UnreachableError
		switch {
		case errors.As(err, &ue):
			return ""
		case err == nil:
			state = d.State
			if rest.Terminal(state) {
				return state
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return state
		}
	}
}

func (e jobsEnv) savepointCommand() *cobra.Command {
	t := &target{env: e}
	cmd := &cobra.Command{
		Use:   "savepoint [--jobmanager HOST:PORT] JOB [DIR]",
		Short: "Take a savepoint of a running job and print its path",
		Long: `Take a savepoint of a running job into a new directory under DIR (default: the
job's state.savepoints.dir), wait for it and print its path. The job keeps running;
weir run --from-savepoint PATH starts a job from it.`,
		Example: `  weir savepoint 5f2c /data/savepoints
  weir savepoint --jobmanager localhost:8082 5f2c9a0e1b7d4c3a8e6f0b1d2c3a4e5f`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 2 {
				return fmt.Errorf("too many arguments %q: weir savepoint JOB [DIR]", args)
			}
			return exactlyOneJob(cmd, args[:min(len(args), 1)])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 2 {
				dir = args[1]
			}
			_, err := e.takeSavepoint(cmd, t, args[0], dir, false, false)
			return err
		},
	}
	t.register(cmd)
	return cmd
}

func (e jobsEnv) stopCommand() *cobra.Command {
	t := &target{env: e}
	var (
		dir   string
		drain bool
	)
	cmd := &cobra.Command{
		Use:   "stop [--jobmanager HOST:PORT] [--savepoint-dir DIR] [--drain] JOB",
		Short: "Stop a job with a savepoint and print the savepoint's path",
		Long: `Stop a running job gracefully: take a savepoint into a new directory under DIR
(default: the job's state.savepoints.dir), then end the job. With --drain, event time
first advances to the end, firing all timers and windows, for a job that will not be
resumed.`,
		Args: exactlyOneJob,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := e.takeSavepoint(cmd, t, args[0], dir, true, drain)
			return err
		},
	}
	t.register(cmd)
	cmd.Flags().StringVar(&dir, "savepoint-dir", "", "directory for the savepoint (default: the job's state.savepoints.dir)")
	cmd.Flags().BoolVarP(&drain, "drain", "d", false, "advance event time to the end before the savepoint, firing all timers and windows")
	return cmd
}

// takeSavepoint triggers a savepoint (stop: and ends the job), waits for
// it with progress on stderr and prints its path on stdout.
func (e jobsEnv) takeSavepoint(cmd *cobra.Command, t *target, arg, dir string, stop, drain bool) (string, error) {
	ctx, cancel := interruptible(cmd)
	defer cancel()
	stderr := cmd.ErrOrStderr()
	if dir != "" && !strings.Contains(dir, "://") {
		// The job resolves a relative path against its own directory,
		// not this one.
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		dir = abs
	}
	f, err := t.resolve(ctx, arg)
	if err != nil {
		return "", err
	}
	what, verb := "savepoint", "triggering a savepoint of"
	var trigger string
	if stop {
		what, verb = "stop-with-savepoint", "stopping"
		if drain {
			verb = "draining and stopping"
		}
		trigger, err = f.client.StopWithSavepoint(ctx, f.job.ID, dir, drain)
	} else {
		trigger, err = f.client.TriggerSavepoint(ctx, f.job.ID, dir, false)
	}
	if err != nil {
		return "", fmt.Errorf("%s of job %s: %w", what, f.job.ID, err)
	}
	fmt.Fprintf(stderr, "weir: %s job %s (%s) at %s\n", verb, f.job.ID, f.job.Name, f.client.Addr)
	start, last := time.Now(), time.Now()
	path, err := f.client.AwaitSavepoint(ctx, f.job.ID, trigger, e.poll, func() {
		if time.Since(last) >= e.progress {
			last = time.Now()
			fmt.Fprintf(stderr, "weir: %s of job %s in progress (%s)\n", what, f.job.ID, time.Since(start).Round(time.Second))
		}
	})
	switch {
	case errors.Is(err, context.Canceled):
		return "", fmt.Errorf("stopped waiting for the %s of job %s; it goes on: its status is at %s/jobs/%s/savepoints/%s",
			what, f.job.ID, f.client.BaseURL(), f.job.ID, trigger)
	case err != nil && strings.HasPrefix(err.Error(), what+" of job "):
		return "", err // the cluster's message already says which
	case err != nil:
		return "", fmt.Errorf("%s of job %s failed: %w", what, f.job.ID, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), path)
	if stop {
		switch state := e.awaitEnd(ctx, f); {
		case state == "" || rest.Terminal(state):
			fmt.Fprintf(stderr, "weir: job %s stopped with a savepoint at %s\n", f.job.ID, path)
		default:
			fmt.Fprintf(stderr, "weir: savepoint at %s; job %s is still %s after %s\n", path, f.job.ID, state, e.endWait)
		}
	} else {
		fmt.Fprintf(stderr, "weir: savepoint of job %s completed; start from it with: weir run --from-savepoint %s …\n", f.job.ID, path)
	}
	return path, nil
}
