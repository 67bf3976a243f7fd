package minicluster_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

// Recovery time of the embedded cluster: how long a job with a given amount
// of keyed state takes from a failure to running again with its state
// restored.
//
// The job (source → key by → keyed process → sink, parallelism 2) fills
// keyed ValueState with 1 KiB incompressible values, one per key
// (stateBytes / 1 KiB keys), then goes on updating a few keys every 5 ms.
// Once a checkpoint that holds every key has completed, the keyed operator
// panics once; the restart strategy (fixed-delay, delay 0) restarts the job
// from the latest checkpoint. The clock runs from the panic until every
// keyed subtask has processed a record after its restore, in four phases:
//
//	panic ── teardown ──▶ "job failed" ── read ──▶ deployed ── load ──▶ restored ── first-record ──▶ running
//
//   - teardown: the failed attempt's tasks end and dispose of their
//     backends; the job master logs "job failed" when all have.
//   - read: the job master reads the checkpoint's metadata and keyed state
//     files and decodes them (canonical checkpoints; incremental ones are
//     only listed here), then deploys the new attempt: its first task
//     opens (a source, or a sink, which opens before the keyed operator it
//     is chained to).
//   - load: every keyed subtask restores its key groups into a new backend
//     (Pebble: writes them into a new DB, or opens the checkpoint's SSTs);
//     it ends when the last keyed subtask's Open returned.
//   - first-record: until every keyed subtask has processed a record.
//
// The signals are the job master's progress lines on stderr, which the
// harness reads, and the job's own functions (recoveryProbe): nothing in the
// product is instrumented.

var restartProfile = flag.String("weir.restart-cpuprofile", "",
	"write CPU profiles of each restart of BenchmarkRecovery, one per phase, to PREFIX-<backend>-<size>-<run>-<phase>.pprof")

// BenchmarkRecovery measures restart-to-running time after a failure, per
// state backend and state size; each op is one job with one failure. It
// reports the restart time, its CPU time (user+system, all goroutines) and
// its phases (see above) as metrics, and logs each run's figures. Each
// backend and size runs in two modes: checkpointing (every 1 s, no pause:
// with 1 GiB a checkpoint takes longer than that, so one is always in flight
// when the job fails, and the failed attempt's part of it overlaps the
// restart) and quiet (a 30 s min-pause, so none is):
//
//	go test ./internal/minicluster/ -run '^$' -bench Recovery -benchtime 1x
//	go test ./internal/minicluster/ -run '^$' -bench 'Recovery/pebble/1GiB/quiet' -benchtime 1x -weir.restart-cpuprofile /tmp/restart
func BenchmarkRecovery(b *testing.B) {
	for _, backend := range []struct {
		name, typ   string
		incremental bool
	}{
		{"hashmap", "hashmap", false},
		{"pebble", "pebble", false},
		{"pebble-incremental", "pebble", true},
	} {
		for _, size := range []struct {
			name  string
			bytes int64
		}{
			{"10MiB", 10 << 20},
			{"1GiB", 1 << 30},
		} {
			for _, mode := range []struct {
				name     string
				minPause time.Duration
			}{
				{"checkpointing", 0},
				{"quiet", recoveryQuietPause},
			} {
				name := backend.name + "/" + size.name + "/" + mode.name
				b.Run(name, func(b *testing.B) {
					var total, cpu time.Duration
					var phases [len(restartPhases)]time.Duration
					for i := range b.N {
						f := recoveryRun{
							backend: backend.typ, incremental: backend.incremental, stateBytes: size.bytes,
							parallelism: 2, interval: time.Second, minPause: mode.minPause, profile: profilePrefix(name, i),
						}.exec(b)
						b.Logf("%s", f)
						total, cpu = total+f.total(), cpu+f.cpuTime()
						for j := range phases {
							phases[j] += f.phase(j)
						}
					}
					n := float64(b.N)
					b.ReportMetric(ms(total)/n, "restart-ms")
					b.ReportMetric(ms(cpu)/n, "restart-cpu-ms")
					for j, name := range restartPhases {
						b.ReportMetric(ms(phases[j])/n, name+"-ms")
					}
				})
			}
		}
	}
}

