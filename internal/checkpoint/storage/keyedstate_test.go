package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// randomState returns a canonical snapshot and timers over maxP key
// groups, with some key groups holding only entries, only timers, both or
// neither.
func randomState(rng *rand.Rand, maxP int) (*state.Snapshot, *state.TimerSnapshot) {
	blob := func(max int) []byte {
		n := rng.IntN(max + 1)
		if n == 0 {
			return nil
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(4)) // few distinct bytes: many equal prefixes
		}
		return b
	}
	snap, timers := &state.Snapshot{}, &state.TimerSnapshot{}
	for kg := range maxP {
		switch rng.IntN(4) {
		case 0:
			continue
		case 1, 3:
			var es []state.Entry
			for range rng.IntN(12) {
				es = append(es, state.Entry{
					State: []string{"count", "sum", "window-contents", ""}[rng.IntN(4)],
					Kind:  state.Kind(1 + rng.IntN(5)),
					Key:   blob(6), Namespace: blob(3), UserKey: blob(2), Value: blob(20),
				})
			}
			slices.SortFunc(es, compareEntries)
			es = slices.CompactFunc(es, func(a, b state.Entry) bool { return compareEntries(a, b) == 0 })
			if len(es) > 0 {
				snap.KeyGroups = append(snap.KeyGroups, state.KeyGroupState{KeyGroup: kg, Entries: es})
			}
		}
		if rng.IntN(3) == 0 {
			tk := state.TimerKeyGroup{KeyGroup: kg}
			for range rng.IntN(4) {
				tk.EventTime = append(tk.EventTime, state.Timer{Timestamp: rng.Int64() - rng.Int64(), Key: blob(4), Namespace: blob(2)})
			}
			for range rng.IntN(3) {
				tk.ProcessingTime = append(tk.ProcessingTime, state.Timer{Timestamp: rng.Int64N(1 << 45), Key: blob(4)})
			}
			if len(tk.EventTime)+len(tk.ProcessingTime) > 0 {
				timers.KeyGroups = append(timers.KeyGroups, tk)
			}
		}
	}
	return snap, timers
}

// restrict returns the key groups of s and t within r.
func restrict(s *state.Snapshot, t *state.TimerSnapshot, r keygroup.Range) (*state.Snapshot, *state.TimerSnapshot) {
	rs, rt := &state.Snapshot{}, &state.TimerSnapshot{}
	for _, g := range s.KeyGroups {
		if r.Contains(g.KeyGroup) {
			rs.KeyGroups = append(rs.KeyGroups, g)
		}
	}
	for _, g := range t.KeyGroups {
		if r.Contains(g.KeyGroup) {
			rt.KeyGroups = append(rt.KeyGroups, g)
		}
	}
	return rs, rt
}

