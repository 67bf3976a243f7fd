package codec

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Types shared by the tests, the fuzz test and the benchmarks.

// Bid is shaped like the Nexmark Bid event.
type Bid struct {
	Auction  int64
	Bidder   int64
	Price    int64
	Channel  string
	URL      string
	DateTime int64
	Extra    string
}

func sampleBid() Bid {
	return Bid{
		Auction:  1_000_123,
		Bidder:   42_017,
		Price:    3_499,
		Channel:  "channel-7",
		URL:      "https://www.nexmark.com/abc/def/item.htm?query=1&channel_id=7",
		DateTime: 1_700_000_000_123,
		Extra:    "",
	}
}

type MyInt int32
type MyString string
type MyBytes []byte
type MyFloat float64
type Celsius float32
type Tags map[string]string
type IDs []int64

type Point struct{ X, Y int32 }

type inner struct {
	name  string
	score float64
	flags [3]bool
}

type WithUnexported struct {
	Public  string
	private int
	in      inner
	ptr     *inner
	when    time.Time
}

type WithZeroSize struct {
	_     [0]func() // makes the struct incomparable; size 0, so not encoded
	A     int
	Empty struct{}
	_     int16 // blank fields of non-zero size are encoded
	B     string
	Z     [0]int
}

type Embedded struct {
	Point
	*inner
	Label string
}

type Node struct {
	Value int
	Next  *Node
}

type Tree struct {
	Name     string
	Children []*Tree
	Attrs    map[string]Tree
}

type Mutual struct {
	Name  string
	Other *MutualB
}

type MutualB struct {
	Items []Mutual
}

// Money implements BinaryMarshaler and BinaryUnmarshaler on a pointer
// receiver, without BinaryAppender.
type Money struct {
	cents    int64
	currency string
}

func (m *Money) MarshalBinary() ([]byte, error) {
	return fmt.Appendf(nil, "%s:%d", m.currency, m.cents), nil
}

func (m *Money) UnmarshalBinary(b []byte) error {
	var cur string
	var cents int64
	for i, c := range b {
		if c == ':' {
			cur = string(b[:i])
			if _, err := fmt.Sscanf(string(b[i+1:]), "%d", &cents); err != nil {
				return err
			}
			m.cents, m.currency = cents, cur
			return nil
		}
	}
	return errors.New("money: missing ':'")
}

// Blob implements BinaryAppender; its payload can exceed 127 bytes, which
// exercises the length-prefix shift.
type Blob struct{ data []byte }

func (b Blob) AppendBinary(dst []byte) ([]byte, error) { return append(dst, b.data...), nil }
func (b Blob) MarshalBinary() ([]byte, error)          { return b.AppendBinary(nil) }
func (b *Blob) UnmarshalBinary(p []byte) error {
	b.data = append([]byte(nil), p...)
	return nil
}

// Fragile panics in UnmarshalBinary on some inputs.
type Fragile struct{ v byte }

func (f Fragile) MarshalBinary() ([]byte, error) { return []byte{f.v}, nil }
func (f *Fragile) UnmarshalBinary(p []byte) error {
	f.v = p[0] // panics on an empty payload
	return nil
}

// Failing fails to marshal.
type Failing struct{}

func (Failing) MarshalBinary() ([]byte, error) { return nil, errors.New("not today") }
func (*Failing) UnmarshalBinary([]byte) error  { return nil }

type WithMarshalers struct {
	Price  Money
	Addr   netip.Addr
	Blob   *Blob
	Prices map[string]Money
}

type Everything struct {
	B    bool
	I8   int8
	I16  int16
	I32  int32
	I64  int64
	I    int
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	U    uint
	F32  float32
	F64  float64
	C64  complex64
	C128 complex128
	S    string
	Bs   []byte
	BA   [4]byte
	MI   MyInt
	MS   MyString
	MB   MyBytes
	MF   MyFloat
	D    time.Duration
	T    time.Time
	Arr  [2]Point
	Big  [20]int16
	Sl   []Point
	Ss   []string
	Sss  [][]string
	M    map[string]int
	MP   map[Point][]string
	Tags Tags
	IDs  IDs
	P    *Point
	PP   **string
	Set  map[string]struct{}
	Unit []struct{}
}