// recoveryQuietPause is the min-pause between checkpoints of the quiet
// runs: long enough that the fill ends before the second checkpoint and the
// restart ends before the next, so no checkpoint is in flight when the job
// fails.
const recoveryQuietPause = 30 * time.Second

// profilePrefix is where run i of a benchmark writes its CPU profiles.
func profilePrefix(name string, i int) string {
	if *restartProfile == "" {
		return ""
	}
	return fmt.Sprintf("%s-%s-%d", *restartProfile, strings.ReplaceAll(name, "/", "-"), i)
}

// TestRecoveryRestoresState runs the benchmark's job with 10 MiB of state
// on each backend, with checkpoints every 100 ms, and checks what it relies
// on: one failure, one restart from a checkpoint taken after every key was
// written, and every record after the restart finds its key's value.
func TestRecoveryRestoresState(t *testing.T) {
	for _, backend := range []struct {
		typ         string
		incremental bool
	}{{"hashmap", false}, {"pebble", false}, {"pebble", true}} {
		t.Run(fmt.Sprintf("%s/incremental=%v", backend.typ, backend.incremental), func(t *testing.T) {
			f := recoveryRun{backend: backend.typ, incremental: backend.incremental, stateBytes: 10 << 20,
				parallelism: 2, interval: 100 * time.Millisecond}.exec(t)
			t.Logf("%s", f)
			if f.restoredFrom < f.fullCheckpoint {
				t.Errorf("restarted from checkpoint %d, but checkpoint %d was the first to hold every key", f.restoredFrom, f.fullCheckpoint)
			}
			if f.checked == 0 || f.missing != 0 {
				t.Errorf("after the restart %d of %d records found no or a wrong value for their key", f.missing, f.checked)
			}
		})
	}
}

// recoveryValueSize is the size of each key's value.
const recoveryValueSize = 1 << 10

// recoveryRun is one run of the recovery job.
type recoveryRun struct {
	backend     string // hashmap or pebble
	incremental bool
	stateBytes  int64
	parallelism int
	interval    time.Duration // checkpoint interval
	minPause    time.Duration // between checkpoints
	profile     string        // CPU profile of the restart window; "" for none
}

// The steps of a restart, in order.
type restartStep int

const (
	// stepFailed: the keyed operator panics.
	stepFailed restartStep = iota
	// stepDetected: the job master logs "job failed": every task of the
	// failed attempt has ended and disposed of its backends.
	stepDetected
	// stepDeployed: the first task of the new attempt starts (the first
	// Open of a source, or of the sink, which opens before the keyed
	// operator it is chained to): the job master has read and decoded the
	// checkpoint.
	stepDeployed
	// stepRestored: the last keyed subtask's Open returned, with its state
	// in its backend.
	stepRestored
	// stepRunning: every keyed subtask has processed a record.
	stepRunning
	numRestartSteps
)

// restartPhases names the phase from each step to the next.
var restartPhases = [numRestartSteps - 1]string{"teardown", "read", "load", "first-record"}

// recoveryFigures is what a run measured.
type recoveryFigures struct {
	keys           int64
	fill           time.Duration // from the start until every key was written
	fullCheckpoint int64         // the first checkpoint that held every key
	restoredFrom   int64         // the checkpoint the restart used
	// inFlight is set when a keyed subtask had taken its snapshot for a
	// checkpoint after restoredFrom when the job failed: that checkpoint's
	// work overlapped the restart.
	inFlight        bool
	checkpointBytes int64 // its size in storage
	// at and cpu are each step's instant and the process's CPU time
	// (user+system) then.
	at               [numRestartSteps]time.Time
	cpu              [numRestartSteps]time.Duration
	checked, missing int64 // records after the restart; those without their value
}

// total is the restart time: from the failure to running.
func (f recoveryFigures) total() time.Duration { return f.at[stepRunning].Sub(f.at[stepFailed]) }

