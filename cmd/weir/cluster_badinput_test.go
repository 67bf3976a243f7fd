//go:build unix

package main

// Bad input to a session cluster: files that are not Weir job binaries,
// binaries for another machine, TaskManagers that must be refused, junk on
// the master's ports, clients pointed at the wrong port, a savepoint of
// another job. Each must get a clear error while the cluster stays up and
// a job running through all of it is untouched.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/pb/clusterpb"
	jgpb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/internal/version"
)

// extraBuild is a binary built for one test, once per test binary.
type extraBuild struct {
	once sync.Once
	path string
	err  error
}

var extraBuilds sync.Map // name → *extraBuild

// buildExtra builds `go build -o BINDIR/name args…` with env added to the
// environment, once; it returns the binary's path. It may run on any
// goroutine: it reports failure as an error.
func buildExtra(name string, env []string, args ...string) (string, error) {
	v, _ := extraBuilds.LoadOrStore(name, &extraBuild{})
	b := v.(*extraBuild)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name)
		cmd := exec.Command("go", append([]string{"build", "-o", b.path}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	return b.path, b.err
}

// foreignArch is an architecture this machine does not run.
func foreignArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// expectCleanError checks that a process failed with an error that names
// every want, without a Go panic or goroutine dump.
func expectCleanError(s *scenario, p *proc, want ...string) {
	s.t.Helper()
	code := p.wait()
	stderr := p.stderr.String()
	if code == 0 || code == -1 {
		s.fatalf("run %d: exit status %d, want a failure", p.n, code)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic:") {
		s.fatalf("run %d: stderr holds a Go panic trace", p.n)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			s.errorf("run %d: the error does not say %q", p.n, w)
		}
	}
}

