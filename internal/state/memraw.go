package state

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/weirstream/weir/internal/keygroup"
)

// MemRaw is an in-memory RawStore: a byte-for-byte stand-in for a Pebble
// backend, used to test the RawStore adapters. It is not safe for
// concurrent use.
type MemRaw struct {
	KeyContext
	registry Registry
	groups   []*memGroup // by key group - range start; nil until used
	addr     []byte      // scratch address
}

// memGroup holds the entries of one key group, by address
// uvarint(len(state)) ‖ state ‖ uvarint(len(key)) ‖ key ‖ ns.
type memGroup struct {
	values map[string][]byte
	maps   map[string]map[string][]byte // address → user key → value
}

// NewMemRawBackend returns an empty in-memory raw backend for the key groups r.
func NewMemRawBackend(r keygroup.Range) *MemRaw {
	return &MemRaw{KeyContext: NewKeyContext(r), groups: make([]*memGroup, r.Len())}
}

// Registry implements RawStore.
func (m *MemRaw) Registry() *Registry { return &m.registry }

func appendAddr(dst []byte, state string, key, ns []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(state)))
	dst = append(dst, state...)
	return appendComposite(dst, key, ns)
}

func splitAddr(a string) (state, key, ns string, err error) {
	n, w := binary.Uvarint([]byte(a[:min(len(a), binary.MaxVarintLen64)]))
	if w <= 0 || uint64(len(a)-w) < n {
		return "", "", "", fmt.Errorf("corrupt address %q", a)
	}
	state = a[w : w+int(n)]
	key, ns, err = splitComposite(a[w+int(n):])
	return state, key, ns, err
}

// group returns the entries of kg and the address of (state, key, ns).
func (m *MemRaw) group(state string, key, ns []byte, kg int, create bool) (*memGroup, []byte, error) {
	if err := m.checkKeyGroup(kg); err != nil {
		return nil, nil, err
	}
	g := m.groups[kg-m.kgRange.Start]
	if g == nil && create {
		g = &memGroup{values: make(map[string][]byte), maps: make(map[string]map[string][]byte)}
		m.groups[kg-m.kgRange.Start] = g
	}
	m.addr = appendAddr(m.addr[:0], state, key, ns)
	return g, m.addr, nil
}

// Get implements RawStore.
func (m *MemRaw) Get(state string, key, ns []byte, kg int) ([]byte, bool, error) {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return nil, false, err
	}
	v, ok := g.values[string(a)]
	return v, ok, nil
}

// Put implements RawStore.
func (m *MemRaw) Put(state string, key, ns []byte, kg int, value []byte) error {
	g, a, err := m.group(state, key, ns, kg, true)
	if err != nil {
		return err
	}
	g.values[string(a)] = cloneBytes(value)
	return nil
}

// Append implements RawStore.
func (m *MemRaw) Append(state string, key, ns []byte, kg int, value []byte) error {
	g, a, err := m.group(state, key, ns, kg, true)
	if err != nil {
		return err
	}
	// Appending in place is safe: a slice returned by Get keeps its length,
	// and Put stores clipped slices.
	g.values[string(a)] = append(g.values[string(a)], value...)
	return nil
}

// Delete implements RawStore.
func (m *MemRaw) Delete(state string, key, ns []byte, kg int) error {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return err
	}
	delete(g.values, string(a))
	return nil
}

// GetEntry implements RawStore.
func (m *MemRaw) GetEntry(state string, key, ns []byte, kg int, userKey []byte) ([]byte, bool, error) {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return nil, false, err
	}
	v, ok := g.maps[string(a)][string(userKey)]
	return v, ok, nil
}

// PutEntry implements RawStore.
func (m *MemRaw) PutEntry(state string, key, ns []byte, kg int, userKey, value []byte) error {
	g, a, err := m.group(state, key, ns, kg, true)
	if err != nil {
		return err
	}
	um := g.maps[string(a)]
	if um == nil {
		um = make(map[string][]byte)
		g.maps[string(a)] = um
	}
	um[string(userKey)] = cloneBytes(value)
	return nil
}

// DeleteEntry implements RawStore.
func (m *MemRaw) DeleteEntry(state string, key, ns []byte, kg int, userKey []byte) error {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return err
	}
	if um := g.maps[string(a)]; um != nil {
		delete(um, string(userKey))
		if len(um) == 0 {
			delete(g.maps, string(a))
		}
	}
	return nil
}

// Scan implements RawStore. It iterates over the user keys present when it
// starts; entries deleted during the scan are skipped.
func (m *MemRaw) Scan(state string, key, ns []byte, kg int, fn func(userKey, value []byte) bool) error {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return err
	}
	um := g.maps[string(a)]
	if len(um) == 0 {
		return nil
	}
	addr := string(a)
	uks := make([]string, 0, len(um))
	for uk := range um {
		uks = append(uks, uk)
	}
	slices.Sort(uks)
	for _, uk := range uks {
		v, ok := g.maps[addr][uk]
		if !ok {
			continue
		}
		if !fn([]byte(uk), v) {
			return nil
		}
	}
	return nil
}

// DeleteEntries implements RawStore.
func (m *MemRaw) DeleteEntries(state string, key, ns []byte, kg int) error {
	g, a, err := m.group(state, key, ns, kg, false)
	if err != nil || g == nil {
		return err
	}
	delete(g.maps, string(a))
	return nil
}

// Snapshot implements Backend.
func (m *MemRaw) Snapshot() (*Snapshot, error) {
	snap := &Snapshot{}
	for i, g := range m.groups {
		if g == nil {
			continue
		}
		kg := m.kgRange.Start + i
		var entries []Entry
		entry := func(a string) (Entry, error) {
			state, key, ns, err := splitAddr(a)
			if err != nil {
				return Entry{}, fmt.Errorf("snapshotting key group %d: %w", kg, err)
			}
			kind, ok := m.registry.Kind(state)
			if !ok {
				return Entry{}, fmt.Errorf("snapshotting key group %d: state %q has entries but was never registered or restored", kg, state)
			}
			return Entry{State: state, Kind: kind, Key: cloneBytes([]byte(key)), Namespace: cloneBytes([]byte(ns))}, nil
		}
		for a, v := range g.values {
			e, err := entry(a)
			if err != nil {
				return nil, err
			}
			e.Value = cloneBytes(v)
			entries = append(entries, e)
		}
		for a, um := range g.maps {
			e, err := entry(a)
			if err != nil {
				return nil, err
			}
			for uk, v := range um {
				e.UserKey, e.Value = cloneBytes([]byte(uk)), cloneBytes(v)
				entries = append(entries, e)
			}
		}
		if len(entries) == 0 {
			continue
		}
		sortEntries(entries)
		snap.KeyGroups = append(snap.KeyGroups, KeyGroupState{KeyGroup: kg, Entries: entries})
	}
	return snap, nil
}

// Restore implements Backend.
func (m *MemRaw) Restore(s *Snapshot) error {
	for _, g := range s.KeyGroups {
		if !m.kgRange.Contains(g.KeyGroup) {
			continue
		}
		for _, e := range g.Entries {
			if err := m.registry.Declare(e.State, e.Kind); err != nil {
				return err
			}
			var err error
			if e.Kind == KindMap {
				err = m.PutEntry(e.State, e.Key, e.Namespace, g.KeyGroup, e.UserKey, e.Value)
			} else {
				err = m.Put(e.State, e.Key, e.Namespace, g.KeyGroup, e.Value)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
