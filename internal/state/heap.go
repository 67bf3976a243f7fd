package state

import (
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
)

// Heap is the heap state backend: Go values in Go maps, per key group (see
// the package comment for the table layout). It is not safe for concurrent
// use.
type Heap struct {
	KeyContext
	composite    []byte // uvarint(len(key)) ‖ key ‖ ns, valid when compositeGen == gen
	compositeGen uint64
	scratch      []byte // composite keys of entries being restored

	registry Registry
	states   []heapState // registered states, in registration order
	// pending holds restored entries of states not registered yet, by state
	// name: their Go types are unknown until then.
	pending map[string][]pendingEntry
}

type pendingEntry struct {
	keyGroup int
	Entry
}

// heapState is what the Heap needs of each registered state.
type heapState interface {
	// appendSnapshot appends the entries of the key group at index kgIdx.
	appendSnapshot(dst []Entry, kgIdx int) ([]Entry, error)
	// restore stores e in the key group at index kgIdx.
	restore(kgIdx int, e *Entry) error
}

// NewHeapBackend returns an empty heap backend for the key groups r.
func NewHeapBackend(r keygroup.Range) *Heap {
	return &Heap{KeyContext: NewKeyContext(r)}
}

// compositeKey returns the spaced-table key of the current key and namespace.
func (h *Heap) compositeKey() []byte {
	if h.compositeGen != h.gen {
		h.composite = appendComposite(h.composite[:0], h.key, h.ns)
		h.compositeGen = h.gen
	}
	return h.composite
}

// adopt adds a newly registered state and moves its restored entries into it.
func (h *Heap) adopt(name string, s heapState) error {
	for _, p := range h.pending[name] {
		if err := s.restore(p.keyGroup-h.kgRange.Start, &p.Entry); err != nil {
			return fmt.Errorf("state %q: restoring key group %d: %w", name, p.keyGroup, err)
		}
	}
	delete(h.pending, name)
	h.states = append(h.states, s)
	return nil
}