func TestClusterBadInput(t *testing.T) {
	t.Parallel()
	weir := bin(t, "weir")
	// The binaries of other versions and machines build while the cluster
	// starts.
	arch := foreignArch()
	type built struct {
		path string
		err  error
	}
	otherVersionC, foreignC := make(chan built, 1), make(chan built, 1)
	go func() {
		p, err := buildExtra("weir-9.9.9", nil, "-ldflags", "-X github.com/weirstream/weir/internal/version.Version=9.9.9", ".")
		otherVersionC <- built{p, err}
	}()
	go func() {
		p, err := buildExtra("wordcount-"+arch, []string{"GOARCH=" + arch, "CGO_ENABLED=0", "GOFLAGS="}, "../../examples/wordcount")
		foreignC <- built{p, err}
	}()

	s := newScenario(t)
	defer s.finish()
	c := startCluster(t, s, 0, 0)
	firstTM := c.addTaskManager(t, 2, "taskmanager.resource-id=tm-a")
	tmA := c.awaitTaskManagers(1)[0]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("master's log:\n%s\nTaskManager tm-a's log:\n%s", c.master.stderr.String(), firstTM.stderr.String())
		}
	})
	otherVersion, foreign := <-otherVersionC, <-foreignC
	if otherVersion.err != nil || foreign.err != nil {
		t.Fatal(errors.Join(otherVersion.err, foreign.err))
	}

	// The job that runs through all of the bad input: 20,000 lines at
	// 2,000 a second.
	input, text := writeText(t)
	out := filepath.Join(t.TempDir(), "out")
	long := c.submitDetached("-p", "2", "-D", "execution.checkpointing.interval=200ms",
		"builtin:wordcount", "--input", input, "--output", out, "--rate", "2000")
	c.awaitState(long, "RUNNING")
	s.logf("job %s running", long)

	dir := t.TempDir()
	script := filepath.Join(dir, "job.sh")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\necho this is not a weir job\n"), 0o755))
	goTool, goErr := exec.LookPath("go")
	if goErr != nil {
		t.Fatalf("the go tool: %v", goErr)
	}
	host := runtime.GOOS + "/" + runtime.GOARCH
	restAddr, rpcAddr := c.restURL, c.rpc
	weirRun := func(s *scenario, args ...string) *proc {
		return s.start(weir, append([]string{"run", "--jobmanager", restAddr}, args...)...)
	}

	// One after the other: parallel subtests would wait for the other
	// parallel tests of the package, and the job would end meanwhile.
	t.Run("input", func(t *testing.T) {
		t.Run("not a job binary", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			expectCleanError(s, weirRun(s, script), "job.sh", "not a Weir job binary", "not a Go program")
			expectCleanError(s, weirRun(s, goTool, "version"), "not a Weir job binary", "does not use Weir")
		})

		t.Run("binary for another machine", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			expectCleanError(s, weirRun(s, "-p", "2", foreign.path, "--input", input),
				"wordcount-"+arch, "built for "+runtime.GOOS+"/"+arch, "this machine runs "+host, "GOARCH="+runtime.GOARCH)
		})

		t.Run("POST /jobs with a bad artifact", func(t *testing.T) {
			graph, err := proto.Marshal(&jgpb.JobGraph{Name: "bad", Vertices: []*jgpb.JobVertex{{Id: 1, Name: "Source: x", Parallelism: 1}}})
			must(t, err)
			for _, tc := range []struct {
				path string
				want []string
			}{
				{foreign.path, []string{"built for " + runtime.GOOS + "/" + arch, "this machine runs " + host, "GOARCH=" + runtime.GOARCH}},
				{script, []string{"job.sh is a script", "not a compiled program"}},
				{goTool, []string{"is a Go program but not a Weir job", "does not use github.com/weirstream/weir"}},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				id, err := c.client.Submit(ctx, rest.SubmitRequest{JobName: "bad", JobGraph: graph}, tc.path)
				cancel()
				var ae *rest.APIError
				if !errors.As(err, &ae) || ae.StatusCode != 400 {
					t.Errorf("POST /jobs with %s: job %q, %v; want 400", tc.path, id, err)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("POST /jobs with %s: the error does not say %q: %v", tc.path, w, err)
					}
				}
			}
		})

		t.Run("TaskManager registers twice", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			p := s.start(weir, "taskmanager", "--jobmanager", rpcAddr, "--slots", "1",
				"-D", "taskmanager.resource-id=tm-a", "-D", "cluster.working-dir="+filepath.Join(dir, "tm-twice"))
			expectCleanError(s, p, "refused this TaskManager (tm-a)", "resource id tm-a is already registered", "taskmanager.resource-id")
		})

		t.Run("TaskManager of another version", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			p := s.start(otherVersion.path, "taskmanager", "--jobmanager", rpcAddr, "--slots", "1",
				"-D", "cluster.working-dir="+filepath.Join(dir, "tm-other-version"))
			expectCleanError(s, p, "refused this TaskManager", "runs weir 9.9.9", "the master runs weir "+version.Version)
		})

		t.Run("junk on the RPC port", func(t *testing.T) {
			junk := make([]byte, 64<<10)
			_, _ = rand.Read(junk)
			for _, payload := range [][]byte{
				junk,
				[]byte("GET / HTTP/1.1\r\nHost: weir\r\n\r\n"),
				[]byte("POST /weir.cluster.v1.Master/Connect HTTP/1.1\r\nHost: weir\r\nContent-Length: 5\r\n\r\nhello"),
				append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), junk...),
			} {
				sendJunk(t, rpcAddr, payload)
			}
			checkBadRPC(t, rpcAddr)
		})

		t.Run("client at a port that is no Weir REST API", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			expectCleanError(s, s.start(weir, "run", "--jobmanager", rpcAddr, "builtin:wordcount", "--input", input),
				rpcAddr+" is not a Weir or Flink REST API")
			junkAddr := serveJunk(t)
			expectCleanError(s, s.start(weir, "list", "--jobmanager", junkAddr), junkAddr+" is not a Weir or Flink REST API")
		})

		t.Run("savepoint of another job", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			trigger, err := c.client.TriggerSavepoint(ctx, long, filepath.Join(dir, "savepoints"), false)
			if err != nil {
				s.fatalf("savepoint of the running job: %v", err)
			}
			sp, err := c.client.AwaitSavepoint(ctx, long, trigger, 50*time.Millisecond, func() {})
			if err != nil {
				s.fatalf("savepoint of the running job: %v", err)
			}
			s.logf("savepoint of the wordcount job at %s", sp)
			expectCleanError(s, weirRun(s, "--from-savepoint", sp, "builtin:datagen", "--rows", "10"),
				"holds state of operator uid", "which this job does not have", "--allow-non-restored-state")
			jobs, err := c.client.Jobs(ctx)
			if err != nil {
				s.fatalf("GET /jobs/overview: %v", err)
			}
			for _, j := range jobs {
				if j.ID != long {
					s.errorf("the refused job left job %s (%s, %s) behind", j.ID, j.Name, j.State)
				}
			}
		})

		t.Run("TaskManager without a master", func(t *testing.T) {
			s := newScenario(t)
			defer s.finish()
			p := s.start(weir, "taskmanager", "--jobmanager", "127.0.0.1:1", "-D", "cluster.working-dir="+filepath.Join(dir, "tm-alone"))
			p.waitFor("the TaskManager to say it cannot reach the master", func() bool {
				return strings.Contains(p.stderr.String(), "cannot reach the master at 127.0.0.1:1")
			})
			if p.exited() {
				s.fatalf("the TaskManager exited (status %d) instead of retrying", p.code())
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				s.fatalf("SIGTERM: %v", err)
			}
			if code := p.wait(); code != 0 {
				s.fatalf("the TaskManager exited with status %d after SIGTERM, want 0", code)
			}
		})
	})

	// The cluster is up, the first TaskManager is the same process and
	// kept its registration, and the job ran on through all of it.
	d, err := c.client.Job(context.Background(), long)
	if err != nil {
		s.fatalf("GET /jobs/%s: %v", long, err)
	}
	if d.State != "RUNNING" {
		s.fatalf("job %s is %s after the bad input, want it still RUNNING (the bad input took too long, or hurt it)", long, d.State)
	}
	if tms := c.awaitTaskManagers(1); tms[0].ID != "tm-a" || tms[0].PID != tmA.PID {
		s.fatalf("the registered TaskManager is %s pid %d, want tm-a pid %d", tms[0].ID, tms[0].PID, tmA.PID)
	}
	s.logf("bad input over; the job is %s", d.State)
	c.awaitState(long, "FINISHED")
	s.logf("the job finished")
	got, hidden, err := committedOutput(out)
	if err != nil || len(hidden) > 0 {
		s.fatalf("output: %v, pending files %v", err, hidden)
	}
	checkCounts(t, parseCounts(t, got), countWords(text))
	if d, err = c.client.Job(context.Background(), long); err != nil {
		s.fatalf("GET /jobs/%s: %v", long, err)
	}
	if d.Timestamps["RESTARTING"] != 0 || d.Timestamps["FAILING"] != 0 {
		s.fatalf("job %s restarted during the bad input: %v", long, d.Timestamps)
	}
	c.master.waitFor("the job's slots to be free", func() bool { return c.freeSlots() == 2 })
	if firstTM.exited() || c.master.exited() {
		s.fatalf("the master or the first TaskManager exited")
	}
	if stored, _ := os.ReadDir(filepath.Join(c.dir, "master", "artifacts")); len(stored) != 0 {
		s.fatalf("the master stored %d files of refused artifacts", len(stored))
	}
	for _, l := range []string{"panic", "goroutine "} {
		if strings.Contains(c.master.stderr.String(), l) || strings.Contains(firstTM.stderr.String(), l) {
			s.fatalf("the master's or the TaskManager's log holds %q", l)
		}
	}
}

