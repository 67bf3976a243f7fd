//go:build unix

package main

// The exactly-once verification suite: weir runs real jobs as processes
// with checkpoints on, the tests crash them (kill -9 of the process group,
// as a machine or container crash would) or make their operators panic,
// resume them, and check that the committed output is exactly what an
// independent computation of the input says, or exactly that of a run
// without failures.
//
//   - TestExactlyOnceSIGKILL: kill/resume loops of builtin:wordcount into a
//     directory and into a single file, and of a job binary that commits
//     output at every checkpoint, changing the parallelism 2 → 3 → 1 at
//     each resume; the last kill waits for output written but not yet
//     committed.
//   - TestExactlyOnceInjectedPanics: testdata/flakyjob panics a set number
//     of times at random points and restarts by the fixed-delay strategy
//     in the same process.
//   - TestExactlyOnceNexmarkRescale: Nexmark q5 killed after a checkpoint
//     at p=2, resumed at p=3, killed, resumed at p=1, against a run
//     without failures.
//   - TestExactlyOnceCorruptCheckpoint: resuming from a job directory whose
//     newest checkpoint has a damaged _metadata or keyed state file.
//
// Every scenario draws its kill moments, checkpoint interval and input from
// a seed, printed with every failure together with each command run and
// its stderr; WEIR_EO_SEED=n repeats a seed. The default suite takes about
// half a minute on two cores; WEIR_SOAK=1 runs longer loops (more kills,
// more failures, larger inputs). Checks that fail because of a known,
// reported bug skip the test with the bug's description once every other
// check has passed; WEIR_EO_STRICT=1 makes them fail.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkpointArgs are weir's options for checkpoints every interval into ck.
func checkpointArgs(ck string, interval time.Duration, extra ...string) []string {
	args := []string{"-D", "execution.checkpointing.interval=" + strconv.FormatInt(interval.Milliseconds(), 10) + "ms",
		"-D", "state.checkpoints.dir=file://" + ck}
	for _, e := range extra {
		args = append(args, "-D", e)
	}
	return args
}

// writeWordText writes a text of lines lines drawn from the scenario's
// seed: mixed case, non-ASCII letters and digits, punctuation.
func writeWordText(s *scenario, dir string, lines int) (path, text string) {
	s.t.Helper()
	vocab := []string{"the", "The", "THE", "stream", "Straße", "naïve", "NAÏVE", "école", "日本語", "x²", "C3PO", "42", "٣٤", "don't", "e-mail"}
	for i := range 3000 {
		vocab = append(vocab, "w"+strconv.Itoa(i))
	}
	seps := []string{" ", ", ", ". ", "!", "\t", " -- ", "(", ") ", ";"}
	var b strings.Builder
	for range lines {
		for range 1 + s.rng.IntN(10) {
			b.WriteString(vocab[s.rng.IntN(len(vocab))])
			b.WriteString(seps[s.rng.IntN(len(seps))])
		}
		b.WriteString("\n")
	}
	text = b.String()
	path = filepath.Join(dir, "words.txt")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		s.fatalf("%v", err)
	}
	return path, text
}

// checkWordCounts checks the committed wordcount output at out against the
// words of text.
func checkWordCounts(s *scenario, out, text string) {
	s.t.Helper()
	committed, hidden, err := committedOutput(out)
	if err != nil {
		s.fatalf("reading the output: %v", err)
	}
	got, err := parseCountLines(committed)
	if err != nil {
		s.fatalf("output %s: %v", out, err)
	}
	if d := diffCounts(got, countWords(text)); d != "" {
		s.fatalf("output %s is not the word count of the input: %s", out, d)
	}
	if len(hidden) > 0 {
		s.errorf("the finished job left hidden files beside its output %s: %v", out, hidden)
	}
}

