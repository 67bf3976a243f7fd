// Command flakyjob is a Weir job that fails on purpose a set number of
// times, for the exactly-once tests (exactlyonce_test.go): run with a
// restart strategy and checkpoints, it must still write exactly the output
// of a run without failures.
//
// It generates --rows rows (row i is RowOf(i), a pure function of i), sums
// the values per key in keyed state and writes one "key<TAB>sum<TAB>count"
// line per key when the input ends (--output); with --rows-output it also
// writes every row as it passes ("id<TAB>key<TAB>value"), so that output is
// committed by every checkpoint rather than only at the end.
//
// Failures: the operator named by --fail-in ("map", before the key
// exchange, or "sum", the keyed operator) fails (panics) when one of its
// subtasks has seen a random number of records in the attempt, drawn for
// each subtask from [N/2, 3N/2) for --fail-every N. The job cannot know its attempt, so failures are counted
// in --marker-dir, one marker file (fail-0, fail-1, …) per failure: an
// attempt starts with k markers, and a subtask that reaches its point
// creates marker k with O_EXCL and panics only if it created it. Each
// attempt therefore fails at most once, and the job fails exactly
// --failures times over its life, across restarts and processes (if it
// lives long enough to reach them).
package main

import (
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

// Row is one generated record. RowOf is the only definition of the input;
// the test computes the expected output from the same formula.
type Row struct {
	ID    int64
	Key   string
	Value int64
}

// RowOf is row i of a job with keys keys: a multiplicative hash spreads the
// keys and values without a random source.
func RowOf(i int64, keys int) Row {
	h := uint64(i) * 0x9E3779B97F4A7C15
	return Row{ID: i, Key: "k" + strconv.FormatUint(h%uint64(keys), 10), Value: int64(h>>40) % 1000}
}

// failer decides when a subtask of an attempt panics.
type failer struct {
	dir      string
	failures int
	every    int64
	seed     uint64
	op       string

	seen, at int64 // records of this attempt; the panic point (0: none)
	next     int   // the marker this attempt may claim
}

// open draws this attempt's panic point. The claimed markers so far stand
// in for the attempt number, so each attempt draws another point.
func (f *failer) open(subtask int) {
	f.seen, f.at = 0, 0
	if f.every <= 0 || f.failures <= 0 {
		return
	}
	claimed := 0
	for claimed < f.failures {
		if _, err := os.Stat(f.marker(claimed)); err != nil {
			break
		}
		claimed++
	}
	if claimed >= f.failures {
		return
	}
	f.next = claimed
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", f.op, subtask, claimed)
	rng := rand.New(rand.NewPCG(f.seed, h.Sum64()))
	f.at = f.every/2 + rng.Int64N(max(f.every, 1))
}

func (f *failer) marker(i int) string { return filepath.Join(f.dir, "fail-"+strconv.Itoa(i)) }

// record counts one record and panics at the attempt's point if a failure
// is left to claim.
func (f *failer) record(subtask int) {
	if f.at == 0 {
		return
	}
	if f.seen++; f.seen < f.at {
		return
	}
	f.at = 0
	m, err := os.OpenFile(f.marker(f.next), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return // another subtask of this attempt failed first
	}
	fmt.Fprintf(m, "%s subtask %d after %d records\n", f.op, subtask, f.seen)
	m.Close()
	panic(fmt.Sprintf("flakyjob: injected failure %d of %d in %s subtask %d after %d records", f.next+1, f.failures, f.op, subtask, f.seen))
}

// failingMap passes rows through and fails as its failer says.
type failingMap struct {
	f       failer
	subtask int
}

func (m *failingMap) Open(rc *stream.RuntimeContext) error {
	m.subtask = rc.Subtask()
	m.f.open(m.subtask)
	return nil
}

func (m *failingMap) ProcessElement(ctx *stream.Context[Row], r Row) error {
	m.f.record(m.subtask)
	ctx.Collect(r)
	return nil
}

// Total is one output line: a key's sum and count.
type Total struct {
	Key        string
	Sum, Count int64
}

// sumPerKey keeps each key's sum and count and emits them at the end of
// the input (its event-time timer at the end of time fires on the final
// watermark).
type sumPerKey struct {
	f       failer
	subtask int
	total   stream.ValueState[Total]
}

func (s *sumPerKey) Open(rc *stream.RuntimeContext) (err error) {
	s.subtask = rc.Subtask()
	s.f.open(s.subtask)
	s.total, err = stream.ValueStateOf[Total](rc, "total")
	return err
}

func (s *sumPerKey) ProcessElement(ctx *stream.KeyedContext[string, Total], r Row) error {
	s.f.record(s.subtask)
	t, ok := s.total.Value()
	if !ok {
		ctx.TimerService().RegisterEventTimeTimer(math.MaxInt64)
		t.Key = r.Key
	}
	t.Sum += r.Value
	t.Count++
	s.total.Update(t)
	return nil
}

func (s *sumPerKey) OnTimer(ctx *stream.KeyedContext[string, Total], _ int64, _ stream.TimeDomain) error {
	t, _ := s.total.Value()
	ctx.Collect(t)
	return nil
}

func main() {
	rows := flag.Int64("rows", 100_000, "rows to generate")
	keys := flag.Int("keys", 100, "distinct keys")
	rate := flag.Float64("rate", 0, "rows per second across all subtasks; 0 is as fast as possible")
	output := flag.String("output", "", "file or directory for the key<TAB>sum<TAB>count lines (required)")
	sinkP := flag.Int("sink-parallelism", 1, "parallelism of the --output sink")
	rowsOutput := flag.String("rows-output", "", "directory to write every row to, as it passes (optional)")
	rowsP := flag.Int("rows-parallelism", 0, "parallelism of the --rows-output sink; 0 is the job's")
	failIn := flag.String("fail-in", "map", "operator that fails: map or sum")
	every := flag.Int64("fail-every", 0, "fail after about this many records of an attempt, per subtask; 0 never fails")
	failures := flag.Int("failures", 0, "failures over the job's life, counted in --marker-dir")
	markers := flag.String("marker-dir", "", "directory that counts the failures (required with --failures)")
	seed := flag.Uint64("seed", 1, "seed of the failure points")
	flag.Parse()
	if *output == "" || *keys < 1 || *rows < 0 || *failures > 0 && *markers == "" || *failIn != "map" && *failIn != "sum" {
		fmt.Fprintln(os.Stderr, "flakyjob: need --output, --keys >= 1, --rows >= 0, --fail-in map|sum, and --marker-dir with --failures")
		os.Exit(2)
	}
	fail := failer{dir: *markers, failures: *failures, every: *every, seed: *seed, op: *failIn}
	noFail := failer{}

	env := stream.NewEnvironment()
	nKeys := *keys
	var src = source.Generator(*rows, func(i int64) Row { return RowOf(i, nKeys) })
	if *rate > 0 {
		src = source.RateLimited(src, *rate)
	}
	gen := stream.FromSource(env, "rows", src)
	mapFail, sumFail := fail, noFail
	if *failIn == "sum" {
		mapFail, sumFail = noFail, fail
	}
	passed := stream.ProcessUnkeyed(gen, "maybe-fail", &failingMap{f: mapFail})
	if *rowsOutput != "" {
		rowsSink := stream.SinkTo(passed, "rows-out", sink.File(*rowsOutput, func(r Row) string {
			return strconv.FormatInt(r.ID, 10) + "\t" + r.Key + "\t" + strconv.FormatInt(r.Value, 10)
		}))
		if *rowsP > 0 {
			rowsSink.SetParallelism(*rowsP)
		}
	}
	totals := stream.Process(stream.KeyBy(passed, func(r Row) string { return r.Key }), "sum", &sumPerKey{f: sumFail})
	stream.SinkTo(totals, "out", sink.File(*output, func(t Total) string {
		return t.Key + "\t" + strconv.FormatInt(t.Sum, 10) + "\t" + strconv.FormatInt(t.Count, 10)
	})).SetParallelism(*sinkP)
	if err := env.Execute("flakyjob"); err != nil {
		if errors.Is(err, stream.ErrJobCanceled) {
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "flakyjob:", err)
		os.Exit(1)
	}
}
