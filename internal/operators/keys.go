// Package operators implements the stream operators behind the DataStream
// API. Each is a runtime.Operator with typed ports; user functions are
// called on the task goroutine.
package operators

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
)

// KeyEncoder turns keys into the deterministic bytes that state is stored
// under and that pick the key group, and back. Strings are their own bytes
// and integers fixed-width big-endian; other types use the codec.
type KeyEncoder[K any] struct {
	kind   reflect.Kind
	codec  codec.Codec[K]
	typeOf reflect.Type
}

// NewKeyEncoder returns the encoder for K, or an error if K cannot be a key.
func NewKeyEncoder[K any]() (*KeyEncoder[K], error) {
	t := reflect.TypeFor[K]()
	e := &KeyEncoder[K]{kind: t.Kind(), typeOf: t}
	switch t.Kind() {
	case reflect.String, reflect.Int, reflect.Int64, reflect.Uint64, reflect.Int32, reflect.Uint32:
		return e, nil
	}
	c, err := codec.For[K]()
	if err != nil {
		return nil, fmt.Errorf("key type %s cannot be used as a key: %w", t, err)
	}
	e.kind = reflect.Invalid
	e.codec = c
	return e, nil
}

// Append appends the encoding of k to dst.
func (e *KeyEncoder[K]) Append(dst []byte, k K) []byte {
	p := unsafe.Pointer(&k)
	switch e.kind {
	case reflect.String:
		return append(dst, *(*string)(p)...)
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return binary.BigEndian.AppendUint64(dst, *(*uint64)(p))
	case reflect.Int32, reflect.Uint32:
		return binary.BigEndian.AppendUint32(dst, *(*uint32)(p))
	}
	return e.codec.Append(dst, k)
}

// Decode returns the key encoded in b.
func (e *KeyEncoder[K]) Decode(b []byte) (K, error) {
	var k K
	p := unsafe.Pointer(&k)
	switch e.kind {
	case reflect.String:
		*(*string)(p) = string(b)
		return k, nil
	case reflect.Int, reflect.Int64, reflect.Uint64:
		if len(b) != 8 {
			return k, fmt.Errorf("key of type %s: want 8 bytes, got %d", e.typeOf, len(b))
		}
		*(*uint64)(p) = binary.BigEndian.Uint64(b)
		return k, nil
	case reflect.Int32, reflect.Uint32:
		if len(b) != 4 {
			return k, fmt.Errorf("key of type %s: want 4 bytes, got %d", e.typeOf, len(b))
		}
		*(*uint32)(p) = binary.BigEndian.Uint32(b)
		return k, nil
	}
	k, n, err := e.codec.Decode(b)
	if err == nil && n != len(b) {
		err = fmt.Errorf("key of type %s: %d trailing bytes", e.typeOf, len(b)-n)
	}
	return k, err
}

// KeyGroupOf returns the key group of an encoded key.
func KeyGroupOf(b []byte, maxParallelism int) int {
	return keygroup.ForKeyHash(codec.Hash64(b), maxParallelism)
}

// Keying extracts and encodes the key of records of type T.
type Keying[T any, K comparable] struct {
	Select  func(T) K
	Encoder *KeyEncoder[K]
}

// KeyGroupFunc returns func(T) int giving the key group of a record, for a
// hash exchange; the result is returned as any for the runtime.
func (k *Keying[T, K]) KeyGroupFunc(maxParallelism int) any {
	var buf []byte
	return func(v T) int {
		buf = k.Encoder.Append(buf[:0], k.Select(v))
		return KeyGroupOf(buf, maxParallelism)
	}
}
