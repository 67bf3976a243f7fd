package state

import (
	"iter"

	"github.com/weirstream/weir/internal/codec"
)

// RawStore is implemented by backends that keep serialised state (Pebble,
// MemRaw). The New*State functions adapt it to the typed state interfaces by
// encoding values with the codec; a RawStore only moves bytes.
//
// Every entry is addressed by (state name, key group, key, namespace) and,
// for map state, a user key. Byte slices passed in are the caller's and are
// reused after the call: the store copies what it keeps. Slices returned or
// passed to a Scan callback are the store's: they are valid until the next
// call on the store and must not be modified.
type RawStore interface {
	Backend

	// Registry returns the store's state registry; New*State keep the
	// typed states there. Snapshot reads state kinds from it, Restore
	// declares them.
	Registry() *Registry

	// Get, Put and Delete read and write the single value of an entry
	// (value, list, reducing and aggregating state).
	Get(state string, key, ns []byte, keyGroup int) ([]byte, bool, error)
	Put(state string, key, ns []byte, keyGroup int, value []byte) error
	Delete(state string, key, ns []byte, keyGroup int) error
	// Append appends value to the entry's bytes, creating the entry if
	// absent. List state adds elements with it, so a store with a merge
	// operator need not read before writing.
	Append(state string, key, ns []byte, keyGroup int, value []byte) error

	// GetEntry, PutEntry and DeleteEntry read and write one user key of a
	// map entry.
	GetEntry(state string, key, ns []byte, keyGroup int, userKey []byte) ([]byte, bool, error)
	PutEntry(state string, key, ns []byte, keyGroup int, userKey, value []byte) error
	DeleteEntry(state string, key, ns []byte, keyGroup int, userKey []byte) error
	// Scan calls fn for each user key of a map entry in ascending byte
	// order until fn returns false. fn may write to the store; whether a
	// scan sees writes made during it is up to the store.
	Scan(state string, key, ns []byte, keyGroup int, fn func(userKey, value []byte) bool) error
	// DeleteEntries deletes every user key of a map entry.
	DeleteEntries(state string, key, ns []byte, keyGroup int) error
}

// rawBase is what every adapter over a RawStore shares.
type rawBase struct {
	s    RawStore
	name string
}

// current returns the current key, namespace and key group.
func (r *rawBase) current() (key, ns []byte, kg int) {
	kg = r.s.CurrentKeyGroup()
	if kg < 0 {
		panicNoKey(r.name)
	}
	return r.s.CurrentKey(), r.s.CurrentNamespace(), kg
}

func (r *rawBase) check(op string, err error) {
	if err != nil {
		panic(&AccessError{State: r.name, Op: op, Err: err})
	}
}

// getScalar reads and decodes the current entry's single value.
func getScalar[V any](r *rawBase, c codec.Codec[V], op string) (V, bool) {
	key, ns, kg := r.current()
	b, ok, err := r.s.Get(r.name, key, ns, kg)
	r.check(op, err)
	if !ok {
		var zero V
		return zero, false
	}
	v, err := decodeExact(c, b)
	r.check(op, err)
	return v, true
}

// putScalar encodes v into buf and writes it as the current entry's value.
func putScalar[V any](r *rawBase, c codec.Codec[V], buf *[]byte, v V, op string) {
	key, ns, kg := r.current()
	*buf = c.Append((*buf)[:0], v)
	r.check(op, r.s.Put(r.name, key, ns, kg, *buf))
}

func (r *rawBase) clear(op string) {
	key, ns, kg := r.current()
	r.check(op, r.s.Delete(r.name, key, ns, kg))
}

type rawValue[V any] struct {
	rawBase
	c   codec.Codec[V]
	buf []byte
}

func (s *rawValue[V]) Value() (V, bool) { return getScalar(&s.rawBase, s.c, "ValueState.Value") }
func (s *rawValue[V]) Update(v V)       { putScalar(&s.rawBase, s.c, &s.buf, v, "ValueState.Update") }
func (s *rawValue[V]) Clear()           { s.clear("ValueState.Clear") }

type rawReducing[V any] struct {
	rawBase
	c      codec.Codec[V]
	buf    []byte
	reduce func(a, b V) V
}

func (s *rawReducing[V]) Get() (V, bool) { return getScalar(&s.rawBase, s.c, "ReducingState.Get") }
func (s *rawReducing[V]) Clear()         { s.clear("ReducingState.Clear") }

func (s *rawReducing[V]) Add(v V) {
	if old, ok := getScalar(&s.rawBase, s.c, "ReducingState.Add"); ok {
		v = s.reduce(old, v)
	}
	putScalar(&s.rawBase, s.c, &s.buf, v, "ReducingState.Add")
}

type rawAggregating[IN, ACC, OUT any] struct {
	rawBase
	c   codec.Codec[ACC]
	buf []byte
	agg AggregateFunction[IN, ACC, OUT]
}

func (s *rawAggregating[IN, ACC, OUT]) Clear() { s.clear("AggregatingState.Clear") }

func (s *rawAggregating[IN, ACC, OUT]) Get() (OUT, bool) {
	acc, ok := getScalar(&s.rawBase, s.c, "AggregatingState.Get")
	if !ok {
		var zero OUT
		return zero, false
	}
	return s.agg.GetResult(acc), true
}

