package codec

import (
	"bytes"
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unsafe"
)

// sliceHeader is the runtime layout of every slice.
type sliceHeader struct {
	data unsafe.Pointer
	len  int
	cap  int
}

// ---- structs ----

// A struct compiles to segments: runs of flat fields merged into one flat
// program, and single fields that need their own codec. A struct with only
// flat fields becomes a flat program itself.
type segment struct {
	flat *flatProg  // a run of flat fields; offsets relative to the struct
	tc   *typeCodec // otherwise: one field's codec
	off  uintptr    // its offset
	path string     // its path segment (".Name")
}

func (b *builder) fillStruct(tc *typeCodec, path string) error {
	t := tc.typ
	var segs []segment
	var run []flatOp
	flush := func() {
		if len(run) > 0 {
			segs = append(segs, segment{flat: &flatProg{ops: run}})
			run = nil
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		fpath := path + "." + f.Name
		ftc, err := b.build(f.Type, fpath)
		if err != nil {
			return err
		}
		if ftc.flat != nil {
			for _, op := range ftc.flat.ops {
				op.off += f.Offset
				op.path = "." + f.Name + op.path
				run = append(run, op)
			}
			continue
		}
		flush()
		segs = append(segs, segment{tc: ftc, off: f.Offset, path: "." + f.Name})
	}
	flush()
	switch {
	case len(segs) == 0:
		tc.flat = &flatProg{}
		return nil
	case len(segs) == 1 && segs[0].flat != nil:
		tc.flat = segs[0].flat
		return nil
	}
	tc.enc = func(dst []byte, p unsafe.Pointer, depth int) []byte {
		for k := range segs {
			s := &segs[k]
			if s.flat != nil {
				dst = s.flat.append(dst, p)
			} else {
				dst = s.tc.enc(dst, unsafe.Add(p, s.off), depth)
			}
		}
		return dst
	}
	tc.dec = func(src []byte, p unsafe.Pointer, depth int) (int, error) {
		i := 0
		for k := range segs {
			s := &segs[k]
			var n int
			var err error
			if s.flat != nil {
				n, err = s.flat.decode(src[i:], p)
			} else {
				n, err = s.tc.dec(src[i:], unsafe.Add(p, s.off), depth)
			}
			if err != nil {
				return 0, withContext(err, s.path, i)
			}
			i += n
		}
		return i, nil
	}
	return nil
}

// ---- arrays ----

func (b *builder) fillArray(tc *typeCodec, path string) error {
	t := tc.typ
	elem, err := b.build(t.Elem(), path+"[]")
	if err != nil {
		return err
	}
	n := t.Len()
	esz := t.Elem().Size()
	if elem.flat != nil && n*len(elem.flat.ops) <= maxFlatArrayOps {
		ops := make([]flatOp, 0, n*len(elem.flat.ops))
		for k := range n {
			for _, op := range elem.flat.ops {
				op.off += uintptr(k) * esz
				op.path = "[" + strconv.Itoa(k) + "]" + op.path
				ops = append(ops, op)
			}
		}
		tc.flat = &flatProg{ops: ops}
		return nil
	}
	emin := elem.minSize
	tc.enc = func(dst []byte, p unsafe.Pointer, depth int) []byte {
		for k := range n {
			dst = elem.enc(dst, unsafe.Add(p, uintptr(k)*esz), depth)
		}
		return dst
	}
	tc.dec = func(src []byte, p unsafe.Pointer, depth int) (int, error) {
		if emin > 0 && n > len(src)/emin {
			return 0, truncated(0, "array of %d elements needs at least %d bytes, %d remain", n, n*emin, len(src))
		}
		i := 0
		for k := range n {
			m, err := elem.dec(src[i:], unsafe.Add(p, uintptr(k)*esz), depth)
			if err != nil {
				return 0, withContext(err, "["+strconv.Itoa(k)+"]", i)
			}
			i += m
		}
		return i, nil
	}
	return nil
}

// ---- slices ----

func (b *builder) fillSlice(tc *typeCodec, path string) error {
	t := tc.typ
	elem, err := b.build(t.Elem(), path+"[]")
	if err != nil {
		return err
	}
	esz := t.Elem().Size()
	emin := elem.minSize
	eflat := elem.flat
	alloc := sliceAllocator(t)
	tc.enc = func(dst []byte, p unsafe.Pointer, depth int) []byte {
		h := (*sliceHeader)(p)
		if h.data == nil {
			return append(dst, 0)
		}
		dst = appendUvarint(dst, uint64(h.len)+1)
		if emin == 0 { // elements encode to nothing
			return dst
		}
		if eflat != nil {
			for k := range h.len {
				dst = eflat.append(dst, unsafe.Add(h.data, uintptr(k)*esz))
			}
			return dst
		}
		for k := range h.len {
			dst = elem.enc(dst, unsafe.Add(h.data, uintptr(k)*esz), depth)
		}
		return dst
	}
	tc.dec = func(src []byte, p unsafe.Pointer, depth int) (int, error) {
		l, i, st := readUvarint(src, 0)
		if st != varintOK {
			return 0, varintError(st, 0, "a slice length")
		}
		if l == 0 { // nil slice; *p is already zero
			return i, nil
		}
		n := l - 1
		if n == 0 { // empty, not nil
			*(*sliceHeader)(p) = sliceHeader{data: zeroSizeSliceData}
			return i, nil
		}
		if emin == 0 {
			// Every element encodes to nothing (its type has size 0), so any
			// length costs neither input nor memory.
			if n > math.MaxInt {
				return 0, corrupt(0, "slice length %d overflows int", n)
			}
			*(*sliceHeader)(p) = sliceHeader{data: zeroSizeSliceData, len: int(n), cap: int(n)}
			return i, nil
		}
		if n > uint64((len(src)-i)/emin) {
			return 0, truncated(0, "slice of %d elements needs at least %d bytes per element, %d remain", n, emin, len(src)-i)
		}
		data := alloc(p, int(n))
		for k := range int(n) {
			ep := unsafe.Add(data, uintptr(k)*esz)
			var m int
			var err error
			if eflat != nil {
				m, err = eflat.decode(src[i:], ep)
			} else {
				m, err = elem.dec(src[i:], ep, depth)
			}
			if err != nil {
				return 0, withContext(err, "["+strconv.Itoa(k)+"]", i)
			}
			i += m
		}
		return i, nil
	}
	return nil
}

// sliceAllocator returns a function that stores a new zeroed slice of length
// n (n > 0) of type t at p and returns its data pointer.
func sliceAllocator(t reflect.Type) func(p unsafe.Pointer, n int) unsafe.Pointer {
	et := t.Elem()
	if !hasPointers(et) {
		// Pointer-free elements can live in a []uint64: the GC need not scan
		// them, and 8-byte alignment satisfies every Go type.
		size := et.Size()
		return func(p unsafe.Pointer, n int) unsafe.Pointer {
			words := make([]uint64, (uintptr(n)*size+7)/8)
			data := unsafe.Pointer(unsafe.SliceData(words))
			*(*sliceHeader)(p) = sliceHeader{data: data, len: n, cap: n}
			return data
		}
	}
	if et.Kind() == reflect.String {
		return func(p unsafe.Pointer, n int) unsafe.Pointer {
			s := make([]string, n)
			data := unsafe.Pointer(unsafe.SliceData(s))
			*(*sliceHeader)(p) = sliceHeader{data: data, len: n, cap: n}
			return data
		}
	}
	// Elements with pointers need their real type so the GC can scan them.
	// Grow on an addressable slice value allocates once, with no header copy.
	return func(p unsafe.Pointer, n int) unsafe.Pointer {
		v := reflect.NewAt(t, p).Elem()
		v.Grow(n)
		v.SetLen(n)
		return v.UnsafePointer()
	}
}

// valueAllocator returns a function that allocates one zeroed value of t.
func valueAllocator(t reflect.Type) func() unsafe.Pointer {
	if !hasPointers(t) {
		words := (t.Size() + 7) / 8
		return func() unsafe.Pointer {
			return unsafe.Pointer(unsafe.SliceData(make([]uint64, words)))
		}
	}
	if t.Kind() == reflect.String {
		return func() unsafe.Pointer { return unsafe.Pointer(new(string)) }
	}
	return func() unsafe.Pointer { return reflect.New(t).UnsafePointer() }
}

// hasPointers reports whether values of t contain pointers the GC must see.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	default:
		return true
	}
}

