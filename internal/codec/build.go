package codec

import (
	"encoding"
	"reflect"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// encFn appends the encoding of the value at p. depth counts the recursive
// type edges already followed (see MaxDepth).
type encFn func(dst []byte, p unsafe.Pointer, depth int) []byte

// decFn decodes one value from the front of src into the memory at p, which
// the caller guarantees is zeroed, and returns the bytes consumed.
type decFn func(src []byte, p unsafe.Pointer, depth int) (int, error)

// MaxDepth bounds how many times one value may pass through a recursive type
// edge (a *Node inside Node, a []Tree inside Tree, …). Decoding deeper input
// fails with ErrCorrupt and encoding a deeper value panics with an
// *EncodeError, instead of exhausting the goroutine stack; a pointer cycle
// is the usual cause on the encode side.
const MaxDepth = 10_000

// typeCodec is the compiled codec of one type.
type typeCodec struct {
	typ     reflect.Type
	enc     encFn
	dec     decFn
	minSize int       // fewest bytes any value of typ encodes to
	flat    *flatProg // non-nil when typ is flat (see flat.go)
	done    bool      // compilation finished; only read while building
}

var (
	// typeCodecs caches compiled codecs of every type seen, so that the
	// codecs of two record types share the codec of a common field type.
	// Only complete codecs are stored (see compile).
	typeCodecs sync.Map // reflect.Type → *typeCodec

	timeType        = reflect.TypeFor[time.Time]()
	locationType    = reflect.TypeFor[time.Location]()
	appenderType    = reflect.TypeFor[encoding.BinaryAppender]()
	marshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	unmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()

	// zeroSizeSliceData is the data pointer of decoded empty (non-nil)
	// slices and of slices of zero-size elements, as make would give them.
	zeroSizeSliceData = unsafe.Pointer(unsafe.SliceData(make([]uint64, 0)))
)

const (
	intIs64         = strconv.IntSize == 64
	maxFlatArrayOps = 16 // arrays of up to this many leaf ops are unrolled into the enclosing flat program
	plainDataAdvice = "record and key types must be plain data (numbers, strings, slices, maps, structs, pointers) or implement encoding.BinaryMarshaler"
)

// compile builds the codec of t, or reports why t cannot be encoded.
func compile(t reflect.Type) (*typeCodec, error) {
	if v, ok := typeCodecs.Load(t); ok {
		return v.(*typeCodec), nil
	}
	b := &builder{root: t, seen: map[reflect.Type]*typeCodec{}}
	tc, err := b.build(t, "")
	if err != nil {
		return nil, err
	}
	// Publish only now: codecs built on the way may call into codecs of
	// recursive types that were not finished until the root was.
	for typ, c := range b.seen {
		typeCodecs.LoadOrStore(typ, c)
	}
	return tc, nil
}

type builder struct {
	root reflect.Type
	seen map[reflect.Type]*typeCodec // codecs built or being built by this compile
}

// class is how a type is encoded, before looking at its kind.
type class uint8

const (
	classKind      class = iota // by reflect.Kind
	classTime                   // time.Time or a type defined as time.Time
	classMarshaler              // its pointer implements BinaryMarshaler/BinaryAppender and BinaryUnmarshaler
	classZeroSize               // a type of size 0: it has one value, encoded as nothing
)

func classify(t reflect.Type) class {
	if t == timeType || (t.Kind() == reflect.Struct && t.ConvertibleTo(timeType)) {
		return classTime
	}
	if t.Kind() != reflect.Interface && isMarshaler(t) {
		return classMarshaler
	}
	if t.Size() == 0 {
		return classZeroSize
	}
	return classKind
}

func isMarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return (pt.Implements(appenderType) || pt.Implements(marshalerType)) && pt.Implements(unmarshalerType)
}

// minSize is the fewest bytes a value of t can encode to. Decoders use it to
// reject lengths that the remaining input cannot possibly hold before they
// allocate anything.
func minSize(t reflect.Type) int {
	switch classify(t) {
	case classTime:
		return 2
	case classMarshaler:
		return 1
	case classZeroSize:
		return 0
	}
	switch t.Kind() {
	case reflect.Float32:
		return 4
	case reflect.Float64, reflect.Complex64:
		return 8
	case reflect.Complex128:
		return 16
	case reflect.Array:
		return t.Len() * minSize(t.Elem())
	case reflect.Struct:
		n := 0
		for i := range t.NumField() {
			n += minSize(t.Field(i).Type)
		}
		return n
	default:
		return 1
	}
}