// flakyExpected is the answer flakyjob must write, computed here from the
// definition of its rows: the sum and count of the values of every key
// ("sum\tcount" by key), and each row's "key\tvalue" by id.
func flakyExpected(rows int64, keys int) (totals map[string]string, byID []string) {
	sums, counts := map[string]int64{}, map[string]int64{}
	byID = make([]string, rows)
	for i := range rows {
		h := uint64(i) * 0x9E3779B97F4A7C15
		key, value := "k"+strconv.FormatUint(h%uint64(keys), 10), int64(h>>40)%1000
		sums[key] += value
		counts[key]++
		byID[i] = key + "\t" + strconv.FormatInt(value, 10)
	}
	totals = map[string]string{}
	for k := range sums {
		totals[k] = strconv.FormatInt(sums[k], 10) + "\t" + strconv.FormatInt(counts[k], 10)
	}
	return totals, byID
}

// checkFlakyTotals checks flakyjob's key<TAB>sum<TAB>count output.
func checkFlakyTotals(s *scenario, out string, want map[string]string) {
	s.t.Helper()
	committed, hidden, err := committedOutput(out)
	if err != nil {
		s.fatalf("reading the output: %v", err)
	}
	got := map[string]string{}
	for i, line := range strings.Split(strings.TrimSuffix(committed, "\n"), "\n") {
		key, rest, ok := strings.Cut(line, "\t")
		if !ok {
			s.fatalf("output %s line %d is %q, want key<TAB>sum<TAB>count", out, i+1, line)
		}
		if _, dup := got[key]; dup {
			s.fatalf("output %s: key %q appears twice (output duplicated)", out, key)
		}
		got[key] = rest
	}
	if d := diffCounts(got, want); d != "" {
		s.fatalf("output %s is not the sums of the input: %s", out, d)
	}
	if len(hidden) > 0 {
		s.errorf("the finished job left hidden files beside its output %s: %v", out, hidden)
	}
}

