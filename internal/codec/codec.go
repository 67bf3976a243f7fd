package codec

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Codec encodes values of one type to a compact, deterministic binary form.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	// It panics with an *EncodeError only if a BinaryMarshaler method fails or
	// v nests deeper than MaxDepth (a pointer cycle).
	Append(dst []byte, v T) []byte
	// Decode decodes one value from the front of src and returns it with the
	// number of bytes consumed. Truncated or corrupt input returns a
	// *DecodeError; it never panics, and it allocates at most a small
	// multiple of len(src).
	Decode(src []byte) (T, int, error)
}

// For returns the codec for T, derived once by reflection and cached per type.
// For a type that cannot be encoded (funcs, chans, interfaces, unsafe.Pointer,
// uintptr, anywhere inside T) it returns an *UnsupportedTypeError naming the
// field path.
func For[T any]() (Codec[T], error) {
	t := reflect.TypeFor[T]()
	e, ok := rootCodecs.Load(t)
	if !ok {
		entry := &rootEntry{}
		if tc, err := compile(t); err != nil {
			entry.err = err
		} else {
			c := &codec[T]{tc: tc, flat: tc.flat}
			c.scratch.New = func() any { return new(T) }
			entry.codec = c
		}
		e, _ = rootCodecs.LoadOrStore(t, entry)
	}
	entry := e.(*rootEntry)
	if entry.err != nil {
		return nil, entry.err
	}
	return entry.codec.(*codec[T]), nil
}

// MustFor is For that panics on error, for tests and package initialisation.
func MustFor[T any]() Codec[T] {
	c, err := For[T]()
	if err != nil {
		panic(err)
	}
	return c
}

var rootCodecs sync.Map // reflect.Type → *rootEntry

type rootEntry struct {
	codec any // *codec[T]
	err   error
}

// codec is the Codec of every supported T.
type codec[T any] struct {
	tc *typeCodec
	// flat is tc.flat: for a flat T, Append and Decode call it directly so
	// that the value stays on the caller's stack.
	flat *flatProg
	// scratch holds *T for non-flat types: passing &v to the compiled closures
	// would move every v to the heap, so v is copied into a pooled T instead.
	scratch sync.Pool
}

func (c *codec[T]) Append(dst []byte, v T) []byte {
	if c.flat != nil {
		return c.flat.append(dst, unsafe.Pointer(&v))
	}
	p := c.scratch.Get().(*T)
	*p = v
	dst = c.tc.enc(dst, unsafe.Pointer(p), 0)
	var zero T
	*p = zero
	c.scratch.Put(p)
	return dst
}

func (c *codec[T]) Decode(src []byte) (T, int, error) {
	var zero T
	if c.flat != nil {
		var v T
		n, err := c.flat.decode(src, unsafe.Pointer(&v))
		if err != nil {
			return zero, 0, c.rootError(err)
		}
		return v, n, nil
	}
	p := c.scratch.Get().(*T)
	n, err := c.tc.dec(src, unsafe.Pointer(p), 0)
	v := *p
	*p = zero
	c.scratch.Put(p)
	if err != nil {
		return zero, 0, c.rootError(err)
	}
	return v, n, nil
}

// appendPtr is Append for a value the caller already holds in memory.
func (c *codec[T]) appendPtr(dst []byte, p *T) []byte {
	if c.flat != nil {
		return c.flat.append(dst, unsafe.Pointer(p))
	}
	return c.tc.enc(dst, unsafe.Pointer(p), 0)
}

// decodeInto decodes into *p, which must be zero.
func (c *codec[T]) decodeInto(src []byte, p *T) (int, error) {
	if c.flat != nil {
		return c.flat.decode(src, unsafe.Pointer(p))
	}
	return c.tc.dec(src, unsafe.Pointer(p), 0)
}

func (c *codec[T]) rootError(err error) error {
	if de, ok := err.(*DecodeError); ok {
		de.Type = c.tc.typ
	}
	return err
}

// AppendBatch appends a batch of values with their timestamps: a count, then
// per element its value and its timestamp (see the package doc for the
// format). vals and ts must have the same length.
func AppendBatch[T any](c Codec[T], dst []byte, vals []T, ts []int64) []byte {
	if len(vals) != len(ts) {
		panic(fmt.Sprintf("codec.AppendBatch: %d values but %d timestamps; pass one timestamp per value", len(vals), len(ts)))
	}
	dst = appendUvarint(dst, uint64(len(vals)))
	var prev int64
	cc, ours := c.(*codec[T])
	for k := range vals {
		if ours {
			dst = cc.appendPtr(dst, &vals[k])
		} else {
			dst = c.Append(dst, vals[k])
		}
		dst = appendUvarint(dst, zigzag(ts[k]-prev))
		prev = ts[k]
	}
	return dst
}

// DecodeBatch decodes a batch written by AppendBatch, which must fill src
// exactly, and appends its values to vals and its timestamps to ts. On error
// it returns vals and ts with their original lengths.
func DecodeBatch[T any](c Codec[T], src []byte, vals []T, ts []int64) ([]T, []int64, error) {
	var typ reflect.Type
	elemMin := 0
	cc, ours := c.(*codec[T])
	if ours {
		typ, elemMin = cc.tc.typ, cc.tc.minSize
	} else {
		typ = reflect.TypeFor[T]()
	}
	fail := func(err error, k int, off int) ([]T, []int64, error) {
		err = withContext(err, "", off)
		if de, ok := err.(*DecodeError); ok {
			de.Type = typ
			if k >= 0 {
				de.Path = fmt.Sprintf("batch[%d]%s", k, de.Path)
			}
		}
		return vals, ts, err
	}
	n, i, st := readUvarint(src, 0)
	if st != varintOK {
		return fail(varintError(st, 0, "the batch count"), -1, 0)
	}
	// Each element takes at least its value's minimum plus one timestamp byte.
	if n > uint64((len(src)-i)/(elemMin+1)) {
		return fail(truncated(0, "batch of %d elements needs at least %d bytes per element, %d remain", n, elemMin+1, len(src)-i), -1, 0)
	}
	base := len(vals)
	outVals := slices.Grow(vals, int(n))[:base+int(n)]
	outTs := slices.Grow(ts, int(n))[:base+int(n)]
	newVals := outVals[base:]
	clear(newVals) // reused capacity may hold old values; decoders expect zero
	var prev int64
	for k := range newVals {
		start := i
		var m int
		var err error
		if ours {
			m, err = cc.decodeInto(src[i:], &newVals[k])
		} else {
			newVals[k], m, err = c.Decode(src[i:])
		}
		if err != nil {
			clear(newVals)
			return fail(err, k, start)
		}
		i += m
		d, j, st := readUvarint(src, i)
		if st != varintOK {
			clear(newVals)
			return fail(varintError(st, 0, "a timestamp delta"), k, i)
		}
		prev += unzigzag(d)
		outTs[base+k] = prev
		i = j
	}
	if i != len(src) {
		clear(newVals)
		return fail(corrupt(i, "%d bytes left over after a batch of %d elements", len(src)-i, n), -1, 0)
	}
	return outVals, outTs, nil
}

// Hash64 returns a deterministic hash of b, identical across processes, runs
// and platforms (xxHash64 with seed 0). Encoded keys are hashed with it to
// choose a key group.
func Hash64(b []byte) uint64 { return xxhash.Sum64(b) }
