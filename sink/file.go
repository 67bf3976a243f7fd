package sink

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/weirstream/weir/connector"
)

// fileBufferSize is the write buffer of one File subtask.
const fileBufferSize = 256 << 10

// File writes format(record) and a '\n' for every record. With parallelism 1
// it writes the file path; with parallelism p > 1 it writes path as a
// directory of part files "part-0" … "part-<p-1>", one per subtask (Flink's
// convention). The directory of path (or, for parallel sinks, the directory
// containing path) must exist. An existing output is replaced; when the job
// ends, subtask 0 removes part files left by an earlier run with a higher
// parallelism, so the directory holds exactly this run's parts.
//
// Each subtask writes a hidden in-progress file through a buffer, and on
// Finish flushes, fsyncs and renames it to its final name; Close without
// Finish (cancellation or failure) removes it. format must not add the line
// terminator.
func File[T any](path string, format func(T) string) connector.Sink[T] {
	return fileSink[T]{path: path, format: format}
}

// Lines writes strings, one per line: File with the identity format.
func Lines(path string) connector.Sink[string] {
	return File(path, func(s string) string { return s })
}

type fileSink[T any] struct {
	path   string
	format func(T) string
}

func (s fileSink[T]) Open(ctx connector.SinkContext) (connector.SinkWriter[T], error) {
	op := ctx.OperatorName
	if s.format == nil {
		return nil, fmt.Errorf("sink %q: File was given a nil format function; pass a func(T) string", op)
	}
	if s.path == "" {
		return nil, fmt.Errorf("sink %q: the output path is empty; give the file (or, for a parallel sink, the directory) to write", op)
	}
	p := max(ctx.Parallelism, 1)
	w := &fileWriter[T]{op: op, format: s.format, subtask: ctx.Subtask, parallel: p}
	if p == 1 {
		if err := checkSingleOutput(op, s.path); err != nil {
			return nil, err
		}
		w.dir, w.final = filepath.Dir(s.path), s.path
		w.inProgress = filepath.Join(w.dir, "."+filepath.Base(s.path)+".inprogress")
	} else {
		if err := makeOutputDir(op, s.path, p); err != nil {
			return nil, err
		}
		w.dir = s.path
		w.final = filepath.Join(s.path, partName(ctx.Subtask))
		w.inProgress = filepath.Join(s.path, "."+partName(ctx.Subtask)+".inprogress")
	}
	// A fresh inode, not a truncated one: an earlier attempt's Close
	// recognizes its own file by identity and must not remove this one.
	os.Remove(w.inProgress) // if this fails, so does the create, with a better error
	f, err := os.OpenFile(w.inProgress, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, createError(op, w.inProgress, w.dir, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(w.inProgress)
		return nil, fmt.Errorf("sink %q: stat %q: %w", op, w.inProgress, err)
	}
	w.f, w.info = f, info
	w.buf = bufio.NewWriterSize(f, fileBufferSize)
	return w, nil
}

func partName(subtask int) string { return "part-" + strconv.Itoa(subtask) }

// checkSingleOutput checks that path can become a file: its directory
// exists and it is not itself a directory.
func checkSingleOutput(op, path string) error {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return fmt.Errorf("sink %q: output %q is a directory (a run with parallelism > 1 writes one); remove it or choose another output path", op, path)
	}
	return checkParent(op, path)
}

func checkParent(op, path string) error {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("sink %q: output directory %q does not exist; create it or choose another output path: %w", op, dir, err)
	case err != nil:
		return fmt.Errorf("sink %q: output directory %q: %w", op, dir, err)
	case !info.IsDir():
		return fmt.Errorf("sink %q: %q is not a directory, so %q cannot be written; choose another output path", op, dir, path)
	}
	return nil
}

// makeOutputDir creates the directory of part files if no subtask has yet.
func makeOutputDir(op, path string, parallel int) error {
	if err := checkParent(op, path); err != nil {
		return err
	}
	err := os.Mkdir(path, 0o755)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrExist):
		return createError(op, path, filepath.Dir(path), err)
	}
	// Another subtask made it, or an earlier run did, or it is not a directory.
	if info, serr := os.Stat(path); serr == nil && !info.IsDir() {
		return fmt.Errorf("sink %q: output %q is a file, but parallelism %d writes a directory of part files there; remove the file, choose another output path, or set the sink's parallelism to 1", op, path, parallel)
	}
	return nil
}

