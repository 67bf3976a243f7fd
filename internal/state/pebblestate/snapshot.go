package pebblestate

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"

	"github.com/weirstream/weir/internal/state"
)

// Snapshot implements state.Backend: the canonical snapshot of the key
// groups in range, read from one Pebble iterator (a consistent view).
// Entries are re-sorted per key group, as the key layout orders them by
// state id and length-prefixed fields rather than by name and bytes. With
// Options.Native set it takes a native checkpoint instead and returns its
// placeholder (see native.go).
func (b *Backend) Snapshot() (*state.Snapshot, error) {
	if b.opts.Native != nil {
		return b.nativeSnapshot()
	}
	snap := &state.Snapshot{}
	r := b.KeyGroupRange()
	if r.Empty() {
		return snap, nil
	}
	it, err := b.db.NewIter(&pebble.IterOptions{
		LowerBound: appendKeyGroup(nil, r.Start),
		UpperBound: appendKeyGroup(nil, r.End+1),
	})
	if err != nil {
		return nil, fmt.Errorf("snapshotting Pebble state: %w", err)
	}
	kinds := make([]state.Kind, len(b.byID)) // by state id; 0 until looked up
	var entries []state.Entry
	kg := -1
	endGroup := func() {
		if len(entries) > 0 {
			slices.SortFunc(entries, compareEntries)
			snap.KeyGroups = append(snap.KeyGroups, state.KeyGroupState{KeyGroup: kg, Entries: entries})
			entries = nil
		}
	}
	for valid := it.First(); valid; valid = it.Next() {
		ek, err := decodeEntryKey(it.Key())
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("snapshotting Pebble state: %w", err)
		}
		if ek.keyGroup != kg {
			endGroup()
			kg = ek.keyGroup
		}
		if ek.stateID >= uint64(len(b.byID)) || b.byID[ek.stateID] == nil {
			_ = it.Close()
			return nil, fmt.Errorf("snapshotting key group %d: entry of unknown state id %d", kg, ek.stateID)
		}
		s := b.byID[ek.stateID]
		kind := kinds[ek.stateID]
		if kind == 0 {
			var ok bool
			if kind, ok = b.registry.Kind(s.name); !ok {
				if kind = s.kind; kind == 0 {
					_ = it.Close()
					return nil, fmt.Errorf("snapshotting key group %d: state %q has entries but was never registered or restored", kg, s.name)
				}
			}
			kinds[ek.stateID] = kind
		}
		if kind != state.KindMap && len(ek.userKey) > 0 {
			_ = it.Close()
			return nil, fmt.Errorf("snapshotting key group %d: %s state %q has an entry with a map key (%x)", kg, kind, s.name, it.Key())
		}
		v := it.Value()
		// One allocation holds the entry's byte fields.
		buf := make([]byte, 0, len(ek.key)+len(ek.ns)+len(ek.userKey)+len(v))
		e := state.Entry{State: s.name, Kind: kind}
		buf, e.Key = field(buf, ek.key)
		buf, e.Namespace = field(buf, ek.ns)
		buf, e.UserKey = field(buf, ek.userKey)
		_, e.Value = field(buf, v)
		entries = append(entries, e)
	}
	endGroup()
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("snapshotting Pebble state: %w", err)
	}
	return snap, nil
}

// field appends b to buf and returns its copy there (nil if b is empty),
// capacity-clipped so that appending to it cannot reach the next field.
func field(buf, b []byte) ([]byte, []byte) {
	if len(b) == 0 {
		return buf, nil
	}
	n := len(buf)
	buf = append(buf, b...)
	return buf, buf[n:len(buf):len(buf)]
}

// compareEntries is the order of state.KeyGroupState.Entries.
func compareEntries(a, b state.Entry) int {
	return cmp.Or(
		cmp.Compare(a.State, b.State),
		bytes.Compare(a.Key, b.Key),
		bytes.Compare(a.Namespace, b.Namespace),
		bytes.Compare(a.UserKey, b.UserKey),
	)
}

// Restore implements state.Backend: it writes the entries of s in the key
// groups in range, in batches, and declares their states' kinds.
func (b *Backend) Restore(s *state.Snapshot) error {
	r := b.KeyGroupRange()
	b.batch.Reset()
	defer b.batch.Reset()
	for _, g := range s.KeyGroups {
		if !r.Contains(g.KeyGroup) {
			continue
		}
		for i := range g.Entries {
			e := &g.Entries[i]
			if err := b.registry.Declare(e.State, e.Kind); err != nil {
				return err
			}
			si, err := b.create(e.State)
			if err != nil {
				return fmt.Errorf("restoring state %q: %w", e.State, err)
			}
			b.key = appendEntryPrefix(b.key[:0], g.KeyGroup, si.id, e.Key, e.Namespace)
			if e.Kind == state.KindMap {
				b.key = append(b.key, e.UserKey...)
			}
			if err := b.batch.Set(b.key, e.Value, nil); err != nil {
				return err
			}
			if b.batch.Len() >= restoreBatchSize {
				if err := b.db.Apply(b.batch, pebble.NoSync); err != nil {
					return fmt.Errorf("restoring key group %d: %w", g.KeyGroup, err)
				}
				b.batch.Reset()
			}
		}
	}
	if b.batch.Empty() {
		return nil
	}
	if err := b.db.Apply(b.batch, pebble.NoSync); err != nil {
		return fmt.Errorf("restoring Pebble state: %w", err)
	}
	return nil
}