// Snapshot implements Backend. It encodes every value with its codec.
func (h *Heap) Snapshot() (_ *Snapshot, err error) {
	defer func() {
		// A value that cannot be encoded (a pointer cycle, a failing
		// MarshalBinary) fails the snapshot, not the task.
		if r := recover(); r != nil {
			ee, ok := r.(*codec.EncodeError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("snapshotting heap state: %w", ee)
		}
	}()
	pending := make(map[int][]Entry)
	for _, ps := range h.pending {
		for _, p := range ps {
			pending[p.keyGroup] = append(pending[p.keyGroup], cloneEntry(p.Entry))
		}
	}
	snap := &Snapshot{}
	var entries []Entry
	for kg := h.kgRange.Start; kg <= h.kgRange.End; kg++ {
		entries = entries[:0]
		for _, s := range h.states {
			if entries, err = s.appendSnapshot(entries, kg-h.kgRange.Start); err != nil {
				return nil, fmt.Errorf("snapshotting key group %d: %w", kg, err)
			}
		}
		entries = append(entries, pending[kg]...)
		if len(entries) == 0 {
			continue
		}
		out := slices.Clone(entries)
		sortEntries(out)
		snap.KeyGroups = append(snap.KeyGroups, KeyGroupState{KeyGroup: kg, Entries: out})
	}
	return snap, nil
}

// Restore implements Backend. Entries of registered states are decoded now;
// the others are kept as bytes until their state is registered.
func (h *Heap) Restore(s *Snapshot) error {
	for _, g := range s.KeyGroups {
		if !h.kgRange.Contains(g.KeyGroup) {
			continue
		}
		kgIdx := g.KeyGroup - h.kgRange.Start
		for i := range g.Entries {
			e := &g.Entries[i]
			if err := h.registry.Declare(e.State, e.Kind); err != nil {
				return err
			}
			if reg := h.registry.states[e.State]; reg.state != nil {
				if err := reg.state.(heapState).restore(kgIdx, e); err != nil {
					return fmt.Errorf("state %q: restoring key group %d: %w", e.State, g.KeyGroup, err)
				}
				continue
			}
			if h.pending == nil {
				h.pending = make(map[string][]pendingEntry)
			}
			h.pending[e.State] = append(h.pending[e.State], pendingEntry{keyGroup: g.KeyGroup, Entry: cloneEntry(*e)})
		}
	}
	return nil
}

// denseMap maps keys to values with positions: updating an existing key
// never allocates (a Go map assignment m[string(b)] = v would allocate the
// key string each time).
type denseMap[V any] struct {
	pos  map[string]int32
	keys []string
	vals []V
}

func (d *denseMap[V]) insert(k []byte, v V) int32 {
	if d.pos == nil {
		d.pos = make(map[string]int32)
	}
	ks := string(k)
	i := int32(len(d.keys))
	d.pos[ks] = i
	d.keys = append(d.keys, ks)
	d.vals = append(d.vals, v)
	return i
}

// remove deletes the entry at i by moving the last entry into its place.
func (d *denseMap[V]) remove(i int32) {
	delete(d.pos, d.keys[i])
	last := int32(len(d.keys) - 1)
	if i != last {
		d.keys[i], d.vals[i] = d.keys[last], d.vals[last]
		d.pos[d.keys[i]] = i
	}
	var zero V
	d.keys[last], d.vals[last] = "", zero
	d.keys, d.vals = d.keys[:last], d.vals[:last]
}

// kgTable holds one state's entries of one key group.
type kgTable[V any] struct {
	plain  denseMap[V] // empty namespace, by key
	spaced denseMap[V] // other namespaces, by composite key
}

// heapTable is the storage every heap state is built on: one kgTable per
// key group, and the position of the current entry.
type heapTable[V any] struct {
	b    *Heap
	name string
	kind Kind
	kgs  []*kgTable[V] // by key group - range start; nil until used

	cacheGen uint64 // == b.gen when cacheMap/cacheIdx locate the current entry
	cacheMap *denseMap[V]
	cacheIdx int32
}

func newHeapTable[V any](b *Heap, name string, kind Kind) heapTable[V] {
	return heapTable[V]{b: b, name: name, kind: kind, kgs: make([]*kgTable[V], b.kgRange.Len())}
}

// find locates the entry of the current key and namespace.
func (s *heapTable[V]) find() (*denseMap[V], int32, bool) {
	b := s.b
	if s.cacheGen == b.gen {
		return s.cacheMap, s.cacheIdx, true
	}
	if b.keyGroup < 0 {
		panicNoKey(s.name)
	}
	t := s.kgs[b.keyGroup-b.kgRange.Start]
	if t == nil {
		return nil, 0, false
	}
	var d *denseMap[V]
	var i int32
	var ok bool
	if len(b.ns) == 0 {
		d = &t.plain
		i, ok = d.pos[string(b.key)]
	} else {
		d = &t.spaced
		i, ok = d.pos[string(b.compositeKey())]
	}
	if ok {
		s.cacheGen, s.cacheMap, s.cacheIdx = b.gen, d, i
	}
	return d, i, ok
}

// insert adds the entry of the current key and namespace, which find did
// not find.
func (s *heapTable[V]) insert(v V) {
	b := s.b
	kgIdx := b.keyGroup - b.kgRange.Start
	t := s.kgs[kgIdx]
	if t == nil {
		t = new(kgTable[V])
		s.kgs[kgIdx] = t
	}
	var i int32
	var d *denseMap[V]
	if len(b.ns) == 0 {
		d = &t.plain
		i = d.insert(b.key, v)
	} else {
		d = &t.spaced
		i = d.insert(b.compositeKey(), v)
	}
	s.cacheGen, s.cacheMap, s.cacheIdx = b.gen, d, i
}

func (s *heapTable[V]) get() (V, bool) {
	if d, i, ok := s.find(); ok {
		return d.vals[i], true
	}
	var zero V
	return zero, false
}

func (s *heapTable[V]) set(v V) {
	if d, i, ok := s.find(); ok {
		d.vals[i] = v
		return
	}
	s.insert(v)
}

func (s *heapTable[V]) clear() {
	if d, i, ok := s.find(); ok {
		d.remove(i)
		s.cacheGen = 0 // remove moved another entry
	}
}

// entryAt returns a pointer to the entry (key, ns) of the key group at
// kgIdx, inserting newValue() if absent. The pointer is valid until the
// next insert.
func (s *heapTable[V]) entryAt(kgIdx int, key, ns []byte, newValue func() V) *V {
	t := s.kgs[kgIdx]
	if t == nil {
		t = new(kgTable[V])
		s.kgs[kgIdx] = t
	}
	d, k := &t.plain, key
	if len(ns) > 0 {
		s.b.scratch = appendComposite(s.b.scratch[:0], key, ns)
		d, k = &t.spaced, s.b.scratch
	}
	i, ok := d.pos[string(k)]
	if !ok {
		var v V
		if newValue != nil {
			v = newValue()
		}
		i = d.insert(k, v)
	}
	s.cacheGen = 0
	return &d.vals[i]
}

// each calls fn for every entry of the key group at kgIdx.
func (s *heapTable[V]) each(kgIdx int, fn func(key, ns []byte, v V) error) error {
	t := s.kgs[kgIdx]
	if t == nil {
		return nil
	}
	for i, k := range t.plain.keys {
		if err := fn([]byte(k), nil, t.plain.vals[i]); err != nil {
			return err
		}
	}
	for i, c := range t.spaced.keys {
		key, ns, err := splitComposite(c)
		if err != nil {
			return err
		}
		if err := fn([]byte(key), []byte(ns), t.spaced.vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// heapScalar is a state with one encoded value per entry: value, reducing
// and aggregating state.
type heapScalar[V any] struct {
	heapTable[V]
	c codec.Codec[V]
}

func (s *heapScalar[V]) appendSnapshot(dst []Entry, kgIdx int) ([]Entry, error) {
	err := s.each(kgIdx, func(key, ns []byte, v V) error {
		dst = append(dst, Entry{State: s.name, Kind: s.kind, Key: nilIfEmpty(key), Namespace: nilIfEmpty(ns), Value: nilIfEmpty(s.c.Append(nil, v))})
		return nil
	})
	return dst, err
}

func (s *heapScalar[V]) restore(kgIdx int, e *Entry) error {
	v, err := decodeExact(s.c, e.Value)
	if err != nil {
		return err
	}
	*s.entryAt(kgIdx, e.Key, e.Namespace, nil) = v
	return nil
}

type heapValue[V any] struct{ heapScalar[V] }

func (s *heapValue[V]) Value() (V, bool) { return s.get() }
func (s *heapValue[V]) Update(v V)       { s.set(v) }
func (s *heapValue[V]) Clear()           { s.clear() }

type heapReducing[V any] struct {
	heapScalar[V]
	reduce func(a, b V) V
}

func (s *heapReducing[V]) Get() (V, bool) { return s.get() }
func (s *heapReducing[V]) Clear()         { s.clear() }

func (s *heapReducing[V]) Add(v V) {
	if d, i, ok := s.find(); ok {
		d.vals[i] = s.reduce(d.vals[i], v)
		return
	}
	s.insert(v)
}

type heapAggregating[IN, ACC, OUT any] struct {
	heapScalar[ACC]
	agg AggregateFunction[IN, ACC, OUT]
}

func (s *heapAggregating[IN, ACC, OUT]) Clear() { s.clear() }

func (s *heapAggregating[IN, ACC, OUT]) Get() (OUT, bool) {
	acc, ok := s.get()
	if !ok {
		var zero OUT
		return zero, false
	}
	return s.agg.GetResult(acc), true
}

func (s *heapAggregating[IN, ACC, OUT]) Add(in IN) {
	if d, i, ok := s.find(); ok {
		d.vals[i] = s.agg.Add(in, d.vals[i])
		return
	}
	s.insert(s.agg.Add(in, s.agg.CreateAccumulator()))
}

type heapList[V any] struct {
	heapTable[[]V]
	c codec.Codec[V]
}

func (s *heapList[V]) Get() []V {
	l, _ := s.get()
	return slices.Clip(l)
}

func (s *heapList[V]) Add(v V) {
	if d, i, ok := s.find(); ok {
		d.vals[i] = append(d.vals[i], v)
		return
	}
	s.insert([]V{v})
}

// AddAll copies vs, as Flink's heap list state does.
func (s *heapList[V]) AddAll(vs []V) {
	if len(vs) == 0 {
		return
	}
	if d, i, ok := s.find(); ok {
		d.vals[i] = append(d.vals[i], vs...)
		return
	}
	s.insert(slices.Clone(vs))
}

// Update copies vs, as Flink's heap list state does.
func (s *heapList[V]) Update(vs []V) {
	if len(vs) == 0 {
		s.clear()
		return
	}
	s.set(slices.Clone(vs))
}

func (s *heapList[V]) Clear() { s.clear() }

func (s *heapList[V]) appendSnapshot(dst []Entry, kgIdx int) ([]Entry, error) {
	err := s.each(kgIdx, func(key, ns []byte, l []V) error {
		var b []byte
		for _, v := range l {
			b = s.c.Append(b, v)
		}
		dst = append(dst, Entry{State: s.name, Kind: KindList, Key: nilIfEmpty(key), Namespace: nilIfEmpty(ns), Value: nilIfEmpty(b)})
		return nil
	})
	return dst, err
}

func (s *heapList[V]) restore(kgIdx int, e *Entry) error {
	l, err := appendDecodedList(nil, s.c, e.Value)
	if err != nil {
		return err
	}
	if len(l) == 0 {
		return nil
	}
	*s.entryAt(kgIdx, e.Key, e.Namespace, nil) = l
	return nil
}

type heapMap[UK comparable, UV any] struct {
	heapTable[map[UK]UV]
	kc codec.Codec[UK]
	vc codec.Codec[UV]
}

func (s *heapMap[UK, UV]) Get(k UK) (UV, bool) {
	if d, i, ok := s.find(); ok {
		v, ok := d.vals[i][k]
		return v, ok
	}
	var zero UV
	return zero, false
}

func (s *heapMap[UK, UV]) Put(k UK, v UV) {
	if d, i, ok := s.find(); ok {
		d.vals[i][k] = v
		return
	}
	s.insert(map[UK]UV{k: v})
}

func (s *heapMap[UK, UV]) Remove(k UK) {
	if d, i, ok := s.find(); ok {
		m := d.vals[i]
		delete(m, k)
		if len(m) == 0 {
			s.clear()
		}
	}
}

func (s *heapMap[UK, UV]) Contains(k UK) bool {
	_, ok := s.Get(k)
	return ok
}

func (s *heapMap[UK, UV]) current() map[UK]UV {
	if d, i, ok := s.find(); ok {
		return d.vals[i]
	}
	return nil
}

func (s *heapMap[UK, UV]) All() iter.Seq2[UK, UV] { return maps.All(s.current()) }
func (s *heapMap[UK, UV]) Keys() iter.Seq[UK]     { return maps.Keys(s.current()) }
func (s *heapMap[UK, UV]) IsEmpty() bool {
	_, _, ok := s.find()
	return !ok
}
func (s *heapMap[UK, UV]) Clear() { s.clear() }

func (s *heapMap[UK, UV]) appendSnapshot(dst []Entry, kgIdx int) ([]Entry, error) {
	err := s.each(kgIdx, func(key, ns []byte, m map[UK]UV) error {
		key, ns = nilIfEmpty(key), nilIfEmpty(ns)
		for k, v := range m {
			dst = append(dst, Entry{State: s.name, Kind: KindMap, Key: key, Namespace: ns,
				UserKey: nilIfEmpty(s.kc.Append(nil, k)), Value: nilIfEmpty(s.vc.Append(nil, v))})
		}
		return nil
	})
	return dst, err
}

func (s *heapMap[UK, UV]) restore(kgIdx int, e *Entry) error {
	k, err := decodeExact(s.kc, e.UserKey)
	if err != nil {
		return fmt.Errorf("map key: %w", err)
	}
	v, err := decodeExact(s.vc, e.Value)
	if err != nil {
		return fmt.Errorf("map value: %w", err)
	}
	m := s.entryAt(kgIdx, e.Key, e.Namespace, func() map[UK]UV { return make(map[UK]UV) })
	(*m)[k] = v
	return nil
}
