package sink

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
)

// The exactly-once test plays a job's sink through writes, checkpoints,
// commits and crashes, at random, as the runtime drives it: the sink
// operator (operators.NewSink over File) gets records, snapshots at
// barriers, and commits when told a checkpoint completed. A crash drops
// every subtask without Close (and may strike in the middle of a commit,
// between any two of its file operations); the job then restores the last
// completed checkpoint and replays the records after it. Once the input has
// ended and a checkpoint after the end has been committed, the visible
// output must be exactly a failure-free run's, and at every step before
// it must be a prefix of that (no record ever shows twice).

// crashed is the panic that simulates a crash.
type crashed struct{}

// sinkJob is one iteration's job.
type sinkJob struct {
	t       *testing.T
	rng     *rand.Rand
	path    string
	records []string
	rescale bool // restores may change the parallelism (directories only)
	single  bool // a single output file

	crashOdds int  // a commit step crashes with probability 1/crashOdds
	crashing  bool // crashes are armed

	p      int
	ops    []runtime.Instance
	zombie []runtime.Instance // a crashed attempt, closed late
	cursor int                // records [0, cursor) were delivered
	ended  bool

	nextID    int64
	completed *completedCheckpoint
	stats     struct{ crashes, checkpoints, commitCrashes int }

	want   map[int]map[int]string // expected, by parallelism
	sorted []string               // the records, sorted
	steps  map[string]int
}

type completedCheckpoint struct {
	id     int64
	p      int
	cursor int
	snaps  []*runtime.OperatorSnapshot
}

// subtaskOf routes record i at parallelism p.
func subtaskOf(i, p int) int { return i % p }

func (j *sinkJob) sink() fileSink[string] {
	return fileSink[string]{path: j.path, format: func(s string) string { return s }, crash: func(step string) {
		if j.steps == nil {
			j.steps = map[string]int{}
		}
		j.steps[step]++
		if j.crashing && j.rng.IntN(j.crashOdds) == 0 {
			j.stats.commitCrashes++
			panic(crashed{})
		}
	}}
}

// guard runs f, reporting whether a simulated crash struck.
func guard(f func()) (crash bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashed); !ok {
				panic(r)
			}
			crash = true
		}
	}()
	f()
	return false
}

// start opens the subtasks, restoring the last completed checkpoint; it
// retries while crashes strike in the restore's commits.
func (j *sinkJob) start() {
	for {
		if j.completed != nil && j.rescale && j.rng.IntN(2) == 0 {
			j.p = 1 + j.rng.IntN(4)
		}
		var restored *runtime.RestoredState
		j.cursor, j.ended = 0, false
		if c := j.completed; c != nil {
			restored = &runtime.RestoredState{Checkpoint: c.id, Snapshots: c.snaps}
			j.cursor = c.cursor
			if !j.rescale {
				j.p = c.p
			}
		}
		j.ops = nil
		crash := false
		for sub := range j.p {
			inst := operators.NewSink[string](j.sink()).New()
			j.ops = append(j.ops, inst)
			ctx := &runtime.OperatorContext{Name: "out", UID: "out", Subtask: sub, Parallelism: j.p, Restored: restored, Checkpointing: true}
			if crash = guard(func() {
				if err := inst.Op.Open(ctx); err != nil {
					j.t.Fatalf("Open(subtask %d of %d): %v", sub, j.p, err)
				}
			}); crash {
				break
			}
		}
		j.closeZombie()
		if !crash {
			return
		}
		j.stats.crashes++
		j.ops = nil
	}
}

// closeZombie closes a crashed attempt's operators after the next attempt
// opened, as a lingering canceled attempt would.
func (j *sinkJob) closeZombie() {
	for _, op := range j.zombie {
		op.Op.Close()
	}
	j.zombie = nil
}

func (j *sinkJob) crash() {
	j.stats.crashes++
	if j.rng.IntN(3) == 0 {
		j.zombie = j.ops
	}
	j.ops = nil
	j.start()
}

func (j *sinkJob) write(k int) {
	for ; k > 0 && j.cursor < len(j.records); k-- {
		sub := subtaskOf(j.cursor, j.p)
		j.ops[sub].Inputs[0].(runtime.Input[string]).ProcessElement(j.records[j.cursor], runtime.NoTimestamp)
		j.cursor++
	}
	if j.cursor == len(j.records) && !j.ended {
		j.ended = true
		for _, op := range j.ops {
			op.Op.EndInput(0)
		}
	}
}

