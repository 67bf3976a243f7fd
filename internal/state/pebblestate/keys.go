package pebblestate

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weirstream/weir/internal/keygroup"
)

// maxKeyGroups bounds key groups so that they fit the two-byte prefix with
// a first byte below metaPrefix.
const maxKeyGroups = keygroup.UpperBoundMaxParallelism

const (
	metaPrefix = 0xff
	metaState  = 's' // metaPrefix ‖ 's' ‖ name → uvarint(id) ‖ kind
)

// appendKeyGroup appends the two-byte prefix of key group kg; kg may be
// maxKeyGroups, the exclusive end of the last key group.
func appendKeyGroup(dst []byte, kg int) []byte {
	return binary.BigEndian.AppendUint16(dst, uint16(kg))
}

// appendEntryPrefix appends the key of (state id, key, ns) in key group kg:
// the value of a scalar state, or the prefix of a map's entries.
func appendEntryPrefix(dst []byte, kg int, id uint64, key, ns []byte) []byte {
	dst = appendKeyGroup(dst, kg)
	dst = binary.AppendUvarint(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(ns)))
	return append(dst, ns...)
}

// appendSuccessor appends the smallest key greater than every key that
// starts with prefix: the exclusive upper bound of the prefix's range.
// prefix must contain a byte below 0xff (an entry prefix starts with one).
func appendSuccessor(dst, prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			dst = append(dst, prefix[:i+1]...)
			dst[len(dst)-1]++
			return dst
		}
	}
	panic("pebblestate: no successor of an all-0xff prefix")
}

// entryKey is a decoded entry key; the slices alias the Pebble key.
type entryKey struct {
	keyGroup int
	stateID  uint64
	key, ns  []byte
	userKey  []byte // the rest after ns; empty for scalar states
}

var errCorruptKey = errors.New("corrupt entry key")

func decodeEntryKey(k []byte) (entryKey, error) {
	var e entryKey
	if len(k) < 2 {
		return e, fmt.Errorf("%w %x: shorter than its key group", errCorruptKey, k)
	}
	e.keyGroup = int(binary.BigEndian.Uint16(k))
	rest := k[2:]
	id, n := binary.Uvarint(rest)
	if n <= 0 {
		return e, fmt.Errorf("%w %x: bad state id", errCorruptKey, k)
	}
	e.stateID, rest = id, rest[n:]
	var ok bool
	if e.key, rest, ok = cutLengthPrefixed(rest); !ok {
		return e, fmt.Errorf("%w %x: bad key length", errCorruptKey, k)
	}
	if e.ns, rest, ok = cutLengthPrefixed(rest); !ok {
		return e, fmt.Errorf("%w %x: bad namespace length", errCorruptKey, k)
	}
	e.userKey = rest
	return e, nil
}

// cutLengthPrefixed splits uvarint(n) ‖ n bytes off the front of b.
func cutLengthPrefixed(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

func metaStateKey(dst []byte, name string) []byte {
	dst = append(dst, metaPrefix, metaState)
	return append(dst, name...)
}
