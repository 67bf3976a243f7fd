package taskmanager

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/artifact"
	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/clusterpb"
)

// worker is a job's worker process on this TaskManager, from the
// StartWorker that asked for it until its process has exited.
//
//	fetching ──artifact ready──▶ running ──exit──▶ (reported, gone)
//	    │                           │
//	    └──stop: fetch canceled     └──stop: SIGTERM ──▶ stopping ──exit──▶ gone
//	                                                  (SIGKILL after stopGrace)
type worker struct {
	job   string
	id    string
	start *pb.StartWorker
	state workerState

	cancelFetch context.CancelFunc // while fetching
	cmd         *exec.Cmd          // from running on
	pid         int
	logPath     string
	kill        *time.Timer // while stopping
}

type workerState int

const (
	fetching workerState = iota
	running
	stopping
)

// tailLines is how many of a worker's last output lines WorkerExited
// carries.
const tailLines = 20

func (a *agent) startWorker(s *pb.StartWorker) {
	job := s.GetJobId()
	if a.slots.jobSlots(job) == 0 {
		return // not a job of ours (stale, or the slot was freed)
	}
	if w := a.workers[job]; w != nil {
		if w.id == s.GetWorkerId() {
			return // already running (or starting): nothing to do
		}
		// The master asks for a new worker: it has given the old one up
		// (its session ended; the process may have crashed before this
		// agent handled its exit). Ignoring the request would leave the
		// job waiting for a worker that never comes: stop the old one;
		// the new one starts once it has exited.
		a.o.Log("worker %s of job %s is replaced by worker %s", w.id, job, s.GetWorkerId())
		a.stopWorker(w)
	}
	for w := range a.stopping {
		if w.job == job {
			// One worker per job: the new one starts when the old one
			// has exited.
			a.pending[job] = s
			return
		}
	}
	a.beginWorker(s)
}

// beginWorker starts the worker of s: a built-in job at once, a job binary
// once the cache has it.
func (a *agent) beginWorker(s *pb.StartWorker) {
	w := &worker{job: s.GetJobId(), id: s.GetWorkerId(), start: s}
	a.workers[w.job] = w
	art := s.GetArtifact()
	if b := art.GetBuiltin(); b != "" {
		if !strings.HasPrefix(b, "builtin:") {
			b = "builtin:" + b
		}
		a.execWorker(w, a.o.Executable, append([]string{"__worker", b}, s.GetArgs()...))
		return
	}
	digest := art.GetDigest()
	if !artifact.ValidDigest(digest) {
		a.startFailed(w, fmt.Errorf("the job's artifact has no valid digest (%q) and is not a built-in job", digest))
		return
	}
	ctx, cancel := context.WithCancel(a.life)
	w.cancelFetch = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		path, err := a.cache.Get(ctx, digest, func(ctx context.Context, out io.Writer) error {
			return a.fetchArtifact(ctx, digest, out)
		})
		a.enqueue(artifactReady{w: w, path: path, err: err})
	}()
}

// fetchArtifact copies the artifact digest from the master to out.
func (a *agent) fetchArtifact(ctx context.Context, digest string, out io.Writer) error {
	stream, err := a.client.FetchArtifact(ctx, &pb.FetchArtifactRequest{Digest: digest})
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := out.Write(chunk.GetData()); err != nil {
			return err
		}
	}
}

func (a *agent) artifactReady(ev artifactReady) {
	w := ev.w
	if a.workers[w.job] != w || w.state != fetching {
		return // stopped while fetching
	}
	w.cancelFetch = nil
	if ev.err != nil {
		a.startFailed(w, fmt.Errorf("job binary %q from the master at %s: %w",
			w.start.GetArtifact().GetName(), a.o.MasterAddress, ev.err))
		return
	}
	a.execWorker(w, ev.path, w.start.GetArgs())
}

// execWorker starts w's process: path with args, the launch settings in
// its environment, its output in its log file.
func (a *agent) execWorker(w *worker, path string, args []string) {
	env, err := a.workerEnv(w.start)
	if err != nil {
		a.startFailed(w, err)
		return
	}
	w.logPath = filepath.Join(a.o.WorkDir, "logs", w.job+"-"+w.id+".log")
	logFile, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		a.startFailed(w, fmt.Errorf("worker log: %w", err))
		return
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	isolate(cmd)
	err = cmd.Start()
	logFile.Close() // the worker has its own descriptor
	if err != nil {
		a.startFailed(w, fmt.Errorf("starting %s: %w", path, err))
		return
	}
	w.cmd, w.pid, w.state = cmd, cmd.Process.Pid, running
	a.o.Log("worker started: job %s, worker %s, pid %d, log %s", w.job, w.id, w.pid, w.logPath)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		err := cmd.Wait()
		st := ""
		if cmd.ProcessState != nil {
			st = cmd.ProcessState.String()
		} else {
			st = err.Error()
		}
		a.enqueue(workerExited{w: w, status: st, tail: logTail(w.logPath, tailLines)})
	}()
}

