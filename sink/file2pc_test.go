package sink

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
)

func openCommitting(t *testing.T, s connector.Sink[string], sub, p int, restored [][]byte) connector.TwoPhaseCommitWriter[string] {
	t.Helper()
	w, err := s.Open(connector.SinkContext{OperatorName: "out", Subtask: sub, Parallelism: p, Checkpointing: true, RestoredCheckpoint: int64(len(restored)), Restored: restored})
	if err != nil {
		t.Fatalf("Open(subtask %d/%d): %v", sub, p, err)
	}
	tw, ok := w.(connector.TwoPhaseCommitWriter[string])
	if !ok {
		t.Fatalf("%T is not a connector.TwoPhaseCommitWriter", w)
	}
	return tw
}

func prepare(t *testing.T, w connector.TwoPhaseCommitWriter[string], id int64) []byte {
	t.Helper()
	d, err := w.PrepareCommit(id)
	if err != nil {
		t.Fatalf("PrepareCommit(%d): %v", id, err)
	}
	return d
}

func commit(t *testing.T, w connector.TwoPhaseCommitWriter[string], ds ...[]byte) {
	t.Helper()
	if err := w.Commit(ds); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestFileCheckpointedParts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	w := openCommitting(t, Lines(dir), 1, 2, nil)
	write[string](t, w, "a", "b")
	if got, want := names(t, dir), []string{".part-1-0.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("while writing: %q, want %q", got, want)
	}
	d1 := prepare(t, w, 1)
	if got, want := names(t, dir), []string{".part-1-0.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("prepared: %q, want %q (hidden until the checkpoint completes)", got, want)
	}
	if d := prepare(t, w, 2); d != nil {
		t.Fatalf("PrepareCommit with nothing written = %x, want nil", d)
	}
	commit(t, w, d1)
	commit(t, w, d1) // again, as after a restore
	if got, want := names(t, dir), []string{"part-1-0"}; !slices.Equal(got, want) {
		t.Fatalf("committed: %q, want %q", got, want)
	}
	write[string](t, w, "c")
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), []string{".part-1-1.inprogress", "part-1-0"}; !slices.Equal(got, want) {
		t.Fatalf("after Finish: %q, want %q (the checkpoint after the end commits)", got, want)
	}
	d3 := prepare(t, w, 3)
	commit(t, w, d3)
	w.Close()
	if got := readString(t, filepath.Join(dir, "part-1-0")) + readString(t, filepath.Join(dir, "part-1-1")); got != "a\nb\nc\n" {
		t.Fatalf("parts hold %q", got)
	}
}

func TestFileCheckpointedSingleFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	if err := os.WriteFile(path, []byte("old output\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := openCommitting(t, Lines(path), 0, 1, nil)
	// The first checkpoint replaces the earlier output, even with nothing written.
	d1 := prepare(t, w, 1)
	if got := readString(t, path); got != "old output\n" {
		t.Fatalf("before the commit: %q, want the old output", got)
	}
	commit(t, w, d1)
	if got := readString(t, path); got != "" {
		t.Fatalf("after the first commit: %q, want empty", got)
	}
	write[string](t, w, "a", "bb")
	d2 := prepare(t, w, 2)
	commit(t, w, d2)
	commit(t, w, d1, d2) // a restore commits again: nothing changes
	if got := readString(t, path); got != "a\nbb\n" {
		t.Fatalf("after commit 2: %q", got)
	}
	// An append cut short by a crash is redone.
	write[string](t, w, "ccc", "dddd")
	d3 := prepare(t, w, 3)
	if err := os.WriteFile(path, []byte("a\nbb\ncc"), 0o644); err != nil {
		t.Fatal(err)
	}
	commit(t, w, d2, d3)
	if got := readString(t, path); got != "a\nbb\nccc\ndddd\n" {
		t.Fatalf("after an interrupted append and the commit again: %q", got)
	}
	w.Close()
	if got, want := names(t, dir), []string{"out.txt"}; !slices.Equal(got, want) {
		t.Fatalf("left %q, want %q", got, want)
	}
}

// Close removes the chunk being written, which no checkpoint holds, and
// keeps the prepared ones, which a checkpoint may commit after a restore.
func TestFileCloseKeepsPreparedChunks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	w := openCommitting(t, Lines(dir), 0, 2, nil)
	write[string](t, w, "a")
	prepare(t, w, 1)
	write[string](t, w, "b")
	w.Close()
	if got, want := names(t, dir), []string{".part-0-0.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("after Close: %q, want %q", got, want)
	}
}

func TestFileRestoreCommitsAndRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	// Run 1, p=2: checkpoint 1 prepares a part in each subtask; then both
	// write on, and the job fails before checkpoint 2 completes.
	var restored [][]byte
	for sub := range 2 {
		w := openCommitting(t, Lines(dir), sub, 2, nil)
		write(t, w, "x")
		restored = append(restored, prepare(t, w, 1))
		write(t, w, "lost")
		prepare(t, w, 2) // checkpoint 2 never completes
		write(t, w, "lost too")
	}
	// Run 2, p=3, restores checkpoint 1. Subtask 1 opens first: it must not
	// remove old subtask 1's pending part, which subtask 0 commits.
	ws := make([]connector.TwoPhaseCommitWriter[string], 3)
	for _, sub := range []int{1, 2, 0} {
		ws[sub] = openCommitting(t, Lines(dir), sub, 3, restored)
	}
	if got, want := names(t, dir), []string{".part-0-0.inprogress", ".part-1-0.inprogress"}; !slices.Equal(got, want) {
		t.Fatalf("after the restore's Open: %q, want only checkpoint 1's pending parts", got)
	}
	commit(t, ws[0], restored...)
	for _, w := range ws {
		write(t, w, "new")
		prepare(t, w, 3)
	}
	want := []string{".part-0-3.inprogress", ".part-1-3.inprogress", ".part-2-0.inprogress", "part-0-0", "part-1-0"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Fatalf("new parts: %q, want %q (numbers go on after those of the failed attempt)", got, want)
	}
}

func TestFileRestoreErrors(t *testing.T) {
	base := t.TempDir()
	single := filepath.Join(base, "out.txt")
	w := openCommitting(t, Lines(single), 0, 1, nil)
	write(t, w, "a")
	fileDesc := prepare(t, w, 1)
	w.Close()

	dir := filepath.Join(base, "parts")
	_, err := Lines(dir).Open(connector.SinkContext{OperatorName: "out", Subtask: 0, Parallelism: 2, Checkpointing: true, RestoredCheckpoint: 1, Restored: [][]byte{fileDesc}})
	if err == nil || !strings.Contains(err.Error(), "pending for a single file, but this run writes the directory of part files") {
		t.Fatalf("restoring a single file's output into a directory: %v", err)
	}
	for _, bad := range [][]byte{nil, {9, 'f'}, {1, 'x', 0}, {1, 'f', 0, 0, 1, 0, 0}, append(slices.Clone(fileDesc), 0)} {
		_, err := Lines(single).Open(connector.SinkContext{OperatorName: "out", Parallelism: 1, Checkpointing: true, RestoredCheckpoint: 1, Restored: [][]byte{bad}})
		if err == nil || !strings.Contains(err.Error(), `sink "out"`) || !strings.Contains(err.Error(), "pending output 1 of 1 is not valid") {
			t.Errorf("description %x: %v, want an error about the invalid description", bad, err)
		}
	}
	// The pending chunk and the output are gone: the commit says what was lost.
	os.Remove(filepath.Join(base, ".out.txt.0.inprogress"))
	os.Remove(single)
	w = openCommitting(t, Lines(single), 0, 1, [][]byte{fileDesc})
	if err := w.Commit([][]byte{fileDesc}); err == nil || !strings.Contains(err.Error(), "is lost") {
		t.Fatalf("committing lost output: %v", err)
	}
}
