package pebblestate

import (
	"io"

	"github.com/cockroachdb/pebble"
)

// concatenate is the merge operator of list state: the value of a key is
// the concatenation of its merge operands, oldest first, as with
// pebble.DefaultMerger. Pebble's reads meet the operands newest first, and
// DefaultMerger copies the whole result for each older operand (quadratic
// in a list's length, one allocation per element); concatMerger grows its
// buffer geometrically at whichever end operands arrive. Pebble stores the
// name in the DB and refuses to open it with another merger.
var concatenate = &pebble.Merger{
	Name: "weir.concatenate",
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &concatMerger{buf: make([]byte, len(value), 2*len(value))}
		copy(m.buf, value)
		return m, nil
	},
}

// concatMerger holds the merged value in buf[start:]. Pebble sends every
// operand after the first to the same end (MergeNewer or MergeOlder), so
// buf grows only to the right (append) or only to the left (start falls).
type concatMerger struct {
	buf   []byte
	start int
}

// MergeNewer implements pebble.ValueMerger.
func (m *concatMerger) MergeNewer(value []byte) error {
	m.buf = append(m.buf, value...)
	return nil
}

// MergeOlder implements pebble.ValueMerger.
func (m *concatMerger) MergeOlder(value []byte) error {
	if m.start < len(value) {
		n := len(m.buf) - m.start
		size := 2 * (n + len(value))
		grown := make([]byte, size)
		copy(grown[size-n:], m.buf[m.start:])
		m.buf, m.start = grown, size-n
	}
	m.start -= len(value)
	copy(m.buf[m.start:], value)
	return nil
}

// Finish implements pebble.ValueMerger.
func (m *concatMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.buf[m.start:], nil, nil
}