// workerEnv is the environment of the worker of s: the agent's own, minus
// what the launch sets, plus the launch settings and the Go runtime's
// limits matched to the job's slots here.
func (a *agent) workerEnv(s *pb.StartWorker) ([]string, error) {
	master := s.GetMasterAddress()
	if master == "" {
		master = a.o.MasterAddress
	}
	settings := &launch.Settings{
		Mode:        launch.Worker,
		Parallelism: int(s.GetParallelism()),
		Config:      s.GetConfig(),
		Quiet:       true,
		Worker: &launch.WorkerSettings{
			MasterAddress: master,
			JobID:         s.GetJobId(),
			JobMasterID:   s.GetJobMasterId(),
			WorkerID:      s.GetWorkerId(),
			ResourceID:    a.o.ResourceID,
			DataHost:      a.o.DataHost,
		},
	}
	value, err := launch.Encode(settings, "", "")
	if err != nil {
		return nil, fmt.Errorf("encoding the worker's launch settings: %w", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == launch.EnvVar || k == "GOMAXPROCS" || k == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	res := s.GetResources()
	if res == nil {
		// The master did not say: the job's slots here.
		res = toProto(a.slots.jobProfile(s.GetJobId()))
	}
	env = append(env, launch.EnvVar+"="+value,
		"GOMAXPROCS="+strconv.FormatInt(max(1, (res.GetCpuMillis()+999)/1000), 10))
	if m := res.GetTaskMemory(); m > 0 {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(m, 10))
	}
	return env, nil
}

func (a *agent) startFailed(w *worker, err error) {
	if a.workers[w.job] == w {
		delete(a.workers, w.job)
	}
	a.o.Log("worker of job %s could not start: %v", w.job, err)
	a.send(&pb.TaskManagerMessage{Msg: &pb.TaskManagerMessage_WorkerStartFailed{WorkerStartFailed: &pb.WorkerStartFailed{
		JobId: w.job, WorkerId: w.id, Error: err.Error()}}})
}

// stopWorker stops w: a fetch is abandoned, a process gets SIGTERM and,
// after stopGrace, SIGKILL. Its exit is not reported: the master asked
// for it, or is gone.
func (a *agent) stopWorker(w *worker) {
	if a.workers[w.job] == w {
		delete(a.workers, w.job)
	}
	switch w.state {
	case fetching:
		if w.cancelFetch != nil {
			w.cancelFetch()
		}
	case running:
		w.state = stopping
		a.stopping[w] = true
		signalGroup(w.cmd, false)
		w.kill = time.AfterFunc(stopGrace, func() { a.enqueue(killDue{w}) })
	}
}

func (a *agent) stopAllWorkers() {
	for _, w := range a.workers {
		a.stopWorker(w)
	}
	clear(a.pending)
}

func (a *agent) killDue(w *worker) {
	if a.stopping[w] {
		a.o.Log("worker of job %s (pid %d) did not exit within %v of SIGTERM; killing it", w.job, w.pid, stopGrace)
		signalGroup(w.cmd, true)
	}
}

func (a *agent) workerExited(ev workerExited) {
	w := ev.w
	if w.state == stopping {
		delete(a.stopping, w)
		w.kill.Stop()
		a.o.Log("worker stopped: job %s, worker %s, pid %d (%s)", w.job, w.id, w.pid, ev.status)
		if s := a.pending[w.job]; s != nil {
			delete(a.pending, w.job)
			if a.slots.jobSlots(w.job) > 0 && a.workers[w.job] == nil {
				a.beginWorker(s)
			}
		}
		return
	}
	if a.workers[w.job] == w {
		delete(a.workers, w.job)
	}
	a.o.Log("worker exited: job %s, worker %s, pid %d: %s", w.job, w.id, w.pid, ev.status)
	a.send(&pb.TaskManagerMessage{Msg: &pb.TaskManagerMessage_WorkerExited{WorkerExited: &pb.WorkerExited{
		JobId: w.job, WorkerId: w.id, Pid: int32(w.pid), Status: ev.status, StderrTail: ev.tail}}})
}

// awaitWorkers waits until every stopping worker has exited (each is
// killed stopGrace after its SIGTERM), handling only those events.
func (a *agent) awaitWorkers() {
	for len(a.stopping) > 0 {
		switch ev := (<-a.mailbox).(type) {
		case workerExited:
			a.workerExited(ev)
		case killDue:
			a.killDue(ev.w)
		}
	}
}

// logTail returns the last n lines of the file at path (read from its
// last 16 KiB).
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 16 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		off = fi.Size() - window
	}
	b := make([]byte, window)
	k, _ := f.ReadAt(b, off)
	b = bytes.TrimRight(b[:k], "\n")
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
