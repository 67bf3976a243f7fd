package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
)

func openSink[T any](t *testing.T, s connector.Sink[T], sub, p int) connector.SinkWriter[T] {
	t.Helper()
	w, err := s.Open(connector.SinkContext{OperatorName: "out", Subtask: sub, Parallelism: p})
	if err != nil {
		t.Fatalf("Open(subtask %d/%d): %v", sub, p, err)
	}
	return w
}

func write[T any](t *testing.T, w connector.SinkWriter[T], vals ...T) {
	t.Helper()
	for _, v := range vals {
		if err := w.Write(v, NoTimestamp); err != nil {
			t.Fatalf("Write(%v): %v", v, err)
		}
	}
}

// names lists dir, hidden files included.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileHidesInProgressUntilFinish(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "counts.txt")
	w := openSink(t, File(path, strconv.Itoa), 0, 1)
	write(t, w, 1, 22, 333)
	if got, want := names(t, dir), []string{".counts.txt.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("while writing, %s holds %q, want %q", dir, got, want)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{"counts.txt"}; !slices.Equal(got, want) {
		t.Fatalf("after Finish, %s holds %q, want %q", dir, got, want)
	}
	if got := readString(t, path); got != "1\n22\n333\n" {
		t.Fatalf("content %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := readString(t, path); got != "1\n22\n333\n" {
		t.Fatalf("Close after Finish changed the file: %q", got)
	}
	if err := w.Write(4, 0); err == nil {
		t.Fatal("Write after Finish succeeded")
	}
}

func TestFileCloseWithoutFinishRemovesInProgress(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	// An earlier run's output stays as it was.
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := openSink(t, Lines(path), 0, 1)
	write(t, w, strings.Repeat("x", 1<<20), "y") // beyond the buffer: some bytes reached the file
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{"out.txt"}; !slices.Equal(got, want) {
		t.Fatalf("after Close, %s holds %q, want %q", dir, got, want)
	}
	if got := readString(t, path); got != "old\n" {
		t.Fatalf("a canceled run changed the existing output: %q", got)
	}
}

func TestFileReplacesEarlierOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.txt")
	for _, run := range []string{"first", "second"} {
		w := openSink(t, Lines(path), 0, 1)
		write(t, w, run)
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if got := readString(t, path); got != run+"\n" {
			t.Fatalf("after run %s: %q", run, got)
		}
	}
}

func TestFileCanceledAttemptLeavesNewAttemptAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	old := openSink(t, Lines(path), 0, 1)
	write(t, old, "old attempt")
	replacement := openSink(t, Lines(path), 0, 1) // opened before the old one closed
	write(t, replacement, "new attempt")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := replacement.Finish(); err != nil {
		t.Fatalf("Finish after the old attempt closed: %v", err)
	}
	if got := readString(t, path); got != "new attempt\n" {
		t.Fatalf("content %q, want the new attempt's", got)
	}
}

func TestFileDirectoryOfParts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	const p = 3
	s := File(dir, func(v string) string { return "<" + v + ">" })
	var ws []connector.SinkWriter[string]
	for i := range p {
		w := openSink(t, s, i, p)
		write(t, w, "s"+strconv.Itoa(i), "t"+strconv.Itoa(i))
		ws = append(ws, w)
	}
	if got, want := names(t, dir), []string{".part-0.inprogress", ".part-1.inprogress", ".part-2.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("while writing: %q, want %q", got, want)
	}
	if err := ws[1].Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{".part-0.inprogress", ".part-2.inprogress", "part-1"}; !slices.Equal(got, want) {
		t.Fatalf("after subtask 1 finished: %q, want %q", got, want)
	}
	ws[2].Close() // canceled
	if err := ws[0].Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{"part-0", "part-1"}; !slices.Equal(got, want) {
		t.Fatalf("at the end: %q, want %q", got, want)
	}
	for i := range 2 {
		if got, want := readString(t, filepath.Join(dir, "part-"+strconv.Itoa(i))), "<s"+strconv.Itoa(i)+">\n<t"+strconv.Itoa(i)+">\n"; got != want {
			t.Errorf("part-%d = %q, want %q", i, got, want)
		}
	}
}

func TestFileDirectoryRemovesPartsOfAHigherParallelism(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	run := func(p int) {
		for i := range p {
			w := openSink(t, Lines(dir), i, p)
			write(t, w, "p"+strconv.Itoa(p))
			if err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}
	}
	run(4)
	// Files that only look like parts, and other files, stay.
	for _, name := range []string{"part-x", "part-07", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".part-5.inprogress"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run(2)
	if got, want := names(t, dir), []string{"notes.txt", "part-0", "part-07", "part-1", "part-x"}; !slices.Equal(got, want) {
		t.Fatalf("after a run with parallelism 2: %q, want %q", got, want)
	}
	if got := readString(t, filepath.Join(dir, "part-1")); got != "p2\n" {
		t.Fatalf("part-1 = %q", got)
	}
}

func TestFileErrors(t *testing.T) {
	base := t.TempDir()
	aFile := filepath.Join(base, "file.txt")
	if err := os.WriteFile(aFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	aDir := filepath.Join(base, "dir")
	if err := os.Mkdir(aDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		p      int
		format func(string) string
		wantIn []string
		is     error
	}{
		{"missing directory", filepath.Join(base, "nope", "out.txt"), 1, nil,
			[]string{`sink "out"`, `output directory "` + filepath.Join(base, "nope") + `" does not exist`, "create it"}, fs.ErrNotExist},
		{"missing parent of part directory", filepath.Join(base, "nope", "out"), 4, nil,
			[]string{"does not exist", "create it"}, fs.ErrNotExist},
		{"parent is a file", filepath.Join(aFile, "out.txt"), 1, nil,
			[]string{"is not a directory"}, nil},
		{"part directory is a file", aFile, 3, nil,
			[]string{`output "` + aFile + `" is a file`, "parallelism 3", "set the sink's parallelism to 1"}, nil},
		{"empty path", "", 1, nil, []string{"output path is empty"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s connector.Sink[string] = Lines(tc.path)
			_, err := s.Open(connector.SinkContext{OperatorName: "out", Subtask: 0, Parallelism: tc.p})
			if err == nil {
				t.Fatal("Open succeeded, want an error")
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	_, err := File[int](filepath.Join(base, "x"), nil).Open(connector.SinkContext{OperatorName: "out", Parallelism: 1})
	if err == nil || !strings.Contains(err.Error(), "nil format") {
		t.Errorf("nil format: %v", err)
	}
}

func TestFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes regardless of permissions")
	}
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	_, err := Lines(filepath.Join(dir, "out.txt")).Open(connector.SinkContext{OperatorName: "out", Parallelism: 1})
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "grant write access to \""+dir+"\"") {
		t.Fatalf("got %v, want a permission error that names %s", err, dir)
	}
}

// A directory, or a path ending in a separator, is a directory of parts even
// with parallelism 1: a job that ran with more subtasks can run with one.
func TestFileDirectoryWithOneSubtask(t *testing.T) {
	base := t.TempDir()
	for _, path := range []string{filepath.Join(base, "new") + string(filepath.Separator), filepath.Join(base, "new")} {
		w := openSink(t, Lines(path), 0, 1)
		write(t, w, "x")
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if got := readString(t, filepath.Join(base, "new", "part-0")); got != "x\n" {
			t.Fatalf("%s: part-0 = %q", path, got)
		}
	}
}
