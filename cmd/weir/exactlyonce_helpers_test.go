//go:build unix

package main

// Helpers of the exactly-once suite (exactlyonce_test.go): a scenario
// records every command it runs and what became of it, so that a failure
// shows the seed and the whole story; processes run in their own process
// group and are killed with SIGKILL as a crash would kill them.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables of the suite.
const (
	// seedEnv fixes the seed of a scenario, to repeat a failure.
	seedEnv = "WEIR_EO_SEED"
	// soakEnv set to 1 runs the longer loops.
	soakEnv = "WEIR_SOAK"
	// strictEnv set to 1 turns the checks of known bugs from skips into
	// failures.
	strictEnv = "WEIR_EO_STRICT"
)

func soak() bool { return os.Getenv(soakEnv) == "1" }

// procTimeout bounds every process of the suite: a job that should end
// must end within it.
const procTimeout = 60 * time.Second

var (
	flakyOnce sync.Once
	flakyErr  error
)

// flakyjobBin builds testdata/flakyjob next to the CLI tests' binaries.
func flakyjobBin(t *testing.T) string {
	t.Helper()
	bin(t, "weir") // creates binDir
	path := filepath.Join(binDir, "flakyjob")
	flakyOnce.Do(func() {
		if out, err := exec.Command("go", "build", "-o", path, "./testdata/flakyjob").CombinedOutput(); err != nil {
			flakyErr = fmt.Errorf("go build ./testdata/flakyjob: %v\n%s", err, out)
		}
	})
	if flakyErr != nil {
		t.Fatal(flakyErr)
	}
	return path
}

// scenario is one test's story: its seed, the commands it ran and what
// became of them.
type scenario struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	begun time.Time

	mu struct {
		sync.Mutex
		steps []string
		procs []*proc
	}
	knownBugs []string
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", seedEnv, v)
		}
	}
	// Subtests of one run get different seeds from one WEIR_EO_SEED.
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	s := &scenario{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, h.Sum64())), begun: time.Now()}
	t.Logf("seed %d (%s)", seed, s.rerun())
	return s
}

// rerun is the command that repeats this scenario with its seed.
func (s *scenario) rerun() string {
	var parts []string
	for _, p := range strings.Split(s.t.Name(), "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	return fmt.Sprintf("%s=%d go test -run '%s' ./cmd/weir", seedEnv, s.seed, strings.Join(parts, "/"))
}

// logf adds a step to the story.
func (s *scenario) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.steps = append(s.mu.steps, fmt.Sprintf("%+8.3fs  %s", time.Since(s.begun).Seconds(), fmt.Sprintf(format, args...)))
}

// fatalf fails the test with the seed, the commands and their stderr.
func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s\n\n%s", fmt.Sprintf(format, args...), s.report())
}

// errorf is fatalf that lets the test go on.
func (s *scenario) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s\n\n%s", fmt.Sprintf(format, args...), s.report())
}

func (s *scenario) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d; to repeat: %s\n", s.seed, s.rerun())
	b.WriteString("what ran:\n")
	for _, st := range s.mu.steps {
		b.WriteString("  " + st + "\n")
	}
	for _, p := range s.mu.procs {
		fmt.Fprintf(&b, "stderr of run %d:\n", p.n)
		text := p.stderr.String()
		if len(text) > 3000 {
			text = "…" + text[len(text)-3000:]
		}
		for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
			b.WriteString("  | " + l + "\n")
		}
	}
	return b.String()
}

// knownBug records a check that fails because of a bug reported but not
// yet fixed. At the end of the test (see finish) the test is skipped with
// the bugs' descriptions, or, with WEIR_EO_STRICT=1, fails.
func (s *scenario) knownBug(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(strictEnv) == "1" {
		s.errorf("KNOWN BUG: %s", msg)
		return
	}
	s.knownBugs = append(s.knownBugs, msg)
}

// finish ends a scenario whose checks passed: it skips the test if a
// known bug showed, so the bug stays visible without failing the suite.
func (s *scenario) finish() {
	s.t.Helper()
	if testing.Verbose() {
		s.t.Logf("passed\n%s", s.report())
	}
	if len(s.knownBugs) > 0 && !s.t.Failed() {
		s.t.Skipf("KNOWN BUG (set %s=1 to fail instead of skipping; all other checks passed):\n- %s\n\n%s",
			strictEnv, strings.Join(s.knownBugs, "\n- "), s.report())
	}
}

// proc is a process the scenario started, in its own process group so
// that a kill takes the job binary that weir starts with it.
type proc struct {
	s      *scenario
	n      int
	cmd    *exec.Cmd
	stderr syncBuffer
	began  time.Time
	done   chan struct{}
	err    error // set when done is closed
}

// start starts path (weir, normally) with args.
func (s *scenario) start(path string, args ...string) *proc {
	s.t.Helper()
	p := &proc{s: s, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.mu.Lock()
	s.mu.procs = append(s.mu.procs, p)
	p.n = len(s.mu.procs)
	s.mu.Unlock()
	s.logf("run %d: $ %s %s", p.n, filepath.Base(path), shellJoin(args))
	p.began = time.Now()
	if err := p.cmd.Start(); err != nil {
		s.fatalf("starting %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.killGroup()
			<-p.done
		}
	})
	return p
}

