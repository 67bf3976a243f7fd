package source

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/weirstream/weir/connector"
)

// referenceLines splits content the way bufio.ScanLines does: on '\n',
// dropping one '\r' before it (and at the end), with no empty line after a
// final newline.
func referenceLines(content string) []string {
	if content == "" {
		return nil
	}
	parts := strings.Split(content, "\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		parts[i] = strings.TrimSuffix(p, "\r")
	}
	return parts
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func manySmallLines() string {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for i := range 10_000 {
		b.WriteString(strings.Repeat("x", rng.IntN(12)))
		b.WriteString(string(rune('a' + i%26)))
		if rng.IntN(10) == 0 {
			b.WriteString("\n") // empty lines too
		}
		b.WriteString("\n")
	}
	return b.String()
}

var textCases = []struct {
	name    string
	content string
}{
	{"empty file", ""},
	{"one line without newline", "hello"},
	{"one line with newline", "hello\n"},
	{"two lines without trailing newline", "hello\nworld"},
	{"two lines with trailing newline", "hello\nworld\n"},
	{"only a newline", "\n"},
	{"only newlines", "\n\n\n\n\n\n\n\n"},
	{"one-byte lines", "a\nb\nc\nd\ne\nf\ng\nh\ni\n"},
	{"crlf", "alpha\r\nbeta\r\ngamma\r\n"},
	{"crlf without trailing newline", "alpha\r\nbeta\r\ngamma"},
	{"crlf empty lines", "\r\n\r\n\r\n"},
	{"cr at end of file", "a\nb\r"},
	{"lone cr inside a line", "a\rb\nc\r\rd\n"},
	{"mixed terminators", "unix\nwindows\r\n\nlast"},
	{"unicode", "grüße\n日本語\r\n🙂 emoji\n"},
	{"one huge line", strings.Repeat("0123456789", 600_000)},                             // 6 MB, no newline
	{"one huge line with newline", strings.Repeat("abcdefghij", 600_000) + "\r\n"},       // 6 MB
	{"huge line between small ones", "a\nb\n" + strings.Repeat("z", 5<<20) + "\nc\nd\n"}, // crosses every split
	{"small lines after huge line", strings.Repeat("q", 3<<20) + "\n" + strings.Repeat("s\n", 1000)},
	{"many small lines", manySmallLines()},
}

func TestTextFileSplitsCoverEveryLineOnce(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range textCases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "in"+string(rune('a'+i))+".txt", tc.content)
			want := referenceLines(tc.content)
			bufSizes := []int{textBufferSize, 4096}
			if len(tc.content) < 100_000 {
				bufSizes = append(bufSizes, 16) // every line is longer than the buffer
			}
			for _, bufSize := range bufSizes {
				src := textFileSource{path: path, bufSize: bufSize}
				for p := 1; p <= 7; p++ {
					got, _ := readSubtasks[string](t, src, p)
					// Splits are contiguous byte ranges, so the subtasks' lines
					// in subtask order are the file's lines in file order.
					if !slices.Equal(got, want) {
						t.Fatalf("buffer %d, p=%d: got %d lines, want %d\n%s", bufSize, p, len(got), len(want), firstDiff(got, want))
					}
				}
			}
		})
	}
}

func TestTextFileRandomContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	dir := t.TempDir()
	alphabet := []byte("ab\n\r\n")
	for i := range 200 {
		b := make([]byte, rng.IntN(200))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		content := string(b)
		path := writeFile(t, dir, "r.txt", content)
		want := referenceLines(content)
		p := 1 + rng.IntN(12)
		got, _ := readSubtasks[string](t, textFileSource{path: path, bufSize: 16}, p)
		if !slices.Equal(got, want) {
			t.Fatalf("case %d, p=%d, content %q:\n%s", i, p, content, firstDiff(got, want))
		}
	}
}

func TestTextFileSplitsAreBalanced(t *testing.T) {
	path := writeFile(t, t.TempDir(), "in.txt", strings.Repeat("0123456789abcde\n", 7000)) // 16-byte lines
	_, per := readSubtasks(t, TextFile(path), 7)
	for i, lines := range per {
		if len(lines) < 990 || len(lines) > 1010 {
			t.Errorf("subtask %d read %d lines, want about 1000", i, len(lines))
		}
	}
}

func TestTextFileDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.txt", "b1\nb2\r\nb3")
	writeFile(t, dir, "a.txt", manySmallLines())
	writeFile(t, dir, "c.txt", "")
	writeFile(t, dir, "d.txt", "d1\n"+strings.Repeat("D", 100_000)+"\nd3\n")
	writeFile(t, dir, ".part-0.inprogress", "hidden\n")
	writeFile(t, dir, "_SUCCESS", "marker\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub"), "nested.txt", "nested\n")
	if err := os.Symlink(filepath.Join(dir, "b.txt"), filepath.Join(dir, "e-link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "f-dangling")); err != nil {
		t.Fatal(err)
	}

	var want []string
	for _, name := range []string{"a.txt", "b.txt", "c.txt", "d.txt", "e-link.txt"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, referenceLines(string(b))...)
	}
	sortedWant := slices.Sorted(slices.Values(want))
	for p := 1; p <= 7; p++ {
		// Each subtask reads its range of every file, so the union, not the
		// order, is what must match.
		all, _ := readSubtasks(t, TextFile(dir), p)
		slices.Sort(all)
		if !slices.Equal(all, sortedWant) {
			t.Fatalf("p=%d: lines differ:\n%s", p, firstDiff(all, sortedWant))
		}
	}
}

func TestTextFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, empty, ".hidden", "x\n")
	fifo := filepath.Join(dir, "fifo")
	makeFifo(t, fifo)

	tests := []struct {
		name   string
		path   string
		wantIn []string
		is     error
	}{
		{"missing file", filepath.Join(dir, "words.txt"), []string{`source "lines"`, `input "` + filepath.Join(dir, "words.txt") + `" does not exist`, "check the input path"}, fs.ErrNotExist},
		{"missing directory", filepath.Join(dir, "nope", "words.txt"), []string{"does not exist"}, fs.ErrNotExist},
		{"directory without files", empty, []string{`input directory "` + empty + `" has no files`, "add input files"}, nil},
		{"not a regular file", fifo, []string{"neither a regular file nor a directory"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TextFile(tc.path).Open(connector.SourceContext{OperatorName: "lines", Subtask: 0, Parallelism: 1})
			if err == nil {
				t.Fatal("Open succeeded, want an error")
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestTextFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of their mode")
	}
	path := writeFile(t, t.TempDir(), "secret.txt", "x\n")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	// Open lists the input; the file itself is opened by the first Read.
	r, err := TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1})
	if err == nil {
		_, err = r.Read(&recorder[string]{})
		r.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "grant read access") {
		t.Fatalf("Open: got %v, want a permission error naming %s", err, path)
	}
}

func TestTextFileReadCapsBatch(t *testing.T) {
	path := writeFile(t, t.TempDir(), "in.txt", strings.Repeat("x\n", 3*batchSize))
	r, err := TextFile(path).Open(connector.SourceContext{OperatorName: "lines", Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out recorder[string]
	status, err := r.Read(&out)
	if err != nil || status != connector.MoreAvailable || len(out.got) != batchSize {
		t.Fatalf("first Read: status %v, err %v, %d lines; want MoreAvailable with %d lines", status, err, len(out.got), batchSize)
	}
	state, err := r.(connector.CheckpointedReader).SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	// version, kind, size 6144, 1 file, 1 span: starts 2048 after 0, 4096 long
	if want := []byte{1, 't', 0x80, 0x30, 1, 1, 0x80, 0x10, 0x80, 0x20}; !slices.Equal(state, want) {
		t.Fatalf("state after one batch = %x, want %x", state, want)
	}
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at line %d: got %s, want %s", i, clip(got[i]), clip(want[i]))
		}
	}
	return fmt.Sprintf("one is a prefix of the other: got %d lines, want %d", len(got), len(want))
}

func clip(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q… (%d bytes)", s[:40], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func makeFifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
