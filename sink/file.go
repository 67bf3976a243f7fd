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

// File writes format(record) and a '\n' for every record; format must not
// add the line terminator. The output is one file or a directory of part
// files, and a reader never sees a part of it that is not committed: each
// subtask writes hidden files (names starting with ".") and publishes them
// by rename or append only when they are complete.
//
// With parallelism 1 it writes the file path; with parallelism p > 1, or
// when path is a directory or ends in a separator, path is a directory of
// part files, one or more per subtask. The directory of path (or, for a
// directory of parts, the directory containing it) must exist.
//
// Without checkpoints a subtask writes ".part-0.inprogress" (or
// ".counts.txt.inprogress" next to counts.txt) and, when its input has ended,
// flushes, fsyncs and renames it to "part-0" (or counts.txt), Flink's
// names; a canceled or failed subtask removes it. An existing output is
// replaced, and subtask 0 removes part files that an earlier run with a
// higher parallelism left, so the directory holds exactly this run's parts.
//
// With checkpoints the output is committed exactly once, by the checkpoints
// (see connector.TwoPhaseCommitWriter): at each checkpoint a subtask closes
// what it wrote since the last one, fsynced but hidden, and when the
// checkpoint completes publishes it. After a failure the job restores the
// last completed checkpoint, publishes what that checkpoint had pending
// (again, harmlessly, if it already was), removes hidden files of the
// failed attempt, and replays the input from there; the visible output is
// then exactly that of a run without failures. In a directory the parts are
// "part-<subtask>-<n>", n counting up over the job's life (sort by subtask
// and n to read them in order); a single file grows by appending each
// checkpoint's chunk, which is kept hidden (".counts.txt.<n>.inprogress")
// until then. The first commit of a job replaces the earlier output: the
// single file is replaced at once, and in a directory each subtask removes
// its older parts. The input's end is committed by the checkpoint after it.
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
	// crash, if set, is called at the steps of Commit, so tests can
	// simulate a crash between them (it panics).
	crash func(step string)
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
	if ctx.Subtask < 0 || ctx.Subtask >= p {
		return nil, fmt.Errorf("sink %q: subtask %d is out of range for parallelism %d", op, ctx.Subtask, p)
	}
	restored, err := decodePendings(op, ctx.Restored)
	if err != nil {
		return nil, err
	}
	w := &fileWriter[T]{
		out:           output{op: op, crash: s.crash},
		format:        s.format,
		subtask:       ctx.Subtask,
		parallel:      p,
		checkpointing: ctx.Checkpointing,
		restoring:     ctx.RestoredCheckpoint != 0 || len(ctx.Restored) > 0,
	}
	info, statErr := os.Stat(s.path)
	w.out.parts = p > 1 || strings.HasSuffix(s.path, string(filepath.Separator)) || statErr == nil && info.IsDir()
	if w.out.parts {
		if err := makeOutputDir(op, s.path, p); err != nil {
			return nil, err
		}
		w.out.dir = filepath.Clean(s.path)
	} else {
		if err := checkParent(op, s.path); err != nil {
			return nil, err
		}
		w.out.dir, w.out.file = filepath.Dir(s.path), s.path
	}
	for _, d := range restored {
		if d.parts != w.out.parts {
			return nil, fmt.Errorf("sink %q: the checkpoint has output pending for %s, but this run writes %s; "+
				"restore with the sink's earlier parallelism and output path, or start the job without the checkpoint", op, d.layout(), w.out.layout())
		}
	}
	if !w.checkpointing && !w.restoring {
		if err := w.openWhole(); err != nil {
			return nil, err
		}
		return w, nil
	}
	if err := w.openChunked(restored); err != nil {
		return nil, err
	}
	return w, nil
}

func partName(subtask int) string { return "part-" + strconv.Itoa(subtask) }

func checkParent(op, path string) error {
	dir := filepath.Dir(filepath.Clean(path))
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

func writeError(op, path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("sink %q: writing %q: the disk is full; free space or choose another output path: %w", op, path, err)
	}
	return fmt.Errorf("sink %q: writing %q: %w", op, path, err)
}

