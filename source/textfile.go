package source

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
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
	return &textFileReader{
		op:       ctx.OperatorName,
		files:    files,
		subtask:  ctx.Subtask,
		parallel: p,
		bufSize:  max(s.bufSize, 16),
	}, nil
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

// textFileReader reads one subtask's byte ranges of the input files in order.
//
// Its progress is (file, pos): the index of the file being read and the
// offset in it where the next line starts; Position folds the two into one
// number. Everything else is derived from those and the input listing.
type textFileReader struct {
	op       string
	files    []inputFile
	subtask  int
	parallel int
	bufSize  int

	file int   // index in files of the file being read, or the next one to open
	pos  int64 // offset in files[file] where the next line starts
	end  int64 // end of this subtask's range of files[file]

	f    *os.File      // nil between files
	r    *bufio.Reader // reused across files
	line []byte        // assembles lines longer than the read buffer
}

// Position implements Positioned: the offset of the next line to read, with
// the input's files laid end to end in name order.
func (r *textFileReader) Position() int64 {
	if r.file >= len(r.files) {
		return r.totalSize()
	}
	if r.f == nil {
		return r.files[r.file].base + splitPoint(r.subtask, r.parallel, r.files[r.file].size)
	}
	return r.files[r.file].base + r.pos
}

func (r *textFileReader) totalSize() int64 {
	last := r.files[len(r.files)-1]
	return last.base + last.size
}

func (r *textFileReader) Read(out connector.SourceOutput[string]) (connector.ReadStatus, error) {
	lines, size := 0, 0
	for lines < batchSize && size < textBatchBytes {
		if r.f == nil {
			if r.file >= len(r.files) {
				return connector.EndOfInput, nil
			}
			if err := r.openFile(); err != nil {
				return 0, err
			}
			continue
		}
		if r.pos >= r.end {
			r.nextFile()
			continue
		}
		line, n, err := r.readLine()
		if err != nil {
			return 0, fmt.Errorf("source %q: reading input file %q at byte %d: %w", r.op, r.files[r.file].path, r.pos, err)
		}
		if n == 0 { // the file ended early: it shrank since it was listed
			r.nextFile()
			continue
		}
		r.pos += int64(n)
		out.Collect(string(line))
		lines++
		size += n
	}
	return connector.MoreAvailable, nil
}

// openFile opens files[file] and positions the reader at the first line that
// starts in this subtask's range; a file whose range is empty is skipped
// without being opened.
func (r *textFileReader) openFile() error {
	in := r.files[r.file]
	start := splitPoint(r.subtask, r.parallel, in.size)
	r.end = splitPoint(r.subtask+1, r.parallel, in.size)
	if start >= r.end {
		r.file++
		return nil
	}
	f, err := os.Open(in.path)
	if err != nil {
		return inputError(r.op, "input file", in.path, err)
	}
	r.f = f
	if r.r == nil {
		r.r = bufio.NewReaderSize(f, r.bufSize)
	} else {
		r.r.Reset(f)
	}
	r.pos = start
	if start == 0 {
		return nil
	}
	// The line that starts in our range is the one after the first '\n' at
	// or after start-1: if byte start-1 is '\n', a line starts right at start.
	if _, err := f.Seek(start-1, io.SeekStart); err != nil {
		return fmt.Errorf("source %q: seeking input file %q to byte %d: %w", r.op, in.path, start-1, err)
	}
	r.r.Reset(f)
	n, err := r.skipLine()
	if err != nil {
		return fmt.Errorf("source %q: reading input file %q at byte %d: %w", r.op, in.path, start-1, err)
	}
	r.pos = start - 1 + n
	return nil
}

func (r *textFileReader) nextFile() {
	r.f.Close() // read-only: a close error loses nothing
	r.f = nil
	r.file++
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
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.file = len(r.files)
	return nil
}