// phase is the wall-clock time of phase i (restartPhases[i]).
func (f recoveryFigures) phase(i int) time.Duration { return f.at[i+1].Sub(f.at[i]) }

// cpuTime is the CPU time of the whole restart.
func (f recoveryFigures) cpuTime() time.Duration { return f.cpu[stepRunning] - f.cpu[stepFailed] }

func (f recoveryFigures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d keys, filled in %.2fs; checkpoint %d (%.1f MiB; the first with every key: %d); restart %.1f ms (CPU %.2f s) =",
		f.keys, f.fill.Seconds(), f.restoredFrom, float64(f.checkpointBytes)/(1<<20), f.fullCheckpoint, ms(f.total()), f.cpuTime().Seconds())
	for i, name := range restartPhases {
		if i > 0 {
			b.WriteString(" +")
		}
		fmt.Fprintf(&b, " %s %.1f (CPU %.2f s)", name, ms(f.phase(i)), (f.cpu[i+1] - f.cpu[i]).Seconds())
	}
	fmt.Fprintf(&b, "; %d records checked after the restart", f.checked)
	if f.inFlight {
		b.WriteString("; a checkpoint was in flight at the failure")
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// recoveryProbe is shared by the job's functions (every subtask's copy
// points to it) and the harness.
type recoveryProbe struct {
	keys        int64
	parallelism int
	// profile, if not empty, is the prefix of a CPU profile per phase of
	// the restart: profile-<phase>.pprof.
	profile string

	filled  atomic.Int64 // keys written for the first time
	failNow atomic.Bool  // set once a checkpoint with every key completed
	failed  atomic.Bool  // the keyed operator panicked
	checked atomic.Int64
	missing atomic.Int64
	running chan struct{} // closed when every keyed subtask had a record after the restart

	mu struct {
		sync.Mutex
		filled       time.Time
		full         int64         // first checkpoint in which every keyed subtask had all its keys
		lastSnapshot int64         // newest checkpoint a keyed subtask snapshotted before the failure
		fullSubtasks map[int64]int // checkpoint → keyed subtasks whose snapshot had all their keys
		at           [numRestartSteps]time.Time
		cpu          [numRestartSteps]time.Duration
		opened       int // keyed subtasks of the new attempt opened
		first        int // … and that had a record
		profile      *os.File
		profileErr   error
	}
}

func (p *recoveryProbe) markFilled() {
	p.mu.Lock()
	p.mu.filled = time.Now()
	p.mu.Unlock()
}

// snapshotted is told that a keyed subtask snapshotted for checkpoint id,
// with all its keys if full.
func (p *recoveryProbe) snapshotted(id int64, full bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.failed.Load() {
		p.mu.lastSnapshot = max(p.mu.lastSnapshot, id)
	}
	if !full {
		return
	}
	if p.mu.fullSubtasks[id]++; p.mu.fullSubtasks[id] == p.parallelism && p.mu.full == 0 {
		p.mu.full = id
	}
}

// committed is told that checkpoint id completed; once one holding every
// key has, the keyed operator fails at its next record.
func (p *recoveryProbe) committed(id int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.full != 0 && id >= p.mu.full {
		p.failNow.Store(true)
	}
}

// mark records step s, the first time it is reached, and moves the CPU
// profile on to the next phase.
func (p *recoveryProbe) mark(s restartStep) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.markLocked(s)
}

func (p *recoveryProbe) markLocked(s restartStep) {
	if !p.mu.at[s].IsZero() {
		return
	}
	p.mu.at[s], p.mu.cpu[s] = time.Now(), processCPUTime()
	if p.profile == "" || p.mu.profileErr != nil {
		return
	}
	if p.mu.profile != nil {
		pprof.StopCPUProfile()
		p.mu.profileErr = p.mu.profile.Close()
		p.mu.profile = nil
	}
	if int(s) >= len(restartPhases) || p.mu.profileErr != nil {
		return
	}
	f, err := os.Create(p.profile + "-" + restartPhases[s] + ".pprof")
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
			f = nil
		}
	}
	p.mu.profile, p.mu.profileErr = f, err
}

