package source

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weirstream/weir/connector"
)

const (
	// textBufferSize is the read buffer of a TextFile reader. Lines longer
	// than the buffer are assembled from several reads, so it bounds nothing
	// but the size of one read.
	textBufferSize = 1 << 20
	// textBatchBytes caps the bytes one Read emits, so a file of huge lines
	// still returns to the runtime between lines.
	textBatchBytes = 4 << 20
	// maxRetainedLine is the largest line buffer a reader keeps for reuse
	// after a long line; a longer one is dropped so one odd line does not
	// pin its memory for the rest of the file.
	maxRetainedLine = 16 << 20
)

// TextFile reads the lines of a text file, or of every file in a directory,
// as strings without their line terminator ("\n" or "\r\n").
//
// Subtask i of p reads the lines whose first byte lies in the byte range
// [i*size/p, (i+1)*size/p) of each file: it seeks to the byte before its
// range and skips to just after the next '\n' (unless its range starts at 0),
// then reads whole lines until the next line would start at or after the end
// of its range. A line that crosses a range boundary belongs to the subtask
// in whose range it starts, so every line is read exactly once for any p.
// Lines may be of any length; a final line without a trailing newline is
// read like the others, and an empty file has no lines.
//
// If path is a directory, its regular files (symbolic links to regular files
// included) are read in name order, each split across the subtasks as above.
// Subdirectories are not descended into, and files whose names begin with
// "." or "_" are skipped: that is where writers keep in-progress and marker
// files (sink.File's ".part-0.inprogress", Hadoop's "_SUCCESS"). A directory
// with no files to read is an error.
//
// Every subtask lists and sizes the input when it opens, so the input must
// not change while the job runs.
//
// Its readers are checkpointed: their state is the ranges of line starts
// they have yet to read. A restored job reads exactly the lines it had not
// emitted, with the same parallelism or another (a new subtask reads what
// of its new range no old subtask had read); a restore over an input whose
// files or size changed fails.
func TextFile(path string) connector.Source[string] {
	return textFileSource{path: path, bufSize: textBufferSize}
}

type textFileSource struct {
	path    string
	bufSize int // tests shrink it to exercise lines longer than the buffer
}

// inputFile is one file of a TextFile input.
type inputFile struct {
	path string
	size int64
	// base is where the file starts when the input's files are laid end to
	// end; it makes one reader's position a single number.
	base int64
}

func (s textFileSource) Open(ctx connector.SourceContext) (connector.SourceReader[string], error) {
	files, err := listInput(ctx.OperatorName, s.path)
	if err != nil {
		return nil, err
	}
	p := max(ctx.Parallelism, 1)
	if ctx.Subtask < 0 || ctx.Subtask >= p {
		return nil, fmt.Errorf("source %q: subtask %d is out of range for parallelism %d", ctx.OperatorName, ctx.Subtask, p)
	}
	r := &textFileReader{
		op:      ctx.OperatorName,
		path:    s.path,
		files:   files,
		bufSize: max(s.bufSize, 16),
		open:    -1,
	}
	todo := []textSpan{{start: 0, end: totalSize(files)}}
	if len(ctx.Restored) > 0 {
		if todo, err = r.restoredTodo(ctx.Restored); err != nil {
			return nil, err
		}
	}
	r.spans = shareOf(files, ctx.Subtask, p, todo)
	return r, nil
}

// listInput resolves path to the files to read, with errors that say what to
// fix.
func listInput(op, path string) ([]inputFile, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, inputError(op, "input", path, err)
	}
	if info.Mode().IsRegular() {
		return []inputFile{{path: path, size: info.Size()}}, nil
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("source %q: input %q is neither a regular file nor a directory (mode %v); point the source at a file or a directory of files", op, path, info.Mode().Type())
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, inputError(op, "input directory", path, err)
	}
	var files []inputFile
	var base int64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || strings.HasPrefix(e.Name(), "_") {
			continue
		}
		full := filepath.Join(path, e.Name())
		fi, err := os.Stat(full) // follows symbolic links
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // a dangling link, or removed since ReadDir
			}
			return nil, inputError(op, "input file", full, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, inputFile{path: full, size: fi.Size(), base: base})
		base += fi.Size()
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("source %q: input directory %q has no files to read (subdirectories and names starting with \".\" or \"_\" are skipped); add input files or choose another path", op, path)
	}
	return files, nil
}

func inputError(op, what, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("source %q: %s %q does not exist; check the input path: %w", op, what, path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("source %q: cannot read %s %q: permission denied; grant read access to it or choose another path: %w", op, what, path, err)
	default:
		return fmt.Errorf("source %q: cannot open %s %q: %w", op, what, path, err)
	}
}

