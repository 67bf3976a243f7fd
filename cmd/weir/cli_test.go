package main

// These tests use weir the way a user does: they build the weir binary, the
// example job (examples/wordcount) and a job that fails on purpose
// (testdata/badjob), run them as processes, and check exit codes, output
// files and what lands on stderr.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// bin returns the path of a binary built for the tests: weir, wordcount
// (the example) or badjob. All three are built once, by one go build.
func bin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "weir-cli-test-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			".", "../../examples/wordcount", "./testdata/badjob")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// result is how one process ended.
type result struct {
	stdout, stderr string
	code           int
}

// hangTimeout bounds every process: bad input must fail fast, not hang.
const hangTimeout = 20 * time.Second

// run runs a binary to its end and returns its outputs and exit code.
func run(t *testing.T, path string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not end within %s\nstderr:\n%s", filepath.Base(path), strings.Join(args, " "), hangTimeout, stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", path, err)
	}
	return r
}

// cleanEnv is the test's environment without launch settings of its own.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEIR_LAUNCH=") {
			env = append(env, kv)
		}
	}
	return env
}

// mustSucceed fails the test unless r is a clean exit.
func mustSucceed(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit status %d\nstderr:\n%s", what, r.code, r.stderr)
	}
}

// wordRE is what a word is: a maximal run of letters and digits.
var wordRE = regexp.MustCompile(`[\p{L}\p{Nd}]+`)

// countWords counts the words of text independently of the jobs.
func countWords(text string) map[string]int64 {
	counts := map[string]int64{}
	for _, w := range wordRE.FindAllString(text, -1) {
		counts[strings.ToLower(w)]++
	}
	return counts
}

// parseCounts reads word<TAB>count lines, refusing duplicates and junk.
func parseCounts(t *testing.T, out string) map[string]int64 {
	t.Helper()
	counts := map[string]int64{}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" && len(counts) == 0 && i == 0 {
			continue
		}
		word, n, ok := strings.Cut(line, "\t")
		c, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil || word == "" || c < 1 {
			t.Fatalf("output line %d is %q, want word<TAB>count", i+1, line)
		}
		if _, dup := counts[word]; dup {
			t.Fatalf("output line %d: word %q appears twice", i+1, word)
		}
		counts[word] = c
	}
	return counts
}

func checkCounts(t *testing.T, got, want map[string]int64) {
	t.Helper()
	bad := 0
	for w, n := range want {
		if got[w] != n {
			if bad++; bad <= 10 {
				t.Errorf("word %q: count %d, want %d", w, got[w], n)
			}
		}
	}
	for w, n := range got {
		if _, ok := want[w]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("word %q (count %d) is not in the input", w, n)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d words wrong of %d distinct words", bad, len(want))
	}
}

// writeText writes a deterministic text that exercises word splitting:
// mixed case, punctuation, non-ASCII letters and digits, characters that
// look like word parts but are not (², ½, combining marks, an invalid byte),
// CRLF endings, empty lines, a long line and no final newline.
func writeText(t *testing.T) (path, text string) {
	t.Helper()
	vocab := []string{
		"the", "The", "THE", "stream", "Streams", "weir", "Weir", "flink", "a", "I",
		"Straße", "STRASSE", "naïve", "NAÏVE", "ÉCOLE", "école", "日本語", "Ǆemal", "ǅemal",
		"x²", "½", "C3PO", "c3po", "42", "٣٤", "007", "don't", "e-mail", "e\u0301t\u0301e",
		"fin\xffal", "ﬁsh", "Ωmega", "ωmega", "word_with_underscore",
	}
	seps := []string{" ", "  ", ", ", ". ", "!", "?", "\t", " -- ", "—", "(", ") ", "\"", "'", ";", ":"}
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for i := range 20_000 {
		switch {
		case i%997 == 0:
			b.WriteString("\n")
			continue
		case i == 5000:
			for range 20_000 {
				b.WriteString(vocab[rng.IntN(len(vocab))] + seps[rng.IntN(len(seps))])
			}
		}
		for range 1 + rng.IntN(12) {
			b.WriteString(vocab[rng.IntN(len(vocab))])
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		if i%3 == 0 {
			b.WriteString("\r")
		}
		if i < 19_999 {
			b.WriteString("\n")
		}
	}
	text = b.String()
	path = filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, text
}

func TestRunBuiltinWordcount(t *testing.T) {
	t.Parallel()
	input, text := writeText(t)
	output := filepath.Join(t.TempDir(), "counts.txt")
	r := run(t, bin(t, "weir"), "run", "builtin:wordcount", "--input", input, "--output", output)
	mustSucceed(t, r, "weir run builtin:wordcount")
	out, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, parseCounts(t, string(out)), countWords(text))
}