func createError(op, path, dir string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("sink %q: cannot create %q: permission denied; grant write access to %q or choose another output path: %w", op, path, dir, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("sink %q: cannot create %q: the file system is read-only; choose another output path: %w", op, path, err)
	default:
		return fmt.Errorf("sink %q: cannot create %q: %w", op, path, err)
	}
}

// fileWriter writes one subtask's file. Its state is the in-progress file
// and how far it got: finished after the rename, closed after Close.
type fileWriter[T any] struct {
	op       string
	format   func(T) string
	subtask  int
	parallel int

	dir        string // where the file lives; fsynced after the rename
	final      string
	inProgress string

	f    *os.File
	info fs.FileInfo // of the in-progress file we created, to remove only ours
	buf  *bufio.Writer

	finished bool
	closed   bool
}

func (w *fileWriter[T]) Write(v T, _ int64) error {
	if w.closed || w.finished {
		return fmt.Errorf("sink %q: write to %q after the sink was finished or closed", w.op, w.final)
	}
	w.buf.WriteString(w.format(v))
	if err := w.buf.WriteByte('\n'); err != nil { // a bufio.Writer keeps its first error
		return w.writeError(err)
	}
	return nil
}

func (w *fileWriter[T]) writeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("sink %q: writing %q: the disk is full; free space or choose another output path: %w", w.op, w.inProgress, err)
	}
	return fmt.Errorf("sink %q: writing %q: %w", w.op, w.inProgress, err)
}

// Finish makes the file visible under its final name, durably: flush, fsync,
// rename, fsync the directory.
func (w *fileWriter[T]) Finish() error {
	if w.closed {
		return fmt.Errorf("sink %q: Finish after Close", w.op)
	}
	if w.finished {
		return nil
	}
	if err := w.buf.Flush(); err != nil {
		return w.writeError(err)
	}
	if err := w.f.Sync(); err != nil {
		return w.writeError(err)
	}
	if err := w.f.Close(); err != nil {
		return w.writeError(err)
	}
	w.f = nil
	if err := os.Rename(w.inProgress, w.final); err != nil {
		if info, serr := os.Stat(w.final); serr == nil && info.IsDir() {
			return fmt.Errorf("sink %q: cannot replace %q: it is a directory; remove it or choose another output path: %w", w.op, w.final, err)
		}
		return fmt.Errorf("sink %q: renaming %q to %q: %w", w.op, w.inProgress, w.final, err)
	}
	w.finished = true
	if w.parallel > 1 && w.subtask == 0 {
		if err := w.removeStaleParts(); err != nil {
			return err
		}
	}
	syncDir(w.dir)
	return nil
}

// removeStaleParts removes the part files, finished or in progress, of
// subtasks this run does not have: what a run with a higher parallelism left.
func (w *fileWriter[T]) removeStaleParts() error {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("sink %q: listing output directory %q: %w", w.op, w.dir, err)
	}
	for _, e := range entries {
		name := strings.TrimPrefix(e.Name(), ".")
		name = strings.TrimSuffix(name, ".inprogress")
		idx, ok := strings.CutPrefix(name, "part-")
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil || n < w.parallel || strconv.Itoa(n) != idx {
			continue
		}
		if err := os.Remove(filepath.Join(w.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink %q: removing %q, left by an earlier run with a higher parallelism: %w", w.op, filepath.Join(w.dir, e.Name()), err)
		}
	}
	return nil
}

// syncDir makes a rename in dir durable. It is best effort: some file
// systems cannot fsync a directory, and the file itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// Close releases the file; without a Finish it removes the in-progress file,
// but only if it is still the one this writer created, so a lingering
// canceled attempt cannot delete the file of the attempt that replaced it.
func (w *fileWriter[T]) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.finished {
		return nil
	}
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if info, err := os.Stat(w.inProgress); err == nil && os.SameFile(info, w.info) {
		if err := os.Remove(w.inProgress); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink %q: removing in-progress file %q: %w", w.op, w.inProgress, err)
		}
	}
	return nil
}
