// Package codec serialises records, keys and state values when they leave a
// process: network exchange between workers, state snapshots and savepoints,
// and keyed-state keys. It owns the binary format of all of them.
//
// For[T] derives a Codec[T] by reflection once per type and caches it. The
// derivation compiles T into a tree of closures over unsafe.Pointer, so
// encoding and decoding do no reflection per value: structs made only of
// numbers, bools, strings, []byte, byte arrays and time.Time ("flat" types)
// run through a single loop over precomputed field offsets, encode without
// allocating, and decode with one allocation per non-empty string or []byte.
// Unexported fields are encoded like exported ones. Codecs are safe for
// concurrent use.
//
// The encoding is deterministic: equal values give equal bytes, in every
// process and on every run, because encoded keys are hashed (Hash64) to choose
// a key group and are used as state keys. Decoders accept only the canonical
// encoding (minimal varints, 0/1 bools and nil flags, sorted map entries
// without duplicate keys, in-range integers and nanoseconds), so for every
// type except BinaryMarshaler ones, decoding bytes and re-encoding the value
// reproduces the bytes exactly. Decode errors are *DecodeError values that
// wrap ErrTruncated or ErrCorrupt and carry the field path and byte offset.
//
// # Wire format
//
// This format is persisted in savepoints; changing it requires a new format
// version. Values carry no type information and no field names: the reader
// must use the same Go type the writer used, field for field. Adding,
// removing, reordering or retyping a field changes the format of the type.
//
// Building blocks:
//
//	uvarint   unsigned LEB128: 7 bits per byte, least significant group first,
//	          high bit set on all but the last byte; the minimal form only
//	          (at most 10 bytes; no trailing 0x00 group).
//	varint    a signed integer as the uvarint of its zigzag form
//	          ((v << 1) ^ (v >> 63)): 0→0, -1→1, 1→2, -2→3, …
//
// Types, in the order they are recognised:
//
//	time.Time        varint Unix seconds, then uvarint nanoseconds (0…999999999).
//	                 Only the instant is kept: the location and monotonic
//	                 reading are dropped and decoding yields UTC, so equal
//	                 instants encode alike whatever their zone. Types defined
//	                 as time.Time (type T time.Time) are encoded the same way.
//	BinaryMarshaler  a type T whose *T implements encoding.BinaryUnmarshaler and
//	                 encoding.BinaryAppender or encoding.BinaryMarshaler:
//	                 uvarint length n, then the n bytes from AppendBinary
//	                 (preferred) or MarshalBinary. Decoding calls
//	                 UnmarshalBinary on exactly those bytes. A type with only
//	                 one side of the pair is rejected, and so is a struct that
//	                 gets the pair from an embedded field while having other
//	                 fields (the promoted methods would drop those fields).
//	size 0           struct{}, [0]T and any other type of size 0 (such a type
//	                 has one value): nothing.
//	bool             one byte, 0x00 or 0x01.
//	int8, uint8      one byte (two's complement for int8).
//	int16, int32,
//	int64, int       varint. int is always encoded as 64 bits; decoding checks
//	                 that the value fits the field's size.
//	uint16, uint32,
//	uint64, uint     uvarint, with the same range check.
//	float32          4 bytes, IEEE 754 bits, little-endian (NaN payloads and
//	                 the sign of zero are kept).
//	float64          8 bytes, likewise.
//	complex64        real then imaginary part, each as float32.
//	complex128       real then imaginary part, each as float64.
//	string           uvarint byte length, then the bytes (not checked for UTF-8).
//	[]E (slice)      uvarint 0 for a nil slice; otherwise uvarint len+1, then
//	                 each element. A nil slice and an empty one are kept
//	                 distinct: decoding gives back exactly what was encoded.
//	                 []byte (any element of kind uint8 without its own
//	                 encoding) writes its elements as raw bytes.
//	[N]E (array)     the N elements, no length. [N]byte is N raw bytes.
//	map[K]V          uvarint 0 for a nil map; otherwise uvarint len+1, then
//	                 each entry as its key's encoding followed by its value's
//	                 encoding. Entries are sorted by the bytes of the encoded
//	                 key (bytewise, as bytes.Compare), ties — distinct keys that
//	                 encode alike, such as NaNs or pointers to equal values —
//	                 broken by the bytes of the encoded value. A nil map and an
//	                 empty one are kept distinct.
//	*E (pointer)     0x00 for nil; otherwise 0x01, then the pointee. Pointers
//	                 are followed, not shared: two pointers to one value decode
//	                 as two values, and a pointer cycle cannot be encoded.
//	struct           every field of non-zero size in declaration order,
//	                 exported or not, blank (_) fields included, with no
//	                 separators. Embedded fields are fields like any other.
//	named types      encoded as their underlying type, unless they have
//	                 BinaryMarshaler methods.
//
// For example, with type Bid struct { Auction, Bidder, Price int64; Channel,
// URL string; DateTime int64; Extra string },
//
//	Bid{Auction: 1, Bidder: -1, Price: 300, Channel: "ch", DateTime: 1 << 40, Extra: "x"}
//
// encodes as
//
//	02  01  d804  02 6368  00  808080808040  01 78
//	 1  -1   300  "ch"     ""         2^40   "x"
//
// Batches (AppendBatch, DecodeBatch) carry records with their timestamps:
//
//	uvarint count, then count × ( value, varint (ts[i] - ts[i-1]) )
//
// with ts[-1] = 0, the differences taken with wrapping int64 arithmetic. A
// batch must fill its input exactly.
//
// Not encodable, reported by For with the path of the offending field: func,
// chan, interface types (the concrete type would be unknown when decoding;
// use a concrete type or implement BinaryMarshaler), unsafe.Pointer, uintptr
// and time.Location.
//
// Decoding never trusts a length: a count of n elements is rejected unless
// the remaining input could hold n of the smallest possible element, so a
// corrupt length fails instead of allocating. Recursive types may nest at most
// MaxDepth levels deep.
package codec