// checkFlakyRows checks flakyjob's id<TAB>key<TAB>value output: every row
// exactly once. It returns a description of what is wrong, "" if nothing.
func checkFlakyRows(out string, byID []string) string {
	committed, hidden, err := committedOutput(out)
	if err != nil {
		return fmt.Sprintf("reading the output: %v", err)
	}
	seen := make([]int, len(byID))
	var bad []string
	dups, junk := 0, 0
	for i, line := range strings.Split(strings.TrimSuffix(committed, "\n"), "\n") {
		id, rest, _ := strings.Cut(line, "\t")
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 || n >= int64(len(byID)) || rest != byID[n] {
			if junk++; junk <= 3 {
				bad = append(bad, fmt.Sprintf("line %d is %q, not a row of the input", i+1, line))
			}
			continue
		}
		if seen[n]++; seen[n] == 2 {
			if dups++; dups <= 3 {
				bad = append(bad, fmt.Sprintf("row %d appears more than once", n))
			}
		}
	}
	missing := 0
	for n, c := range seen {
		if c == 0 {
			if missing++; missing <= 3 {
				bad = append(bad, fmt.Sprintf("row %d is missing", n))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("output %s: %d rows duplicated, %d missing, %d lines not rows of the input, of %d rows: %s",
			out, dups, missing, junk, len(byID), strings.Join(bad, "; "))
	}
	if len(hidden) > 0 {
		return fmt.Sprintf("the finished job left hidden files beside its output %s: %v", out, hidden)
	}
	return ""
}

// killLoop is a job to crash and resume until it finishes.
type killLoop struct {
	job      []string // the job and its arguments, after weir's options
	output   string   // a File sink of the job, watched for uncommitted output
	outIsDir bool
	kills    int
}

// run crashes and resumes the job: kills at random moments, then one
// kill as soon as output is written but not committed, then a run to the
// end. Each resume restores the newest complete checkpoint of the latest
// run that has one, with parallelism 2, 3, 1, 2, …. It returns how many
// runs restored a checkpoint.
func (l killLoop) run(s *scenario, weir, ck string) (restored int) {
	s.t.Helper()
	interval := time.Duration(100+50*s.rng.IntN(5)) * time.Millisecond
	s.logf("checkpoint interval %v, %d random kills", interval, l.kills)
	var jobDirs []string // of the runs, in order
	for run := 0; ; run++ {
		from := ""
		for i := len(jobDirs) - 1; i >= 0 && from == ""; i-- {
			if len(completeCheckpoints(jobDirs[i])) > 0 {
				from = jobDirs[i]
			}
		}
		args := append([]string{"run", "-p", strconv.Itoa([]int{2, 3, 1}[run%3])}, checkpointArgs(ck, interval)...)
		var newest int64
		if from != "" {
			ids := completeCheckpoints(from)
			newest = ids[len(ids)-1]
			args = append(args, "--from-savepoint", from)
		}
		p := s.start(weir, append(args, l.job...)...)
		finished := false
		switch {
		case run < l.kills:
			select {
			case <-p.done:
			case <-time.After(time.Duration(50+s.rng.IntN(850)) * time.Millisecond):
			}
			finished = !p.kill()
		case run == l.kills:
			p.waitFor("output written but not committed", func() bool { return hasPendingOutput(l.output, l.outIsDir) })
			finished = !p.kill()
		default:
			p.mustSucceed()
			finished = true
		}
		if finished && p.code() != 0 {
			s.fatalf("run %d failed with exit status %d", p.n, p.code())
		}
		var dir string
		if id := p.jobID(); id != "" {
			dir = filepath.Join(ck, id)
			jobDirs = append(jobDirs, dir)
			s.logf("run %d was job %s; its complete checkpoints: %v", p.n, id, completeCheckpoints(dir))
		}
		if from != "" && (finished || dir != "" && len(completeCheckpoints(dir)) > 0) {
			// The run got far enough to have restored: it must have taken
			// the newest complete checkpoint of the directory it was given.
			want := fmt.Sprintf("restoring from checkpoint %d at ", newest)
			wantDir := fmt.Sprintf("%s/chk-%d", filepath.Base(from), newest)
			if stderr := p.stderr.String(); !strings.Contains(stderr, want) || !strings.Contains(stderr, wantDir) {
				s.fatalf("run %d, given --from-savepoint %s, did not say %q…%q: it must restore the newest complete checkpoint there", p.n, from, want, wantDir)
			}
			restored++
		}
		if finished {
			return restored
		}
	}
}

func TestExactlyOnceSIGKILL(t *testing.T) {
	t.Parallel()
	kills, lines := 6, 60_000
	if soak() {
		kills, lines = 25, 200_000
	}
	// Wordcount emits its counts when the input ends; what a crash must
	// not break is the restored state, the sources' positions and the
	// final commit.
	for _, layout := range []string{"directory", "file"} {
		t.Run("wordcount into a "+layout, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t)
			weir := bin(t, "weir")
			dir := t.TempDir()
			input, text := writeWordText(s, dir, lines)
			out := filepath.Join(dir, "counts.txt")
			if layout == "directory" {
				out = filepath.Join(dir, "out") + string(filepath.Separator)
			}
			loop := killLoop{job: []string{"builtin:wordcount", "--input", input, "--output", out, "--rate", "15000"},
				output: out, outIsDir: layout == "directory", kills: kills}
			if restored := loop.run(s, weir, filepath.Join(dir, "ck")); restored == 0 {
				s.fatalf("no run restored a checkpoint: the test proved nothing; the kills came too early")
			}
			checkWordCounts(s, out, text)
			s.finish()
		})
	}
	// A job binary whose row sink commits at every checkpoint, and follows
	// the parallelism from resume to resume; its totals sink stays at 2.
	t.Run("job binary committing every checkpoint", func(t *testing.T) {
		t.Parallel()
		s := newScenario(t)
		weir, flaky := bin(t, "weir"), flakyjobBin(t)
		dir := t.TempDir()
		rows, keys := int64(100_000), 50
		if soak() {
			rows = 400_000
		}
		totals, rowsOut := filepath.Join(dir, "totals")+"/", filepath.Join(dir, "rows")+"/"
		loop := killLoop{job: []string{flaky, "--rows", strconv.FormatInt(rows, 10), "--keys", strconv.Itoa(keys), "--rate", "25000",
			"--output", totals, "--sink-parallelism", "2", "--rows-output", rowsOut}, output: rowsOut, outIsDir: true, kills: kills}
		if restored := loop.run(s, weir, filepath.Join(dir, "ck")); restored == 0 {
			s.fatalf("no run restored a checkpoint: the test proved nothing; the kills came too early")
		}
		wantTotals, byID := flakyExpected(rows, keys)
		checkFlakyTotals(s, totals, wantTotals)
		if d := checkFlakyRows(rowsOut, byID); d != "" {
			s.fatalf("%s", d)
		}
		s.finish()
	})
	// weir runs a job binary as a child process. Killed alone (the OOM
	// killer, kill -9 of its pid), weir must not leave the job running:
	// it would go on writing checkpoints and output beside the resumed job.
	t.Run("weir killed alone takes its job binary", func(t *testing.T) {
		t.Parallel()
		if _, err := os.Stat("/proc/self/task"); err != nil {
			t.Skip("needs Linux /proc to find the job process")
		}
		s := newScenario(t)
		weir, flaky := bin(t, "weir"), flakyjobBin(t)
		dir := t.TempDir()
		p := s.start(weir, append(append([]string{"run", "-p", "1"}, checkpointArgs(filepath.Join(dir, "ck"), 200*time.Millisecond)...),
			flaky, "--rows", "100000", "--rate", "10000", "--output", filepath.Join(dir, "totals.txt"))...)
		if !p.waitFor("the job's start", func() bool { return p.jobID() != "" }) {
			s.fatalf("the job ended before it started")
		}
		weirPID := p.cmd.Process.Pid
		children := childPIDs(weirPID)
		if len(children) != 1 {
			s.fatalf("weir (pid %d) has children %v, want the one job process", weirPID, children)
		}
		job := children[0]
		must(t, syscall.Kill(weirPID, syscall.SIGKILL))
		s.logf("run %d: kill -9 of weir (pid %d) alone; its job process is pid %d", p.n, weirPID, job)
		deadline := time.Now().Add(time.Second)
		for processAlive(job) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if processAlive(job) {
			// The job holds weir's stderr open, so weir's Wait returns
			// only once the job is gone.
			_ = syscall.Kill(job, syscall.SIGKILL)
			s.knownBug("weir run ./job, killed with SIGKILL, leaves the job process running (pid %d still alive 1s later, "+
				"reparented): it goes on checkpointing and writing output, and races a job resumed from its checkpoints "+
				"(cmd/weir/run.go runBinary: no Pdeathsig on the child, and the job does not watch its parent)", job)
		}
		<-p.done
		s.finish()
	})
}