// ---- pointers ----

func (b *builder) fillPointer(tc *typeCodec, path string) error {
	t := tc.typ
	elem, err := b.build(t.Elem(), path)
	if err != nil {
		return err
	}
	alloc := valueAllocator(t.Elem())
	eflat := elem.flat
	tc.enc = func(dst []byte, p unsafe.Pointer, depth int) []byte {
		ptr := *(*unsafe.Pointer)(p)
		if ptr == nil {
			return append(dst, 0)
		}
		if eflat != nil {
			return eflat.append(append(dst, 1), ptr)
		}
		return elem.enc(append(dst, 1), ptr, depth)
	}
	tc.dec = func(src []byte, p unsafe.Pointer, depth int) (int, error) {
		if len(src) == 0 {
			return 0, truncated(0, "need 1 byte for a pointer's nil flag")
		}
		switch src[0] {
		case 0: // nil; *p is already zero
			return 1, nil
		case 1:
		default:
			return 0, corrupt(0, "pointer nil flag is %#x, want 0 or 1", src[0])
		}
		np := alloc()
		var m int
		var err error
		if eflat != nil {
			m, err = eflat.decode(src[1:], np)
		} else {
			m, err = elem.dec(src[1:], np, depth)
		}
		if err != nil {
			return 0, withContext(err, "", 1)
		}
		*(*unsafe.Pointer)(p) = np
		return 1 + m, nil
	}
	return nil
}