// syncFile and syncDir make writes and renames durable. Tests that simulate
// process crashes, which lose nothing written, replace them to run faster.
var (
	syncFile = (*os.File).Sync
	syncDir  = syncDirectory
)

// syncDirectory makes a rename in dir durable. It is best effort: some file
// systems cannot fsync a directory, and the file itself is already synced.
func syncDirectory(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// fileWriter writes one subtask's output. It works in one of two ways:
//
//   - whole (no checkpoints, fresh start): one hidden file from Open to
//     Finish, renamed to its final name then; Close without Finish removes it.
//   - chunked (checkpoints on, or resuming from one): a hidden chunk per
//     checkpoint, started by the first Write after the last PrepareCommit,
//     closed and described by PrepareCommit, published by Commit. Without
//     checkpoints (a restored job that runs without them), Finish prepares
//     and commits the last chunk itself.
type fileWriter[T any] struct {
	out           output
	format        func(T) string
	subtask       int
	parallel      int
	checkpointing bool
	restoring     bool
	chunked       bool

	cur *chunk // the hidden file being written; nil between chunks

	// chunked
	nextN       int64 // number of the next chunk (part-<subtask>-<n>, .<file>.<n>.inprogress)
	offset      int64 // single file: its length once every chunk prepared so far is committed
	replaceNext bool  // the next prepared chunk is the job's first: it replaces the earlier output

	finished bool
	closed   bool
}

// chunk is an open hidden file.
type chunk struct {
	path string
	n    int64
	f    *os.File
	info fs.FileInfo // to remove only the file we created
	buf  *bufio.Writer
	size int64
}

// create starts a hidden file at path, replacing whatever is there. A fresh
// inode, not a truncated one: an earlier attempt's Close recognizes its own
// file by identity and must not remove this one.
func (o *output) create(path string, n int64) (*chunk, error) {
	os.Remove(path) // if this fails, so does the create, with a better error
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, createError(o.op, path, o.dir, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("sink %q: stat %q: %w", o.op, path, err)
	}
	return &chunk{path: path, n: n, f: f, info: info, buf: bufio.NewWriterSize(f, fileBufferSize)}, nil
}

// seal flushes, fsyncs and closes the chunk.
func (c *chunk) seal(op string) error {
	if err := c.buf.Flush(); err != nil {
		return writeError(op, c.path, err)
	}
	if err := syncFile(c.f); err != nil {
		return writeError(op, c.path, err)
	}
	if err := c.f.Close(); err != nil {
		return writeError(op, c.path, err)
	}
	c.f = nil
	return nil
}

// discard closes the chunk and removes its file if it is still ours.
func (c *chunk) discard(op string) error {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if info, err := os.Stat(c.path); err == nil && os.SameFile(info, c.info) {
		if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink %q: removing in-progress file %q: %w", op, c.path, err)
		}
	}
	return nil
}

// openWhole starts the one hidden file of a run without checkpoints.
func (w *fileWriter[T]) openWhole() error {
	var err error
	w.cur, err = w.out.create(w.out.wholeInProgress(w.subtask), -1)
	return err
}

