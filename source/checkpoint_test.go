package source

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
)

// The checkpoint tests run a source in phases, as a job that fails and is
// restored runs it: in each phase every subtask opens with the states of
// the previous phase's subtasks, reads part of its share (some nothing, some
// to the end), and snapshots. The last phase reads to the end. The records
// of all phases together must be the input, each record exactly once.

// indexState is the state of subtask k of p that has emitted its share's
// indices below next.
func indexState(t *testing.T, k, p, next int64) []byte {
	t.Helper()
	e := newStateEncoder(kindIndexShare)
	e.uvarint(uint64(p))
	e.uvarint(uint64(k))
	e.uvarint(uint64(p))
	e.uvarint(uint64(next))
	return e.b
}

// readRecords reads up to n records from r, cutting Reads at random record
// counts when r can cap them, and reports whether the input ended.
func readRecords[T any](t *testing.T, r connector.SourceReader[T], n int, rng *rand.Rand) ([]T, bool) {
	t.Helper()
	var out recorder[T]
	lr, limited := r.(connector.LimitedReader[T])
	for reads := 0; len(out.got) < n; reads++ {
		if reads > 1_000_000 {
			t.Fatal("no end of input after a million reads")
		}
		var status connector.ReadStatus
		var err error
		before := len(out.got)
		if limited {
			status, err = lr.ReadAtMost(&out, 1+rng.IntN(min(n-len(out.got), 300)))
		} else {
			status, err = r.Read(&out)
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if limited && len(out.got) > n {
			t.Fatalf("ReadAtMost emitted %d records, more than asked", len(out.got)-before)
		}
		if status == connector.EndOfInput {
			return out.values(), true
		}
	}
	return out.values(), false
}

// phases runs src through the parallelisms ps; before the last phase each
// subtask reads up to budget(phase, subtask) records. It returns what each
// subtask of each phase emitted.
func phases[T any](t *testing.T, src connector.Source[T], ps []int, rng *rand.Rand, budget func(phase, subtask int) int) [][][]T {
	t.Helper()
	var states [][]byte
	var out [][][]T
	for pi, p := range ps {
		last := pi == len(ps)-1
		next := make([][]byte, p)
		perSubtask := make([][]T, p)
		for k := range p {
			r, err := src.Open(connector.SourceContext{OperatorName: "src", Subtask: k, Parallelism: p, Restored: states})
			if err != nil {
				t.Fatalf("phase %d (p=%d, after %v): Open(subtask %d): %v", pi, p, ps[:pi], k, err)
			}
			n := 1 << 30
			if !last {
				n = budget(pi, k)
			}
			got, ended := readRecords(t, r, n, rng)
			if last && !ended {
				t.Fatalf("phase %d: subtask %d did not end", pi, k)
			}
			perSubtask[k] = got
			cr, ok := r.(connector.CheckpointedReader)
			if !ok {
				t.Fatalf("%T is not a connector.CheckpointedReader", r)
			}
			if next[k], err = cr.SnapshotState(); err != nil {
				t.Fatalf("SnapshotState: %v", err)
			}
			again, _ := cr.SnapshotState()
			if !slices.Equal(again, next[k]) {
				t.Fatalf("two snapshots without a Read differ: %x, %x", next[k], again)
			}
			r.Close()
		}
		out = append(out, perSubtask)
		states = next
	}
	return out
}

// checkOnce checks that the phases' records are want, each exactly once.
func checkOnce[T cmp.Ordered](t *testing.T, ps []int, out [][][]T, want []T) {
	t.Helper()
	var all []T
	for _, phase := range out {
		for _, sub := range phase {
			all = append(all, sub...)
		}
	}
	slices.Sort(all)
	want = slices.Sorted(slices.Values(want))
	if slices.Equal(all, want) {
		return
	}
	seen := map[T]int{}
	for _, v := range all {
		seen[v]++
	}
	for _, v := range want {
		switch seen[v] {
		case 0:
			t.Fatalf("parallelisms %v: record %v was lost (%d records, want %d)", ps, v, len(all), len(want))
		case 1:
		default:
			t.Fatalf("parallelisms %v: record %v was emitted %d times", ps, v, seen[v])
		}
		delete(seen, v)
	}
	t.Fatalf("parallelisms %v: unexpected records %v", ps, seen)
}

// checkResumesExactly runs src with parallelism p in three phases and checks
// that each subtask's records, phase after phase, are exactly what it reads
// without interruption.
func checkResumesExactly[T comparable](t *testing.T, src connector.Source[T], p int, rng *rand.Rand, budget func(phase, subtask int) int) {
	t.Helper()
	out := phases(t, src, []int{p, p, p}, rng, budget)
	for k := range p {
		want := readAll(t, src, k, p)
		got := slices.Concat(out[0][k], out[1][k], out[2][k])
		if !slices.Equal(got, want) {
			t.Fatalf("p=%d subtask %d: resumed twice, it read %d records (%d+%d+%d); uninterrupted %d; first difference at %d",
				p, k, len(got), len(out[0][k]), len(out[1][k]), len(out[2][k]), len(want), firstDifference(got, want))
		}
	}
}

func firstDifference[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func iota64(n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(i)
	}
	return v
}

// rescalings are the parallelism sequences every source is run through.
var rescalings = [][]int{
	{2, 3, 1}, {1, 4}, {4, 1}, {3, 2, 3}, {2, 3, 1, 3, 2}, {5, 7, 3}, {6, 4, 6, 1}, {1, 1, 2, 2, 1},
}

// randomBudget reads up to about n records per subtask and phase, and
// sometimes nothing or everything.
func randomBudget(rng *rand.Rand, n int) func(int, int) int {
	return func(int, int) int {
		switch rng.IntN(8) {
		case 0:
			return 0
		case 1:
			return 1 << 30
		}
		return rng.IntN(n)
	}
}

func TestIndexSourcesResumeExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	vals := iota64(5000)
	sources := map[string]connector.Source[int64]{
		"FromSlice":               FromSlice(vals),
		"FromSliceWithTimestamps": FromSliceWithTimestamps(vals, func(v int64) int64 { return v * 10 }),
		"Generator":               Generator(5000, func(i int64) int64 { return i }),
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			for p := 1; p <= 4; p++ {
				for range 5 {
					checkResumesExactly(t, src, p, rng, randomBudget(rng, 3000))
				}
			}
		})
	}
}

func TestIndexSourcesRescaleExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{0, 1, 7, 5000} {
		vals := iota64(n)
		for _, src := range []connector.Source[int64]{FromSlice(vals), Generator(int64(n), func(i int64) int64 { return i })} {
			for _, ps := range rescalings {
				for range 10 {
					checkOnce(t, ps, phases(t, src, ps, rng, randomBudget(rng, 2*n/ps[0]+1)), vals)
				}
			}
		}
	}
	// Random sequences of parallelisms.
	vals := iota64(3000)
	for range 300 {
		ps := make([]int, 2+rng.IntN(4))
		for i := range ps {
			ps[i] = 1 + rng.IntN(8)
		}
		checkOnce(t, ps, phases(t, FromSlice(vals), ps, rng, randomBudget(rng, 800)), vals)
	}
}

// After rescaling 2 → 3 the new subtasks emit their shares in increasing
// order, skipping what the old ones emitted, and once past the old
// subtasks' uneven progress their state is one number again.
func TestIndexShareRescaleStateShrinks(t *testing.T) {
	restored := [][]byte{indexState(t, 0, 2, 100), indexState(t, 1, 2, 51)} // emitted 0..99 even, 1..49 odd
	for k := range 3 {
		s, err := NewIndexShare(connector.SourceContext{OperatorName: "g", Subtask: k, Parallelism: 3, Restored: restored}, -1)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for range 30 {
			n, _ := s.Next()
			got = append(got, n)
		}
		for i, n := range got {
			if n%3 != int64(k) || (n < 100 && n%2 == 0) || (n < 51 && n%2 == 1) || (i > 0 && n <= got[i-1]) {
				t.Fatalf("subtask %d: index %d (%v) is not in its share, was emitted before, or is out of order", k, n, got)
			}
		}
		state, _ := s.SnapshotState()
		if want := indexState(t, int64(k), 3, s.next); !slices.Equal(state, want) {
			t.Fatalf("subtask %d past the uneven region: state %x, want the one-bound state %x", k, state, want)
		}
	}
}

