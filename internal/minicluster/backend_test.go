package minicluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/launch"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

// The state backend tests run a job through the embedded cluster's real
// job master: a keyed running sum and an event-time window (keyed state
// with namespaces, and timers) over a generated, rate-limited input,
// written exactly once to a file. A run is killed (canceled) once a
// checkpoint has completed, and restored from the job's checkpoints with
// another backend, parallelism or checkpoint mode; the final output must be
// exactly a failure-free run's.

// row is one input record; rowOf is the only definition of the input.
type row struct {
	ID    int64
	Key   string
	Value int64
}

func rowOf(i int64) row {
	h := uint64(i) * 0x9E3779B97F4A7C15
	return row{ID: i, Key: "k" + strconv.FormatUint(h%13, 10), Value: int64(h>>40) % 1000}
}

const (
	testRows = 24000
	testRate = 12000 // rows per second: the job runs for about 2 s
)

// jobRun is one run of the test job.
type jobRun struct {
	backend     string // hashmap or pebble
	incremental bool
	parallelism int // of the keyed operators (the source has 1)
	ckptDir     string
	localDir    string
	out         string
	from        string // a job's checkpoint directory to restore from
	// kill cancels the run once a checkpoint has completed.
	kill bool
}

// result is what a run saw.
type result struct {
	jobDir string // the job's checkpoint directory
	// local lists the backend directories in the job's local directory
	// when the checkpoint that killed the run had completed.
	local []string
}

func (r jobRun) exec(t *testing.T) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	launch.Set(&launch.Settings{Quiet: true, Context: ctx, FromSavepoint: r.from})
	defer launch.Set(nil)

	env := stream.NewEnvironment()
	env.SetParallelism(r.parallelism)
	for k, v := range map[string]string{
		"state.backend.type":                  r.backend,
		"execution.checkpointing.incremental": strconv.FormatBool(r.incremental),
		"execution.checkpointing.interval":    "100ms",
		"state.checkpoints.dir":               r.ckptDir,
		"state.checkpoints.num-retained":      "2",
		"state.backend.pebble.localdir":       r.localDir,
		"restart-strategy.type":               "none",
	} {
		if err := env.Configure(k, v); err != nil {
			t.Fatal(err)
		}
	}
	src := stream.FromSource(env, "rows", source.RateLimited(source.Generator(testRows, rowOf), testRate),
		stream.WithTimestampAssigner(stream.ForMonotonousTimestamps[row](), func(r row) int64 { return r.ID })).
		SetParallelism(1).UID("rows")
	keyed := stream.KeyBy(src, func(r row) string { return r.Key })
	sums := keyed.Reduce("sum", func(a, b row) row { return row{ID: b.ID, Key: a.Key, Value: a.Value + b.Value} }).UID("sum")
	windows := stream.Window(keyed, stream.TumblingEventTimeWindows(500*time.Millisecond)).
		Reduce("window", func(a, b row) row { return row{ID: max(a.ID, b.ID), Key: a.Key, Value: a.Value + b.Value} }).UID("window")
	lines := stream.Map(sums, "format-sum", func(r row) string { return fmt.Sprintf("sum %s %d %d", r.Key, r.ID, r.Value) }).
		Union(stream.Map(windows, "format-window", func(r row) string { return fmt.Sprintf("window %s %d %d", r.Key, r.ID, r.Value) }))
	stream.SinkTo(lines, "out", sink.Lines(r.out)).SetParallelism(1).UID("out")

	var res result
	watch := make(chan struct{})
	killed := make(chan struct{})
	if r.kill {
		go func() {
			defer close(killed)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-watch:
					return
				case <-tick.C:
				}
				// Checkpoints do not overlap (max-concurrent-checkpoints
				// is 1), so once two have metadata the older completed:
				// the newer may yet be aborted, and deleted, as the job
				// is canceled.
				if m, _ := filepath.Glob(filepath.Join(r.ckptDir, "*", "chk-*", storage.MetadataName)); len(m) >= 2 {
					res.local, _ = filepath.Glob(filepath.Join(r.localDir, "weir-*", "kg*"))
					cancel()
					return
				}
			}
		}()
	} else {
		close(killed)
	}
	err := env.ExecuteContext(ctx, "backend-test")
	close(watch)
	<-killed
	switch {
	case r.kill && !errors.Is(err, stream.ErrJobCanceled):
		t.Fatalf("run to be killed after a checkpoint ended with %v instead (too fast? %d rows at %d/s)", err, testRows, testRate)
	case !r.kill && err != nil:
		t.Fatalf("run failed: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(r.ckptDir, "*")); len(m) == 1 {
		res.jobDir = m[0]
	} else {
		t.Fatalf("checkpoint directory %s holds %q, want one job", r.ckptDir, m)
	}
	// Backends are disposed of when their tasks end, and the job's local
	// directory when the job does, killed or not.
	if m, _ := filepath.Glob(filepath.Join(r.localDir, "*")); len(m) > 0 {
		t.Errorf("local state left after the run: %q", m)
	}
	return res
}

