package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// roundTrip encodes v, decodes it back and checks everything a caller relies
// on: the value survives, Decode consumes exactly the encoding, re-encoding
// gives the same bytes, the encoding is independent of what dst already
// holds, and every strict prefix of it fails to decode without panicking.
func roundTrip[T any](t *testing.T, v T) []byte {
	t.Helper()
	c := MustFor[T]()
	enc := c.Append(nil, v)

	got, n, err := c.Decode(enc)
	if err != nil {
		t.Fatalf("Decode(%x): %v", enc, err)
	}
	if n != len(enc) {
		t.Fatalf("Decode consumed %d of %d bytes", n, len(enc))
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip of %T:\n got %#v\nwant %#v", v, got, v)
	}
	if again := c.Append(nil, got); !bytes.Equal(again, enc) {
		t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, enc)
	}
	prefix := []byte("prefix")
	if withPrefix := c.Append(prefix, v); !bytes.Equal(withPrefix[len(prefix):], enc) || string(withPrefix[:len(prefix)]) != "prefix" {
		t.Fatalf("Append to a non-empty dst: got %x", withPrefix)
	}
	// Trailing bytes are left alone.
	if _, n, err := c.Decode(append(append([]byte(nil), enc...), 0xff, 0xff)); err != nil || n != len(enc) {
		t.Fatalf("Decode with trailing bytes: n=%d err=%v", n, err)
	}
	for i := range enc {
		if _, _, err := c.Decode(enc[:i]); err == nil {
			t.Fatalf("Decode of the %d-byte prefix of %x succeeded", i, enc)
		} else if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Decode of a prefix: error %v wraps neither ErrTruncated nor ErrCorrupt", err)
		}
	}
	return enc
}

func ptr[T any](v T) *T { return &v }

func TestRoundTripPrimitives(t *testing.T) {
	roundTrip(t, true)
	roundTrip(t, false)
	for _, v := range []int8{0, 1, -1, math.MinInt8, math.MaxInt8} {
		roundTrip(t, v)
	}
	for _, v := range []int16{0, 1, -1, math.MinInt16, math.MaxInt16} {
		roundTrip(t, v)
	}
	for _, v := range []int32{0, 63, 64, -64, -65, math.MinInt32, math.MaxInt32} {
		roundTrip(t, v)
	}
	for _, v := range []int64{0, 1, -1, 1 << 40, math.MinInt64, math.MaxInt64} {
		roundTrip(t, v)
	}
	for _, v := range []int{0, -7, math.MinInt, math.MaxInt} {
		roundTrip(t, v)
	}
	for _, v := range []uint8{0, 1, 255} {
		roundTrip(t, v)
	}
	for _, v := range []uint16{0, 127, 128, math.MaxUint16} {
		roundTrip(t, v)
	}
	for _, v := range []uint32{0, 1 << 21, math.MaxUint32} {
		roundTrip(t, v)
	}
	for _, v := range []uint64{0, 1 << 63, math.MaxUint64} {
		roundTrip(t, v)
	}
	for _, v := range []uint{0, math.MaxUint} {
		roundTrip(t, v)
	}
	for _, v := range []float32{0, 1.5, -3.25e30, float32(math.Inf(1)), math.SmallestNonzeroFloat32} {
		roundTrip(t, v)
	}
	for _, v := range []float64{0, math.Copysign(0, -1), math.Pi, math.Inf(-1), math.MaxFloat64} {
		roundTrip(t, v)
	}
	roundTrip(t, complex64(complex(1.5, -2)))
	roundTrip(t, complex(math.E, math.Pi))
	for _, v := range []string{"", "a", "héllo, 世界", strings.Repeat("x", 300), "\xff\xfe not utf-8"} {
		roundTrip(t, v)
	}
	roundTrip(t, MyInt(-12))
	roundTrip(t, MyString("named"))
	roundTrip(t, MyFloat(2.5))
	roundTrip(t, Celsius(-40))
	roundTrip(t, 90*time.Minute+3*time.Nanosecond)
	roundTrip(t, time.Duration(math.MinInt64))
}

