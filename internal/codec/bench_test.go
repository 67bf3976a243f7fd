package codec

import (
	"bytes"
	"encoding/gob"
	"testing"
)

// Run: go test -run '^$' -bench . -benchmem ./internal/codec/
//
// The gob benchmarks are a reference point: gob sends type information once
// per stream, so they measure steady-state per-value cost on one stream.

func BenchmarkBidAppend(b *testing.B) {
	c := MustFor[Bid]()
	bid := sampleBid()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.Append(buf[:0], bid)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkBidDecode(b *testing.B) {
	c := MustFor[Bid]()
	enc := c.Append(nil, sampleBid())
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBidRoundTrip(b *testing.B) {
	c := MustFor[Bid]()
	bid := sampleBid()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.Append(buf[:0], bid)
		if _, _, err := c.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBidBatch1024(b *testing.B) {
	c := MustFor[Bid]()
	vals := make([]Bid, 1024)
	ts := make([]int64, 1024)
	for i := range vals {
		vals[i] = sampleBid()
		vals[i].Auction += int64(i)
		ts[i] = 1_700_000_000_000 + int64(i)
	}
	enc := AppendBatch(c, nil, vals, ts)
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, len(enc))
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendBatch(c, buf[:0], vals, ts)
		}
	})
	b.Run("decode", func(b *testing.B) {
		outVals := make([]Bid, 0, 1024)
		outTs := make([]int64, 0, 1024)
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if outVals, outTs, err = DecodeBatch(c, enc, outVals[:0], outTs[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGobBidEncode(b *testing.B) {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	bid := sampleBid()
	if err := enc.Encode(&bid); err != nil { // type information goes out once
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := enc.Encode(&bid); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

func BenchmarkGobBidDecode(b *testing.B) {
	// One stream holding enough values for every iteration, decoded in order.
	const n = 1 << 20
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	bid := sampleBid()
	for range n {
		if err := enc.Encode(&bid); err != nil {
			b.Fatal(err)
		}
	}
	stream := buf.Bytes()
	dec := gob.NewDecoder(bytes.NewReader(stream))
	decoded := 0
	b.ReportAllocs()
	for b.Loop() {
		if decoded == n {
			b.StopTimer()
			dec = gob.NewDecoder(bytes.NewReader(stream))
			decoded = 0
			b.StartTimer()
		}
		var out Bid
		if err := dec.Decode(&out); err != nil {
			b.Fatal(err)
		}
		decoded++
	}
}

// A record that is not flat: the closure tree and the pooled scratch value.
type richRecord struct {
	Bid   Bid
	Tags  map[string]string
	Items []Point
	Ref   *Point
}

func sampleRich() richRecord {
	return richRecord{
		Bid:   sampleBid(),
		Tags:  map[string]string{"region": "eu-west", "tier": "gold", "src": "web"},
		Items: []Point{{1, 2}, {3, 4}, {5, 6}},
		Ref:   &Point{7, 8},
	}
}

func BenchmarkRichAppend(b *testing.B) {
	c := MustFor[richRecord]()
	r := sampleRich()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.Append(buf[:0], r)
	}
}

func BenchmarkRichDecode(b *testing.B) {
	c := MustFor[richRecord]()
	enc := c.Append(nil, sampleRich())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