func (b *builder) build(t reflect.Type, path string) (*typeCodec, error) {
	if tc, ok := b.seen[t]; ok {
		if tc.done {
			return tc, nil
		}
		return backEdge(tc), nil
	}
	if v, ok := typeCodecs.Load(t); ok {
		return v.(*typeCodec), nil
	}
	tc := &typeCodec{typ: t, minSize: minSize(t)}
	b.seen[t] = tc
	if err := b.fill(tc, path); err != nil {
		delete(b.seen, t)
		return nil, err
	}
	if tc.flat != nil {
		prog := tc.flat
		tc.enc = func(dst []byte, p unsafe.Pointer, _ int) []byte { return prog.append(dst, p) }
		tc.dec = func(src []byte, p unsafe.Pointer, _ int) (int, error) { return prog.decode(src, p) }
	}
	tc.done = true
	return tc, nil
}

// backEdge returns a codec that enters tc, which is still being built because
// t refers to itself. It is the one place where a value can nest without a
// static bound, so it counts depth.
func backEdge(tc *typeCodec) *typeCodec {
	return &typeCodec{
		typ:     tc.typ,
		minSize: tc.minSize,
		done:    true,
		enc: func(dst []byte, p unsafe.Pointer, depth int) []byte {
			if depth >= MaxDepth {
				panic(&EncodeError{Type: tc.typ, Err: errTooDeepEncode(tc.typ)})
			}
			return tc.enc(dst, p, depth+1)
		},
		dec: func(src []byte, p unsafe.Pointer, depth int) (int, error) {
			if depth >= MaxDepth {
				return 0, corrupt(0, "value nests more than %d levels deep through recursive type %s", MaxDepth, tc.typ)
			}
			return tc.dec(src, p, depth+1)
		},
	}
}

func errTooDeepEncode(t reflect.Type) error {
	return &depthError{t}
}

type depthError struct{ t reflect.Type }

func (e *depthError) Error() string {
	return "value nests more than " + strconv.Itoa(MaxDepth) + " levels deep through recursive type " + e.t.String() +
		"; is there a pointer cycle? the codec encodes trees, not graphs"
}

func (b *builder) unsupported(path string, t reflect.Type, problem, fix string) error {
	return &UnsupportedTypeError{Type: b.root, Path: path, Offending: t, problem: problem, fix: fix}
}

// fill compiles tc.typ into tc.
func (b *builder) fill(tc *typeCodec, path string) error {
	t := tc.typ
	switch classify(t) {
	case classTime:
		tc.flat = &flatProg{ops: []flatOp{{kind: opTime}}}
		return nil
	case classMarshaler:
		if err := b.checkPromotedMarshaler(t, path); err != nil {
			return err
		}
		tc.enc, tc.dec = marshalerCodec(t)
		return nil
	case classZeroSize:
		tc.flat = &flatProg{}
		return nil
	}
	if err := b.checkHalfMarshaler(t, path); err != nil {
		return err
	}
	if t == locationType {
		return b.unsupported(path, t, "is a time.Location",
			"locations are process-local tables; store the zone name (loc.String()) and call time.LoadLocation after decoding")
	}
	if op, ok := leafOp(t); ok {
		tc.flat = &flatProg{ops: []flatOp{op}}
		return nil
	}
	switch t.Kind() {
	case reflect.Slice:
		return b.fillSlice(tc, path)
	case reflect.Array:
		return b.fillArray(tc, path)
	case reflect.Map:
		return b.fillMap(tc, path)
	case reflect.Pointer:
		return b.fillPointer(tc, path)
	case reflect.Struct:
		return b.fillStruct(tc, path)
	case reflect.Interface:
		return b.unsupported(path, t, "is an interface ("+t.String()+")",
			"an interface value cannot be decoded without knowing its concrete type; use a concrete type, or implement encoding.BinaryMarshaler and encoding.BinaryUnmarshaler on the enclosing type")
	case reflect.Func:
		return b.unsupported(path, t, "is a func ("+t.String()+")", plainDataAdvice)
	case reflect.Chan:
		return b.unsupported(path, t, "is a chan ("+t.String()+")", plainDataAdvice)
	case reflect.UnsafePointer:
		return b.unsupported(path, t, "is an unsafe.Pointer", plainDataAdvice)
	case reflect.Uintptr:
		return b.unsupported(path, t, "is a uintptr ("+t.String()+")",
			"an address means nothing in another process; use uint64 for numbers")
	}
	return b.unsupported(path, t, "has kind "+t.Kind().String(), plainDataAdvice)
}