func TestNaNKeepsItsBits(t *testing.T) {
	c := MustFor[float64]()
	nan := math.Float64frombits(0x7ff8_0000_dead_beef)
	got, _, err := c.Decode(c.Append(nil, nan))
	if err != nil || math.Float64bits(got) != 0x7ff8_0000_dead_beef {
		t.Fatalf("NaN: got %#x, %v", math.Float64bits(got), err)
	}
	negZero := roundTrip(t, math.Copysign(0, -1))
	if bytes.Equal(negZero, MustFor[float64]().Append(nil, 0)) {
		t.Fatal("-0 and +0 encode alike; the sign must survive")
	}
}

func TestRoundTripSlicesAndArrays(t *testing.T) {
	// nil and empty stay distinct (see the package doc).
	if got := roundTrip(t, []byte(nil)); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("nil []byte encodes as %x, want 00", got)
	}
	if got := roundTrip(t, []byte{}); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("empty []byte encodes as %x, want 01", got)
	}
	roundTrip(t, []byte("bytes"))
	roundTrip(t, MyBytes{1, 2, 3})
	roundTrip(t, []int(nil))
	roundTrip(t, []int{})
	roundTrip(t, []int{1, -2, 3})
	roundTrip(t, IDs{1 << 50, -1})
	roundTrip(t, []string{"a", "", "c"})
	roundTrip(t, [][]string{nil, {}, {"x"}})
	roundTrip(t, []Point{{1, 2}, {-3, 4}})
	roundTrip(t, []*Point{nil, {5, 6}})
	roundTrip(t, []Bid{sampleBid(), {}})
	roundTrip(t, []Bid{})
	roundTrip(t, []*Point{})
	roundTrip(t, []map[string]int{})
	roundTrip(t, [][]byte{})
	roundTrip(t, []time.Time{time.Unix(1, 2).UTC(), {}})
	roundTrip(t, []struct{}{{}, {}, {}})
	roundTrip(t, []struct{}{})
	roundTrip(t, []float32{1, 2, 3})
	roundTrip(t, []MyInt{-1, 1})
	roundTrip(t, []Money{{1, "EUR"}})
	roundTrip(t, [4]byte{1, 2, 3, 4})
	roundTrip(t, [3]int{-1, 0, 1})
	roundTrip(t, [20]int16{1, 2, 3, 19: -4}) // too long to unroll
	roundTrip(t, [2][]string{{"a"}, nil})
	roundTrip(t, [0]int{})
	roundTrip(t, [2]*Node{{Value: 1}, nil})
}

func TestRoundTripMaps(t *testing.T) {
	roundTrip(t, map[string]int(nil))
	roundTrip(t, map[string]int{})
	roundTrip(t, map[string]int{"a": 1, "b": -2, "": 0})
	roundTrip(t, map[int]string{3: "c", 1: "a", 200: "b"})
	roundTrip(t, map[string][]int{"x": {1}, "y": nil, "z": {}})
	roundTrip(t, map[Point]map[string]bool{{1, 2}: {"t": true}, {0, 0}: nil})
	roundTrip(t, map[[2]int]struct{}{{1, 2}: {}, {3, 4}: {}})
	roundTrip(t, map[string]struct{}{"member": {}})
	roundTrip(t, map[struct{}]int{{}: 7})
	roundTrip(t, Tags{"env": "prod", "region": "eu"})
	roundTrip(t, map[string]*Point{"p": {1, 2}, "nil": nil})
	roundTrip(t, map[MyString]MyInt{"k": 1})
	roundTrip(t, map[float64]string{1.5: "x", math.Inf(1): "inf"})
	roundTrip(t, map[time.Time]int{time.Unix(5, 0).UTC(): 1, time.Unix(-5, 0).UTC(): 2})
}

func TestRoundTripPointers(t *testing.T) {
	roundTrip(t, (*int)(nil))
	roundTrip(t, ptr(42))
	roundTrip(t, ptr(ptr("double")))
	roundTrip(t, (**string)(nil))
	roundTrip(t, ptr((*string)(nil)))
	roundTrip(t, ptr(struct{}{}))
	roundTrip(t, ptr(sampleBid()))
	roundTrip(t, ptr([]int{1}))
}

