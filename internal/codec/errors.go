package codec

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

var (
	// ErrTruncated is wrapped by every DecodeError caused by input that ends
	// before the value does.
	ErrTruncated = errors.New("truncated input")
	// ErrCorrupt is wrapped by every DecodeError caused by input that is not a
	// valid (canonical) encoding of the type.
	ErrCorrupt = errors.New("corrupt input")
)

// DecodeError reports input that cannot be decoded. Err wraps ErrTruncated or
// ErrCorrupt, so errors.Is works on a DecodeError.
type DecodeError struct {
	Type   reflect.Type // the type being decoded (the T of Codec[T])
	Path   string       // where in Type the bad value sits, e.g. ".Bids[3].URL"; "" for Type itself
	Offset int          // byte offset in the input where the bad value starts
	Err    error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("codec: decoding ")
	if e.Type != nil {
		b.WriteString(e.Type.String())
	} else {
		b.WriteString("value")
	}
	if e.Path != "" {
		b.WriteString(" field ")
		b.WriteString(e.Path)
	}
	b.WriteString(" at byte ")
	b.WriteString(strconv.Itoa(e.Offset))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// UnsupportedTypeError is returned by For for a type that has no encoding.
type UnsupportedTypeError struct {
	Type      reflect.Type // the type passed to For
	Path      string       // where in Type the offending type sits, e.g. ".Handler" or ".Index[key]"; "" for Type itself
	Offending reflect.Type // the type that cannot be encoded
	problem   string       // e.g. "is a func (func(int))"
	fix       string
}

func (e *UnsupportedTypeError) Error() string {
	var b strings.Builder
	b.WriteString("codec: type ")
	b.WriteString(e.Type.String())
	if e.Path != "" {
		b.WriteString(" field ")
		b.WriteString(e.Path)
	}
	b.WriteString(" ")
	b.WriteString(e.problem)
	b.WriteString("; ")
	b.WriteString(e.fix)
	return b.String()
}

// EncodeError is the value Append panics with when a value cannot be encoded:
// a MarshalBinary/AppendBinary method returned an error, or a value nests
// deeper than MaxDepth (usually a pointer cycle). Codec.Append has no error
// result because neither happens with well-formed plain data.
type EncodeError struct {
	Type reflect.Type // the type whose value failed
	Err  error
}

func (e *EncodeError) Error() string {
	return "codec: encoding " + e.Type.String() + ": " + e.Err.Error()
}

func (e *EncodeError) Unwrap() error { return e.Err }

// Decode errors are built where the problem is found, with an offset relative
// to the slice that decoder was given; every enclosing decoder then adds its
// own base offset and path segment (withContext). Only the failure path pays.

func truncated(off int, format string, args ...any) error {
	return &DecodeError{Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{ErrTruncated}, args...)...)}
}

func corrupt(off int, format string, args ...any) error {
	return &DecodeError{Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)}
}

func varintError(st varintStatus, off int, what string) error {
	switch st {
	case varintTruncated:
		return truncated(off, "input ends inside %s", what)
	case varintOverflow:
		return corrupt(off, "%s does not fit in 64 bits", what)
	default:
		return corrupt(off, "%s has a non-minimal varint encoding", what)
	}
}

// withContext prefixes the path of a DecodeError found inside a component
// that starts at byte base of the current decoder's input.
func withContext(err error, seg string, base int) error {
	if de, ok := err.(*DecodeError); ok {
		de.Path = seg + de.Path
		de.Offset += base
	}
	return err
}
