package sink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// How File commits, and why committing again is harmless.
//
// A chunk is prepared at a checkpoint (sealed: flushed, fsynced, closed,
// still hidden) and described by a pending value stored in the checkpoint.
// Commit publishes it, and after a restore the same descriptions are
// committed again, each perhaps already committed in full or in part, so
// every step below is idempotent:
//
//	part   rename .part-<s>-<n>.inprogress → part-<s>-<n>. The rename is
//	       atomic: the hidden file exists iff it is not yet committed; if
//	       neither exists the output was changed outside the job.
//	file   the job's first chunk: rename the hidden chunk over the output
//	       file, atomically replacing the earlier run's output.
//	       Later chunks: append. The description records the file's length
//	       before the chunk (offset); only commits change the file, in
//	       order, so with L its length now: L >= offset+size means the
//	       chunk is in (remove the hidden file); offset <= L < offset+size
//	       means an append was cut short: truncate to offset and append
//	       again; the hidden file is removed only after the appended file
//	       is fsynced. L < offset cannot happen unless the file was changed
//	       outside the job.
//	first  the first commit of a fresh job in a directory also removes the
//	       subtask's parts of earlier runs (those numbered below its first
//	       part), and subtask 0 those of subtasks beyond the parallelism:
//	       removing what is already gone is harmless.

// output is where one File subtask writes: a single file or a directory of
// part files.
type output struct {
	op    string
	parts bool
	dir   string // the directory of parts, or the single file's directory
	file  string // the single file
	crash func(step string)
}

func (o *output) step(name string) {
	if o.crash != nil {
		o.crash(name)
	}
}

func (o *output) layout() string {
	if o.parts {
		return fmt.Sprintf("the directory of part files %q", o.dir)
	}
	return fmt.Sprintf("the single file %q", o.file)
}

// wholeInProgress is the hidden file of a run without checkpoints.
func (o *output) wholeInProgress(subtask int) string {
	if o.parts {
		return filepath.Join(o.dir, "."+partName(subtask)+".inprogress")
	}
	return filepath.Join(o.dir, "."+filepath.Base(o.file)+".inprogress")
}

// chunkInProgress is the hidden file of chunk n.
func (o *output) chunkInProgress(subtask int, n int64) string {
	return filepath.Join(o.dir, o.chunkName(subtask, n))
}

func (o *output) chunkName(subtask int, n int64) string {
	if o.parts {
		return "." + partName(subtask) + "-" + strconv.FormatInt(n, 10) + ".inprogress"
	}
	return "." + filepath.Base(o.file) + "." + strconv.FormatInt(n, 10) + ".inprogress"
}

func (o *output) hiddenName(d pending) string { return o.chunkName(d.subtask, d.n) }

func (o *output) partFile(subtask int, n int64) string {
	return filepath.Join(o.dir, partName(subtask)+"-"+strconv.FormatInt(n, 10))
}

// outputName is a file name of this output that parse recognized.
type outputName struct {
	subtask  int   // parts only
	n        int64 // numbered only
	numbered bool  // part-<s>-<n> or a chunk, not part-<s> or a whole run's file
	hidden   bool
}

// parse recognizes the names of the output's files: part-<s>[-<n>] and
// .part-<s>[-<n>].inprogress in a directory; .<file>[.<n>].inprogress next
// to a single file. Numbers must be canonical, so part-07 is not a part.
func (o *output) parse(name string) (outputName, bool) {
	var f outputName
	if o.parts {
		inner, hidden := strings.CutPrefix(name, ".")
		if hidden {
			var ok bool
			if inner, ok = strings.CutSuffix(inner, ".inprogress"); !ok {
				return f, false
			}
		}
		rest, ok := strings.CutPrefix(inner, "part-")
		if !ok {
			return f, false
		}
		sub, num, numbered := strings.Cut(rest, "-")
		s, ok := canonical(sub)
		if !ok {
			return f, false
		}
		f = outputName{subtask: int(s), hidden: hidden, numbered: numbered}
		if numbered {
			if f.n, ok = canonical(num); !ok {
				return f, false
			}
		}
		return f, true
	}
	rest, ok := strings.CutPrefix(name, "."+filepath.Base(o.file)+".")
	if !ok {
		return f, false
	}
	if rest == "inprogress" {
		return outputName{hidden: true}, true
	}
	num, ok := strings.CutSuffix(rest, ".inprogress")
	if !ok {
		return f, false
	}
	n, ok := canonical(num)
	return outputName{n: n, numbered: true, hidden: true}, ok
}

func canonical(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v >= 0 && strconv.FormatInt(v, 10) == s
}

