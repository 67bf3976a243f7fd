package codec

// varintStatus says why a varint could not be read; the caller turns it into
// a DecodeError with the field path it knows.
type varintStatus uint8

const (
	varintOK        varintStatus = iota
	varintTruncated              // input ended inside the varint
	varintOverflow               // more than 64 bits
	varintOverlong               // a non-minimal encoding (trailing zero group)
)

// appendUvarint appends v as LEB128: seven bits per byte, least significant
// group first, high bit set on every byte but the last.
func appendUvarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return appendUvarintLong(dst, v)
}

// appendUvarintLong writes without per-byte capacity checks when dst has
// room for the longest varint, as it usually has.
func appendUvarintLong(dst []byte, v uint64) []byte {
	n := len(dst)
	if cap(dst)-n < maxVarintLen {
		for v >= 0x80 {
			dst = append(dst, byte(v)|0x80)
			v >>= 7
		}
		return append(dst, byte(v))
	}
	b := dst[n : n+maxVarintLen]
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return dst[:n+i+1]
}

const maxVarintLen = 10

// uvarintLen is the number of bytes appendUvarint writes for v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// zigzag maps signed to unsigned so that small magnitudes of either sign get
// short varints: 0→0, -1→1, 1→2, -2→3, …
func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// readUvarint decodes the varint at src[i:] and returns it with the index just
// past it. Only the minimal encoding of each value is accepted, so that
// decoding and re-encoding reproduces the input exactly.
func readUvarint(src []byte, i int) (uint64, int, varintStatus) {
	if uint(i) < uint(len(src)) {
		if b := src[i]; b < 0x80 {
			return uint64(b), i + 1, varintOK
		}
	}
	return readUvarintSlow(src, i)
}

// readUvarintSlow is kept out of line so that readUvarint inlines.
//
//go:noinline
func readUvarintSlow(src []byte, i int) (uint64, int, varintStatus) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if i >= len(src) {
			return 0, i, varintTruncated
		}
		b := src[i]
		i++
		if shift == 63 && b > 1 {
			return 0, i, varintOverflow
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			if b == 0 && shift > 0 {
				return 0, i, varintOverlong
			}
			return v, i, varintOK
		}
	}
}
