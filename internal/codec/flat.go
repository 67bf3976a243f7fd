package codec

import (
	"encoding/binary"
	"math"
	"time"
	"unsafe"
)

// A flat program encodes a struct (or a single value) made only of
// fixed-layout leaves — numbers, bools, strings, []byte, byte arrays,
// time.Time — including nested structs and small arrays of those, flattened
// into one list of (kind, offset) operations. append and decode are ordinary
// methods that never pass p to an unknown function, so escape analysis can
// keep the caller's value on the stack: a flat root type encodes with zero
// allocations and decodes with one allocation per non-empty string or []byte.
//
// Every primitive is also compiled through here (as a one-op program), so the
// wire format of each leaf kind is defined in exactly one place.

type opKind uint8

const (
	opBool opKind = iota
	opInt8
	opUint8
	opInt16
	opInt32
	opInt64
	opUint16
	opUint32
	opUint64
	opFloat32
	opFloat64
	opComplex64
	opComplex128
	opString
	opBytes     // []byte (any slice whose element kind is uint8)
	opByteArray // [n]byte (any array whose element kind is uint8)
	opTime      // time.Time
)

type flatOp struct {
	kind opKind
	n    int     // opByteArray: length
	off  uintptr // offset of the field from the start of the program's value
	path string  // field path for error messages, relative to the program's value
}

type flatProg struct {
	ops []flatOp
}

// append appends the encoding of the value at p.
func (f *flatProg) append(dst []byte, p unsafe.Pointer) []byte {
	for k := range f.ops {
		op := &f.ops[k]
		fp := unsafe.Add(p, op.off)
		switch op.kind {
		case opBool:
			var b byte
			if *(*bool)(fp) {
				b = 1
			}
			dst = append(dst, b)
		case opInt8, opUint8:
			dst = append(dst, *(*uint8)(fp))
		case opInt16:
			dst = appendUvarint(dst, zigzag(int64(*(*int16)(fp))))
		case opInt32:
			dst = appendUvarint(dst, zigzag(int64(*(*int32)(fp))))
		case opInt64:
			dst = appendUvarint(dst, zigzag(*(*int64)(fp)))
		case opUint16:
			dst = appendUvarint(dst, uint64(*(*uint16)(fp)))
		case opUint32:
			dst = appendUvarint(dst, uint64(*(*uint32)(fp)))
		case opUint64:
			dst = appendUvarint(dst, *(*uint64)(fp))
		case opFloat32:
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(*(*float32)(fp)))
		case opFloat64:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(*(*float64)(fp)))
		case opComplex64:
			c := *(*complex64)(fp)
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(real(c)))
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(imag(c)))
		case opComplex128:
			c := *(*complex128)(fp)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(real(c)))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(imag(c)))
		case opString:
			s := *(*string)(fp)
			dst = appendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		case opBytes:
			b := *(*[]byte)(fp)
			if b == nil {
				dst = append(dst, 0)
			} else {
				dst = appendUvarint(dst, uint64(len(b))+1)
				dst = append(dst, b...)
			}
		case opByteArray:
			dst = append(dst, unsafe.Slice((*byte)(fp), op.n)...)
		case opTime:
			t := (*time.Time)(fp)
			dst = appendUvarint(dst, zigzag(t.Unix()))
			dst = appendUvarint(dst, uint64(t.Nanosecond()))
		}
	}
	return dst
}