// lines returns the sorted lines of file.
func lines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	slices.Sort(out)
	return out
}

// reference is the output of a failure-free run, computed once.
var reference []string

func referenceOutput(t *testing.T) []string {
	t.Helper()
	if reference == nil {
		dir := t.TempDir()
		jobRun{backend: "hashmap", parallelism: 2, ckptDir: filepath.Join(dir, "ckpt"), localDir: filepath.Join(dir, "local"),
			out: filepath.Join(dir, "out.txt")}.exec(t)
		reference = lines(t, filepath.Join(dir, "out.txt"))
		if len(reference) < testRows {
			t.Fatalf("reference run wrote %d lines for %d rows", len(reference), testRows)
		}
	}
	return reference
}

// killAndRestore kills a run with first's settings after a checkpoint and
// restores it with second's; the output must be the failure-free run's.
func killAndRestore(t *testing.T, first, second jobRun) (killed, restored result) {
	t.Helper()
	want := referenceOutput(t)
	dir := t.TempDir()
	first.ckptDir, first.localDir, first.out, first.kill = filepath.Join(dir, "ckpt-1"), filepath.Join(dir, "local-1"), filepath.Join(dir, "out.txt"), true
	killed = first.exec(t)
	second.ckptDir, second.localDir, second.out, second.from = filepath.Join(dir, "ckpt-2"), filepath.Join(dir, "local-2"), first.out, killed.jobDir
	restored = second.exec(t)
	if got := lines(t, first.out); !slices.Equal(got, want) {
		t.Fatalf("output after kill and restore differs from a failure-free run: %d lines, want %d\n%s", len(got), len(want), diff(want, got))
	}
	return killed, restored
}

// diff shows the first few lines only one side has.
func diff(want, got []string) string {
	var b strings.Builder
	n := 0
	for _, l := range want {
		if _, found := slices.BinarySearch(got, l); !found && n < 10 {
			fmt.Fprintf(&b, "- %s\n", l)
			n++
		}
	}
	for _, l := range got {
		if _, found := slices.BinarySearch(want, l); !found && n < 20 {
			fmt.Fprintf(&b, "+ %s\n", l)
			n++
		}
	}
	return b.String()
}

func TestCheckpointOnHeapRestoresOnPebble(t *testing.T) {
	killAndRestore(t, jobRun{backend: "hashmap", parallelism: 2}, jobRun{backend: "pebble", parallelism: 2})
}

func TestCheckpointOnPebbleRestoresOnHeap(t *testing.T) {
	killed, _ := killAndRestore(t, jobRun{backend: "pebble", parallelism: 2}, jobRun{backend: "hashmap", parallelism: 2})
	// The running sum's two subtasks (windows keep their own state).
	if len(killed.local) != 2 {
		t.Errorf("pebble run had backend directories %q, want 2", killed.local)
	}
}