func encodeKeyedState(t testing.TB, maxP int, s *state.Snapshot, tm *state.TimerSnapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteKeyedState(&buf, maxP, s, tm); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// countingReaderAt counts ReadAt calls and bytes.
type countingReaderAt struct {
	r            io.ReaderAt
	calls, bytes int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	c.bytes += len(p)
	return c.r.ReadAt(p, off)
}

func TestKeyedStateRoundTrip(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 7))
		maxP := []int{1, 2, 7, 128}[seed%4]
		s, tm := randomState(rng, maxP)
		b := encodeKeyedState(t, maxP, s, tm)
		kr, err := NewKeyedStateReader(bytes.NewReader(b), int64(len(b)), "test")
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if kr.MaxParallelism() != maxP {
			t.Fatalf("MaxParallelism = %d", kr.MaxParallelism())
		}
		all := keygroup.Range{Start: 0, End: maxP - 1}
		gs, gt, err := kr.Read(all)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !reflect.DeepEqual(gs, s) || !reflect.DeepEqual(gt, tm) {
			t.Fatalf("seed %d: round trip differs:\n got %+v %+v\nwant %+v %+v", seed, gs, gt, s, tm)
		}
		// Every subtask of every parallelism reads exactly its key groups.
		for p := 1; p <= min(maxP, 5); p++ {
			for i := range p {
				r := keygroup.RangeForOperator(maxP, p, i)
				cr := &countingReaderAt{r: bytes.NewReader(b)}
				kr, err := NewKeyedStateReader(cr, int64(len(b)), "test")
				if err != nil {
					t.Fatal(err)
				}
				opened := cr.bytes
				gs, gt, err := kr.Read(r)
				if err != nil {
					t.Fatal(err)
				}
				ws, wt := restrict(s, tm, r)
				if !reflect.DeepEqual(gs, ws) || !reflect.DeepEqual(gt, wt) {
					t.Fatalf("seed %d p %d subtask %d %v: got %+v %+v, want %+v %+v", seed, p, i, r, gs, gt, ws, wt)
				}
				// One read for the range, of its blocks only.
				if cr.calls > 3+1 {
					t.Fatalf("reading %v took %d ReadAt calls, want header+footer+index+1", r, cr.calls)
				}
				if p > 1 && len(kr.KeyGroups()) > 0 {
					if read := cr.bytes - opened; read > len(b)-keyedStateHeaderLen {
						t.Fatalf("reading key groups %v read %d of %d bytes", r, read, len(b))
					}
				}
			}
		}
	}
}

func TestKeyedStateEmptyAndOnStorage(t *testing.T) {
	b := encodeKeyedState(t, 16, nil, nil)
	kr, err := NewKeyedStateReader(bytes.NewReader(b), int64(len(b)), "empty")
	if err != nil {
		t.Fatal(err)
	}
	s, tm, err := kr.Read(keygroup.Range{Start: 0, End: 15})
	if err != nil || len(s.KeyGroups) != 0 || len(tm.KeyGroups) != 0 || len(kr.KeyGroups()) != 0 {
		t.Fatalf("empty file: %+v %+v %v", s, tm, err)
	}
	forEachBackend(t, func(t *testing.T, st Storage) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(3, 3))
		s, tm := randomState(rng, 128)
		w, err := Put(ctx, st, "j/chk-1/op-0.keyed", func(w io.Writer) error { return WriteKeyedState(w, 128, s, tm) })
		if err != nil {
			t.Fatal(err)
		}
		f, err := st.Open(ctx, w.Name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := keygroup.RangeForOperator(128, 3, 1)
		gs, gt, err := ReadKeyedState(f, w.Name, r)
		if err != nil {
			t.Fatal(err)
		}
		ws, wt := restrict(s, tm, r)
		if !reflect.DeepEqual(gs, ws) || !reflect.DeepEqual(gt, wt) {
			t.Fatal("subset read from storage differs")
		}
	})
}