// keyedOpened is told that a keyed subtask of the new attempt opened, with
// its state restored.
func (p *recoveryProbe) keyedOpened() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.opened++; p.mu.opened == p.parallelism {
		p.markLocked(stepRestored)
	}
}

// firstRecord is told that a keyed subtask of the new attempt processed its
// first record.
func (p *recoveryProbe) firstRecord() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.first++; p.mu.first == p.parallelism {
		p.markLocked(stepRunning)
		close(p.running)
	}
}

// update is one input record: key Key gets a new value. Seq < keys fills
// the state, one new key each; later ones overwrite.
type update struct{ Key, Seq int64 }

// fillSource emits updates 0, 1, 2, … for key Seq mod keys: the first keys
// as fast as the job takes them, then a few per Read, which the runtime
// calls about every 5 ms (NothingAvailable), so that the job keeps running
// with records flowing and little to do. It is checkpointed, so a restored
// job does not fill again.
type fillSource struct{ p *recoveryProbe }

func (s fillSource) Open(ctx connector.SourceContext) (connector.SourceReader[update], error) {
	if len(ctx.Restored) > 0 {
		s.p.mark(stepDeployed)
	}
	share, err := source.NewIndexShare(ctx, -1)
	if err != nil {
		return nil, err
	}
	return &fillReader{keys: s.p.keys, share: share}, nil
}

type fillReader struct {
	keys  int64
	share *source.IndexShare
}

func (r *fillReader) Read(out connector.SourceOutput[update]) (connector.ReadStatus, error) {
	for n := 0; n < 1024; n++ {
		i, _ := r.share.Next()
		out.Collect(update{Key: i % r.keys, Seq: i})
		if i >= r.keys && n >= 3 {
			return connector.NothingAvailable, nil
		}
	}
	return connector.MoreAvailable, nil
}

func (r *fillReader) SnapshotState() ([]byte, error) { return r.share.SnapshotState() }
func (r *fillReader) Close() error                   { return nil }

// keyedValues keeps one recoveryValueSize value per key, and fails once
// when the probe says so.
type keyedValues struct {
	p     *recoveryProbe
	value stream.ValueState[[]byte]
	// restored is set in the subtasks of the attempt after the failure;
	// seen once such a subtask had a record.
	restored, seen bool
}

func (f *keyedValues) Open(rc *stream.RuntimeContext) (err error) {
	// On a restore the keyed state is in the backend before Open runs;
	// the heap backend decodes it when the state is declared here.
	f.value, err = stream.ValueStateOf[[]byte](rc, "value")
	if f.p.failed.Load() {
		f.restored = true
		f.p.keyedOpened()
	}
	return err
}

func (f *keyedValues) ProcessElement(_ *stream.KeyedContext[int64, int64], u update) error {
	switch {
	case f.restored:
		v, ok := f.value.Value()
		f.p.checked.Add(1)
		if !ok || len(v) != recoveryValueSize || int64(binary.LittleEndian.Uint64(v)) != u.Key {
			f.p.missing.Add(1)
		}
		if !f.seen {
			f.seen = true
			f.p.firstRecord()
		}
	case f.p.failNow.Load() && f.p.failed.CompareAndSwap(false, true):
		f.p.mark(stepFailed)
		panic("recovery benchmark: injected failure")
	}
	f.value.Update(recoveryValue(u))
	if u.Seq < f.p.keys && !f.restored && f.p.filled.Add(1) == f.p.keys {
		f.p.markFilled()
	}
	return nil
}

// SnapshotState implements stream.CheckpointedFunction, only to see which
// checkpoints hold all of the subtask's keys (all are written once the
// count of every subtask's new keys has reached them), and which was the
// newest when the job failed.
func (f *keyedValues) SnapshotState(ctx *stream.SnapshotContext) ([]byte, error) {
	f.p.snapshotted(ctx.CheckpointID(), f.p.filled.Load() == f.p.keys)
	return nil, nil
}