// Rescaling again and again before the subtasks pass the uneven region of
// the last one needs ever finer classes; beyond the limit Open says so.
func TestIndexShareRefusesRescalingBeyondTheLimit(t *testing.T) {
	src := Generator(-1, func(i int64) int64 { return i })
	var states [][]byte
	for _, p := range []int{7, 11, 13, 16, 17, 19, 23} {
		next := make([][]byte, p)
		for k := range p {
			r, err := src.Open(connector.SourceContext{OperatorName: "gen", Subtask: k, Parallelism: p, Restored: states})
			if err != nil {
				for _, want := range []string{`source "gen"`, "cannot rescale from", "to " + strconv.Itoa(p) + " subtasks", "restore with parallelism"} {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			// Very uneven progress: subtask k emits k*37 records.
			readRecords(t, r, k*37, rand.New(rand.NewPCG(1, uint64(k))))
			next[k], _ = r.(connector.CheckpointedReader).SnapshotState()
		}
		states = next
	}
	t.Fatal("rescaling through 7, 11, 13, 16, 17, 19, 23 with uneven progress never hit the limit")
}

func TestIndexShareCorruptState(t *testing.T) {
	good := indexState(t, 0, 1, 10)
	tests := []struct {
		name  string
		state []byte
		want  string
	}{
		{"empty", nil, "it is empty"},
		{"version", append([]byte{9}, good[1:]...), "format version 9"},
		{"kind", append([]byte{1, 't'}, good[2:]...), "is a TextFile position, not an index share"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing bytes", append(slices.Clone(good), 0), "unexpected bytes"},
		{"other subtask", indexState(t, 1, 2, 3), "written by subtask 1 of 2"},
		{"bound not in class", []byte{1, 'i', 1, 0, 2, 3, 1}, "bound 3 of class 0 modulo 2 is not in that class"},
		{"period", []byte{1, 'i', 2, 0, 3, 0}, "written by subtask 0 of 2"},
		{"period not a multiple", []byte{1, 'i', 1, 0, 0}, "period 0 is not a multiple"},
	}
	for _, tc := range tests {
		for _, src := range []connector.Source[int64]{FromSlice(iota64(10)), Generator(10, func(i int64) int64 { return i })} {
			_, err := src.Open(connector.SourceContext{OperatorName: "nums", Subtask: 0, Parallelism: 1, Restored: [][]byte{tc.state}})
			if err == nil {
				t.Fatalf("%s: Open succeeded", tc.name)
			}
			for _, want := range []string{`source "nums"`, "cannot resume from the checkpoint", "subtask 0 of 1", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error %q does not contain %q", tc.name, err, want)
				}
			}
		}
	}
}

// uniqueLines is a text of n numbered lines of random lengths, some long,
// with CRLF terminators here and there.
func uniqueLines(rng *rand.Rand, prefix string, n int) (string, []string) {
	var b strings.Builder
	lines := make([]string, n)
	for i := range n {
		lines[i] = fmt.Sprintf("%s%06d%s", prefix, i, strings.Repeat("x", rng.IntN(60)))
		if rng.IntN(50) == 0 {
			lines[i] += strings.Repeat("y", 3000)
		}
		b.WriteString(lines[i])
		if rng.IntN(5) == 0 {
			b.WriteString("\r")
		}
		if i < n-1 || rng.IntN(2) == 0 {
			b.WriteString("\n")
		}
	}
	return b.String(), lines
}

func TestTextFileResumesExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	dir := t.TempDir()
	content, _ := uniqueLines(rng, "", 4000)
	path := writeFile(t, dir, "in.txt", content)
	for _, bufSize := range []int{textBufferSize, 64} {
		src := textFileSource{path: path, bufSize: bufSize}
		for p := 1; p <= 5; p++ {
			for range 4 {
				checkResumesExactly[string](t, src, p, rng, randomBudget(rng, 2000))
			}
		}
	}
	// A directory of files, some empty.
	d := filepath.Join(dir, "many")
	mkdir(t, d)
	for i := range 6 {
		c, _ := uniqueLines(rng, "", rng.IntN(3)*300)
		writeFile(t, d, "f"+strconv.Itoa(i), c)
	}
	for p := 1; p <= 5; p++ {
		checkResumesExactly(t, TextFile(d), p, rng, randomBudget(rng, 500))
	}
}

func TestTextFileRescalesExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	dir := t.TempDir()
	var want []string
	for i := range 4 {
		c, lines := uniqueLines(rng, strconv.Itoa(i)+":", 500*i)
		writeFile(t, dir, "f"+strconv.Itoa(i), c)
		want = append(want, lines...)
	}
	for _, bufSize := range []int{textBufferSize, 32} {
		src := textFileSource{path: dir, bufSize: bufSize}
		for _, ps := range rescalings {
			for range 5 {
				checkOnce(t, ps, phases[string](t, src, ps, rng, randomBudget(rng, 700)), want)
			}
		}
	}
	for range 40 {
		ps := make([]int, 2+rng.IntN(4))
		for i := range ps {
			ps[i] = 1 + rng.IntN(8)
		}
		checkOnce(t, ps, phases[string](t, TextFile(dir), ps, rng, randomBudget(rng, 400)), want)
	}
}

