package state

import (
	"fmt"
	"testing"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
)

type benchKey struct {
	key []byte
	kg  int
}

func benchKeys(n int) []benchKey {
	c := codec.MustFor[string]()
	keys := make([]benchKey, n)
	for i := range keys {
		k := c.Append(nil, fmt.Sprintf("user-%07d", i))
		keys[i] = benchKey{k, keygroup.ForKeyHash(codec.Hash64(k), testMaxP)}
	}
	return keys
}

// BenchmarkValueState is the per-record pattern of a keyed counter: set the
// key, read the value, write it back, over distinct keys that all exist.
// With 100k keys the figure is dominated by cache misses in the map lookup;
// with 1k keys everything is in cache.
func BenchmarkValueState(b *testing.B) {
	for _, be := range []struct {
		name string
		new  func() Backend
	}{
		{"heap", func() Backend { return NewHeapBackend(allKeyGroups) }},
		{"heap-namespace", func() Backend {
			h := NewHeapBackend(allKeyGroups)
			h.SetCurrentNamespace(codec.MustFor[int64]().Append(nil, 1_700_000_000_000))
			return h
		}},
		{"raw", func() Backend { return NewMemRawBackend(allKeyGroups) }},
	} {
		for _, n := range []int{1000, 100_000} {
			b.Run(fmt.Sprintf("%s/keys=%d", be.name, n), func(b *testing.B) { benchValueState(b, be.new(), n) })
		}
	}
}

func benchValueState(b *testing.B, be Backend, n int) {
	keys := benchKeys(n)
	s, err := NewValueState[int64](be, "count")
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		be.SetCurrentKey(k.key, k.kg)
		s.Update(0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := &keys[i%len(keys)]
		be.SetCurrentKey(k.key, k.kg)
		v, _ := s.Value()
		s.Update(v + 1)
	}
}

// BenchmarkValueStateHeapInsert measures first writes of new keys.
func BenchmarkValueStateHeapInsert(b *testing.B) {
	keys := benchKeys(100_000)
	b.ReportAllocs()
	var be *Heap
	var s ValueState[int64]
	for i := range b.N {
		if i%len(keys) == 0 {
			b.StopTimer()
			be = NewHeapBackend(allKeyGroups)
			s, _ = NewValueState[int64](be, "count")
			b.StartTimer()
		}
		k := &keys[i%len(keys)]
		be.SetCurrentKey(k.key, k.kg)
		s.Update(1)
	}
}

func BenchmarkListStateHeapAdd(b *testing.B) {
	keys := benchKeys(1000)
	be := NewHeapBackend(allKeyGroups)
	s, _ := NewListState[int64](be, "l")
	b.ReportAllocs()
	for i := range b.N {
		if i%(1000*len(keys)) == 0 {
			for _, k := range keys {
				be.SetCurrentKey(k.key, k.kg)
				s.Clear()
			}
		}
		k := &keys[i%len(keys)]
		be.SetCurrentKey(k.key, k.kg)
		s.Add(int64(i))
	}
}

// BenchmarkTimerRegisterFire registers a timer for each of 10k keys, then
// fires them all; one op is one register plus one fire.
func BenchmarkTimerRegisterFire(b *testing.B) {
	keys := benchKeys(10_000)
	be := NewHeapBackend(allKeyGroups)
	ts := NewTimerService(be)
	fire := func(int64) {}
	b.ReportAllocs()
	b.ResetTimer()
	wm := int64(0)
	for i := 0; i < b.N; {
		n := min(len(keys), b.N-i)
		for j := range n {
			k := &keys[j]
			be.SetCurrentKey(k.key, k.kg)
			ts.RegisterEventTimeTimer(wm + int64(j%100))
		}
		wm += 100
		ts.AdvanceWatermark(wm, fire)
		i += n
	}
}