// checkpoint takes a checkpoint; it completes unless a crash strikes before,
// and its commits are delivered to the subtasks in random order, some
// perhaps not at all, a crash perhaps striking in between. It reports
// whether every subtask committed it.
func (j *sinkJob) checkpoint() bool {
	j.nextID++
	id := j.nextID
	snaps := make([]*runtime.OperatorSnapshot, j.p)
	for i, op := range j.ops {
		s, err := op.Op.(runtime.Snapshotter).SnapshotState(id)
		if err != nil {
			j.t.Fatalf("SnapshotState(%d): %v", id, err)
		}
		snaps[i] = s
	}
	if j.crashing && j.rng.IntN(8) == 0 {
		j.crash() // before the checkpoint completed
		return false
	}
	j.stats.checkpoints++
	j.completed = &completedCheckpoint{id: id, p: j.p, cursor: j.cursor, snaps: snaps}
	all := true
	for _, i := range j.rng.Perm(j.p) {
		if j.crashing && j.rng.IntN(10) == 0 {
			all = false // the notification is lost, or comes later
			continue
		}
		if guard(func() {
			if err := j.ops[i].Op.(runtime.CheckpointListener).NotifyCheckpointComplete(id); err != nil {
				j.t.Fatalf("NotifyCheckpointComplete(%d): %v", id, err)
			}
		}) {
			j.crash()
			return false
		}
	}
	return all
}

// visible reads the committed output: the single file, or per subtask the
// concatenation of its parts in the order of their numbers. hidden lists
// the hidden files.
func (j *sinkJob) visible() (perSubtask map[int]string, hidden []string) {
	perSubtask = map[int]string{}
	if j.single {
		b, err := os.ReadFile(j.path)
		if err == nil {
			perSubtask[0] = string(b)
		}
		entries, _ := os.ReadDir(filepath.Dir(j.path))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				hidden = append(hidden, e.Name())
			}
		}
		return perSubtask, hidden
	}
	entries, err := os.ReadDir(j.path)
	if err != nil {
		return perSubtask, nil
	}
	type part struct {
		sub int
		n   int64
		s   string
	}
	var parts []part
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			hidden = append(hidden, e.Name())
			continue
		}
		var sub int
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "part-%d-%d", &sub, &n); err != nil {
			j.t.Fatalf("unexpected file %q in the output directory", e.Name())
		}
		b, err := os.ReadFile(filepath.Join(j.path, e.Name()))
		if err != nil {
			j.t.Fatal(err)
		}
		parts = append(parts, part{sub, n, string(b)})
	}
	slices.SortFunc(parts, func(a, b part) int {
		if a.sub != b.sub {
			return a.sub - b.sub
		}
		return int(a.n - b.n)
	})
	for _, p := range parts {
		perSubtask[p.sub] += p.s
	}
	return perSubtask, hidden
}

// expected is a failure-free run's output at parallelism p, per subtask.
func (j *sinkJob) expected(p int) map[int]string {
	if out, ok := j.want[p]; ok {
		return out
	}
	b := make([]strings.Builder, p)
	for i, r := range j.records {
		b[subtaskOf(i, p)].WriteString(r + "\n")
	}
	out := map[int]string{}
	for sub := range b {
		if s := b[sub].String(); s != "" || j.single {
			out[sub] = s // a single file exists even empty
		}
	}
	if j.want == nil {
		j.want = map[int]map[int]string{}
	}
	j.want[p] = out
	return out
}

