package pebblestate

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/statetest"
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
		keys[i] = benchKey{k, keygroup.ForKeyHash(codec.Hash64(k), statetest.MaxParallelism)}
	}
	return keys
}

var benchSizes = []int{1000, 100_000}

func openBench(b *testing.B) *Backend {
	be, err := Open(filepath.Join(b.TempDir(), "db"), statetest.AllKeyGroups, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Destroy() })
	return be
}

// BenchmarkPebbleValueUpdate is the per-record pattern of a keyed counter
// (set the key, read the value, write it back) over n existing keys, as
// state.BenchmarkValueState measures it for the heap backend.
func BenchmarkPebbleValueUpdate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchValueUpdate(b, openBench(b), n) })
	}
}

// BenchmarkHeapValueUpdate is BenchmarkPebbleValueUpdate on the heap
// backend, for comparison.
func BenchmarkHeapValueUpdate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			benchValueUpdate(b, state.NewHeapBackend(statetest.AllKeyGroups), n)
		})
	}
}

func benchValueUpdate(b *testing.B, be state.Backend, n int) {
	keys := benchKeys(n)
	s, err := state.NewValueState[int64](be, "count")
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		be.SetCurrentKey(k.key, k.kg)
		s.Update(0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPUTime()
	for i := range b.N {
		k := &keys[i%len(keys)]
		be.SetCurrentKey(k.key, k.kg)
		v, _ := s.Value()
		s.Update(v + 1)
	}
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time per op since cpu: on a loaded
// machine ns/op includes waiting for a core, cpu-ns/op does not (but it
// includes Pebble's background flushes and compactions).
func reportCPU(b *testing.B, cpu time.Duration) {
	if d := processCPUTime() - cpu; cpu > 0 && d > 0 {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPebbleListAdd adds to lists of 1000 keys: a merge, no read.
func BenchmarkPebbleListAdd(b *testing.B) {
	be := openBench(b)
	keys := benchKeys(1000)
	s, err := state.NewListState[int64](be, "l")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPUTime()
	for i := range b.N {
		k := &keys[i%len(keys)]
		be.SetCurrentKey(k.key, k.kg)
		s.Add(int64(i))
	}
	reportCPU(b, cpu)
}

// BenchmarkPebbleMapUpdate reads and writes one of 10 map entries per key
// over 10k keys, in a window namespace.
func BenchmarkPebbleMapUpdate(b *testing.B) {
	for _, be := range []struct {
		name string
		new  func(b *testing.B) state.Backend
	}{
		{"pebble", func(b *testing.B) state.Backend { return openBench(b) }},
		{"heap", func(*testing.B) state.Backend { return state.NewHeapBackend(statetest.AllKeyGroups) }},
	} {
		b.Run(be.name, func(b *testing.B) {
			back := be.new(b)
			back.SetCurrentNamespace(codec.MustFor[int64]().Append(nil, 1_700_000_000_000))
			keys := benchKeys(10_000)
			m, err := state.NewMapState[int64, int64](back, "m")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPUTime()
			for i := range b.N {
				k := &keys[i%len(keys)]
				back.SetCurrentKey(k.key, k.kg)
				uk := int64(i % 10)
				v, _ := m.Get(uk)
				m.Put(uk, v+1)
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkPebbleCheckpoint measures the synchronous part of a checkpoint
// (flush and hard links) after 10k updates to a 100k-key state.
func BenchmarkPebbleCheckpoint(b *testing.B) {
	be := openBench(b)
	keys := benchKeys(100_000)
	s, err := state.NewValueState[int64](be, "count")
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		be.SetCurrentKey(k.key, k.kg)
		s.Update(0)
	}
	dir := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		for j := range 10_000 {
			k := &keys[(i*10_000+j)%len(keys)]
			be.SetCurrentKey(k.key, k.kg)
			s.Update(int64(i))
		}
		b.StartTimer()
		if _, err := be.Checkpoint(filepath.Join(dir, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}