// splitPoint returns i*size/p without overflowing for any file size.
func splitPoint(i, p int, size int64) int64 {
	hi, lo := bits.Mul64(uint64(i), uint64(size))
	q, _ := bits.Div64(hi, lo, uint64(p)) // i <= p, so hi < p and Div64 cannot panic
	return int64(q)
}

// textFileReader reads the lines that start in its spans, in order: at
// first its byte ranges of the input files, after a restore what of its new
// ranges no old subtask had read.
//
// Its progress is the spans left and, in the first, pos: where the next
// line starts. Everything else is derived from those and the input listing.
type textFileReader struct {
	op      string
	path    string
	files   []inputFile
	bufSize int

	spans  []textSpan // still to read; offsets are file-relative
	opened bool       // the reader is positioned in spans[0], at pos
	pos    int64

	f    *os.File      // the input file being read, nil between files
	open int           // index in files of f, -1 for none
	r    *bufio.Reader // reused across files
	line []byte        // assembles lines longer than the read buffer
}

// textSpan is a range of offsets at which lines to read start: [start, end)
// of files[file], or, in todo lists, of the files laid end to end.
type textSpan struct {
	file       int
	start, end int64
}

func totalSize(files []inputFile) int64 {
	last := files[len(files)-1]
	return last.base + last.size
}

// shareOf returns the spans of subtask i of p: the parts of todo (sorted,
// disjoint, in end-to-end offsets) in its byte range of each file.
func shareOf(files []inputFile, i, p int, todo []textSpan) []textSpan {
	var spans []textSpan
	t := 0
	for fi, in := range files {
		lo := in.base + splitPoint(i, p, in.size)
		hi := in.base + splitPoint(i+1, p, in.size)
		for t < len(todo) && todo[t].end <= lo {
			t++
		}
		for u := t; u < len(todo) && todo[u].start < hi; u++ {
			if a, b := max(lo, todo[u].start), min(hi, todo[u].end); a < b {
				spans = append(spans, textSpan{file: fi, start: a - in.base, end: b - in.base})
			}
		}
	}
	return spans
}

// SnapshotState implements connector.CheckpointedReader: the spans left, in
// end-to-end offsets, with the size of the input to check it is the same.
//
//	version 't' totalSize fileCount spanCount (start-prevEnd, end-start)…
func (r *textFileReader) SnapshotState() ([]byte, error) {
	e := newStateEncoder(kindTextFile)
	e.uvarint(uint64(totalSize(r.files)))
	e.uvarint(uint64(len(r.files)))
	todo := make([]textSpan, 0, len(r.spans))
	for i, sp := range r.spans {
		if i == 0 && r.opened {
			sp.start = r.pos
		}
		if sp.start >= sp.end {
			continue
		}
		base := r.files[sp.file].base
		todo = append(todo, textSpan{start: base + sp.start, end: base + sp.end})
	}
	e.uvarint(uint64(len(todo)))
	var prev int64
	for _, sp := range todo {
		e.uvarint(uint64(sp.start - prev))
		e.uvarint(uint64(sp.end - sp.start))
		prev = sp.end
	}
	return e.b, nil
}