// publishWhole renames the finished file of a run without checkpoints to
// its final name and removes what earlier runs left that this one replaces.
func (o *output) publishWhole(inProgress string, subtask, parallel int) error {
	final := o.file
	if o.parts {
		final = filepath.Join(o.dir, partName(subtask))
	}
	if err := os.Rename(inProgress, final); err != nil {
		if info, serr := os.Stat(final); serr == nil && info.IsDir() {
			return fmt.Errorf("sink %q: cannot replace %q: it is a directory; remove it or choose another output path: %w", o.op, final, err)
		}
		return fmt.Errorf("sink %q: renaming %q to %q: %w", o.op, inProgress, final, err)
	}
	if o.parts {
		// The numbered parts of a run with checkpoints, and (subtask 0) every
		// part of subtasks this run does not have.
		err := o.removeParts(func(f outputName) bool {
			return f.subtask == subtask && f.numbered && !f.hidden || subtask == 0 && f.subtask >= parallel
		}, "left by an earlier run")
		if err != nil {
			return err
		}
	}
	syncDir(o.dir)
	return nil
}

// removeParts removes the part files that match.
func (o *output) removeParts(match func(outputName) bool, why string) error {
	entries, err := os.ReadDir(o.dir)
	if err != nil {
		return fmt.Errorf("sink %q: listing output directory %q: %w", o.op, o.dir, err)
	}
	for _, e := range entries {
		f, ok := o.parse(e.Name())
		if !ok || e.IsDir() || !match(f) {
			continue
		}
		o.step("remove-part")
		path := filepath.Join(o.dir, e.Name())
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink %q: removing %q, %s: %w", o.op, path, why, err)
		}
	}
	return nil
}

// commit publishes one prepared chunk; see the comment at the top.
func (o *output) commit(d pending) error {
	if d.parts != o.parts {
		return fmt.Errorf("sink %q: cannot commit output prepared for %s: this sink writes %s", o.op, d.layout(), o.layout())
	}
	if o.parts {
		return o.commitPart(d)
	}
	return o.commitChunk(d)
}

func (o *output) commitPart(d pending) error {
	if d.replace {
		err := o.removeParts(func(f outputName) bool {
			return !f.hidden && (f.subtask == d.subtask && (!f.numbered || f.n < d.n) || d.subtask == 0 && f.subtask >= d.parallelism)
		}, "replaced by this job's output")
		if err != nil {
			return err
		}
	}
	if d.empty {
		return nil
	}
	hidden, final := o.chunkInProgress(d.subtask, d.n), o.partFile(d.subtask, d.n)
	ok, err := o.pendingFile(hidden, d.size)
	if err != nil {
		return err
	}
	if !ok {
		if _, err := os.Stat(final); err != nil {
			return o.lost(d, final, hidden)
		}
		return nil // committed before
	}
	o.step("rename-part")
	if err := os.Rename(hidden, final); err != nil {
		return fmt.Errorf("sink %q: committing %q as %q: %w", o.op, hidden, final, err)
	}
	syncDir(o.dir)
	return nil
}

func (o *output) commitChunk(d pending) error {
	hidden := o.chunkInProgress(0, d.n)
	ok, err := o.pendingFile(hidden, d.size)
	if err != nil {
		return err
	}
	if d.replace && ok {
		o.step("rename-file")
		if err := os.Rename(hidden, o.file); err != nil {
			return fmt.Errorf("sink %q: committing %q as %q: %w", o.op, hidden, o.file, err)
		}
		syncDir(o.dir)
		return nil
	}
	info, err := os.Stat(o.file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return o.lost(d, o.file, hidden)
		}
		return fmt.Errorf("sink %q: committing to %q: %w", o.op, o.file, err)
	}
	length, end := info.Size(), d.offset+d.size
	switch {
	case length >= end:
		// In already.
	case !ok:
		return o.lost(d, o.file, hidden)
	case length < d.offset:
		return fmt.Errorf("sink %q: cannot commit to %q: it has %d bytes, fewer than the %d committed before: "+
			"it was changed outside the job; restore its earlier content, or start the job without the checkpoint", o.op, o.file, length, d.offset)
	default:
		if err := o.appendChunk(hidden, d); err != nil {
			return err
		}
	}
	o.step("remove-chunk")
	if ok {
		if err := os.Remove(hidden); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink %q: removing committed chunk %q: %w", o.op, hidden, err)
		}
	}
	return nil
}