func TestRoundTripStructs(t *testing.T) {
	roundTrip(t, sampleBid())
	roundTrip(t, Bid{})
	roundTrip(t, Point{-1, 1})
	roundTrip(t, struct{}{})
	roundTrip(t, WithUnexported{
		Public:  "pub",
		private: -9,
		in:      inner{name: "in", score: 0.5, flags: [3]bool{true, false, true}},
		ptr:     &inner{name: "pointed"},
		when:    time.Date(2024, 2, 29, 12, 0, 0, 1, time.UTC),
	})
	roundTrip(t, WithUnexported{})
	roundTrip(t, WithZeroSize{A: 1, B: "b"})
	roundTrip(t, Embedded{Point: Point{1, 2}, inner: &inner{name: "e"}, Label: "l"})
	roundTrip(t, Embedded{})
	s := "pp"
	roundTrip(t, Everything{
		B: true, I8: -8, I16: -16, I32: -32, I64: -64, I: -1, U8: 8, U16: 16, U32: 32, U64: 64, U: 1,
		F32: 3.5, F64: -7.25, C64: complex(1, 2), C128: complex(3, 4), S: "s", Bs: []byte{9}, BA: [4]byte{1},
		MI: 5, MS: "ms", MB: MyBytes{}, MF: 1e100, D: time.Second, T: time.Unix(1700000000, 999999999).UTC(),
		Arr: [2]Point{{1, 1}, {2, 2}}, Big: [20]int16{19: 19}, Sl: []Point{{3, 3}}, Ss: []string{"a", "b"},
		Sss: [][]string{{"c"}}, M: map[string]int{"m": 1}, MP: map[Point][]string{{1, 2}: {"v"}},
		Tags: Tags{"t": "v"}, IDs: IDs{7}, P: &Point{4, 4}, PP: ptr(&s),
		Set: map[string]struct{}{"x": {}}, Unit: make([]struct{}, 3),
	})
	roundTrip(t, Everything{})
}

func TestWithZeroSizeEncodesOnlySizedFields(t *testing.T) {
	got := MustFor[WithZeroSize]().Append(nil, WithZeroSize{A: 1, B: "b"})
	// A=1 → varint 02; blank int16 → 00; B → 01 'b'.
	if want := []byte{0x02, 0x00, 0x01, 'b'}; !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func TestRoundTripRecursiveTypes(t *testing.T) {
	roundTrip(t, Node{})
	list := &Node{Value: 1, Next: &Node{Value: 2, Next: &Node{Value: 3}}}
	roundTrip(t, list)
	roundTrip(t, *list)
	tree := Tree{
		Name: "root",
		Children: []*Tree{
			{Name: "a", Children: []*Tree{{Name: "a1"}}},
			nil,
			{Name: "b", Attrs: map[string]Tree{"k": {Name: "leaf"}}},
		},
		Attrs: map[string]Tree{},
	}
	roundTrip(t, tree)
	roundTrip(t, Mutual{Name: "m", Other: &MutualB{Items: []Mutual{{Name: "n"}, {Name: "o", Other: &MutualB{}}}}})
	roundTrip(t, MutualB{Items: []Mutual{{Name: "first"}}})
}

func longList(n int) *Node {
	var head *Node
	for i := n; i > 0; i-- {
		head = &Node{Value: i, Next: head}
	}
	return head
}

func TestMaxDepth(t *testing.T) {
	c := MustFor[*Node]()
	// Every node's Next field, nil or not, enters the recursive edge once, so
	// a list of MaxDepth nodes is the longest allowed.
	enc := c.Append(nil, longList(MaxDepth))
	if _, _, err := c.Decode(enc); err != nil {
		t.Fatalf("decoding a list at the depth limit: %v", err)
	}

	// One more node is too deep, both ways.
	func() {
		defer func() {
			var ee *EncodeError
			if r := recover(); r == nil {
				t.Fatal("encoding a too-deep list did not panic")
			} else if err, ok := r.(error); !ok || !errors.As(err, &ee) {
				t.Fatalf("panic value %v is not an *EncodeError", r)
			}
		}()
		c.Append(nil, longList(MaxDepth+1))
	}()
	var deep []byte
	deep = append(deep, 1) // *Node non-nil
	for range MaxDepth {
		deep = append(deep, 0x02, 1) // Value 1, Next non-nil
	}
	deep = append(deep, 0x02, 0) // last Value, Next nil
	if _, _, err := c.Decode(deep); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "levels deep") {
		t.Fatalf("decoding a too-deep list: %v", err)
	}

	// A pointer cycle is reported, not a stack overflow.
	cyc := &Node{Value: 1}
	cyc.Next = cyc
	func() {
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(error).Error(), "pointer cycle") {
				t.Fatalf("encoding a cycle: recovered %v", r)
			}
		}()
		c.Append(nil, cyc)
	}()
}