func TestRunExampleBinary(t *testing.T) {
	t.Parallel()
	input, text := writeText(t)
	output := filepath.Join(t.TempDir(), "counts.txt")
	r := run(t, bin(t, "weir"), "run", "-p", "2", bin(t, "wordcount"), "--input", input, "--output", output)
	mustSucceed(t, r, "weir run -p 2 ./wordcount")
	out, err := os.ReadFile(output)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, parseCounts(t, string(out)), countWords(text))
}

// TestExampleRunsDirectly is `go run ./examples/wordcount`: with no
// arguments the example counts its embedded text and prints to stdout.
func TestExampleRunsDirectly(t *testing.T) {
	t.Parallel()
	embedded, err := os.ReadFile("../../examples/wordcount/hamlet.txt")
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, bin(t, "wordcount"))
	mustSucceed(t, r, "wordcount with no arguments")
	checkCounts(t, parseCounts(t, r.stdout), countWords(string(embedded)))

	input, text := writeText(t)
	r = run(t, bin(t, "wordcount"), "--input", input)
	mustSucceed(t, r, "wordcount --input")
	checkCounts(t, parseCounts(t, r.stdout), countWords(text))
}

func TestInfo(t *testing.T) {
	t.Parallel()
	weir, wordcount := bin(t, "weir"), bin(t, "wordcount")
	input, _ := writeText(t)

	r := run(t, weir, "info", "-p", "2", wordcount, "--input", input)
	mustSucceed(t, r, "weir info ./wordcount")
	for _, want := range []string{`Job "wordcount"`, "Source: lines -> split", "count", "out", "parallelism 2", "hash"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("weir info: plan lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stderr, "running") {
		t.Errorf("weir info ran the job:\n%s", r.stderr)
	}

	for _, job := range [][]string{{wordcount}, {"builtin:wordcount", "--input", input}} {
		args := append([]string{"info", "--json", "-p", "3"}, job...)
		r = run(t, weir, args...)
		mustSucceed(t, r, "weir info --json")
		var plan struct {
			Name     string `json:"name"`
			Vertices []struct {
				Name        string `json:"name"`
				Parallelism int    `json:"parallelism"`
				Operators   []struct {
					UID string `json:"uid"`
				} `json:"operators"`
			} `json:"vertices"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
			t.Fatalf("weir %s: not JSON: %v\n%s", strings.Join(args, " "), err, r.stdout)
		}
		var uids []string
		for _, v := range plan.Vertices {
			for _, op := range v.Operators {
				uids = append(uids, op.UID)
			}
			if v.Name == "Source: lines -> split" && v.Parallelism != 3 {
				t.Errorf("weir %s: vertex %q has parallelism %d, want 3", strings.Join(args, " "), v.Name, v.Parallelism)
			}
		}
		if plan.Name != "wordcount" || strings.Join(uids, ",") != "lines,split,count,out" {
			t.Errorf("weir %s: plan %q with operators %v, want wordcount with lines,split,count,out", strings.Join(args, " "), plan.Name, uids)
		}
	}
}

// progressRE matches the job's progress lines on stderr, which are not
// errors.
var progressRE = regexp.MustCompile(`^weir: job \S+ (\([0-9a-f]+\) running on|(FINISHED|FAILED|CANCELED) after)`)

// errorLines splits stderr into error lines and indented stack frames,
// leaving out progress lines.
func errorLines(stderr string) (lines, frames []string) {
	for _, l := range strings.Split(stderr, "\n") {
		switch {
		case strings.TrimSpace(l) == "" || progressRE.MatchString(l):
		case strings.HasPrefix(l, "  "):
			frames = append(frames, l)
		default:
			lines = append(lines, l)
		}
	}
	return lines, frames
}

// checkCleanError checks that a failed run left one error line containing
// every want, and no goroutine dump or Go panic trace.
func checkCleanError(t *testing.T, r result, frames bool, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit status 0, want a failure\nstderr:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "goroutine ") || regexp.MustCompile(`(?m)^panic: |runtime\.gopanic`).MatchString(r.stderr) {
		t.Fatalf("stderr holds a Go panic trace:\n%s", r.stderr)
	}
	lines, fr := errorLines(r.stderr)
	if len(lines) != 1 {
		t.Fatalf("want one error line, got %d:\n%s", len(lines), r.stderr)
	}
	if len(fr) > 0 && !frames {
		t.Errorf("stack frames on stderr:\n%s", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line lacks %q:\n%s", w, lines[0])
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	weir, wordcount, badjob := bin(t, "weir"), bin(t, "wordcount"), bin(t, "badjob")
	dir := t.TempDir()
	input := filepath.Join(dir, "words.txt")
	script := filepath.Join(dir, "job.sh")
	unexecutable := filepath.Join(dir, "wordcount-no-x")
	must(t, os.WriteFile(input, []byte("to be or not to be\n"), 0o644))
	must(t, os.WriteFile(script, []byte("#!/bin/sh\necho this is not a weir job\n"), 0o755))
	exe, err := os.ReadFile(wordcount)
	must(t, err)
	must(t, os.WriteFile(unexecutable, exe, 0o644))

	type tc struct {
		name   string
		args   []string
		frames bool // indented stack frames may follow the error line
		want   []string
	}
	cases := []tc{
		{name: "no job", args: []string{"run"}, want: []string{"no job given", "builtin:NAME"}},
		{name: "unknown builtin", args: []string{"run", "builtin:nope"},
			want: []string{`unknown built-in job "nope"`, "wordcount"}},
		{name: "unknown builtin info", args: []string{"info", "builtin:nope"},
			want: []string{`unknown built-in job "nope"`, "wordcount"}},
		{name: "unknown nexmark query", args: []string{"run", "builtin:nexmark", "--query", "q99"},
			want: []string{`unknown query "q99"`, "q0"}},
		{name: "missing input", args: []string{"run", "builtin:wordcount", "--input", "/nonexistent"},
			want: []string{"/nonexistent", "no such file", "check the path"}},
		{name: "missing input of a binary", args: []string{"run", wordcount, "--input", "/nonexistent"},
			want: []string{`"/nonexistent" does not exist`, "check the input path"}},
		{name: "missing output directory", args: []string{"run", "builtin:wordcount", "--input", input, "--output", "/nonexistent/counts.txt"},
			want: []string{`"/nonexistent" does not exist`, "create it"}},
		{name: "negative datagen rows", args: []string{"run", "builtin:datagen", "--rows", "-2"},
			want: []string{"--rows -2", "-1 to generate until canceled"}},
		{name: "negative rate", args: []string{"run", "builtin:wordcount", "--input", input, "--rate", "-5"},
			want: []string{"--rate -5", "0 to read as fast as possible"}},
		{name: "unknown job flag", args: []string{"run", "builtin:wordcount", "--inptu", input},
			want: []string{"-inptu", "--help"}},
		{name: "unknown -D key", args: []string{"run", "-D", "parallelism.defualt=2", "builtin:wordcount", "--input", input},
			want: []string{`unknown configuration key "parallelism.defualt"`, `did you mean "parallelism.default"`}},
		{name: "bad -D value", args: []string{"run", "-D", "parallelism.default=many", "builtin:wordcount", "--input", input},
			want: []string{"parallelism.default", `"many"`, "not a whole number"}},
		{name: "-D without value", args: []string{"run", "-D", "parallelism.default", "builtin:wordcount", "--input", input},
			want: []string{"expected key=value"}},
		{name: "negative -p", args: []string{"run", "-p", "-2", "builtin:wordcount", "--input", input},
			want: []string{"-p -2", "at least 1"}},
		{name: "missing binary", args: []string{"run", filepath.Join(dir, "nope")},
			want: []string{"no such file", "builtin:NAME"}},
		{name: "directory", args: []string{"run", dir}, want: []string{"is a directory", "go build"}},
		{name: "shell script", args: []string{"run", script},
			want: []string{"not a Weir job binary", "not a Go program", "go build"}},
		{name: "text file", args: []string{"run", input},
			want: []string{"not a Weir job binary", "not a Go program", "go build"}},
		{name: "text file info", args: []string{"info", input},
			want: []string{"not a Weir job binary", "not a Go program"}},
		{name: "not executable", args: []string{"run", unexecutable}, want: []string{"not executable", "chmod +x"}},
		{name: "operator panics", args: []string{"run", badjob, "--fail", "panic"}, frames: true,
			want: []string{`operator "explode"`, "panicked", "assignment to entry in nil map"}},
		{name: "key selector panics", args: []string{"run", "-p", "2", badjob, "--fail", "keypanic"}, frames: true,
			want: []string{"panicked", "no key for 10"}},
		{name: "key type cannot be encoded", args: []string{"run", badjob, "--fail", "key"},
			want: []string{"KeyBy", "main.chanKey", "cannot be used as a key", "plain data"}},
		{name: "key type cannot be encoded info", args: []string{"info", badjob, "--fail", "key"},
			want: []string{"KeyBy", "main.chanKey", "cannot be used as a key"}},
		{name: "jobmanager unreachable", args: []string{"run", "--jobmanager", "127.0.0.1:1", "builtin:wordcount", "--input", input},
			want: []string{"--jobmanager 127.0.0.1:1", "no session cluster answers", "weir cluster start", "omit --jobmanager"}},
	}
	if goTool, err := exec.LookPath("go"); err == nil {
		cases = append(cases, tc{name: "Go program without Weir", args: []string{"run", goTool, "version"},
			want: []string{"not a Weir job binary", "does not use Weir"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, weir, c.args...)
			checkCleanError(t, r, c.frames, c.want...)
			if c.frames {
				_, frames := errorLines(r.stderr)
				if len(frames) == 0 || !strings.Contains(strings.Join(frames, "\n"), "badjob/main.go:") {
					t.Errorf("the panic does not point at the job's source line:\n%s", r.stderr)
				}
			}
		})
	}
	// A job that fails before it runs a dataflow: weir passes its exit
	// status on and says so, since it cannot tell whether the job did.
	r := run(t, weir, "run", badjob, "--fail", "nope")
	if r.code != 2 || !strings.Contains(r.stderr, `badjob: unknown --fail "nope"`) || !strings.Contains(r.stderr, "exited with status 2") {
		t.Errorf("weir run of a job that exits with status 2: exit status %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInterrupt sends SIGINT (Ctrl-C) or SIGTERM to weir running an endless
// job, built in or as a child binary, and expects a clean cancellation
// with exit status 130.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	weir := bin(t, "weir")
	cases := []struct {
		name string
		sig  os.Signal
		args []string
		want []string
	}{
		{"builtin SIGINT", os.Interrupt, []string{"run", "builtin:datagen", "--rows", "-1", "--rate", "1000"},
			[]string{"weir: job datagen CANCELED", "weir: job canceled"}},
		{"builtin SIGTERM", syscall.SIGTERM, []string{"run", "-p", "1", "builtin:datagen", "--rows", "-1", "--rate", "1000"},
			[]string{"weir: job datagen CANCELED", "weir: job canceled"}},
		// Only weir gets the signal, as from kill or a supervisor; at a
		// terminal the job would get Ctrl-C too.
		{"binary SIGINT", os.Interrupt, []string{"run", bin(t, "badjob"), "--fail", "forever"},
			[]string{"weir: job badjob CANCELED"}},
		{"binary SIGTERM", syscall.SIGTERM, []string{"run", bin(t, "badjob"), "--fail", "forever"},
			[]string{"weir: job badjob CANCELED"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(weir, c.args...)
			cmd.Env = cleanEnv()
			var stderr syncBuffer
			cmd.Stderr = &stderr
			must(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			waited := false
			t.Cleanup(func() {
				if !waited {
					cmd.Process.Kill()
					<-exited
				}
			})
			deadline := time.Now().Add(hangTimeout)
			for !strings.Contains(stderr.String(), "running on the embedded cluster") {
				if time.Now().After(deadline) {
					t.Fatalf("the job did not start within %s; stderr:\n%s", hangTimeout, stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			must(t, cmd.Process.Signal(c.sig))
			var err error
			select {
			case err = <-exited:
				waited = true
			case <-time.After(hangTimeout):
				t.Fatalf("weir did not end within %s of %v; stderr:\n%s", hangTimeout, c.sig, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Fatalf("after %v: %v, want exit status 130; stderr:\n%s", c.sig, err, stderr.String())
			}
			out := stderr.String()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("stderr lacks %q:\n%s", w, out)
				}
			}
			if lines, frames := errorLines(out); len(lines) > 1 || len(frames) > 0 || strings.Contains(out, "goroutine ") {
				t.Errorf("cancellation is not clean:\n%s", out)
			}
		})
	}
}