// decode decodes a value from the front of src into the zeroed memory at p and
// returns the number of bytes consumed.
func (f *flatProg) decode(src []byte, p unsafe.Pointer) (int, error) {
	i := 0
	for k := range f.ops {
		op := &f.ops[k]
		fp := unsafe.Add(p, op.off)
		switch op.kind {
		case opBool:
			if i >= len(src) {
				return 0, op.err(truncated(i, "need 1 byte for a bool"))
			}
			switch src[i] {
			case 0:
				*(*bool)(fp) = false
			case 1:
				*(*bool)(fp) = true
			default:
				return 0, op.err(corrupt(i, "bool byte is %#x, want 0 or 1", src[i]))
			}
			i++
		case opInt8, opUint8:
			if i >= len(src) {
				return 0, op.err(truncated(i, "need 1 byte for an 8-bit integer"))
			}
			*(*uint8)(fp) = src[i]
			i++
		case opInt16, opInt32, opInt64:
			u, j, st := readUvarint(src, i)
			if st != varintOK {
				return 0, op.err(varintError(st, i, "a signed integer"))
			}
			v := unzigzag(u)
			switch op.kind {
			case opInt16:
				if v < math.MinInt16 || v > math.MaxInt16 {
					return 0, op.err(corrupt(i, "%d overflows int16", v))
				}
				*(*int16)(fp) = int16(v)
			case opInt32:
				if v < math.MinInt32 || v > math.MaxInt32 {
					return 0, op.err(corrupt(i, "%d overflows int32", v))
				}
				*(*int32)(fp) = int32(v)
			default:
				*(*int64)(fp) = v
			}
			i = j
		case opUint16, opUint32, opUint64:
			u, j, st := readUvarint(src, i)
			if st != varintOK {
				return 0, op.err(varintError(st, i, "an unsigned integer"))
			}
			switch op.kind {
			case opUint16:
				if u > math.MaxUint16 {
					return 0, op.err(corrupt(i, "%d overflows uint16", u))
				}
				*(*uint16)(fp) = uint16(u)
			case opUint32:
				if u > math.MaxUint32 {
					return 0, op.err(corrupt(i, "%d overflows uint32", u))
				}
				*(*uint32)(fp) = uint32(u)
			default:
				*(*uint64)(fp) = u
			}
			i = j
		case opFloat32:
			if len(src)-i < 4 {
				return 0, op.err(truncated(i, "need 4 bytes for a float32, have %d", len(src)-i))
			}
			*(*float32)(fp) = math.Float32frombits(binary.LittleEndian.Uint32(src[i:]))
			i += 4
		case opFloat64:
			if len(src)-i < 8 {
				return 0, op.err(truncated(i, "need 8 bytes for a float64, have %d", len(src)-i))
			}
			*(*float64)(fp) = math.Float64frombits(binary.LittleEndian.Uint64(src[i:]))
			i += 8
		case opComplex64:
			if len(src)-i < 8 {
				return 0, op.err(truncated(i, "need 8 bytes for a complex64, have %d", len(src)-i))
			}
			re := math.Float32frombits(binary.LittleEndian.Uint32(src[i:]))
			im := math.Float32frombits(binary.LittleEndian.Uint32(src[i+4:]))
			*(*complex64)(fp) = complex(re, im)
			i += 8
		case opComplex128:
			if len(src)-i < 16 {
				return 0, op.err(truncated(i, "need 16 bytes for a complex128, have %d", len(src)-i))
			}
			re := math.Float64frombits(binary.LittleEndian.Uint64(src[i:]))
			im := math.Float64frombits(binary.LittleEndian.Uint64(src[i+8:]))
			*(*complex128)(fp) = complex(re, im)
			i += 16
		case opString:
			l, j, st := readUvarint(src, i)
			if st != varintOK {
				return 0, op.err(varintError(st, i, "a string length"))
			}
			if l > uint64(len(src)-j) {
				return 0, op.err(truncated(i, "string of %d bytes but only %d remain", l, len(src)-j))
			}
			*(*string)(fp) = string(src[j : j+int(l)])
			i = j + int(l)
		case opBytes:
			l, j, st := readUvarint(src, i)
			if st != varintOK {
				return 0, op.err(varintError(st, i, "a byte slice length"))
			}
			if l == 0 { // nil
				*(*[]byte)(fp) = nil
				i = j
				break
			}
			n := l - 1
			if n > uint64(len(src)-j) {
				return 0, op.err(truncated(i, "byte slice of %d bytes but only %d remain", n, len(src)-j))
			}
			b := make([]byte, n)
			copy(b, src[j:])
			*(*[]byte)(fp) = b
			i = j + int(n)
		case opByteArray:
			if len(src)-i < op.n {
				return 0, op.err(truncated(i, "need %d bytes for a byte array, have %d", op.n, len(src)-i))
			}
			copy(unsafe.Slice((*byte)(fp), op.n), src[i:])
			i += op.n
		case opTime:
			u, j, st := readUvarint(src, i)
			if st != varintOK {
				return 0, op.err(varintError(st, i, "time.Time seconds"))
			}
			ns, j2, st := readUvarint(src, j)
			if st != varintOK {
				return 0, op.err(varintError(st, j, "time.Time nanoseconds"))
			}
			if ns >= 1e9 {
				return 0, op.err(corrupt(j, "time.Time nanoseconds %d out of range [0, 999999999]", ns))
			}
			*(*time.Time)(fp) = time.Unix(unzigzag(u), int64(ns)).UTC()
			i = j2
		}
	}
	return i, nil
}

func (op *flatOp) err(e error) error {
	return withContext(e, op.path, 0)
}
