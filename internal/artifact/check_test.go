package artifact

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/weirstream/weir/internal/launch"
)

// bins are the programs the tests build once, in TestMain.
var bins struct {
	dir      string
	weir     string // examples/wordcount: a Weir job whose main module is Weir's
	ext      string // testdata/extjob: a Weir job in a module of its own
	notWeir  string // testdata/notweir: a Go program that does not use Weir
	crossArc string // testdata/notweir for this GOOS and another GOARCH
	crossOS  string // testdata/notweir for another GOOS (another object format)
	err      error  // why they could not be built
}

// otherArch and otherOS are the platform the cross-built programs are for.
var otherArch, otherOS = "arm64", "windows"

func init() {
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	if runtime.GOOS == "windows" {
		otherOS = "linux"
	}
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "artifact-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.err = buildAll(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildAll builds the test programs into dir, concurrently, without symbol
// tables and debug information (which link slowly; Check needs neither).
func buildAll(dir string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no go command to build the test programs with: %w", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	notWeir, err := filepath.Abs(filepath.Join("testdata", "notweir"))
	if err != nil {
		return err
	}
	ext, err := extModule(dir, root)
	if err != nil {
		return err
	}
	exe := func(name string) string { return filepath.Join(dir, name) }
	bins.weir, bins.ext, bins.notWeir = exe("wordcount"), exe("extjob"), exe("notweir")
	bins.crossArc, bins.crossOS = exe("notweir-"+otherArch), exe("notweir-"+otherOS)

	type build struct {
		dir, out, pkg string
		env           []string
	}
	builds := []build{
		{root, bins.weir, "./examples/wordcount", nil},
		{ext, bins.ext, ".", []string{"GOFLAGS=-mod=mod"}},
		{notWeir, bins.notWeir, ".", nil},
		{notWeir, bins.crossArc, ".", []string{"GOARCH=" + otherArch, "CGO_ENABLED=0"}},
		{notWeir, bins.crossOS, ".", []string{"GOOS=" + otherOS, "GOARCH=amd64", "CGO_ENABLED=0"}},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Go(func() {
			cmd := exec.Command(goCmd, "build", "-buildvcs=false", "-ldflags=-s -w", "-o", b.out, b.pkg)
			cmd.Dir = b.dir
			cmd.Env = append(os.Environ(), "GOWORK=off")
			cmd.Env = append(cmd.Env, b.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build -o %s %s in %s (%s): %v\n%s", b.out, b.pkg, b.dir, strings.Join(b.env, " "), err, out)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// extModule writes a module in dir/extjob that requires Weir, replaced with
// the checkout at root, and returns its directory.
func extModule(dir, root string) (string, error) {
	mod := filepath.Join(dir, "extjob-src")
	if err := os.Mkdir(mod, 0o755); err != nil {
		return "", err
	}
	src, err := os.ReadFile(filepath.Join("testdata", "extjob", "main.go"))
	if err != nil {
		return "", err
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return "", err
	}
	gomod := fmt.Sprintf("module example.com/extjob\n\ngo 1.26\n\nrequire %s v0.0.0\n\nreplace %s => %s\n",
		launch.ModulePath, launch.ModulePath, root)
	for name, b := range map[string][]byte{"main.go": src, "go.sum": sum, "go.mod": []byte(gomod)} {
		if err := os.WriteFile(filepath.Join(mod, name), b, 0o644); err != nil {
			return "", err
		}
	}
	return mod, nil
}

// needBins fails the test if the test programs could not be built.
func needBins(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("building the test programs: %v", bins.err)
	}
}

// copyFile copies the file at from to a new file in t's temporary directory
// with this mode, and returns its path.
func copyFile(t *testing.T, from string, mode os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), filepath.Base(from))
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	return to
}

func TestCheckAccepts(t *testing.T) {
	needBins(t)
	for name, path := range map[string]string{"Weir's own module": bins.weir, "a module of its own": bins.ext} {
		if err := Check(path); err != nil {
			t.Errorf("Check of a Weir job in %s: %v", name, err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		if err := CheckFile(f, st.Size(), "upload"); err != nil {
			t.Errorf("CheckFile of a Weir job in %s: %v", name, err)
		}
		f.Close()
	}
}

func TestCheckRejects(t *testing.T) {
	needBins(t)
	tmp := t.TempDir()
	host := runtime.GOOS + "/" + runtime.GOARCH
	rebuild := fmt.Sprintf("rebuild it with GOOS=%s GOARCH=%s go build", runtime.GOOS, runtime.GOARCH)

	empty := filepath.Join(tmp, "empty")
	os.WriteFile(empty, nil, 0o755)
	truncated := filepath.Join(tmp, "truncated")
	b, err := os.ReadFile(bins.weir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(truncated, b[:4096], 0o755)
	script := copyFile(t, filepath.Join("testdata", "job.sh"), 0o755)
	text := copyFile(t, filepath.Join("testdata", "notes.txt"), 0o755)
	noExec := copyFile(t, bins.weir, 0o644)

	tests := []struct {
		name, path    string
		problem, fix  string // substrings of the Error's Problem and Fix
		skipOnWindows bool
	}{
		{"missing", filepath.Join(tmp, "nope"), "does not exist", "built with `go build`", false},
		{"directory", tmp, "is a directory", "go build -o myjob " + tmp, false},
		{"empty", empty, "is empty", "go build", false},
		{"script", script, "is a script (#!/bin/sh), not a compiled program", "a Weir job is a Go program", false},
		{"text", text, "is a text file, not a compiled program", "a Weir job is a Go program", false},
		{"truncated", truncated, "is a damaged or truncated", "build it again", false},
		{"C program", "/bin/sh", "but not a Go program", "a Weir job is a Go program", true},
		{"other arch", bins.crossArc, fmt.Sprintf("is built for %s/%s, this machine runs %s", runtime.GOOS, otherArch, host), rebuild, false},
		{"other OS", bins.crossOS, "this machine runs " + host, rebuild, false},
		{"not Weir", bins.notWeir, "is a Go program but not a Weir job: it does not use github.com/weirstream/weir", "imports github.com/weirstream/weir/stream", false},
		{"not executable", noExec, "is not executable", "chmod +x " + noExec, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skipOnWindows && runtime.GOOS == "windows" {
				t.Skip("not on Windows")
			}
			if _, err := os.Stat(tt.path); tt.name == "C program" && err != nil {
				t.Skip("no /bin/sh")
			}
			err := Check(tt.path)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%s) = %v, want an *Error", tt.path, err)
			}
			t.Log(err)
			if e.Path != tt.path || !strings.Contains(e.Problem, tt.problem) || !strings.Contains(e.Fix, tt.fix) {
				t.Errorf("Check(%s) = %#v, want a Problem with %q and a Fix with %q", tt.path, e, tt.problem, tt.fix)
			}
			if want := e.Path + " " + e.Problem + "; " + e.Fix; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestCheckOtherOSDescribesFormat(t *testing.T) {
	needBins(t)
	if hostFormat() == "PE" {
		t.Skip("host runs PE binaries")
	}
	err := Check(bins.crossOS)
	want := fmt.Sprintf("%s is a Windows/PE binary for amd64, this machine runs %s/%s; rebuild it with GOOS=%s GOARCH=%s go build",
		bins.crossOS, runtime.GOOS, runtime.GOARCH, runtime.GOOS, runtime.GOARCH)
	if err == nil || err.Error() != want {
		t.Errorf("Check = %v\nwant %s", err, want)
	}
}

func TestCheckFileNamesUpload(t *testing.T) {
	needBins(t)
	f, err := os.Open(bins.notWeir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	err = CheckFile(f, st.Size(), "my job")
	if err == nil || !strings.HasPrefix(err.Error(), `"my job" is a Go program but not a Weir job`) {
		t.Errorf("CheckFile = %v, want it to name the upload, quoted", err)
	}
}

func TestErrorWithoutFix(t *testing.T) {
	if got := (&Error{Path: "./x", Problem: "is odd"}).Error(); got != "./x is odd" {
		t.Errorf("Error() = %q", got)
	}
}

func TestValidDigest(t *testing.T) {
	ok := strings.Repeat("0123456789abcdef", 4)
	for s, want := range map[string]bool{
		ok:                  true,
		ok[:63]:             false,
		ok + "0":            false,
		strings.ToUpper(ok): false,
		"../" + ok[3:]:      false,
		"":                  false,
		ok[:63] + "g":       false,
		ok[:62] + "/a":      false,
	} {
		if got := ValidDigest(s); got != want {
			t.Errorf("ValidDigest(%q) = %v, want %v", s, got, want)
		}
	}
}
