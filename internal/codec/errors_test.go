package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type Event struct {
	Name    string
	Handler func(int)
}

type deepEvent struct {
	Inner struct {
		Handlers []func()
	}
}

type withChan struct{ C chan int }

type withAny struct {
	ID      int
	Payload any
}

type withErr struct {
	Errs map[string]error
}

type withAnyKey struct {
	Index map[any]int
}

type withUnsafe struct{ P unsafe.Pointer }

type withUintptr struct{ Addr uintptr }

type withLocation struct {
	At  time.Time
	Loc *time.Location
}

// HalfMarshaler can encode itself but not decode.
type HalfMarshaler struct{ v int }

func (HalfMarshaler) MarshalBinary() ([]byte, error) { return nil, nil }

type withHalf struct{ H HalfMarshaler }

// TimedEvent gets time.Time's MarshalBinary through embedding.
type TimedEvent struct {
	time.Time
	Name string
}

// TimeOnly embeds time.Time with nothing else: encoding it by the promoted
// methods loses nothing.
type TimeOnly struct {
	time.Time
}

func TestUnsupportedTypes(t *testing.T) {
	cases := []struct {
		name string
		for_ func() error
		want string
	}{
		{"func field", func() error { _, err := For[Event](); return err },
			"codec: type codec.Event field .Handler is a func (func(int)); record and key types must be plain data (numbers, strings, slices, maps, structs, pointers) or implement encoding.BinaryMarshaler"},
		{"nested func", func() error { _, err := For[deepEvent](); return err },
			"codec: type codec.deepEvent field .Inner.Handlers[] is a func (func())"},
		{"pointer to func holder", func() error { _, err := For[[]*Event](); return err },
			"codec: type []*codec.Event field [].Handler is a func"},
		{"top-level func", func() error { _, err := For[func()](); return err },
			"codec: type func() is a func (func())"},
		{"chan", func() error { _, err := For[withChan](); return err },
			"field .C is a chan (chan int)"},
		{"interface", func() error { _, err := For[withAny](); return err },
			"codec: type codec.withAny field .Payload is an interface (interface {}); an interface value cannot be decoded without knowing its concrete type; use a concrete type"},
		{"error values", func() error { _, err := For[withErr](); return err },
			"field .Errs[value] is an interface (error)"},
		{"interface key", func() error { _, err := For[withAnyKey](); return err },
			"field .Index[key] is an interface"},
		{"top-level any", func() error { _, err := For[any](); return err },
			"codec: type interface {} is an interface"},
		{"unsafe.Pointer", func() error { _, err := For[withUnsafe](); return err },
			"field .P is an unsafe.Pointer"},
		{"uintptr", func() error { _, err := For[withUintptr](); return err },
			"field .Addr is a uintptr (uintptr); an address means nothing in another process; use uint64"},
		{"time.Location", func() error { _, err := For[withLocation](); return err },
			"field .Loc is a time.Location; locations are process-local tables; store the zone name"},
		{"half marshaler", func() error { _, err := For[withHalf](); return err },
			"codec: type codec.withHalf field .H implements encoding.BinaryMarshaler but *codec.HalfMarshaler does not implement encoding.BinaryUnmarshaler; add an UnmarshalBinary method"},
		{"promoted marshaler", func() error { _, err := For[TimedEvent](); return err },
			"codec: type codec.TimedEvent gets MarshalBinary/UnmarshalBinary from its embedded field time.Time, which would encode that field alone and drop the others; give the embedded field a name (e.g. `Time time.Time`)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.for_()
			var ute *UnsupportedTypeError
			if !errors.As(err, &ute) {
				t.Fatalf("For returned %v, want an *UnsupportedTypeError", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n  %s\ndoes not contain\n  %s", err, tc.want)
			}
			// The error is cached with the type: asking again gives it again.
			if again := tc.for_(); again == nil || again.Error() != err.Error() {
				t.Fatalf("second For: %v", again)
			}
		})
	}
	if _, err := For[TimeOnly](); err != nil {
		t.Fatalf("a struct that only embeds time.Time: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustFor of an unsupported type did not panic")
		}
	}()
	MustFor[Event]()
}