// ---- maps ----

// mapEntry locates one encoded entry in mapScratch.buf.
type mapEntry struct{ key, val, end int }

// mapScratch is reused across map encodes and decodes of one map type, so
// that a map costs no allocation beyond its own storage.
type mapScratch struct {
	iter     reflect.MapIter
	key, val reflect.Value // settable values of the key and element types
	kp, vp   unsafe.Pointer
	buf      []byte
	ents     []mapEntry
}

// maxPooledScratch keeps one huge map from pinning a huge buffer in the pool.
const maxPooledScratch = 64 << 10

func (b *builder) fillMap(tc *typeCodec, path string) error {
	t := tc.typ
	key, err := b.build(t.Key(), path+"[key]")
	if err != nil {
		return err
	}
	val, err := b.build(t.Elem(), path+"[value]")
	if err != nil {
		return err
	}
	entryMin := key.minSize + val.minSize
	kt, vt := t.Key(), t.Elem()
	pool := &sync.Pool{New: func() any {
		k, v := reflect.New(kt), reflect.New(vt)
		return &mapScratch{key: k.Elem(), val: v.Elem(), kp: k.UnsafePointer(), vp: v.UnsafePointer()}
	}}
	release := func(s *mapScratch) {
		s.key.SetZero()
		s.val.SetZero()
		if cap(s.buf) > maxPooledScratch || cap(s.ents) > maxPooledScratch {
			return
		}
		s.buf, s.ents = s.buf[:0], s.ents[:0]
		pool.Put(s)
	}

	tc.enc = func(dst []byte, p unsafe.Pointer, depth int) []byte {
		if *(*unsafe.Pointer)(p) == nil {
			return append(dst, 0)
		}
		m := reflect.NewAt(t, p).Elem()
		n := m.Len()
		dst = appendUvarint(dst, uint64(n)+1)
		if n == 0 {
			return dst
		}
		// Go randomises map iteration, so encode every entry aside and emit
		// them sorted by their encoded bytes: equal maps give equal bytes.
		s := pool.Get().(*mapScratch)
		s.iter.Reset(m)
		for s.iter.Next() {
			s.key.SetIterKey(&s.iter)
			s.val.SetIterValue(&s.iter)
			e := mapEntry{key: len(s.buf)}
			s.buf = key.enc(s.buf, s.kp, depth)
			e.val = len(s.buf)
			s.buf = val.enc(s.buf, s.vp, depth)
			e.end = len(s.buf)
			s.ents = append(s.ents, e)
		}
		s.iter.Reset(reflect.Value{})
		buf := s.buf
		slices.SortFunc(s.ents, func(a, b mapEntry) int { return compareEntries(buf, a, buf, b) })
		for _, e := range s.ents {
			dst = append(dst, buf[e.key:e.end]...)
		}
		release(s)
		return dst
	}

	tc.dec = func(src []byte, p unsafe.Pointer, depth int) (int, error) {
		l, i, st := readUvarint(src, 0)
		if st != varintOK {
			return 0, varintError(st, 0, "a map length")
		}
		if l == 0 { // nil map; *p is already zero
			return i, nil
		}
		n := l - 1
		switch {
		case key.minSize == 0 && n > 1:
			// The key type has size 0, so it has a single value.
			return 0, corrupt(0, "map of %d entries but its key type %s has only one value", n, kt)
		case entryMin > 0 && n > uint64((len(src)-i)/entryMin):
			return 0, truncated(0, "map of %d entries needs at least %d bytes per entry, %d remain", n, entryMin, len(src)-i)
		}
		m := reflect.MakeMapWithSize(t, int(n))
		s := pool.Get().(*mapScratch)
		defer release(s)
		var prev mapEntry
		for k := range int(n) {
			e := mapEntry{key: i}
			mk, err := key.dec(src[i:], s.kp, depth)
			if err != nil {
				return 0, withContext(err, "[key #"+strconv.Itoa(k)+"]", i)
			}
			e.val = i + mk
			mv, err := val.dec(src[e.val:], s.vp, depth)
			if err != nil {
				return 0, withContext(err, "[value #"+strconv.Itoa(k)+"]", e.val)
			}
			e.end = e.val + mv
			if k > 0 && compareEntries(src, prev, src, e) > 0 {
				return 0, corrupt(i, "map entry %d is not in canonical order (entries are sorted by their encoded key, then value)", k)
			}
			m.SetMapIndex(s.key, s.val)
			s.key.SetZero()
			s.val.SetZero()
			prev = e
			i = e.end
		}
		if m.Len() != int(n) {
			return 0, corrupt(0, "map of %d entries holds duplicate keys", n)
		}
		reflect.NewAt(t, p).Elem().Set(m)
		return i, nil
	}
	return nil
}

