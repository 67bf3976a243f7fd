// Package master is Weir's master process (`weir cluster start`): the
// Dispatcher, which takes job submissions over the REST API, keeps job
// binaries in a content-addressed artifact store and runs one JobMaster
// per job; the ResourceManager, whose SlotManager matches the jobs' slot
// requirements to the slots of registered TaskManagers; and the RPC
// endpoint (gRPC, jobmanager.rpc.port) that TaskManagers and workers talk
// to.
//
//	weir run --jobmanager :8081 ──REST──▶ Dispatcher ── JobMaster per job
//	                                          │            (jobmaster.Run with
//	                                          │             a cluster Deployer)
//	weir taskmanager ──Connect──▶ ResourceManager ── SlotManager
//	worker (job binary) ──Attach──▶ the job's JobMaster
//
// A job runs as follows. The JobMaster declares how many slots it needs
// (the sum over its slot sharing groups of their highest parallelism).
// The SlotManager picks free slots and tells their TaskManagers to offer
// them to the job; the offers reach the job's slot pool. The scheduler puts
// subtask s of every vertex of a group in the group's s-th slot, asks every
// TaskManager that holds slots to start the job's worker (one per job per
// TaskManager) and, once all have attached, sends each its share of the
// subtasks and where their peers are. Checkpoints and restarts are the
// jobmaster package's, exactly as on the embedded cluster: the workers'
// acknowledgements carry the tasks' state.
//
// Failures are noticed when a connection breaks (at once) or a heartbeat
// is missed for heartbeat.timeout: a lost worker or TaskManager fails the
// attempt, the others cancel theirs, and the job restarts from its latest
// checkpoint on the slots the cluster still has.
package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/artifact"
	"github.com/weirstream/weir/internal/builtin"
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/execution"
	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	jgpb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/resource"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/slotmanager"
)

// Options configure a master.
type Options struct {
	// Config holds the cluster's configuration; jobs add their own -D
	// settings on top.
	Config  *config.Config
	Version string
	// Log receives the master's log lines; nil discards them.
	Log func(format string, args ...any)
	// OnReady, if set, is told the REST and RPC addresses once both listen.
	OnReady func(restAddr, rpcAddr string)
}

// Master is a running master process.
type Master struct {
	o       Options
	log     func(string, ...any)
	rm      *resourceManager
	store   *artifact.Store
	rest    *rest.Server
	rpcAddr string

	mu   sync.Mutex
	jobs map[string]*job // running jobs
	wg   sync.WaitGroup
	ctx  context.Context
}

// Run runs a master until ctx ends.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	interval, timeout := cfg.Duration(config.HeartbeatInterval), cfg.Duration(config.HeartbeatTimeout)
	if timeout <= interval {
		return fmt.Errorf("%s (%v) must be longer than %s (%v)", config.HeartbeatTimeout.Name, timeout, config.HeartbeatInterval.Name, interval)
	}
	work := cfg.String(config.ClusterWorkDir)
	if work == "" {
		work = filepath.Join(os.TempDir(), fmt.Sprintf("weir-master-%d", os.Getpid()))
		defer os.RemoveAll(work)
	}
	store, err := artifact.OpenStore(filepath.Join(work, "artifacts"))
	if err != nil {
		return fmt.Errorf("%s: %w", config.ClusterWorkDir.Name, err)
	}
	strategy := slotmanager.Pack
	if cfg.Bool(config.EvenlySpreadOutSlots) {
		strategy = slotmanager.Spread
	}
	m := &Master{o: o, log: o.Log, store: store, jobs: map[string]*job{}, ctx: ctx,
		rm: newResourceManager(slotmanager.Options{Strategy: strategy, RequestTimeout: cfg.Duration(config.SlotRequestTimeout)},
			o.Version, interval, timeout, o.Log)}

	rpcHost := cfg.String(config.JobManagerBindHost)
	if rpcHost == "" {
		rpcHost = cfg.String(config.JobManagerRPCAddress)
	}
	rpcLis, err := net.Listen("tcp", net.JoinHostPort(rpcHost, strconv.Itoa(cfg.Int(config.JobManagerRPCPort))))
	if err != nil {
		return fmt.Errorf("cannot listen for RPC on %s:%d: %w; is another master running? Pick another port with -D %s=PORT",
			rpcHost, cfg.Int(config.JobManagerRPCPort), err, config.JobManagerRPCPort.Name)
	}
	defer rpcLis.Close()
	_, port, _ := net.SplitHostPort(rpcLis.Addr().String())
	m.rpcAddr = net.JoinHostPort(cfg.String(config.JobManagerRPCAddress), port)

	restHost := config.RestBindAddressOf(cfg)
	ports, err := config.RestBindPorts(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", config.RestBindPort.Name, err)
	}
	var restLis net.Listener
	for _, p := range ports {
		if restLis, err = net.Listen("tcp", net.JoinHostPort(restHost, strconv.Itoa(p))); err == nil {
			break
		}
	}
	if restLis == nil {
		return fmt.Errorf("cannot listen for REST on %s port %v: %w; pick another port with -D %s=PORT", restHost, ports, err, config.RestPort.Name)
	}
	defer restLis.Close()

	gs := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 5 * time.Second, Timeout: timeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30))
	clusterpb.RegisterMasterServer(gs, &rpcServer{m: m})
	m.rest = rest.NewServer(rest.Options{Version: o.Version, Cluster: m})
	hs := &http.Server{Handler: m.rest, ReadHeaderTimeout: 10 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.rm.run(ctx)
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(rpcLis) }()
	go func() { errc <- hs.Serve(restLis) }()
	if o.OnReady != nil {
		o.OnReady(restLis.Addr().String(), rpcLis.Addr().String())
	}
	o.Log("master running: REST http://%s, RPC %s (TaskManagers: weir taskmanager --jobmanager %s)", restLis.Addr(), rpcLis.Addr(), m.rpcAddr)
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	cancel()
	m.wg.Wait() // every job's JobMaster has ended (canceled)
	shut, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	_ = hs.Shutdown(shut)
	m.rest.Close()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		gs.Stop()
	}
	<-m.rm.done
	return err
}