// openChunked removes what failed attempts left and works out where the
// chunks continue: after every number in use, and, for a single file, at
// the length it has once the restored chunks are committed.
func (w *fileWriter[T]) openChunked(restored []pending) error {
	w.chunked = true
	w.replaceNext = !w.restoring
	keep := map[string]bool{}
	w.nextN = 0
	for _, d := range restored {
		keep[w.out.hiddenName(d)] = true
		if !d.parts || d.subtask == w.subtask {
			w.nextN = max(w.nextN, d.n+1)
		}
	}
	entries, err := os.ReadDir(w.out.dir)
	if err != nil {
		return fmt.Errorf("sink %q: listing output directory %q: %w", w.out.op, w.out.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		f, ok := w.out.parse(name)
		if !ok || e.IsDir() {
			continue
		}
		mine := !w.out.parts || f.subtask == w.subtask
		if mine && f.numbered {
			w.nextN = max(w.nextN, f.n+1)
		}
		// In-progress files of this subtask (subtask 0 also takes those of
		// subtasks this run does not have) that no restored commit needs
		// are a failed attempt's.
		if f.hidden && (mine || w.subtask == 0 && f.subtask >= w.parallel) && !keep[name] {
			if err := os.Remove(filepath.Join(w.out.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("sink %q: removing %q, left by a failed attempt: %w", w.out.op, filepath.Join(w.out.dir, name), err)
			}
		}
	}
	if !w.out.parts && w.restoring {
		if n := len(restored); n > 0 {
			w.offset = restored[n-1].offset + restored[n-1].size
		} else if info, err := os.Stat(w.out.file); err == nil {
			w.offset = info.Size()
		} else {
			w.replaceNext = true // nothing was ever committed
		}
	}
	return nil
}

func (w *fileWriter[T]) Write(v T, _ int64) error {
	if w.closed || w.finished {
		return fmt.Errorf("sink %q: write to %q after the sink was finished or closed", w.out.op, w.out.layout())
	}
	if w.cur == nil {
		c, err := w.out.create(w.out.chunkInProgress(w.subtask, w.nextN), w.nextN)
		if err != nil {
			return err
		}
		w.cur = c
		w.nextN++
	}
	line := w.format(v)
	w.cur.buf.WriteString(line)
	if err := w.cur.buf.WriteByte('\n'); err != nil { // a bufio.Writer keeps its first error
		return writeError(w.out.op, w.cur.path, err)
	}
	w.cur.size += int64(len(line)) + 1
	return nil
}

// Finish ends the input. Without checkpoints it makes the output visible,
// durably; with them it only flushes, and the checkpoint after it commits.
func (w *fileWriter[T]) Finish() error {
	if w.closed {
		return fmt.Errorf("sink %q: Finish after Close", w.out.op)
	}
	if w.finished {
		return nil
	}
	switch {
	case !w.chunked:
		if err := w.cur.seal(w.out.op); err != nil {
			return err
		}
		if err := w.out.publishWhole(w.cur.path, w.subtask, w.parallel); err != nil {
			return err
		}
		w.cur = nil
	case w.checkpointing:
		if w.cur != nil {
			if err := w.cur.buf.Flush(); err != nil {
				return writeError(w.out.op, w.cur.path, err)
			}
		}
	default:
		d, err := w.PrepareCommit(0)
		if err != nil {
			return err
		}
		if d != nil {
			if err := w.Commit([][]byte{d}); err != nil {
				return err
			}
		}
	}
	w.finished = true
	return nil
}

// PrepareCommit seals the chunk written since the last call and describes
// it. The job's first chunk is prepared even if empty: its commit replaces
// the earlier output.
func (w *fileWriter[T]) PrepareCommit(int64) ([]byte, error) {
	if !w.chunked || w.closed {
		return nil, fmt.Errorf("sink %q: PrepareCommit on a writer opened without checkpoints or closed", w.out.op)
	}
	d := pending{parts: w.out.parts, replace: w.replaceNext, subtask: w.subtask, parallelism: w.parallel, offset: w.offset}
	switch {
	case w.cur != nil:
	case !w.replaceNext:
		return nil, nil
	case w.out.parts:
		d.empty = true
		d.n = w.nextN
		w.nextN++
		w.replaceNext = false
		return d.encode(), nil
	default:
		// A single file is replaced by renaming the chunk over it, so the
		// first chunk needs a file even when empty.
		c, err := w.out.create(w.out.chunkInProgress(w.subtask, w.nextN), w.nextN)
		if err != nil {
			return nil, err
		}
		w.cur = c
		w.nextN++
	}
	if err := w.cur.seal(w.out.op); err != nil {
		return nil, err
	}
	syncDir(w.out.dir)
	d.n, d.size = w.cur.n, w.cur.size
	w.offset += w.cur.size
	w.replaceNext = false
	w.cur = nil
	return d.encode(), nil
}

// Commit publishes the described chunks; see output.commit.
func (w *fileWriter[T]) Commit(descs [][]byte) error {
	ds, err := decodePendings(w.out.op, descs)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if err := w.out.commit(d); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the file. A chunk not yet prepared belongs to no
// checkpoint and is removed, as is the whole file of a run without
// checkpoints that did not finish; prepared chunks stay for the commit.
func (w *fileWriter[T]) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.cur == nil {
		return nil
	}
	c := w.cur
	w.cur = nil
	return c.discard(w.out.op)
}