func (s *rawAggregating[IN, ACC, OUT]) Add(in IN) {
	acc, ok := getScalar(&s.rawBase, s.c, "AggregatingState.Add")
	if !ok {
		acc = s.agg.CreateAccumulator()
	}
	putScalar(&s.rawBase, s.c, &s.buf, s.agg.Add(in, acc), "AggregatingState.Add")
}

type rawList[V any] struct {
	rawBase
	c   codec.Codec[V]
	buf []byte
}

func (s *rawList[V]) Get() []V {
	key, ns, kg := s.current()
	b, ok, err := s.s.Get(s.name, key, ns, kg)
	s.check("ListState.Get", err)
	if !ok {
		return nil
	}
	l, err := appendDecodedList(nil, s.c, b)
	s.check("ListState.Get", err)
	return l
}

func (s *rawList[V]) Add(v V) {
	key, ns, kg := s.current()
	s.buf = s.c.Append(s.buf[:0], v)
	s.check("ListState.Add", s.s.Append(s.name, key, ns, kg, s.buf))
}

func (s *rawList[V]) encode(vs []V) []byte {
	s.buf = s.buf[:0]
	for _, v := range vs {
		s.buf = s.c.Append(s.buf, v)
	}
	return s.buf
}

func (s *rawList[V]) AddAll(vs []V) {
	if len(vs) == 0 {
		return
	}
	key, ns, kg := s.current()
	s.check("ListState.AddAll", s.s.Append(s.name, key, ns, kg, s.encode(vs)))
}

func (s *rawList[V]) Update(vs []V) {
	if len(vs) == 0 {
		s.clear("ListState.Update")
		return
	}
	key, ns, kg := s.current()
	s.check("ListState.Update", s.s.Put(s.name, key, ns, kg, s.encode(vs)))
}

func (s *rawList[V]) Clear() { s.clear("ListState.Clear") }

type rawMap[UK comparable, UV any] struct {
	rawBase
	kc   codec.Codec[UK]
	vc   codec.Codec[UV]
	kbuf []byte
	vbuf []byte
}

func (s *rawMap[UK, UV]) Get(k UK) (UV, bool) {
	key, ns, kg := s.current()
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	b, ok, err := s.s.GetEntry(s.name, key, ns, kg, s.kbuf)
	s.check("MapState.Get", err)
	if !ok {
		var zero UV
		return zero, false
	}
	v, err := decodeExact(s.vc, b)
	s.check("MapState.Get", err)
	return v, true
}

func (s *rawMap[UK, UV]) Put(k UK, v UV) {
	key, ns, kg := s.current()
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.vbuf = s.vc.Append(s.vbuf[:0], v)
	s.check("MapState.Put", s.s.PutEntry(s.name, key, ns, kg, s.kbuf, s.vbuf))
}

func (s *rawMap[UK, UV]) Remove(k UK) {
	key, ns, kg := s.current()
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	s.check("MapState.Remove", s.s.DeleteEntry(s.name, key, ns, kg, s.kbuf))
}

func (s *rawMap[UK, UV]) Contains(k UK) bool {
	key, ns, kg := s.current()
	s.kbuf = s.kc.Append(s.kbuf[:0], k)
	_, ok, err := s.s.GetEntry(s.name, key, ns, kg, s.kbuf)
	s.check("MapState.Contains", err)
	return ok
}

// All decodes entries as the scan yields them. The current key is read
// when All is called, so a loop body that changes it does not change what
// is iterated.
func (s *rawMap[UK, UV]) All() iter.Seq2[UK, UV] {
	key, ns, kg := s.current()
	key, ns = cloneBytes(key), cloneBytes(ns)
	return func(yield func(UK, UV) bool) {
		var derr error
		err := s.s.Scan(s.name, key, ns, kg, func(ub, vb []byte) bool {
			k, err := decodeExact(s.kc, ub)
			if err != nil {
				derr = err
				return false
			}
			v, err := decodeExact(s.vc, vb)
			if err != nil {
				derr = err
				return false
			}
			return yield(k, v)
		})
		s.check("MapState.All", derr)
		s.check("MapState.All", err)
	}
}

func (s *rawMap[UK, UV]) Keys() iter.Seq[UK] {
	key, ns, kg := s.current()
	key, ns = cloneBytes(key), cloneBytes(ns)
	return func(yield func(UK) bool) {
		var derr error
		err := s.s.Scan(s.name, key, ns, kg, func(ub, _ []byte) bool {
			k, err := decodeExact(s.kc, ub)
			if err != nil {
				derr = err
				return false
			}
			return yield(k)
		})
		s.check("MapState.Keys", derr)
		s.check("MapState.Keys", err)
	}
}

func (s *rawMap[UK, UV]) IsEmpty() bool {
	key, ns, kg := s.current()
	empty := true
	err := s.s.Scan(s.name, key, ns, kg, func(_, _ []byte) bool {
		empty = false
		return false
	})
	s.check("MapState.IsEmpty", err)
	return empty
}

func (s *rawMap[UK, UV]) Clear() {
	key, ns, kg := s.current()
	s.check("MapState.Clear", s.s.DeleteEntries(s.name, key, ns, kg))
}
