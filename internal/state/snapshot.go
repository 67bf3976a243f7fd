package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/weirstream/weir/internal/codec"
)

// Snapshot is the canonical, backend-independent state of one backend: the
// same state yields the same Snapshot from any backend, and any backend
// restores it. Serialising it to checkpoint files is the checkpoint
// storage's job; the key-group layout (max parallelism) is recorded there.
type Snapshot struct {
	// KeyGroups in ascending key-group order; key groups without entries
	// are left out.
	KeyGroups []KeyGroupState
}

// KeyGroupState holds the entries of one key group.
type KeyGroupState struct {
	KeyGroup int
	// Entries sorted by State, Key, Namespace, UserKey (bytewise).
	Entries []Entry
}

// Entry is one stored value. Empty byte fields are nil.
type Entry struct {
	State     string // state name
	Kind      Kind
	Key       []byte // encoded key
	Namespace []byte // encoded namespace; nil for the default namespace
	// UserKey is the codec encoding of the map key for map state (one
	// entry per map entry), nil for other kinds.
	UserKey []byte
	// Value is the codec encoding of: the value (value state), the
	// reduction (reducing state), the accumulator (aggregating state), the
	// map value (map state), or the concatenated elements (list state).
	Value []byte
}

// Len returns the number of entries in s.
func (s *Snapshot) Len() int {
	n := 0
	for _, g := range s.KeyGroups {
		n += len(g.Entries)
	}
	return n
}

func compareEntries(a, b Entry) int {
	return cmp.Or(
		cmp.Compare(a.State, b.State),
		bytes.Compare(a.Key, b.Key),
		bytes.Compare(a.Namespace, b.Namespace),
		bytes.Compare(a.UserKey, b.UserKey),
	)
}

func sortEntries(es []Entry) { slices.SortFunc(es, compareEntries) }

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// cloneBytes copies b; empty becomes nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

func cloneEntry(e Entry) Entry {
	e.Key = cloneBytes(e.Key)
	e.Namespace = cloneBytes(e.Namespace)
	e.UserKey = cloneBytes(e.UserKey)
	e.Value = cloneBytes(e.Value)
	return e
}

// appendComposite appends the heap's namespaced table key:
// uvarint(len(key)) ‖ key ‖ ns.
func appendComposite(dst, key, ns []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, ns...)
}

// splitComposite inverts appendComposite.
func splitComposite(c string) (key, ns string, err error) {
	n, w := binary.Uvarint([]byte(c[:min(len(c), binary.MaxVarintLen64)]))
	if w <= 0 || uint64(len(c)-w) < n {
		return "", "", fmt.Errorf("corrupt composite key %q", c)
	}
	return c[w : w+int(n)], c[w+int(n):], nil
}

var errNoProgress = errors.New("codec consumed no bytes (a list of zero-size values cannot be stored)")

// decodeExact decodes b, which must hold exactly one encoded value.
func decodeExact[T any](c codec.Codec[T], b []byte) (T, error) {
	v, n, err := c.Decode(b)
	if err != nil {
		return v, err
	}
	if n != len(b) {
		return v, fmt.Errorf("%d bytes left over after decoding %s", len(b)-n, typeName[T]())
	}
	return v, nil
}

// appendDecodedList appends the concatenated encoded elements in b to dst.
func appendDecodedList[T any](dst []T, c codec.Codec[T], b []byte) ([]T, error) {
	for len(b) > 0 {
		v, n, err := c.Decode(b)
		if err != nil {
			return dst, err
		}
		if n <= 0 {
			return dst, errNoProgress
		}
		dst = append(dst, v)
		b = b[n:]
	}
	return dst, nil
}

// codecFor returns the codec of T for state name, with an error saying why
// the state needs one.
func codecFor[T any](state string) (codec.Codec[T], error) {
	c, err := codec.For[T]()
	if err != nil {
		return c, fmt.Errorf("state %q: no codec for %s, which checkpoints need to store it: %w", state, typeName[T](), err)
	}
	return c, nil
}