func TestExactlyOnceInjectedPanics(t *testing.T) {
	t.Parallel()
	failures, rows := 4, int64(120_000)
	if soak() {
		failures, rows = 15, 400_000
	}
	cases := []struct {
		name, failIn, output string
		sinkP                int
	}{
		{"map panics, directory sink", "map", "totals/", 2},
		{"keyed operator panics, single file", "sum", "totals.txt", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t)
			weir, flaky := bin(t, "weir"), flakyjobBin(t)
			dir := t.TempDir()
			markers := filepath.Join(dir, "markers")
			must(t, os.Mkdir(markers, 0o755))
			keys := 100
			out, rowsOut := filepath.Join(dir, c.output), filepath.Join(dir, "rows")+"/"
			args := append([]string{"run", "-p", "2"}, checkpointArgs(filepath.Join(dir, "ck"), 100*time.Millisecond,
				"restart-strategy.type=fixed-delay", "restart-strategy.fixed-delay.attempts="+strconv.Itoa(failures),
				"restart-strategy.fixed-delay.delay=10ms")...)
			args = append(args, flaky, "--rows", strconv.FormatInt(rows, 10), "--keys", strconv.Itoa(keys), "--rate", "40000",
				"--output", out, "--sink-parallelism", strconv.Itoa(c.sinkP), "--rows-output", rowsOut,
				"--fail-in", c.failIn, "--fail-every", "6000", "--failures", strconv.Itoa(failures),
				"--marker-dir", markers, "--seed", strconv.FormatUint(s.rng.Uint64(), 10))
			p := s.start(weir, args...)
			p.mustSucceed()
			stderr := p.stderr.String()
			claimed, _ := os.ReadDir(markers)
			if len(claimed) != failures {
				s.fatalf("%d injected failures happened, want %d: the job ended before it reached them all", len(claimed), failures)
			}
			if n := strings.Count(stderr, "weir: restarting from "); n != failures {
				s.fatalf("the job restarted %d times, want %d (one per injected failure)", n, failures)
			}
			fromCheckpoint := strings.Count(stderr, "weir: restarting from checkpoint ")
			s.logf("%d of %d restarts restored a checkpoint", fromCheckpoint, failures)
			if fromCheckpoint == 0 {
				t.Logf("no restart restored a checkpoint (all failed before the first completed): only restarts from the beginning were checked")
			}
			wantTotals, byID := flakyExpected(rows, keys)
			checkFlakyTotals(s, out, wantTotals)
			if d := checkFlakyRows(rowsOut, byID); d != "" {
				s.fatalf("%s", d)
			}
			s.finish()
		})
	}
}

