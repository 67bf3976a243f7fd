package codec

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestBatchRoundTrip(t *testing.T) {
	c := MustFor[Bid]()
	vals := []Bid{sampleBid(), {}, {Auction: -1, Extra: "e"}}
	ts := []int64{1_700_000_000_000, math.MinInt64, math.MaxInt64}
	enc := AppendBatch(c, []byte("hdr"), vals, ts)[3:]

	// Decoding appends after what the slices already hold.
	gotVals, gotTs, err := DecodeBatch(c, enc, []Bid{{Price: 1}}, []int64{7})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotVals, append([]Bid{{Price: 1}}, vals...)) || !reflect.DeepEqual(gotTs, append([]int64{7}, ts...)) {
		t.Fatalf("got %v %v", gotVals, gotTs)
	}

	// Reused capacity that still holds old values is overwritten cleanly.
	type Opt struct {
		P *int
		S []string
		M map[string]int
	}
	oc := MustFor[Opt]()
	seven := 7
	old := []Opt{{P: &seven, S: []string{"old"}, M: map[string]int{"old": 1}}, {P: &seven}}
	enc2 := AppendBatch(oc, nil, []Opt{{}, {S: []string{}}}, []int64{0, 0})
	got2, _, err := DecodeBatch(oc, enc2, old[:0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got2, []Opt{{}, {S: []string{}}}) {
		t.Fatalf("decoding over old values: %+v", got2)
	}

	// Empty batches.
	empty := AppendBatch(c, nil, nil, nil)
	if v, ts, err := DecodeBatch(c, empty, nil, nil); err != nil || len(v) != 0 || len(ts) != 0 {
		t.Fatalf("empty batch: %v %v %v", v, ts, err)
	}
}

func TestBatchErrors(t *testing.T) {
	c := MustFor[Bid]()
	enc := AppendBatch(c, nil, []Bid{sampleBid(), sampleBid()}, []int64{1, 2})
	orig := []Bid{{Price: 9}}
	origTs := []int64{9}
	for i := range enc {
		v, ts, err := DecodeBatch(c, enc[:i], orig, origTs)
		if err == nil {
			t.Fatalf("prefix %d of a batch decoded", i)
		}
		if len(v) != 1 || len(ts) != 1 || v[0].Price != 9 {
			t.Fatalf("a failed decode changed the output slices: %v %v", v, ts)
		}
	}
	_, _, err := DecodeBatch(c, append(enc, 0), nil, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "1 bytes left over") {
		t.Fatalf("trailing byte: %v", err)
	}
	bad := append([]byte(nil), enc...)
	bad[len(bad)-1] = 0x80 // last timestamp delta now runs off the end
	if _, _, err := DecodeBatch(c, bad, nil, nil); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "batch[1]") {
		t.Fatalf("truncated timestamp: %v", err)
	}
	if _, _, err := DecodeBatch(c, []byte{0xff, 0xff, 0xff, 0x7f}, nil, nil); !errors.Is(err, ErrTruncated) {
		t.Fatalf("huge count: %v", err)
	}

	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "2 values but 1 timestamps") {
			t.Fatalf("mismatched lengths: recovered %v", r)
		}
	}()
	AppendBatch(c, nil, []Bid{{}, {}}, []int64{1})
}

// upperCodec is a Codec implemented outside this package.
type upperCodec struct{}

func (upperCodec) Append(dst []byte, v string) []byte {
	return append(append(dst, byte(len(v))), strings.ToUpper(v)...)
}
func (upperCodec) Decode(src []byte) (string, int, error) {
	if len(src) == 0 || int(src[0]) > len(src)-1 {
		return "", 0, errors.New("short")
	}
	return string(src[1 : 1+src[0]]), 1 + int(src[0]), nil
}

func TestBatchWithForeignCodec(t *testing.T) {
	enc := AppendBatch[string](upperCodec{}, nil, []string{"a", "bc"}, []int64{5, 3})
	v, ts, err := DecodeBatch[string](upperCodec{}, enc, nil, nil)
	if err != nil || !reflect.DeepEqual(v, []string{"A", "BC"}) || !reflect.DeepEqual(ts, []int64{5, 3}) {
		t.Fatalf("got %v %v %v", v, ts, err)
	}
}