// checkpoints reads the complete checkpoints of the job in jobDir, oldest
// first, and lists its shared directory (storage names).
func checkpoints(t *testing.T, jobDir string) (mds []*pb.Metadata, shared []string) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, filepath.Dir(jobDir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	job := filepath.Base(jobDir)
	dirs, _ := filepath.Glob(filepath.Join(jobDir, "chk-*"))
	slices.SortFunc(dirs, func(a, b string) int {
		x, _ := storage.ParseCheckpointDir(filepath.Base(a))
		y, _ := storage.ParseCheckpointDir(filepath.Base(b))
		return int(x - y)
	})
	for _, d := range dirs {
		id, _ := storage.ParseCheckpointDir(filepath.Base(d))
		md, err := storage.ReadMetadata(ctx, st, storage.CheckpointLocation(job, id))
		if err != nil {
			t.Errorf("checkpoint %s: %v", d, err)
			continue
		}
		mds = append(mds, md)
	}
	files, err := st.ListAll(ctx, storage.Join(job, storage.SharedDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		shared = append(shared, f.Name)
	}
	return mds, shared
}

// nativeSubtasks counts the subtasks of md with native keyed state, and
// returns the shared files they name (storage names).
func nativeSubtasks(t *testing.T, md *pb.Metadata) (n int, shared []string) {
	t.Helper()
	loc := storage.CheckpointLocation(md.JobId, md.CheckpointId)
	for _, op := range md.Operators {
		for _, sub := range op.Subtasks {
			ns := sub.GetNativeKeyedState()
			if ns == nil {
				continue
			}
			n++
			if ns.Backend != "pebble" || len(ns.PrivateFiles) == 0 {
				t.Errorf("checkpoint %d operator %q subtask %d: native state %v", md.CheckpointId, op.Uid, sub.Subtask, ns)
			}
			for _, f := range ns.SharedFiles {
				name, err := loc.Resolve(f.File)
				if err != nil {
					t.Fatal(err)
				}
				shared = append(shared, name)
			}
		}
	}
	return n, shared
}

// checkIncremental checks the checkpoints of a finished job that took
// incremental checkpoints: the retained ones hold the sum's subtasks as
// native state, and the shared directory holds exactly the files they
// name. (Whether the newest reuses files of the one before depends on
// Pebble's compactions of this small state; the jobmaster package tests
// reuse deterministically.)
func checkIncremental(t *testing.T, jobDir string, subtasks int) {
	t.Helper()
	mds, shared := checkpoints(t, jobDir)
	if len(mds) == 0 || len(mds) > 2 {
		t.Fatalf("%d checkpoints retained, want 1 or 2 (state.checkpoints.num-retained=2)", len(mds))
	}
	var named []string
	for _, md := range mds {
		n, files := nativeSubtasks(t, md)
		if n != subtasks {
			t.Errorf("checkpoint %d has %d subtasks with native keyed state, want %d", md.CheckpointId, n, subtasks)
		}
		named = append(named, files...)
	}
	slices.Sort(named)
	named = slices.Compact(named)
	slices.Sort(shared)
	if !slices.Equal(named, shared) {
		t.Errorf("shared directory holds %q,\nretained checkpoints name %q", shared, named)
	}
}

func TestIncrementalCheckpointsRestoreNatively(t *testing.T) {
	killed, restored := killAndRestore(t, jobRun{backend: "pebble", incremental: true, parallelism: 2},
		jobRun{backend: "pebble", incremental: true, parallelism: 2})
	// The checkpoint restored from held native state.
	st, err := storage.Open(context.Background(), filepath.Dir(killed.jobDir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	found, err := storage.Latest(context.Background(), st, filepath.Base(killed.jobDir))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := nativeSubtasks(t, found.Metadata); n != 2 {
		t.Errorf("killed run's checkpoint %d has %d subtasks with native state, want 2", found.Metadata.CheckpointId, n)
	}
	checkIncremental(t, restored.jobDir, 2)
}

func TestIncrementalCheckpointsRescale(t *testing.T) {
	_, restored := killAndRestore(t, jobRun{backend: "pebble", incremental: true, parallelism: 2},
		jobRun{backend: "pebble", incremental: true, parallelism: 3})
	checkIncremental(t, restored.jobDir, 3)
}

func TestIncrementalCheckpointRestoresOnHeap(t *testing.T) {
	killAndRestore(t, jobRun{backend: "pebble", incremental: true, parallelism: 2}, jobRun{backend: "hashmap", parallelism: 3})
}

func TestHeapCheckpointRestoresIntoIncremental(t *testing.T) {
	_, restored := killAndRestore(t, jobRun{backend: "hashmap", parallelism: 2}, jobRun{backend: "pebble", incremental: true, parallelism: 2})
	checkIncremental(t, restored.jobDir, 2)
}