func TestExactlyOnceNexmarkRescale(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	weir := bin(t, "weir")
	dir := t.TempDir()
	events := 1_500_000
	if soak() {
		events = 6_000_000
	}
	job := func(out string, rate bool) []string {
		a := []string{"builtin:nexmark", "--query", "q5", "--events", strconv.Itoa(events), "--output", out}
		if rate {
			a = append(a, "--rate", "300000")
		}
		return a
	}
	ref := filepath.Join(dir, "reference.txt")
	s.start(weir, append([]string{"run", "-p", "2"}, job(ref, false)...)...).mustSucceed()

	out, ck := filepath.Join(dir, "q5.txt"), filepath.Join(dir, "ck")
	from := ""
	for i, par := range []int{2, 3, 1} {
		args := append([]string{"run", "-p", strconv.Itoa(par)}, checkpointArgs(ck, 200*time.Millisecond)...)
		if from != "" {
			args = append(args, "--from-savepoint", from)
		}
		p := s.start(weir, append(args, job(out, true)...)...)
		if i == 2 {
			p.mustSucceed()
			break
		}
		var jobDir string
		p.waitFor("a completed checkpoint", func() bool {
			if id := p.jobID(); id != "" {
				jobDir = filepath.Join(ck, id)
			}
			return jobDir != "" && len(completeCheckpoints(jobDir)) > 0
		})
		time.Sleep(time.Duration(s.rng.IntN(400)) * time.Millisecond)
		if !p.kill() {
			s.fatalf("run %d at p=%d ended before it was killed: give it more --events", p.n, par)
		}
		s.logf("run %d's complete checkpoints: %v", p.n, completeCheckpoints(jobDir))
		from = jobDir
	}
	want, err := os.ReadFile(ref)
	must(t, err)
	got, hidden, err := committedOutput(out)
	if err != nil {
		s.fatalf("reading the output: %v", err)
	}
	sortedLines := func(s string) []string {
		l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		slices.Sort(l)
		return l
	}
	if len(want) == 0 {
		s.fatalf("the reference run wrote no rows")
	}
	if g, w := sortedLines(got), sortedLines(string(want)); !slices.Equal(g, w) {
		s.fatalf("q5 after kills and rescaling 2 → 3 → 1 differs from the run without failures:\ngot (sorted):\n%s\nwant (sorted):\n%s",
			strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
	if len(hidden) > 0 {
		s.errorf("the finished job left hidden files beside its output: %v", hidden)
	}
	s.finish()
}

// crashAfterCheckpoints runs weir with args and kills it once its job has
// at least n complete checkpoints. It returns the job's checkpoint
// directory and those checkpoints.
func crashAfterCheckpoints(s *scenario, weir, ck string, n int, args ...string) (jobDir string, ids []int64) {
	s.t.Helper()
	p := s.start(weir, args...)
	p.waitFor(fmt.Sprintf("%d complete checkpoints", n), func() bool {
		if id := p.jobID(); id != "" {
			jobDir = filepath.Join(ck, id)
		}
		return jobDir != "" && len(completeCheckpoints(jobDir)) >= n
	})
	// Kill at a random moment of the next interval.
	time.Sleep(time.Duration(s.rng.IntN(150)) * time.Millisecond)
	if !p.kill() {
		s.fatalf("run %d ended before it was killed", p.n)
	}
	ids = completeCheckpoints(jobDir)
	s.logf("job directory %s holds complete checkpoints %v", jobDir, ids)
	if len(ids) < n {
		s.fatalf("want at least %d complete checkpoints, have %v", n, ids)
	}
	return jobDir, ids
}

func TestExactlyOnceCorruptCheckpoint(t *testing.T) {
	t.Parallel()
	retain := "state.checkpoints.num-retained=3"

	// A damaged _metadata of the newest checkpoint: resuming from the job
	// directory falls back to the previous complete checkpoint, and must
	// say that it skipped the newest and why.
	t.Run("metadata", func(t *testing.T) {
		t.Parallel()
		s := newScenario(t)
		weir := bin(t, "weir")
		dir := t.TempDir()
		input, text := writeWordText(s, dir, 30_000)
		ck, out := filepath.Join(dir, "ck"), filepath.Join(dir, "out")+"/"
		job := []string{"builtin:wordcount", "--input", input, "--output", out, "--rate", "15000"}
		opts := checkpointArgs(ck, 150*time.Millisecond, retain)
		jobDir, ids := crashAfterCheckpoints(s, weir, ck, 2, append(append([]string{"run", "-p", "2"}, opts...), job...)...)
		newest, previous := ids[len(ids)-1], ids[len(ids)-2]
		s.flipByte(filepath.Join(jobDir, fmt.Sprintf("chk-%d", newest), "_metadata"))

		p := s.start(weir, append(append([]string{"run", "-p", "3"}, opts...), append([]string{"--from-savepoint", jobDir}, job...)...)...)
		p.mustSucceed()
		stderr := p.stderr.String()
		if !strings.Contains(stderr, fmt.Sprintf("restoring from checkpoint %d at ", previous)) {
			s.fatalf("the resumed run did not restore checkpoint %d, the newest one whose _metadata is intact", previous)
		}
		warned := slices.ContainsFunc(strings.Split(stderr, "\n"), func(l string) bool {
			return strings.Contains(l, strconv.FormatInt(newest, 10)) && (strings.Contains(l, "corrupt") || strings.Contains(l, "checksum"))
		})
		if !warned {
			s.knownBug("resuming from job directory %s fell back past checkpoint %d, whose _metadata is corrupt, without a word about it: "+
				"stderr says only \"using checkpoint %d, the newest complete one\" (internal/jobmaster/persist.go openSnapshot drops "+
				"storage.Found.Skipped when given a job directory)", jobDir, newest, previous)
		}
		checkWordCounts(s, out, text)
		s.finish()
	})

	// The same fall back, with a job that commits output at every
	// checkpoint. The two newest checkpoints get a damaged _metadata: the
	// older of them completed before the newest was triggered, so the sink
	// had its notification and committed its output; the resumed job
	// replays that output from the third newest.
	for _, layout := range []string{"directory", "file"} {
		t.Run("metadata, output committed by the damaged checkpoint, "+layout, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t)
			weir, flaky := bin(t, "weir"), flakyjobBin(t)
			dir := t.TempDir()
			rows, keys := int64(45_000), 50
			ck, totals := filepath.Join(dir, "ck"), filepath.Join(dir, "totals.txt")
			rowsOut, rowsP := filepath.Join(dir, "rows")+"/", "2"
			if layout == "file" {
				rowsOut, rowsP = filepath.Join(dir, "rows.txt"), "1"
			}
			// The resumed job runs slower (a loaded machine), so that its
			// chunks are smaller than those the damaged checkpoint committed.
			job := func(rate string) []string {
				return []string{flaky, "--rows", strconv.FormatInt(rows, 10), "--keys", strconv.Itoa(keys), "--rate", rate,
					"--output", totals, "--rows-output", rowsOut, "--rows-parallelism", rowsP}
			}
			opts := checkpointArgs(ck, 150*time.Millisecond, retain)
			jobDir, ids := crashAfterCheckpoints(s, weir, ck, 3, append(append([]string{"run", "-p", "2"}, opts...), job("32000")...)...)
			previous := ids[len(ids)-3]
			for _, id := range ids[len(ids)-2:] {
				s.flipByte(filepath.Join(jobDir, fmt.Sprintf("chk-%d", id), "_metadata"))
			}

			p := s.start(weir, append(append([]string{"run", "-p", "2"}, opts...), append([]string{"--from-savepoint", jobDir}, job("8000")...)...)...)
			p.mustSucceed()
			if !strings.Contains(p.stderr.String(), fmt.Sprintf("restoring from checkpoint %d at ", previous)) {
				s.fatalf("the resumed run did not restore checkpoint %d, the newest one whose _metadata is intact", previous)
			}
			wantTotals, byID := flakyExpected(rows, keys)
			checkFlakyTotals(s, totals, wantTotals)
			if d := checkFlakyRows(rowsOut, byID); d != "" {
				s.knownBug("falling back past checkpoints %v (complete, their output committed, then their _metadata damaged) to checkpoint %d "+
					"breaks exactly-once: %s", ids[len(ids)-2:], previous, d)
			}
			s.finish()
		})
	}

	// A damaged keyed state file of the newest checkpoint: its _metadata is
	// intact, so the checkpoint is complete, and the runtime refuses to
	// restore it, naming the file, rather than silently losing progress.
	// The user then picks the previous checkpoint, which restores exactly.
	t.Run("keyed state file", func(t *testing.T) {
		t.Parallel()
		s := newScenario(t)
		weir := bin(t, "weir")
		dir := t.TempDir()
		input, text := writeWordText(s, dir, 30_000)
		ck, out := filepath.Join(dir, "ck"), filepath.Join(dir, "counts.txt")
		job := []string{"builtin:wordcount", "--input", input, "--output", out, "--rate", "15000"}
		opts := checkpointArgs(ck, 150*time.Millisecond, retain)
		jobDir, ids := crashAfterCheckpoints(s, weir, ck, 2, append(append([]string{"run", "-p", "2"}, opts...), job...)...)
		newest, previous := ids[len(ids)-1], ids[len(ids)-2]
		var stateFiles []string
		ents, _ := os.ReadDir(filepath.Join(jobDir, fmt.Sprintf("chk-%d", newest)))
		for _, e := range ents {
			if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".keyed") && info.Size() > 64 {
				stateFiles = append(stateFiles, e.Name())
			}
		}
		if len(stateFiles) == 0 {
			s.fatalf("checkpoint %d has no keyed state file to damage", newest)
		}
		damaged := stateFiles[s.rng.IntN(len(stateFiles))]
		s.flipByte(filepath.Join(jobDir, fmt.Sprintf("chk-%d", newest), damaged))

		// The first checkpoint's commit created the output file, empty: a
		// job's first commit replaces the earlier output.
		before, _ := os.ReadFile(out)
		p := s.start(weir, append(append([]string{"run", "-p", "3"}, opts...), append([]string{"--from-savepoint", jobDir}, job...)...)...)
		if c := p.wait(); c == 0 {
			s.fatalf("resuming from a checkpoint with a damaged state file succeeded; want a failure naming %s", damaged)
		}
		lines, frames := errorLines(p.stderr.String())
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "weir: using checkpoint ") })
		if len(lines) != 1 || len(frames) > 0 {
			s.fatalf("want one error line, got %d lines and %d stack frames", len(lines), len(frames))
		}
		for _, w := range []string{fmt.Sprintf("chk-%d/%s", newest, damaged), "corrupt"} {
			if !strings.Contains(lines[0], w) {
				s.fatalf("the error does not name %q: %s", w, lines[0])
			}
		}
		if after, _ := os.ReadFile(out); string(after) != string(before) {
			s.fatalf("the failed restore changed %s", out)
		}

		prev := filepath.Join(jobDir, fmt.Sprintf("chk-%d", previous))
		p = s.start(weir, append(append([]string{"run", "-p", "1"}, opts...), append([]string{"--from-savepoint", prev}, job...)...)...)
		p.mustSucceed()
		checkWordCounts(s, out, text)
		s.finish()
	})
}