// compareEntries orders encoded map entries by key bytes, then value bytes.
// Distinct keys can encode alike (NaNs, pointers to equal values); ordering by
// value too keeps the output deterministic for them.
func compareEntries(abuf []byte, a mapEntry, bbuf []byte, b mapEntry) int {
	if c := bytes.Compare(abuf[a.key:a.val], bbuf[b.key:b.val]); c != 0 {
		return c
	}
	return bytes.Compare(abuf[a.val:a.end], bbuf[b.val:b.end])
}

// ---- BinaryMarshaler types ----

func marshalerCodec(t reflect.Type) (encFn, decFn) {
	useAppender := reflect.PointerTo(t).Implements(appenderType)
	enc := func(dst []byte, p unsafe.Pointer, _ int) []byte {
		v := reflect.NewAt(t, p).Interface()
		if useAppender {
			// Reserve one length byte, the common case, and shift the
			// payload if its length needs more.
			start := len(dst)
			out, err := v.(encoding.BinaryAppender).AppendBinary(append(dst, 0))
			if err != nil {
				panic(&EncodeError{Type: t, Err: fmt.Errorf("AppendBinary: %w", err)})
			}
			n := len(out) - start - 1
			if n < 0x80 {
				out[start] = byte(n)
				return out
			}
			extra := uvarintLen(uint64(n)) - 1
			out = append(out, make([]byte, extra)...)
			copy(out[start+1+extra:], out[start+1:start+1+n])
			appendUvarint(out[start:start], uint64(n))
			return out
		}
		b, err := v.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			panic(&EncodeError{Type: t, Err: fmt.Errorf("MarshalBinary: %w", err)})
		}
		dst = appendUvarint(dst, uint64(len(b)))
		return append(dst, b...)
	}
	dec := func(src []byte, p unsafe.Pointer, _ int) (n int, err error) {
		l, i, st := readUvarint(src, 0)
		if st != varintOK {
			return 0, varintError(st, 0, "a BinaryMarshaler payload length")
		}
		if l > uint64(len(src)-i) {
			return 0, truncated(0, "BinaryMarshaler payload of %d bytes but only %d remain", l, len(src)-i)
		}
		end := i + int(l)
		u := reflect.NewAt(t, p).Interface().(encoding.BinaryUnmarshaler)
		defer func() {
			// A user's UnmarshalBinary may panic on input it does not expect;
			// Decode promises an error instead.
			if r := recover(); r != nil {
				n, err = 0, corrupt(i, "%s.UnmarshalBinary panicked: %v", t, r)
			}
		}()
		// The payload's capacity is cut so that an UnmarshalBinary that
		// appends to it cannot overwrite the bytes after it.
		if uerr := u.UnmarshalBinary(src[i:end:end]); uerr != nil {
			return 0, &DecodeError{Offset: i, Err: fmt.Errorf("%w: %s.UnmarshalBinary: %w", ErrCorrupt, t, uerr)}
		}
		return end, nil
	}
	return enc, dec
}