// sendJunk writes payload to addr and reads what comes back until the
// peer closes the connection (or 5 s pass).
func sendJunk(t *testing.T, addr string, payload []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(payload)
	_, _ = io.Copy(io.Discard, conn)
}

// checkBadRPC makes calls to the master that break its protocol; each
// must be refused with the status code that says why.
func checkBadRPC(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := clusterpb.NewMasterClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	firstMessage := func(what string, m *clusterpb.TaskManagerMessage, want codes.Code) {
		stream, err := client.Connect(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := stream.Send(m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		_, err = stream.Recv()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	firstMessage("a TaskManager session that starts with a heartbeat",
		&clusterpb.TaskManagerMessage{Msg: &clusterpb.TaskManagerMessage_Heartbeat{Heartbeat: &clusterpb.Heartbeat{Seq: 1}}}, codes.InvalidArgument)
	firstMessage("a registration without resource id",
		&clusterpb.TaskManagerMessage{Msg: &clusterpb.TaskManagerMessage_Register{Register: &clusterpb.RegisterTaskManager{Version: version.Version}}}, codes.InvalidArgument)

	attach, err := client.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := attach.Send(&clusterpb.WorkerMessage{Msg: &clusterpb.WorkerMessage_Hello{Hello: &clusterpb.WorkerHello{JobId: "nosuchjob"}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := attach.Recv(); err != nil || !strings.Contains(m.GetRefused().GetReason(), "job nosuchjob is not running") {
		t.Errorf("a worker of an unknown job: %v, %v; want it refused", m, err)
	}

	for digest, want := range map[string]codes.Code{"../../etc/passwd": codes.InvalidArgument, strings.Repeat("ab", 32): codes.NotFound} {
		stream, err := client.FetchArtifact(ctx, &clusterpb.FetchArtifactRequest{Digest: digest})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != want {
			t.Errorf("FetchArtifact %q: %v, want %v", digest, err, want)
		}
	}
}

// serveJunk listens on a loopback port that answers every connection
// with bytes that are no protocol at all; it returns the address.
func serveJunk(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte("\x00\x01junk\xff\xfe not a protocol\r\n\r\n"))
			conn.Close()
		}
	}()
	return ln.Addr().String()
}