func TestTextFileRestoreChecksInput(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "in.txt", "a\nb\nc\n")
	r, err := TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	state, _ := r.(connector.CheckpointedReader).SnapshotState()
	r.Close()
	writeFile(t, dir, "in.txt", "a\nb\nc\nd\n")
	_, err = TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1, Restored: [][]byte{state}})
	for _, want := range []string{`source "lines"`, "changed since", "1 files of 6 bytes", "now 1 of 8", "same input"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open over a changed input: %v, want an error containing %q", err, want)
		}
	}
	good := []byte{1, 't', 8, 1, 1, 2, 2}
	if _, err := TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1, Restored: [][]byte{good}}); err != nil {
		t.Fatalf("a valid state: %v", err)
	}
	for _, bad := range [][]byte{{1, 't', 8, 1, 1, 2, 9}, {1, 't', 8, 1, 2, 0, 2, 0, 0}, {1, 't', 8, 1, 1, 2}, {1, 'i', 8}, {}} {
		_, err := TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1, Restored: [][]byte{bad}})
		if err == nil || !strings.Contains(err.Error(), "cannot resume") || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("state %x: Open error %v, want a corrupt-state error", bad, err)
		}
	}
}

// hiddenLimit hides a reader's ReadAtMost: a checkpointed reader that
// emits whole batches whatever the rate limiter's budget.
type hiddenLimit[T any] struct{ src connector.Source[T] }

type uncappedReader[T any] struct {
	r connector.SourceReader[T]
}

func (s hiddenLimit[T]) Open(ctx connector.SourceContext) (connector.SourceReader[T], error) {
	r, err := s.src.Open(ctx)
	return uncappedReader[T]{r}, err
}
func (r uncappedReader[T]) Read(out connector.SourceOutput[T]) (connector.ReadStatus, error) {
	return r.r.Read(out)
}
func (r uncappedReader[T]) Close() error { return r.r.Close() }
func (r uncappedReader[T]) SnapshotState() ([]byte, error) {
	return r.r.(connector.CheckpointedReader).SnapshotState()
}