func TestCorruptInput(t *testing.T) {
	type (
		Nums struct {
			A int16
			B uint8
			C uint32
		}
		Opt struct{ P *int }
	)
	cases := []struct {
		name    string
		decode  func([]byte) error
		input   []byte
		is      error
		message string
	}{
		{"bool 2", dec[bool], []byte{2}, ErrCorrupt, "bool byte is 0x2"},
		{"pointer flag 2", dec[Opt], []byte{2}, ErrCorrupt, "field .P at byte 0: corrupt input: pointer nil flag is 0x2"},
		{"overlong varint", dec[int64], []byte{0x80, 0x00}, ErrCorrupt, "non-minimal"},
		{"varint over 64 bits", dec[uint64], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, ErrCorrupt, "does not fit in 64 bits"},
		{"11-byte varint", dec[uint64], bytes.Repeat([]byte{0x80}, 11), ErrCorrupt, "does not fit in 64 bits"},
		{"int16 overflow", dec[Nums], []byte{0x80, 0x80, 0x04, 0, 0}, ErrCorrupt, "field .A at byte 0: corrupt input: 32768 overflows int16"},
		{"uint32 overflow", dec[Nums], []byte{0, 0, 0x80, 0x80, 0x80, 0x80, 0x10}, ErrCorrupt, "field .C at byte 2"},
		{"huge string length", dec[string], []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 'a'}, ErrTruncated, "string of 4294967295 bytes but only 1 remain"},
		{"huge slice length", dec[[]int64], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 2}, ErrTruncated, "slice of"},
		{"huge map length", dec[map[string]string], []byte{0xff, 0xff, 0xff, 0x7f, 0, 0}, ErrTruncated, "map of"},
		{"huge slice of empty structs", dec[[]struct{}], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrCorrupt, "overflows int"},
		{"unsorted map", dec[map[string]int], []byte{3, 1, 'b', 2, 1, 'a', 2}, ErrCorrupt, "not in canonical order"},
		{"duplicate key", dec[map[string]int], []byte{3, 1, 'a', 2, 1, 'a', 4}, ErrCorrupt, "duplicate keys"},
		{"two keys of one value", dec[map[struct{}]int], []byte{3, 2, 4}, ErrCorrupt, "has only one value"},
		{"nanoseconds", dec[time.Time], []byte{0, 0x80, 0x94, 0xeb, 0xdc, 0x03}, ErrCorrupt, "nanoseconds 1000000000 out of range"},
		{"nested path", dec[map[string][]Bid], []byte{2, 1, 'k', 2, 0, 0, 0, 0x20, 'a', 'b', 0, 0, 0, 0}, ErrTruncated, "field [value #0][0].Channel at byte 7"},
		{"array", dec[[2]*Point], []byte{0, 7}, ErrCorrupt, "field [1] at byte 1"},
		{"array too short", dec[[20]int16], []byte{0, 0}, ErrTruncated, "array of 20 elements"},
		{"marshaler length", dec[Money], []byte{9, 'E'}, ErrTruncated, "payload of 9 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.input)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, tc.is) {
				t.Fatalf("Decode(%x) = %v, want a *DecodeError wrapping %v", tc.input, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error\n  %s\ndoes not contain\n  %s", err, tc.message)
			}
		})
	}
}

func dec[T any](b []byte) error {
	_, _, err := MustFor[T]().Decode(b)
	return err
}

func TestDecodeErrorNamesTypeAndOffset(t *testing.T) {
	enc := MustFor[Bid]().Append(nil, sampleBid())
	_, _, err := MustFor[Bid]().Decode(enc[:len(enc)-10])
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatal(err)
	}
	if de.Type.String() != "codec.Bid" || de.Path != ".URL" {
		t.Fatalf("got type %v path %q", de.Type, de.Path)
	}
	want := "codec: decoding codec.Bid field .URL at byte 18: truncated input: string of 61 bytes but only 58 remain"
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}