func (f *keyedValues) RestoreState(*stream.RestoreContext) error { return nil }

// recoveryValue is the value update u writes: its key, its sequence number,
// then bytes no compressor shrinks.
func recoveryValue(u update) []byte {
	v := make([]byte, recoveryValueSize)
	binary.LittleEndian.PutUint64(v, uint64(u.Key))
	binary.LittleEndian.PutUint64(v[8:], uint64(u.Seq))
	x := uint64(u.Seq)*0x9E3779B97F4A7C15 + 1
	for i := 16; i < len(v); i += 8 {
		// xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint64(v[i:], x*0x2545F4914F6CDD1D)
	}
	return v
}

// commitSink writes nothing; its two-phase commits tell the probe which
// checkpoints completed (the job's functions see no completions otherwise).
type commitSink struct{ p *recoveryProbe }

func (s commitSink) Open(ctx connector.SinkContext) (connector.SinkWriter[int64], error) {
	if ctx.RestoredCheckpoint > 0 {
		s.p.mark(stepDeployed)
	}
	return commitWriter(s), nil
}

type commitWriter struct{ p *recoveryProbe }

func (commitWriter) Write(int64, int64) error { return nil }
func (commitWriter) Finish() error            { return nil }
func (commitWriter) Close() error             { return nil }

func (commitWriter) PrepareCommit(checkpoint int64) ([]byte, error) {
	return binary.AppendVarint(nil, checkpoint), nil
}

func (w commitWriter) Commit(pending [][]byte) error {
	for _, d := range pending {
		if id, n := binary.Varint(d); n > 0 {
			w.p.committed(id)
		}
	}
	return nil
}

// stderrLines reads what the process writes to os.Stderr while it runs,
// with the time each line arrived: the embedded cluster's progress lines
// ("job failed: …", "restarting from checkpoint …") go there.
type stderrLines struct {
	orig *os.File
	w    *os.File
	done chan struct{}
	mu   sync.Mutex
	seen []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

// captureStderr swaps os.Stderr for a pipe until stop; onLine is called
// with each line as it arrives.
func captureStderr(tb testing.TB, onLine func(string)) *stderrLines {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	c := &stderrLines{orig: os.Stderr, w: w, done: make(chan struct{})}
	os.Stderr = w
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.seen = append(c.seen, timedLine{time.Now(), sc.Text()})
			c.mu.Unlock()
			onLine(sc.Text())
		}
		_, _ = io.Copy(io.Discard, r)
		r.Close()
	}()
	return c
}

// stop restores os.Stderr and returns the lines read.
func (c *stderrLines) stop() []timedLine {
	os.Stderr = c.orig
	c.w.Close()
	<-c.done
	return c.seen
}

// find returns the first line that matches re, with its submatches.
func (c *stderrLines) find(re *regexp.Regexp) (timedLine, []string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.seen {
		if m := re.FindStringSubmatch(l.text); m != nil {
			return l, m, true
		}
	}
	return timedLine{}, nil, false
}

var (
	jobFailedLine  = regexp.MustCompile(`^weir: job failed: `)
	restartingLine = regexp.MustCompile(`^weir: restarting from checkpoint (\d+) `)
)