// limitedPhases runs a rate-limited source like phases, on a fake clock.
func limitedPhases(t *testing.T, inner connector.Source[int64], rates []float64, ps []int, reads []int) ([][]int64, error) {
	t.Helper()
	var states [][]byte
	var out [][]int64
	for pi, p := range ps {
		next := make([][]byte, p)
		for k := range p {
			clk := newFakeClock()
			r, err := rateLimitedSource[int64]{inner: inner, perSecond: rates[pi], clock: clk}.Open(
				connector.SourceContext{OperatorName: "limited", Subtask: k, Parallelism: p, Restored: states})
			if err != nil {
				return out, err
			}
			var rec recorder[int64]
			for n := 0; n < reads[pi] || pi == len(ps)-1; n++ {
				status, err := r.Read(&rec)
				if err != nil {
					t.Fatal(err)
				}
				if status == connector.EndOfInput {
					break
				}
				if status == connector.NothingAvailable {
					clk.now = clk.now.Add(runtimeWait)
				}
			}
			out = append(out, rec.values())
			cr, ok := r.(connector.CheckpointedReader)
			if !ok {
				t.Fatalf("the limited reader %T of a checkpointed source is not checkpointed", r)
			}
			if next[k], err = cr.SnapshotState(); err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
		states = next
	}
	return out, nil
}

func TestRateLimitedResumesExactly(t *testing.T) {
	vals := iota64(20_000)
	for _, tc := range []struct {
		name  string
		inner connector.Source[int64]
		rates []float64
		ps    []int
	}{
		{"capped reader", FromSlice(vals), []float64{3000, 3000, 3000}, []int{1, 1, 1}},
		{"capped reader, rescaled", FromSlice(vals), []float64{3000, 5000, 700}, []int{2, 3, 1}},
		{"capped reader, limit lifted and back", FromSlice(vals), []float64{3000, 0, 2000}, []int{2, 2, 1}},
		{"uncapped reader", hiddenLimit[int64]{FromSlice(vals)}, []float64{3000, 3000, 3000}, []int{1, 1, 1}},
		{"uncapped reader, limit lifted", hiddenLimit[int64]{FromSlice(vals)}, []float64{3000, 0, 0}, []int{2, 2, 2}},
		{"uncapped reader, rate changed", hiddenLimit[int64]{FromSlice(vals)}, []float64{300, 5000, 100_000}, []int{3, 3, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, reads := range [][]int{{1, 1, 0}, {7, 13, 0}, {40, 3, 0}, {0, 0, 0}} {
				out, err := limitedPhases(t, tc.inner, tc.rates, tc.ps, reads)
				if err != nil {
					t.Fatal(err)
				}
				all := slices.Concat(out...)
				if tc.ps[0] == 1 && !slices.Equal(all, vals) {
					t.Fatalf("reads %v: resumed output is not the input in order (difference at %d)", reads, firstDifference(all, vals))
				}
				checkOnce(t, tc.ps, [][][]int64{{all}}, vals)
			}
		})
	}
}

func TestRateLimitedHeldRecordsRefuseRescaling(t *testing.T) {
	inner := hiddenLimit[int64]{FromSlice(iota64(20_000))}
	// At 300/s the first Read lets out a few records of the inner batch of 1024.
	_, err := limitedPhases(t, inner, []float64{300, 300}, []int{2, 3}, []int{1, 0})
	for _, want := range []string{`source "limited"`, "cannot rescale from 2 to 3", "connector.LimitedReader", "restore with parallelism 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("rescaling with held records: %v, want an error containing %q", err, want)
		}
	}
}

func TestRateLimitedOverUncheckpointedReader(t *testing.T) {
	r := openLimited[int](t, idleSource{&idleReader{}}, 1000, newFakeClock(), 0, 1)
	if _, ok := r.(connector.CheckpointedReader); ok {
		t.Fatal("a limited reader over a reader without checkpoints claims to be checkpointed")
	}
}

func TestRateLimitedCorruptState(t *testing.T) {
	_, err := RateLimited(FromSlice(iota64(3)), 10).Open(connector.SourceContext{OperatorName: "l", Parallelism: 1, Restored: [][]byte{{1, 'r', 0x80}}})
	if err == nil || !strings.Contains(err.Error(), `source "l"`) || !strings.Contains(err.Error(), "records let out is truncated") {
		t.Fatalf("truncated state: %v", err)
	}
	_, err = RateLimited(FromSlice(iota64(3)), 10).Open(connector.SourceContext{OperatorName: "l", Parallelism: 1, Restored: [][]byte{{1, 'r', 0, 1, 't'}}})
	if err == nil || !strings.Contains(err.Error(), "TextFile position, not an index share") {
		t.Fatalf("wrapped state of another source: %v", err)
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
