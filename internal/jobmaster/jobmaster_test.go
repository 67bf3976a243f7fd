package jobmaster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/graph"
	"github.com/weirstream/weir/internal/jobgraph"
	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
)

// sumsJob: numbers 0..n-1 (rate limited) → running sum per number%10 →
// exactly-once file sink writing "key<TAB>sum" lines into out.
func sumsJob(t *testing.T, n int64, rate float64, p int, out string) *runtime.Job {
	t.Helper()
	g := &graph.Graph{}
	src := source.Generator(n, func(i int64) int64 { return i })
	if rate > 0 {
		src = source.RateLimited(src, rate)
	}
	s := g.Add(&graph.Node{UID: "numbers", Name: "numbers", Kind: "source",
		Factory: operators.NewSource(src, operators.WatermarkStrategy[int64]{None: true}, time.Hour)})
	enc, err := operators.NewKeyEncoder[int64]()
	if err != nil {
		t.Fatal(err)
	}
	type sum struct{ Key, Sum int64 }
	toSum := g.Add(&graph.Node{UID: "to-sum", Name: "to-sum", Kind: "map", Inputs: []graph.Input{{Node: s.ID}},
		Factory: operators.NewMap(func(v int64) sum { return sum{v % 10, v} })})
	keying := &operators.Keying[sum, int64]{Select: func(x sum) int64 { return x.Key }, Encoder: enc}
	r := g.Add(&graph.Node{UID: "sum", Name: "sum", Kind: "keyed-reduce", KeyedInputs: []bool{true},
		Inputs:  []graph.Input{{Node: toSum.ID, Partitioning: graph.Hash}},
		Factory: operators.NewKeyedReduce(keying, func(a, b sum) sum { return sum{a.Key, a.Sum + b.Sum} })})
	g.Add(&graph.Node{UID: "out", Name: "out", Kind: "sink", Inputs: []graph.Input{{Node: r.ID}},
		Factory: operators.NewSink(sink.File(out+"/", func(x sum) string { return fmt.Sprintf("%d\t%d", x.Key, x.Sum) }))})
	jg, err := jobgraph.Translate(g, jobgraph.Settings{JobName: "sums", DefaultParallelism: p})
	if err != nil {
		t.Fatal(err)
	}
	fs := map[string]*runtime.Factory{}
	for _, nd := range g.Nodes {
		fs[nd.UID] = nd.Factory
	}
	return &runtime.Job{Graph: jg, Factories: fs}
}

func start(t *testing.T, job *runtime.Job, cfg *config.Config, from string) (<-chan error, jobmaster.Control) {
	t.Helper()
	controls := make(chan jobmaster.Control, 1)
	done := make(chan error, 1)
	go func() {
		done <- jobmaster.Run(context.Background(), job, jobmaster.Options{
			JobID: job.Graph.JobId, Config: cfg, FromSavepoint: from, Name: "sums",
			OnControl: func(c jobmaster.Control) { controls <- c },
			Deploy: func(ctx context.Context, hooks runtime.CheckpointHooks, restore map[string]*runtime.RestoredState) (jobmaster.Execution, error) {
				return runtime.Start(ctx, job, runtime.Options{Checkpoints: hooks, Restore: restore})
			},
		})
	}()
	select {
	case c := <-controls:
		return done, c
	case err := <-done:
		t.Fatalf("job ended before it started: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no Control within 10 s")
	}
	return nil, nil
}

func checkpointing(t *testing.T, ckDir string) *config.Config {
	cfg, err := config.FromMap(map[string]string{
		"execution.checkpointing.interval": "50ms",
		"state.checkpoints.dir":            ckDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// readSums checks the committed output: one running sum per record,
// exactly once, and returns the final sum of each key.
func readSums(t *testing.T, out string, n int64) map[int64]int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(out, "part-*"))
	if err != nil {
		t.Fatal(err)
	}
	final := map[int64]int64{}
	lines := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			k, v, _ := strings.Cut(l, "\t")
			key, _ := strconv.ParseInt(k, 10, 64)
			sum, _ := strconv.ParseInt(v, 10, 64)
			final[key] = max(final[key], sum)
			lines++
		}
	}
	if int64(lines) != n {
		t.Fatalf("%d output lines, want %d (one running sum per record, exactly once)", lines, n)
	}
	return final
}

// TestSavepointStopAndRescale takes a savepoint of a running job, stops it
// with a savepoint, resumes from that with another parallelism, and checks
// that every record was counted exactly once.
func TestSavepointStopAndRescale(t *testing.T) {
	const n = 30_000
	dir := t.TempDir()
	out, ck, sp := filepath.Join(dir, "out"), filepath.Join(dir, "ck"), filepath.Join(dir, "sp")

	done, c := start(t, sumsJob(t, n, 20_000, 2, out), checkpointing(t, ck), "")
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path, err := c.TriggerSavepoint(ctx, sp, false, false)
	if err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(path, "_metadata")); err != nil {
		t.Fatalf("savepoint at %s: %v", path, err)
	}
	if s := c.Status(); s.State != "RUNNING" {
		t.Fatalf("after a savepoint the job is %s, want RUNNING", s.State)
	}
	time.Sleep(100 * time.Millisecond)
	stopPath, err := c.TriggerSavepoint(ctx, sp, true, false)
	if err != nil {
		t.Fatalf("stop with savepoint: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopped job: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not end after stop-with-savepoint")
	}
	if s := c.Status(); s.State != "FINISHED" {
		t.Fatalf("stopped job is %s, want FINISHED", s.State)
	}

	// Resume at parallelism 3 and run to the end.
	done, _ = start(t, sumsJob(t, n, 0, 3, out), checkpointing(t, ck), stopPath)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("resumed job: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the resumed job did not finish")
	}
	final := readSums(t, out, n)
	for k := int64(0); k < 10; k++ {
		var want int64
		for v := k; v < n; v += 10 {
			want += v
		}
		if final[k] != want {
			t.Errorf("key %d: final sum %d, want %d", k, final[k], want)
		}
	}
}

func TestSavepointErrors(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := config.FromMap(map[string]string{})
	done, c := start(t, sumsJob(t, 1_000_000, 1000, 1, filepath.Join(dir, "out")), cfg, "")
	defer func() { c.Cancel(); <-done }()
	ctx := context.Background()
	if _, err := c.TriggerSavepoint(ctx, "", false, false); err == nil || !strings.Contains(err.Error(), "state.savepoints.dir") {
		t.Errorf("no directory: %v", err)
	}
	if _, err := c.TriggerSavepoint(ctx, dir, false, false); err == nil || !strings.Contains(err.Error(), "execution.checkpointing.interval") {
		t.Errorf("checkpoints off: %v", err)
	}
}