// appendChunk sets the file to its first offset bytes followed by the
// chunk, durably.
func (o *output) appendChunk(hidden string, d pending) error {
	src, err := os.Open(hidden)
	if err != nil {
		return fmt.Errorf("sink %q: committing %q: %w", o.op, hidden, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(o.file, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sink %q: committing to %q: %w", o.op, o.file, err)
	}
	defer dst.Close()
	o.step("truncate")
	if err := dst.Truncate(d.offset); err != nil {
		return writeError(o.op, o.file, err)
	}
	if _, err := dst.Seek(d.offset, io.SeekStart); err != nil {
		return writeError(o.op, o.file, err)
	}
	half := d.size / 2
	if _, err := io.CopyN(dst, src, half); err != nil {
		return writeError(o.op, o.file, err)
	}
	o.step("append")
	if _, err := io.CopyN(dst, src, d.size-half); err != nil {
		return writeError(o.op, o.file, err)
	}
	if err := syncFile(dst); err != nil {
		return writeError(o.op, o.file, err)
	}
	return nil
}

// pendingFile reports whether the hidden file of a prepared chunk is still
// there, with at least the bytes the description records; extra bytes,
// which nothing should write, are cut off.
func (o *output) pendingFile(path string, size int64) (bool, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sink %q: committing %q: %w", o.op, path, err)
	case info.Size() < size:
		return false, fmt.Errorf("sink %q: cannot commit %q: it has %d bytes, fewer than the %d it had when the checkpoint was taken; "+
			"it was changed outside the job, and that checkpoint's output is lost; restore from another checkpoint or rerun the job", o.op, path, info.Size(), size)
	case info.Size() > size:
		if err := os.Truncate(path, size); err != nil {
			return false, writeError(o.op, path, err)
		}
	}
	return true, nil
}

func (o *output) lost(d pending, final, hidden string) error {
	return fmt.Errorf("sink %q: cannot commit chunk %d of subtask %d: neither its pending file %q nor its output in %q is there; "+
		"the output was changed outside the job, and that checkpoint's output is lost; restore from another checkpoint or rerun the job",
		o.op, d.n, d.subtask, hidden, final)
}

// pending describes a prepared chunk. Encoded, it is what PrepareCommit
// returns and the checkpoint stores:
//
//	version kind('d' part | 'f' chunk of a single file) flags subtask parallelism n offset size
type pending struct {
	parts       bool
	replace     bool // the job's first commit: replaces the earlier output
	empty       bool // no data, only the replacing (parts)
	subtask     int
	parallelism int
	n           int64
	offset      int64 // single file: its length before the chunk
	size        int64
}

const pendingVersion byte = 1

const (
	flagReplace = 1 << iota
	flagEmpty
)

func (d pending) encode() []byte {
	kind := byte('f')
	if d.parts {
		kind = 'd'
	}
	var flags uint64
	if d.replace {
		flags |= flagReplace
	}
	if d.empty {
		flags |= flagEmpty
	}
	b := []byte{pendingVersion, kind}
	for _, v := range []uint64{flags, uint64(d.subtask), uint64(d.parallelism), uint64(d.n), uint64(d.offset), uint64(d.size)} {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func (d pending) layout() string {
	if d.parts {
		return "a directory of part files"
	}
	return "a single file"
}

func decodePending(b []byte) (pending, error) {
	var d pending
	switch {
	case len(b) < 2:
		return d, fmt.Errorf("it is truncated (%d bytes)", len(b))
	case b[0] != pendingVersion:
		return d, fmt.Errorf("format version %d, but this build reads version %d; restore with the build that took the checkpoint", b[0], pendingVersion)
	case b[1] != 'd' && b[1] != 'f':
		return d, fmt.Errorf("unknown kind %q: it was not written by sink.File", b[1])
	}
	d.parts = b[1] == 'd'
	rest := b[2:]
	var v [6]uint64
	for i := range v {
		x, n := binary.Uvarint(rest)
		if n <= 0 {
			return d, fmt.Errorf("it is truncated or a field overflows")
		}
		v[i], rest = x, rest[n:]
	}
	if len(rest) > 0 {
		return d, fmt.Errorf("%d unexpected bytes after the end", len(rest))
	}
	const maxInt = 1<<31 - 1
	const maxInt64 = 1<<63 - 1
	if v[0]&^(flagReplace|flagEmpty) != 0 || v[1] > maxInt || v[2] > maxInt || v[2] == 0 || v[3] > maxInt64 || v[4] > maxInt64 || v[5] > maxInt64-v[4] {
		return d, fmt.Errorf("a field is out of range")
	}
	d.replace, d.empty = v[0]&flagReplace != 0, v[0]&flagEmpty != 0
	d.subtask, d.parallelism = int(v[1]), int(v[2])
	d.n, d.offset, d.size = int64(v[3]), int64(v[4]), int64(v[5])
	return d, nil
}

func decodePendings(op string, descs [][]byte) ([]pending, error) {
	ds := make([]pending, 0, len(descs))
	for i, b := range descs {
		d, err := decodePending(b)
		if err != nil {
			return nil, fmt.Errorf("sink %q: cannot commit the output of the checkpoint: pending output %d of %d is not valid: %v; "+
				"the checkpoint is damaged or was taken of another sink under this name; restore from another checkpoint, or start the job without one", op, i+1, len(descs), err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}