func TestTime(t *testing.T) {
	c := MustFor[time.Time]()
	loc := time.FixedZone("UTC+5:30", 5*3600+1800)
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), // past the UnixNano range
		time.Date(9999, 12, 31, 23, 59, 59, 0, loc),
		time.Now(), // has a monotonic reading
	} {
		enc := c.Append(nil, tm)
		got, n, err := c.Decode(enc)
		if err != nil || n != len(enc) {
			t.Fatalf("%v: n=%d err=%v", tm, n, err)
		}
		if !got.Equal(tm) || got.Location() != time.UTC {
			t.Fatalf("%v decoded as %v (%v)", tm, got, got.Location())
		}
		// The same instant in another zone encodes alike.
		if other := c.Append(nil, tm.In(loc)); !bytes.Equal(other, enc) {
			t.Fatalf("%v: zone changes the encoding: %x vs %x", tm, other, enc)
		}
	}
	// The zero time stays the zero time, so IsZero survives.
	roundTrip(t, time.Time{})
	roundTrip(t, time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC))

	type MyTime time.Time
	got := roundTrip(t, MyTime(time.Unix(10, 20).UTC()))
	if want := c.Append(nil, time.Unix(10, 20)); !bytes.Equal(got, want) {
		t.Fatalf("a type defined as time.Time encodes as %x, want %x", got, want)
	}
}

func TestBinaryMarshalers(t *testing.T) {
	roundTrip(t, Money{cents: 1999, currency: "EUR"})
	enc := roundTrip(t, Blob{data: []byte("short")})
	if enc[0] != 5 {
		t.Fatalf("Blob length prefix %d, want 5", enc[0])
	}
	big := bytes.Repeat([]byte("0123456789"), 100)
	enc = roundTrip(t, Blob{data: big})
	if !bytes.Equal(enc[:2], []byte{0xe8, 0x07}) || !bytes.Equal(enc[2:], big) {
		t.Fatalf("1000-byte Blob encodes with prefix %x", enc[:2])
	}
	roundTrip(t, []Blob{{data: big}, {data: []byte{1}}, {data: bytes.Repeat([]byte{7}, 128)}})
	roundTrip(t, WithMarshalers{
		Price:  Money{cents: 5, currency: "USD"},
		Addr:   netip.MustParseAddr("2001:db8::1"),
		Blob:   &Blob{data: []byte{1, 2}},
		Prices: map[string]Money{"a": {1, "EUR"}, "b": {2, "GBP"}},
	})
	roundTrip(t, netip.MustParseAddrPort("10.0.0.1:8080"))

	// A failing UnmarshalBinary is a corrupt-input error.
	c := MustFor[Money]()
	bad := []byte{3, 'x', 'y', 'z'}
	if _, _, err := c.Decode(bad); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing ':'") {
		t.Fatalf("Decode(%x): %v", bad, err)
	}
	// A panicking UnmarshalBinary is too.
	if _, _, err := MustFor[Fragile]().Decode([]byte{0}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Fragile: %v", err)
	}
	// A failing MarshalBinary panics with an *EncodeError.
	defer func() {
		var ee *EncodeError
		if err, ok := recover().(error); !ok || !errors.As(err, &ee) || !strings.Contains(err.Error(), "not today") {
			t.Fatalf("Failing: recovered %v", err)
		}
	}()
	MustFor[Failing]().Append(nil, Failing{})
}