// check compares the visible output with a failure-free run's: equal at the
// end, a prefix before. With rescaling the records' subtasks change, so it
// compares the lines.
func (j *sinkJob) check(final bool) {
	got, hidden := j.visible()
	if j.rescale {
		var lines []string
		for _, s := range got {
			lines = append(lines, strings.Split(strings.TrimSuffix(s, "\n"), "\n")...)
		}
		lines = slices.DeleteFunc(lines, func(s string) bool { return s == "" })
		slices.Sort(lines)
		if d := slices.Compact(slices.Clone(lines)); len(d) != len(lines) {
			j.t.Fatalf("a record is visible twice: %d lines, %d distinct", len(lines), len(d))
		}
		if j.sorted == nil {
			j.sorted = slices.Sorted(slices.Values(j.records))
		}
		if final && !slices.Equal(lines, j.sorted) {
			j.t.Fatalf("final output has %d records, want the %d of the input", len(lines), len(j.records))
		}
		for _, l := range lines {
			if _, ok := slices.BinarySearch(j.sorted, l); !ok {
				j.t.Fatalf("visible line %q is not a record", l)
			}
		}
	} else {
		want := j.expected(j.p)
		for sub, s := range got {
			w := want[sub]
			if final && s != w || !strings.HasPrefix(w, s) {
				j.t.Fatalf("subtask %d: visible output (%d bytes) is not %s the failure-free output (%d bytes)\ngot  %q\nwant %q",
					sub, len(s), map[bool]string{true: "equal to", false: "a prefix of"}[final], len(w), clip(s), clip(w))
			}
		}
		if final {
			for sub, w := range want {
				if _, ok := got[sub]; !ok && w != "" {
					j.t.Fatalf("subtask %d: no output, want %d bytes", sub, len(w))
				}
			}
		}
	}
	if final && len(hidden) > 0 {
		j.t.Fatalf("hidden files left at the end: %q", hidden)
	}
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:100] + "…" + s[len(s)-100:]
	}
	return s
}

func runSinkJob(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed*7+1))
	base := t.TempDir()
	j := &sinkJob{t: t, rng: rng, crashOdds: 2 + rng.IntN(12)}
	crashEvery := 5 + rng.IntN(60) // steps between crashes, on average
	switch rng.IntN(5) {
	case 0, 4:
		j.single, j.p, j.path = true, 1, filepath.Join(base, "out.txt")
		if rng.IntN(2) == 0 { // an earlier run's output, replaced
			os.WriteFile(j.path, []byte("old output\n"), 0o644)
		}
	case 1:
		j.p, j.path = 1+rng.IntN(3), filepath.Join(base, "out")+string(filepath.Separator)
	case 2:
		j.p, j.path, j.rescale = 1+rng.IntN(3), filepath.Join(base, "out")+string(filepath.Separator), true
	case 3: // an earlier run's parts, replaced
		j.p, j.path = 1+rng.IntN(3), filepath.Join(base, "out")
		os.Mkdir(j.path, 0o755)
		for _, name := range []string{"part-0", "part-1-0", "part-1-7", "part-3", "part-5-2", ".part-0-3.inprogress", ".part-9.inprogress"} {
			os.WriteFile(filepath.Join(j.path, name), []byte("old "+name+"\n"), 0o644)
		}
	}
	prepopulated := func() bool {
		_, err := os.Stat(filepath.Join(j.path, "part-5-2"))
		b, _ := os.ReadFile(j.path)
		return err == nil || string(b) == "old output\n"
	}
	n := rng.IntN(400)
	for i := range n {
		j.records = append(j.records, fmt.Sprintf("r%04d%s", i, strings.Repeat("x", rng.IntN(20))))
	}
	j.crashing = true
	j.start()
	for step := 0; ; step++ {
		if step == 400 {
			j.crashing = false // let it end
		}
		if step > 2000 {
			t.Fatalf("seed %d: no end after %d steps", seed, step)
		}
		// Output becomes visible only in commits, on checkpoints and
		// restores, so the output is checked after those.
		switch r := rng.IntN(10); {
		case r < 5:
			j.write(rng.IntN(30))
			continue
		case r < 8:
			ended := j.ended
			if j.checkpoint() && ended {
				for _, op := range j.ops {
					if err := op.Op.Close(); err != nil {
						t.Fatal(err)
					}
				}
				j.check(true)
				t.Logf("mode single=%v rescale=%v p=%d: %d records, %d checkpoints, %d crashes (%d in commits), steps %v", j.single, j.rescale, j.p, len(j.records), j.stats.checkpoints, j.stats.crashes, j.stats.commitCrashes, j.steps)
				return
			}
		default:
			if j.crashing && rng.IntN(crashEvery) < 5 {
				j.crash()
			}
		}
		if !prepopulated() {
			j.check(false)
		}
	}
}

func TestFileExactlyOnceUnderCrashes(t *testing.T) {
	// Simulated crashes lose nothing the process wrote: fsync changes
	// nothing here but the time the test takes.
	defer func(f func(*os.File) error, d func(string)) { syncFile, syncDir = f, d }(syncFile, syncDir)
	syncFile, syncDir = func(*os.File) error { return nil }, func(string) {}
	iterations := 200
	if testing.Short() {
		iterations = 40
	}
	for seed := range uint64(iterations) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { runSinkJob(t, seed) })
	}
}
