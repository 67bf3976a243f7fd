package source

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The readers' checkpointed states share one frame: a format version byte,
// a kind byte that says which reader wrote it, then uvarints.
//
//	version(1) kind('i' | 't' | 'r') fields…
const stateVersion byte = 1

const (
	kindIndexShare  byte = 'i' // FromSlice, Generator, IndexShare
	kindTextFile    byte = 't'
	kindRateLimited byte = 'r'
)

func kindName(k byte) string {
	switch k {
	case kindIndexShare:
		return "an index share (FromSlice, Generator)"
	case kindTextFile:
		return "a TextFile position"
	case kindRateLimited:
		return "a RateLimited position"
	}
	return fmt.Sprintf("of unknown kind %q", k)
}

// errCorrupt marks states that cannot be decoded.
var errCorrupt = errors.New("corrupt reader state")

type stateEncoder struct{ b []byte }

func newStateEncoder(kind byte) *stateEncoder {
	return &stateEncoder{b: []byte{stateVersion, kind}}
}

func (e *stateEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

// stateDecoder reads a state's fields; the first problem sticks in err.
type stateDecoder struct {
	b   []byte
	err error
}

// decodeState checks the frame of b and returns a decoder for its fields.
func decodeState(b []byte, kind byte) *stateDecoder {
	d := &stateDecoder{}
	switch {
	case len(b) == 0:
		d.err = fmt.Errorf("%w: it is empty", errCorrupt)
	case b[0] != stateVersion:
		d.err = fmt.Errorf("%w: format version %d, but this build reads version %d; restore with the build that took the checkpoint, or start the job without it", errCorrupt, b[0], stateVersion)
	case len(b) < 2:
		d.err = fmt.Errorf("%w: it is truncated after the version byte", errCorrupt)
	case b[1] != kind:
		d.err = fmt.Errorf("%w: it is %s, not %s; was the checkpoint taken of another source under this name?", errCorrupt, kindName(b[1]), kindName(kind))
	default:
		d.b = b[2:]
	}
	return d
}

func (d *stateDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: %s is truncated or overflows", errCorrupt, what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int63 reads a uvarint that must fit an int64.
func (d *stateDecoder) int63(what string) int64 {
	v := d.uvarint(what)
	if d.err == nil && v > 1<<63-1 {
		d.err = fmt.Errorf("%w: %s %d is out of range", errCorrupt, what, v)
	}
	return int64(v)
}

func (d *stateDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errCorrupt}, args...)...)
	}
}

// finish reports the first problem, or trailing bytes.
func (d *stateDecoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d unexpected bytes after the end", errCorrupt, len(d.b))
	}
	return d.err
}

// restoreError says which old subtask's state could not be used and what to
// do about it.
func restoreError(op string, oldSubtask, oldParallelism int, err error) error {
	return fmt.Errorf("source %q: cannot resume from the checkpoint: the state of subtask %d of %d: %w; "+
		"restore from another checkpoint, or start the job without one", op, oldSubtask, oldParallelism, err)
}