// exec runs the job to its restart, then cancels it.
func (r recoveryRun) exec(tb testing.TB) recoveryFigures {
	tb.Helper()
	dir := tb.TempDir()
	ckptDir := filepath.Join(dir, "ckpt")
	p := &recoveryProbe{keys: r.stateBytes / recoveryValueSize, parallelism: r.parallelism, profile: r.profile,
		running: make(chan struct{})}
	p.mu.fullSubtasks = map[int64]int{}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// Not quiet: the progress lines are the job master's signals.
	launch.Set(&launch.Settings{Context: ctx})
	defer launch.Set(nil)
	env := stream.NewEnvironment()
	env.SetParallelism(r.parallelism)
	for k, v := range map[string]string{
		"state.backend.type":                    r.backend,
		"execution.checkpointing.incremental":   strconv.FormatBool(r.incremental),
		"execution.checkpointing.interval":      r.interval.String(),
		"execution.checkpointing.min-pause":     r.minPause.String(),
		"state.checkpoints.dir":                 ckptDir,
		"state.backend.pebble.localdir":         filepath.Join(dir, "local"),
		"restart-strategy.type":                 "fixed-delay",
		"restart-strategy.fixed-delay.delay":    "0s",
		"restart-strategy.fixed-delay.attempts": "1",
		"rest.enabled":                          "false",
	} {
		if err := env.Configure(k, v); err != nil {
			tb.Fatal(err)
		}
	}
	updates := stream.FromSource(env, "updates", fillSource{p}).UID("updates")
	values := stream.Process(stream.KeyBy(updates, func(u update) int64 { return u.Key }), "values",
		stream.KeyedProcessFunction[int64, update, int64](&keyedValues{p: p})).UID("values")
	stream.SinkTo(values, "commits", commitSink{p}).UID("commits")

	// The checkpoint's size is taken as the job master reads it: no newer
	// checkpoint can complete (and remove it) while the job restarts.
	var ckptBytes int64
	lines := captureStderr(tb, func(l string) {
		if jobFailedLine.MatchString(l) {
			p.mark(stepDetected)
		}
		if m := restartingLine.FindStringSubmatch(l); m != nil && ckptBytes == 0 {
			id, _ := strconv.ParseInt(m[1], 10, 64)
			ckptBytes = checkpointSize(ckptDir, id)
		}
	})
	start := time.Now()
	ended := make(chan error, 1)
	go func() { ended <- env.ExecuteContext(ctx, "recovery") }()
	var err error
	select {
	case <-p.running:
		cancel()
		err = <-ended
	case err = <-ended:
	}
	seen := lines.stop()
	if !errors.Is(err, stream.ErrJobCanceled) {
		for _, l := range seen {
			tb.Log(l.text)
		}
		tb.Fatalf("recovery job ended with %v before it ran again after its failure (timed out?)", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.profileErr != nil {
		tb.Errorf("restart CPU profile: %v", p.mu.profileErr)
	}
	f := recoveryFigures{keys: p.keys, fill: p.mu.filled.Sub(start), fullCheckpoint: p.mu.full, at: p.mu.at, cpu: p.mu.cpu,
		checked: p.checked.Load(), missing: p.missing.Load()}
	_, m, ok := lines.find(restartingLine)
	if !ok || p.mu.at[stepDetected].IsZero() {
		for _, l := range seen {
			tb.Log(l.text)
		}
		tb.Fatalf("the job master logged no failure and restart from a checkpoint")
	}
	for s := range numRestartSteps {
		if p.mu.at[s].IsZero() {
			tb.Fatalf("restart step %d not seen: %v", s, p.mu.at)
		}
	}
	f.restoredFrom, _ = strconv.ParseInt(m[1], 10, 64)
	f.inFlight = p.mu.lastSnapshot > f.restoredFrom
	// The log line is timestamped as the harness reads it, which may trail
	// the deployment by a scheduling delay when the read takes no time.
	if f.at[stepDetected].After(f.at[stepDeployed]) {
		f.at[stepDetected], f.cpu[stepDetected] = f.at[stepDeployed], f.cpu[stepDeployed]
	}
	f.checkpointBytes = ckptBytes
	return f
}

// checkpointSize is the size of checkpoint id's files in storage: its own
// directory and, for incremental checkpoints, the job's shared files (all
// of which the latest checkpoint names when only one is retained).
func checkpointSize(ckptDir string, id int64) int64 {
	var n int64
	jobs, _ := filepath.Glob(filepath.Join(ckptDir, "*"))
	for _, job := range jobs {
		name := filepath.Base(job)
		for _, d := range []string{storage.CheckpointDir(name, id), storage.Join(name, storage.SharedDirName)} {
			d = filepath.Join(ckptDir, filepath.FromSlash(d))
			_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if info, err := e.Info(); err == nil {
						n += info.Size()
					}
				}
				return nil
			})
		}
	}
	return n
}