func TestMapDeterminism(t *testing.T) {
	m := map[string]int{}
	for i := range 200 {
		m[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('A'+i/26))] = i
	}
	c := MustFor[map[string]int]()
	want := c.Append(nil, m)
	for range 50 {
		if got := c.Append(nil, m); !bytes.Equal(got, want) {
			t.Fatal("encoding the same map twice gave different bytes")
		}
	}
	// A copy built in another insertion order encodes alike.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	cp := map[string]int{}
	for i := len(keys) - 1; i >= 0; i-- {
		cp[keys[i]] = m[keys[i]]
	}
	if got := c.Append(nil, cp); !bytes.Equal(got, want) {
		t.Fatal("an equal map built in another order encodes differently")
	}

	// Nested maps, and keys that encode alike (NaN, pointers to equal values).
	nested := map[Point]map[string][]int{{1, 1}: {"a": {1}, "b": nil}, {2, 2}: {"c": {}}}
	nc := MustFor[map[Point]map[string][]int]()
	nwant := nc.Append(nil, nested)
	nan := map[float64]int{math.NaN(): 1, math.NaN(): 2, math.NaN(): 1, 0: 0}
	fc := MustFor[map[float64]int]()
	fwant := fc.Append(nil, nan)
	pk := map[*Point]string{{1, 1}: "x", {1, 1}: "y", {2, 2}: "z"}
	pc := MustFor[map[*Point]string]()
	pwant := pc.Append(nil, pk)
	for range 50 {
		if !bytes.Equal(nc.Append(nil, nested), nwant) || !bytes.Equal(fc.Append(nil, nan), fwant) || !bytes.Equal(pc.Append(nil, pk), pwant) {
			t.Fatal("non-deterministic encoding")
		}
	}
	// Maps whose keys encode alike still round-trip and re-encode identically.
	got, _, err := fc.Decode(fwant)
	if err != nil || len(got) != 4 || !bytes.Equal(fc.Append(nil, got), fwant) {
		t.Fatalf("NaN-keyed map: %v, %d entries", err, len(got))
	}
	gotp, _, err := pc.Decode(pwant)
	if err != nil || len(gotp) != 3 || !bytes.Equal(pc.Append(nil, gotp), pwant) {
		t.Fatalf("pointer-keyed map: %v, %d entries", err, len(gotp))
	}
}

// TestGolden pins the wire format: these bytes may be in savepoints.
func TestGolden(t *testing.T) {
	check := func(name string, got []byte, want string) {
		t.Helper()
		if hex.EncodeToString(got) != want {
			t.Errorf("%s: got %x, want %s", name, got, want)
		}
	}
	check("bid", MustFor[Bid]().Append(nil, Bid{Auction: 1, Bidder: -1, Price: 300, Channel: "ch", URL: "", DateTime: 1 << 40, Extra: "x"}),
		"02"+"01"+"d804"+"026368"+"00"+"808080808040"+"0178")
	check("int16 min", MustFor[int16]().Append(nil, math.MinInt16), "ffff03")
	check("uint64 max", MustFor[uint64]().Append(nil, math.MaxUint64), "ffffffffffffffffff01")
	check("int8 -1", MustFor[int8]().Append(nil, -1), "ff")
	check("float64 1", MustFor[float64]().Append(nil, 1), "000000000000f03f")
	check("float32 -2", MustFor[float32]().Append(nil, -2), "000000c0")
	check("complex64", MustFor[complex64]().Append(nil, complex(1, -2)), "0000803f"+"000000c0")
	check("bools", MustFor[[2]bool]().Append(nil, [2]bool{true, false}), "0100")
	check("nil slice", MustFor[[]int]().Append(nil, nil), "00")
	check("slice", MustFor[[]int]().Append(nil, []int{1, -1}), "030201")
	check("nil map", MustFor[map[string]bool]().Append(nil, nil), "00")
	check("map", MustFor[map[string]bool]().Append(nil, map[string]bool{"b": false, "a": true, "": true}),
		"04"+"0001"+"016101"+"016200")
	// Entries sort by encoded key bytes, not by number: 300 (ac02) sorts
	// before 200 (c801).
	check("map int keys", MustFor[map[uint16]bool]().Append(nil, map[uint16]bool{300: true, 4: false, 200: true}),
		"04"+"0400"+"ac0201"+"c80101")
	check("pointer", MustFor[[]*int8]().Append(nil, []*int8{nil, ptr(int8(5))}), "03"+"00"+"0105")
	check("time", MustFor[time.Time]().Append(nil, time.Unix(-2, 500)), "03"+"f403")
	check("zero time", MustFor[time.Time]().Append(nil, time.Time{}), "ffdb8ff9ce03"+"00")
	check("array of bytes", MustFor[[3]byte]().Append(nil, [3]byte{1, 2, 3}), "010203")
	check("blob", MustFor[Blob]().Append(nil, Blob{data: []byte{9, 8}}), "020908")
	check("batch", AppendBatch(MustFor[int64](), nil, []int64{5, 6}, []int64{1000, 999}), "02"+"0a"+"d00f"+"0c"+"01")
}