// job returns a running job.
func (m *Master) job(id string) *job {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobs[id]
}

func badSubmission(format string, args ...any) error {
	return &rest.SubmitError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// Submit implements rest.Cluster: the Dispatcher starts a job.
func (m *Master) Submit(ctx context.Context, req rest.SubmitRequest, body io.Reader) (string, error) {
	g := &jgpb.JobGraph{}
	if err := proto.Unmarshal(req.JobGraph, g); err != nil || len(g.Vertices) == 0 {
		return "", badSubmission("the submission's job graph is malformed or empty; build it with weir run, which runs the job's main() in plan mode")
	}
	switch {
	case req.Builtin != "":
		if _, err := builtin.Lookup(trimBuiltin(req.Builtin)); err != nil {
			return "", badSubmission("%v", err)
		}
	case body != nil:
		digest, _, err := m.store.Put(body, req.ArtifactName)
		if err != nil {
			return "", badSubmission("%v", err)
		}
		if req.ArtifactDigest != "" && digest != req.ArtifactDigest {
			return "", badSubmission("the uploaded job binary has digest %s, the request says %s: the upload was corrupted; submit again", digest, req.ArtifactDigest)
		}
		req.ArtifactDigest = digest
	case req.ArtifactDigest != "":
		if !m.store.Has(req.ArtifactDigest) {
			return "", badSubmission("the Dispatcher has no job binary with digest %s; upload it with the submission", req.ArtifactDigest)
		}
	default:
		return "", badSubmission("the submission names no job: give a built-in job or upload a job binary")
	}
	cfg := config.New()
	for k, v := range m.o.Config.Map() {
		_ = cfg.Set(k, v)
	}
	for k, v := range req.Config {
		if err := cfg.Set(k, v); err != nil {
			return "", badSubmission("-D %s=%s: %v", k, v, err)
		}
	}
	id := newID()
	g.JobId = id
	name := req.JobName
	if name == "" {
		name = g.Name
	}
	j := newJob(m, id, g, req, cfg)
	jctx, cancel := context.WithCancel(m.ctx)
	go j.loop(jctx)
	m.mu.Lock()
	m.jobs[id] = j
	m.mu.Unlock()
	started := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		var once sync.Once
		err := jobmaster.Run(jctx, &runtime.Job{Graph: g}, jobmaster.Options{
			JobID: id, Config: cfg, FromSavepoint: req.SavepointPath, AllowNonRestoredState: req.AllowNonRestoredState,
			Name: name, Log: func(format string, args ...any) { m.log("job %s: "+format, append([]any{id}, args...)...) },
			OnControl: func(c jobmaster.Control) {
				m.rest.Register(id, control{Control: c, j: j})
				once.Do(func() { started <- nil })
			},
			Deploy: j.deploy,
		})
		state := execution.JobFinished
		switch {
		case err == nil:
			m.log("job %s (%s) finished", id, name)
		case errors.Is(err, runtime.ErrCanceled):
			state = execution.JobCanceled
			m.log("job %s (%s) canceled", id, name)
		default:
			state = execution.JobFailed
			m.log("job %s (%s) failed: %v", id, name, err)
		}
		once.Do(func() { started <- err })
		j.finish(state)
		m.mu.Lock()
		delete(m.jobs, id)
		m.mu.Unlock()
		close(j.done)
	}()
	if err := <-started; err != nil {
		return "", badSubmission("job %s cannot start: %v", id, err)
	}
	m.log("job %s (%s) submitted: %d vertices, %d slots", id, name, len(g.Vertices), j.need)
	return id, nil
}

// HasArtifact implements rest.Cluster.
func (m *Master) HasArtifact(digest string) bool { return m.store.Has(digest) }

// TaskManagers implements rest.Cluster.
func (m *Master) TaskManagers() []rest.TaskManagerInfo {
	return call(m.rm, m.rm.taskManagerInfo)
}

// control adds the job's vertices to its JobMaster's status.
type control struct {
	jobmaster.Control
	j *job
}

func (c control) Status() jobmaster.Status {
	st := c.Control.Status()
	st.Vertices = c.j.vertices()
	return st
}

func trimBuiltin(s string) string {
	const p = "builtin:"
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// newID returns 32 random lower-case hex characters, like Flink's ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func profileFromPB(p *clusterpb.ResourceProfile) resource.Profile {
	if p == nil {
		return resource.Profile{}
	}
	return resource.Profile{CPU: p.CpuMillis, TaskMemory: p.TaskMemory, ManagedMemory: p.ManagedMemory,
		NetworkMemory: p.NetworkMemory, Extended: p.Extended}
}

func profileToPB(p resource.Profile) *clusterpb.ResourceProfile {
	return &clusterpb.ResourceProfile{CpuMillis: p.CPU, TaskMemory: p.TaskMemory, ManagedMemory: p.ManagedMemory,
		NetworkMemory: p.NetworkMemory, Extended: p.Extended}
}