// restoredTodo merges what the old subtasks had left to read.
func (r *textFileReader) restoredTodo(restored [][]byte) ([]textSpan, error) {
	total := totalSize(r.files)
	var todo []textSpan
	for j, b := range restored {
		d := decodeState(b, kindTextFile)
		size, nfiles := d.int63("input size"), d.int63("file count")
		if d.err == nil && (size != total || nfiles != int64(len(r.files))) {
			return nil, fmt.Errorf("source %q: cannot resume from the checkpoint: the input %q changed since: it had %d files of %d bytes in all, now %d of %d; "+
				"TextFile resumes only over the same input: restore it, or start the job without the checkpoint", r.op, r.path, nfiles, size, len(r.files), total)
		}
		n := d.int63("span count")
		var prev int64
		for range n {
			if d.err != nil {
				break
			}
			gap, length := d.int63("span start"), d.int63("span length")
			sp := textSpan{start: prev + gap, end: prev + gap + length}
			if d.err == nil && (length == 0 || sp.start < prev || sp.end > total || sp.end < sp.start) {
				d.fail("span [%d, %d) is empty, out of order or beyond the input's %d bytes", sp.start, sp.end, total)
			}
			todo = append(todo, sp)
			prev = sp.end
		}
		if err := d.finish(); err != nil {
			return nil, restoreError(r.op, j, len(restored), err)
		}
	}
	slices.SortFunc(todo, func(a, b textSpan) int { return cmp.Compare(a.start, b.start) })
	merged := todo[:0]
	for _, sp := range todo {
		if n := len(merged); n > 0 && sp.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged, nil
}

func (r *textFileReader) Read(out connector.SourceOutput[string]) (connector.ReadStatus, error) {
	return r.ReadAtMost(out, batchSize)
}

// ReadAtMost implements connector.LimitedReader.
func (r *textFileReader) ReadAtMost(out connector.SourceOutput[string], max int) (connector.ReadStatus, error) {
	lines, size := 0, 0
	for lines < min(max, batchSize) && size < textBatchBytes {
		if len(r.spans) == 0 {
			r.closeFile()
			return connector.EndOfInput, nil
		}
		sp := &r.spans[0]
		if !r.opened {
			if err := r.openSpan(); err != nil {
				return 0, err
			}
			continue
		}
		if r.pos >= sp.end {
			r.nextSpan()
			continue
		}
		line, n, err := r.readLine()
		if err != nil {
			return 0, fmt.Errorf("source %q: reading input file %q at byte %d: %w", r.op, r.files[sp.file].path, r.pos, err)
		}
		if n == 0 { // the file ended early: it shrank since it was listed
			r.nextSpan()
			continue
		}
		r.pos += int64(n)
		out.Collect(string(line))
		lines++
		size += n
	}
	if len(r.spans) == 0 {
		r.closeFile()
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

// nextSpan drops the span just read; the file stays open for the next span
// if it is in the same file.
func (r *textFileReader) nextSpan() {
	r.spans = r.spans[1:]
	r.opened = false
	if len(r.spans) == 0 || r.spans[0].file != r.open {
		r.closeFile()
	}
}

func (r *textFileReader) closeFile() {
	if r.f != nil {
		r.f.Close() // read-only: a close error loses nothing
		r.f, r.open = nil, -1
	}
}

// openSpan positions the reader at the first line that starts in
// spans[0], opening its file if needed.
func (r *textFileReader) openSpan() error {
	sp := r.spans[0]
	in := r.files[sp.file]
	if r.f == nil {
		f, err := os.Open(in.path)
		if err != nil {
			return inputError(r.op, "input file", in.path, err)
		}
		r.f, r.open = f, sp.file
		if r.r == nil {
			r.r = bufio.NewReaderSize(f, r.bufSize)
		}
	}
	r.opened = true
	r.pos = sp.start
	if sp.start == 0 {
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("source %q: seeking input file %q to byte 0: %w", r.op, in.path, err)
		}
		r.r.Reset(r.f)
		return nil
	}
	// The line that starts in our range is the one after the first '\n' at
	// or after start-1: if byte start-1 is '\n', a line starts right at start.
	if _, err := r.f.Seek(sp.start-1, io.SeekStart); err != nil {
		return fmt.Errorf("source %q: seeking input file %q to byte %d: %w", r.op, in.path, sp.start-1, err)
	}
	r.r.Reset(r.f)
	n, err := r.skipLine()
	if err != nil {
		return fmt.Errorf("source %q: reading input file %q at byte %d: %w", r.op, in.path, sp.start-1, err)
	}
	r.pos = sp.start - 1 + n
	return nil
}

// readLine reads the next line and returns it without its terminator, and
// the number of bytes it consumed (terminator included). n == 0 means end of
// file. The returned slice is valid until the next read.
func (r *textFileReader) readLine() (line []byte, n int, err error) {
	b, err := r.r.ReadSlice('\n')
	switch {
	case err == nil:
		return dropCR(b[:len(b)-1]), len(b), nil
	case errors.Is(err, io.EOF):
		return dropCR(b), len(b), nil
	case !errors.Is(err, bufio.ErrBufferFull):
		return nil, 0, err
	}
	// The line is longer than the buffer: assemble it.
	if cap(r.line) > maxRetainedLine {
		r.line = nil
	}
	r.line = append(r.line[:0], b...)
	for {
		b, err = r.r.ReadSlice('\n')
		r.line = append(r.line, b...)
		switch {
		case err == nil:
			return dropCR(r.line[:len(r.line)-1]), len(r.line), nil
		case errors.Is(err, io.EOF):
			return dropCR(r.line), len(r.line), nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, 0, err
		}
	}
}

// skipLine consumes the rest of the current line, terminator included, and
// returns how many bytes that was; unlike readLine it keeps none of them.
func (r *textFileReader) skipLine() (int64, error) {
	var n int64
	for {
		b, err := r.r.ReadSlice('\n')
		n += int64(len(b))
		switch {
		case err == nil, errors.Is(err, io.EOF):
			return n, nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return n, err
		}
	}
}

// dropCR removes the '\r' of a "\r\n" terminator, and one before the end of
// the file, as bufio.ScanLines does.
func dropCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

func (r *textFileReader) Close() error {
	r.closeFile()
	r.spans, r.opened = nil, false
	return nil
}