// leafOp returns the flat operation for a type encoded as a single leaf.
func leafOp(t reflect.Type) (flatOp, bool) {
	var k opKind
	switch t.Kind() {
	case reflect.Bool:
		k = opBool
	case reflect.Int8:
		k = opInt8
	case reflect.Uint8:
		k = opUint8
	case reflect.Int16:
		k = opInt16
	case reflect.Int32:
		k = opInt32
	case reflect.Int64:
		k = opInt64
	case reflect.Int:
		k = opInt32
		if intIs64 {
			k = opInt64
		}
	case reflect.Uint16:
		k = opUint16
	case reflect.Uint32:
		k = opUint32
	case reflect.Uint64:
		k = opUint64
	case reflect.Uint:
		k = opUint32
		if intIs64 {
			k = opUint64
		}
	case reflect.Float32:
		k = opFloat32
	case reflect.Float64:
		k = opFloat64
	case reflect.Complex64:
		k = opComplex64
	case reflect.Complex128:
		k = opComplex128
	case reflect.String:
		k = opString
	case reflect.Slice:
		if !isPlainByte(t.Elem()) {
			return flatOp{}, false
		}
		k = opBytes
	case reflect.Array:
		if !isPlainByte(t.Elem()) {
			return flatOp{}, false
		}
		return flatOp{kind: opByteArray, n: t.Len()}, true
	default:
		return flatOp{}, false
	}
	return flatOp{kind: k}, true
}

// isPlainByte reports whether t is a byte type without its own encoding, so
// that slices and arrays of it can be copied as raw bytes.
func isPlainByte(t reflect.Type) bool {
	return t.Kind() == reflect.Uint8 && classify(t) == classKind
}

// checkPromotedMarshaler rejects a struct whose BinaryMarshaler methods come
// from an embedded field: they would encode that field alone and silently
// drop the others (type Event struct { time.Time; Name string } would lose
// Name). Go gives the struct these methods, but almost never on purpose.
func (b *builder) checkPromotedMarshaler(t reflect.Type, path string) error {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var embedded *reflect.StructField
	others := false
	for i := range t.NumField() {
		f := t.Field(i)
		et := f.Type
		if et.Kind() == reflect.Pointer {
			et = et.Elem()
		}
		if f.Anonymous && embedded == nil && isMarshaler(et) {
			embedded = &f
			continue
		}
		if f.Type.Size() > 0 {
			others = true
		}
	}
	if embedded == nil || !others {
		return nil
	}
	return b.unsupported(path, t,
		"gets MarshalBinary/UnmarshalBinary from its embedded field "+embedded.Type.String()+", which would encode that field alone and drop the others",
		"give the embedded field a name (e.g. `"+embedded.Name+" "+embedded.Type.String()+"`) so that every field is encoded")
}

// checkHalfMarshaler rejects a type with only one side of the binary
// marshaling pair: silently encoding its fields instead would ignore the
// method its author wrote.
func (b *builder) checkHalfMarshaler(t reflect.Type, path string) error {
	if t.Kind() == reflect.Interface || t.Kind() == reflect.Pointer {
		return nil
	}
	pt := reflect.PointerTo(t)
	marshals := pt.Implements(appenderType) || pt.Implements(marshalerType)
	unmarshals := pt.Implements(unmarshalerType)
	switch {
	case marshals && !unmarshals:
		return b.unsupported(path, t, "implements encoding.BinaryMarshaler but "+pt.String()+" does not implement encoding.BinaryUnmarshaler",
			"add an UnmarshalBinary method, or remove MarshalBinary/AppendBinary to have the codec encode its fields")
	case unmarshals && !marshals:
		return b.unsupported(path, t, "implements encoding.BinaryUnmarshaler but not encoding.BinaryMarshaler",
			"add a MarshalBinary or AppendBinary method, or remove UnmarshalBinary to have the codec encode its fields")
	}
	return nil
}