func TestHash64(t *testing.T) {
	// xxHash64, seed 0: fixed forever, because it places keys in key groups.
	for in, want := range map[string]uint64{
		"":  0xef46db3751d8e999,
		"a": 0xd24ec4f1a98c6e5b,
	} {
		if got := Hash64([]byte(in)); got != want {
			t.Errorf("Hash64(%q) = %#x, want %#x", in, got, want)
		}
	}
	enc := MustFor[Bid]().Append(nil, sampleBid())
	if Hash64(enc) != Hash64(MustFor[Bid]().Append(nil, sampleBid())) {
		t.Fatal("equal keys hash differently")
	}
}

func TestForCachesAndIsConcurrencySafe(t *testing.T) {
	type Fresh struct {
		A []map[string]*Tree
		B Bid
	}
	var wg sync.WaitGroup
	codecs := make([]Codec[Fresh], 16)
	for g := range codecs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := For[Fresh]()
			if err != nil {
				t.Error(err)
				return
			}
			codecs[g] = c
			v := Fresh{A: []map[string]*Tree{{"t": {Name: "x"}}}, B: sampleBid()}
			for range 100 {
				enc := c.Append(nil, v)
				got, _, err := c.Decode(enc)
				if err != nil || !reflect.DeepEqual(got, v) {
					t.Errorf("concurrent round trip: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range codecs[1:] {
		if c != codecs[0] {
			t.Fatal("For returned different codecs for one type")
		}
	}
}

func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomises sync.Pool")
	}
	bid := sampleBid()
	bc := MustFor[Bid]()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = bc.Append(buf[:0], bid) }); n != 0 {
		t.Errorf("Append(Bid) allocates %v times, want 0", n)
	}
	enc := bc.Append(nil, bid)
	// Channel and URL; Extra is empty and needs no allocation.
	if n := testing.AllocsPerRun(100, func() { bc.Decode(enc) }); n != 2 {
		t.Errorf("Decode(Bid) allocates %v times, want 2 (one per non-empty string)", n)
	}
	rich := sampleRich()
	rc := MustFor[richRecord]()
	if n := testing.AllocsPerRun(100, func() { buf = rc.Append(buf[:0], rich) }); n != 0 {
		t.Errorf("Append(richRecord) allocates %v times, want 0", n)
	}
	addr := netip.MustParseAddr("192.168.1.1")
	ac := MustFor[netip.Addr]()
	if n := testing.AllocsPerRun(100, func() { buf = ac.Append(buf[:0], addr) }); n != 0 {
		t.Errorf("Append(netip.Addr) allocates %v times, want 0", n)
	}
	vals := []Bid{bid, bid, bid}
	ts := []int64{1, 2, 3}
	if n := testing.AllocsPerRun(100, func() { buf = AppendBatch(bc, buf[:0], vals, ts) }); n != 0 {
		t.Errorf("AppendBatch allocates %v times, want 0", n)
	}
	benc := AppendBatch(bc, nil, vals, ts)
	outV, outT := make([]Bid, 0, 3), make([]int64, 0, 3)
	if n := testing.AllocsPerRun(100, func() { DecodeBatch(bc, benc, outV[:0], outT[:0]) }); n != 6 {
		t.Errorf("DecodeBatch of 3 Bids allocates %v times, want 6", n)
	}
}

func TestHugeSliceOfEmptyStructs(t *testing.T) {
	if !intIs64 {
		t.Skip("needs 64-bit int")
	}
	// Elements of size 0 cost neither bytes nor memory, at any length.
	enc := roundTrip(t, make([]struct{}, 1<<40))
	if len(enc) != 6 {
		t.Fatalf("encoded in %d bytes", len(enc))
	}
}
