package codec

import (
	"bytes"
	"testing"
	"time"
)

// fuzzRecord has every kind of variable-length and optional part.
type fuzzRecord struct {
	ID       int64
	Small    int16
	Flag     bool
	Name     string
	Raw      []byte
	Tags     map[string]string
	Scores   []float64
	Nested   []fuzzInner
	ByKey    map[int32][]string
	Opt      *fuzzInner
	When     time.Time
	Next     *fuzzRecord
	Children []fuzzRecord
	Fixed    [3]uint16
	Set      map[Point]struct{}
	unexp    []*string
}

type fuzzInner struct {
	A string
	B *int
	C map[string]*fuzzInner
}

func fuzzSeeds() []fuzzRecord {
	n := 3
	s := "s"
	return []fuzzRecord{
		{},
		{
			ID: -5, Small: 300, Flag: true, Name: "name", Raw: []byte{}, Tags: map[string]string{"a": "b", "c": ""},
			Scores: []float64{1.5, -2}, Nested: []fuzzInner{{A: "x", B: &n}, {C: map[string]*fuzzInner{"k": {A: "deep"}, "nil": nil}}},
			ByKey: map[int32][]string{-1: {"m"}, 7: nil}, Opt: &fuzzInner{}, When: time.Unix(1700000000, 5).UTC(),
			Next: &fuzzRecord{Name: "next", Next: &fuzzRecord{}}, Children: []fuzzRecord{{ID: 1}, {Raw: []byte("r")}},
			Fixed: [3]uint16{1, 2, 65535}, Set: map[Point]struct{}{{1, 2}: {}}, unexp: []*string{&s, nil},
		},
	}
}

// FuzzDecode feeds arbitrary bytes to a decoder: it must never panic, and
// whatever it accepts must be canonical — re-encoding the value must give
// back exactly the bytes consumed. Plain `go test` runs only the seeds; run
// `go test -fuzz=FuzzDecode ./internal/codec/` to search.
func FuzzDecode(f *testing.F) {
	c := MustFor[fuzzRecord]()
	for _, seed := range fuzzSeeds() {
		f.Add(c.Append(nil, seed))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := c.Decode(data)
		if err != nil {
			return
		}
		if n < 0 || n > len(data) {
			t.Fatalf("consumed %d of %d bytes", n, len(data))
		}
		if again := c.Append(nil, v); !bytes.Equal(again, data[:n]) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", data[:n], again)
		}
		// Batches wrap the same decoder.
		vals, ts, err := DecodeBatch(c, AppendBatch(c, nil, []fuzzRecord{v}, []int64{int64(n)}), nil, nil)
		if err != nil || len(vals) != 1 || ts[0] != int64(n) {
			t.Fatalf("batch of an accepted value: %v", err)
		}
	})
}