func (p *proc) killGroup() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// code is the exit status once the process has ended, -1 if a signal
// ended it.
func (p *proc) code() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// kill kills the process group with SIGKILL, as a crash of the machine
// would, and waits for the leader. It reports false if the process had
// ended by itself before.
func (p *proc) kill() bool {
	p.s.t.Helper()
	if p.exited() {
		p.s.logf("run %d ended by itself (exit status %d) before the kill, after %v", p.n, p.code(), p.elapsed())
		return false
	}
	p.killGroup()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.s.fatalf("run %d did not die within 10s of SIGKILL", p.n)
	}
	if p.code() != -1 {
		p.s.logf("run %d ended by itself (exit status %d) as it was killed, after %v", p.n, p.code(), p.elapsed())
		return false
	}
	p.s.logf("run %d: kill -9 after %v", p.n, p.elapsed())
	return true
}

func (p *proc) elapsed() time.Duration { return time.Since(p.began).Round(time.Millisecond) }

// wait waits for the process to end by itself and returns its exit status.
func (p *proc) wait() int {
	p.s.t.Helper()
	select {
	case <-p.done:
	case <-time.After(procTimeout):
		p.killGroup()
		<-p.done
		p.s.fatalf("run %d did not end within %v; killed it", p.n, procTimeout)
	}
	p.s.logf("run %d ended with exit status %d after %v", p.n, p.code(), p.elapsed())
	return p.code()
}

// mustSucceed waits for the process and fails the test unless it exits 0.
func (p *proc) mustSucceed() {
	p.s.t.Helper()
	if c := p.wait(); c != 0 {
		p.s.fatalf("run %d: exit status %d, want 0", p.n, c)
	}
}

// waitFor polls cond until it holds (true) or the process ends (false).
func (p *proc) waitFor(what string, cond func() bool) bool {
	p.s.t.Helper()
	deadline := time.Now().Add(procTimeout)
	for !cond() {
		if p.exited() {
			return cond()
		}
		if time.Now().After(deadline) {
			p.s.fatalf("run %d: %s did not happen within %v", p.n, what, procTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

var jobLineRE = regexp.MustCompile(`weir: job \S+ \(([0-9a-f]{32})\) running on`)

// jobID is the job id the run printed, or "" if it printed none.
func (p *proc) jobID() string {
	if m := jobLineRE.FindStringSubmatch(p.stderr.String()); m != nil {
		return m[1]
	}
	return ""
}

// childPIDs lists the children of process pid (Linux /proc).
func childPIDs(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(field); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// processAlive reports whether process pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state …; comm may hold spaces and parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// completeCheckpoints returns the IDs of the checkpoints in a job's
// checkpoint directory that have their _metadata (written last, by a
// rename), ascending.
func completeCheckpoints(jobDir string) []int64 {
	ents, _ := os.ReadDir(jobDir)
	var ids []int64
	for _, e := range ents {
		digits, ok := strings.CutPrefix(e.Name(), "chk-")
		id, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(jobDir, e.Name(), "_metadata")); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// flipByte inverts one bit of the byte in the middle of a file.
func (s *scenario) flipByte(path string) {
	s.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		s.fatalf("corrupting %s: %v (%d bytes)", path, err, len(b))
	}
	i := len(b) / 2
	b[i] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		s.fatalf("corrupting %s: %v", path, err)
	}
	s.logf("flipped a bit of byte %d of %d of %s", i, len(b), path)
}

// committedOutput reads what a File sink has published at path: the file,
// or the visible files of the directory in name order. hidden lists the
// hidden files (in-progress or pending output) beside it.
func committedOutput(path string) (text string, hidden []string, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Dir(path)
	var files []string
	if info.IsDir() {
		dir = path
	} else {
		files = []string{path}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	for _, e := range ents {
		switch {
		case !info.IsDir() && strings.HasPrefix(e.Name(), "."+filepath.Base(path)+"."):
			hidden = append(hidden, e.Name())
		case info.IsDir() && strings.HasPrefix(e.Name(), "."):
			hidden = append(hidden, e.Name())
		case info.IsDir():
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", nil, err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			return "", nil, fmt.Errorf("%s does not end with a newline: a torn write", f)
		}
		b.Write(data)
	}
	return b.String(), hidden, nil
}

// hasPendingOutput reports whether the File sink at path has a hidden file
// with data: output written but not yet committed.
func hasPendingOutput(path string, isDir bool) bool {
	dir, prefix := path, "."
	if !isDir {
		dir, prefix = filepath.Dir(path), "."+filepath.Base(path)+"."
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() > 0 {
			return true
		}
	}
	return false
}

// parseCountLines reads word<TAB>count lines, refusing duplicates.
func parseCountLines(out string) (map[string]int64, error) {
	counts := map[string]int64{}
	if out == "" {
		return counts, nil
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		word, n, ok := strings.Cut(line, "\t")
		c, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil || word == "" || c < 1 {
			return nil, fmt.Errorf("output line %d is %q, want word<TAB>count", i+1, line)
		}
		if _, dup := counts[word]; dup {
			return nil, fmt.Errorf("output line %d: %q appears twice (output duplicated)", i+1, word)
		}
		counts[word] = c
	}
	return counts, nil
}

// diffCounts describes how got differs from want, "" if it does not.
func diffCounts[V comparable](got, want map[string]V) string {
	var bad []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%q missing (want %v)", k, want[k]))
		case g != want[k]:
			bad = append(bad, fmt.Sprintf("%q: %v, want %v", k, g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			bad = append(bad, fmt.Sprintf("%q (%v) is not in the expected output", k, got[k]))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	n := len(bad)
	if n > 10 {
		bad = append(bad[:10], "…")
	}
	return fmt.Sprintf("%d of %d keys wrong: %s", n, len(want), strings.Join(bad, "; "))
}

// shellJoin quotes args for a shell, so that a failing command can be
// pasted.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