func TestKeyedStateWriterRejects(t *testing.T) {
	e := func(st string, key string) state.Entry {
		return state.Entry{State: st, Kind: state.KindValue, Key: []byte(key)}
	}
	for _, tc := range []struct {
		name  string
		write func(w *KeyedStateWriter) error
		want  string
	}{
		{"descending key groups", func(w *KeyedStateWriter) error {
			w.WriteKeyGroup(3, []state.Entry{e("a", "k")}, nil, nil)
			return w.WriteKeyGroup(2, []state.Entry{e("a", "k")}, nil, nil)
		}, "ascending"},
		{"key group out of range", func(w *KeyedStateWriter) error {
			return w.WriteKeyGroup(8, []state.Entry{e("a", "k")}, nil, nil)
		}, "outside [0, 8)"},
		{"unsorted entries", func(w *KeyedStateWriter) error {
			return w.WriteKeyGroup(0, []state.Entry{e("b", "k"), e("a", "k")}, nil, nil)
		}, "not sorted"},
		{"duplicate entries", func(w *KeyedStateWriter) error {
			return w.WriteKeyGroup(0, []state.Entry{e("a", "k"), e("a", "k")}, nil, nil)
		}, "not sorted or repeated"},
		{"bad kind", func(w *KeyedStateWriter) error {
			return w.WriteKeyGroup(0, []state.Entry{{State: "a", Kind: 9}}, nil, nil)
		}, "unknown kind"},
	} {
		w, err := NewKeyedStateWriter(io.Discard, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.write(w); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewKeyedStateWriter(io.Discard, 0); err == nil {
		t.Error("max parallelism 0 accepted")
	}
}

func TestKeyedStateCorruption(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	s, tm := randomState(rng, 32)
	good := encodeKeyedState(t, 32, s, tm)
	read := func(b []byte) error {
		kr, err := NewKeyedStateReader(bytes.NewReader(b), int64(len(b)), "s3://b/job/chk-1/op-0.keyed")
		if err != nil {
			return err
		}
		_, _, err = kr.Read(keygroup.Range{Start: 0, End: 31})
		return err
	}
	// Every truncation and every single-bit flip is caught.
	for n := range len(good) {
		if err := read(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	for i := range len(good) {
		for bit := range 8 {
			b := slices.Clone(good)
			b[i] ^= 1 << bit
			err := read(b)
			if i >= 8 && i < 12 && errors.Is(err, ErrNewerVersion) {
				continue // the version field
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: %v", bit, i, err)
			}
			if !strings.Contains(err.Error(), "s3://b/job/chk-1/op-0.keyed") {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	}
	future := slices.Clone(good)
	binary.LittleEndian.PutUint32(future[8:], KeyedStateVersion+1)
	if err := read(future); !errors.Is(err, ErrNewerVersion) || !strings.Contains(err.Error(), "upgrade Weir") {
		t.Fatalf("future version: %v", err)
	}
	if err := read([]byte("definitely not a keyed state file at all")); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "wrong magic") {
		t.Fatalf("wrong magic: %v", err)
	}
}

// rebuildBlock returns a file with one key group whose block body is body
// (a valid CRC is computed), to test the checks behind the checksum.
func rebuildBlock(maxP, kg int, body []byte) []byte {
	var b []byte
	b = append(b, keyedStateMagic[:]...)
	b = binary.LittleEndian.AppendUint32(b, KeyedStateVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(maxP))
	blk := binary.LittleEndian.AppendUint32(slices.Clone(body), CRC32C(body))
	b = append(b, blk...)
	idxOff := len(b)
	idx := binary.AppendUvarint(nil, 1)
	idx = binary.AppendUvarint(idx, uint64(kg))
	idx = binary.AppendUvarint(idx, uint64(len(blk)))
	b = append(b, idx...)
	b = binary.LittleEndian.AppendUint64(b, uint64(idxOff))
	b = binary.LittleEndian.AppendUint32(b, headerIndexCRC(b[:keyedStateHeaderLen], idx))
	return append(b, keyedStateEndMagic[:]...)
}

func TestKeyedStateSemanticChecks(t *testing.T) {
	entry := func(st string, kind byte, key string) []byte {
		b := binary.AppendUvarint(nil, uint64(len(st))+1)
		b = append(b, st...)
		b = append(b, kind)
		b = appendBytes(b, []byte(key))
		return append(b, 0, 0, 0)
	}
	block := func(kg int, entries ...[]byte) []byte {
		b := binary.AppendUvarint(nil, uint64(kg))
		b = binary.AppendUvarint(b, uint64(len(entries)))
		for _, e := range entries {
			b = append(b, e...)
		}
		return append(b, 0, 0)
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"ok", rebuildBlock(4, 2, block(2, entry("a", 1, "k"))), ""},
		{"key group differs from index", rebuildBlock(4, 2, block(3, entry("a", 1, "k"))), "the index says 2"},
		{"unsorted", rebuildBlock(4, 2, block(2, entry("b", 1, "k"), entry("a", 1, "k"))), "not after"},
		{"bad kind", rebuildBlock(4, 2, block(2, entry("a", 0, "k"))), "unknown state kind"},
		{"huge count", rebuildBlock(4, 2, binary.AppendUvarint(binary.AppendUvarint(nil, 2), 1<<40)), "exceeds"},
		{"first entry refers back", rebuildBlock(4, 2, append(binary.AppendUvarint(binary.AppendUvarint(nil, 2), 1), 0, 1, 0, 0, 0, 0, 0, 0)), "previous state name"},
		{"trailing bytes", rebuildBlock(4, 2, append(block(2, entry("a", 1, "k")), 9)), "unexpected bytes"},
		{"key group beyond max parallelism", rebuildBlock(4, 4, block(4, entry("a", 1, "k"))), "outside [0, 4)"},
	} {
		kr, err := NewKeyedStateReader(bytes.NewReader(tc.file), int64(len(tc.file)), "f")
		if err == nil {
			_, _, err = kr.Read(keygroup.Range{Start: 0, End: 3})
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrCorrupt saying %q", tc.name, err, tc.want)
		}
	}
}

// FuzzReadKeyedState checks that no input makes the reader panic or
// allocate without bound, that every error is ErrCorrupt or
// ErrNewerVersion, and that whatever it accepts is canonical: written
// again it reads back the same.
func FuzzReadKeyedState(f *testing.F) {
	for seed := range uint64(4) {
		s, tm := randomState(rand.New(rand.NewPCG(seed, 1)), 8)
		var buf bytes.Buffer
		WriteKeyedState(&buf, 8, s, tm)
		f.Add(buf.Bytes())
	}
	f.Add(rebuildBlock(4, 2, []byte{2, 1, 2, 'a', 1, 1, 'k', 0, 0, 0, 0, 0}))
	f.Add([]byte{3, 2, 2, 'a', 1, 1, 'k', 0, 0, 0, 0, 3, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkKeyedStateInput(t, data)
		// The checksums stop most mutations at the door; also feed the
		// input as the body of a block with a valid checksum, to reach
		// the decoding behind it.
		checkKeyedStateInput(t, rebuildBlock(8, 3, data))
	})
}

func checkKeyedStateInput(t *testing.T, data []byte) {
	kr, err := NewKeyedStateReader(bytes.NewReader(data), int64(len(data)), "fuzz")
	if err == nil {
		var s *state.Snapshot
		var tm *state.TimerSnapshot
		s, tm, err = kr.Read(keygroup.Range{Start: 0, End: kr.MaxParallelism() - 1})
		if err == nil {
			var buf bytes.Buffer
			if err := WriteKeyedState(&buf, kr.MaxParallelism(), s, tm); err != nil {
				t.Fatalf("accepted state does not write: %v", err)
			}
			kr2, err := NewKeyedStateReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "again")
			if err != nil {
				t.Fatal(err)
			}
			s2, tm2, err := kr2.Read(keygroup.Range{Start: 0, End: kr.MaxParallelism() - 1})
			if err != nil || !reflect.DeepEqual(s, s2) || !reflect.DeepEqual(tm, tm2) {
				t.Fatalf("rewrite differs: %v", err)
			}
			return
		}
	}
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("error is neither ErrCorrupt nor ErrNewerVersion: %v", err)
	}
}

func BenchmarkKeyedStateWriteRead(b *testing.B) {
	s := &state.Snapshot{}
	for kg := range 128 {
		g := state.KeyGroupState{KeyGroup: kg}
		for i := range 1000 {
			g.Entries = append(g.Entries, state.Entry{State: "count", Kind: state.KindValue, Key: []byte(fmt.Sprintf("key-%06d", i)), Value: []byte("12345678")})
		}
		s.KeyGroups = append(s.KeyGroups, g)
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WriteKeyedState(&buf, 128, s, nil); err != nil {
			b.Fatal(err)
		}
		kr, err := NewKeyedStateReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := kr.Read(keygroup.Range{Start: 0, End: 127}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}
