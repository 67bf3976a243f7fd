package operators

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
)

// BenchmarkWindowSnapshot is one subtask of Nexmark q5's window operator at
// checkpoint time: 100 k keys (auctions) with five sliding windows each
// (an int64 count), as a checkpoint sees it a second into the run. Each
// iteration takes a snapshot as a periodic checkpoint does, touches a tenth
// of the keys (the records between two checkpoints), and reports the task
// goroutine's part (sync-ns/window) apart from the whole: materializing the
// canonical state and writing the keyed state file.
func BenchmarkWindowSnapshot(b *testing.B) {
	const keys, touched = 100_000, 10_000
	type bid struct{ Auction, Price int64 }
	type row struct{ Auction, Num, Start, End int64 }
	enc, err := NewKeyEncoder[int64]()
	if err != nil {
		b.Fatal(err)
	}
	keying := &Keying[bid, int64]{Select: func(v bid) int64 { return v.Auction }, Encoder: enc}
	spec := WindowSpec{Assigner: SlidingWindows(10*time.Second, 2*time.Second, false)}
	f := NewWindowAggregateProcess(keying, spec, benchCount[bid]{}, func(k int64, w TimeWindow, n []int64, out Collector[row]) error {
		out.Collect(row{k, n[0], w.Start, w.End})
		return nil
	})
	inst := f.New()
	inst.SetOutput(runtime.Output[row](&benchOutput[row]{}))
	const maxP = 128
	kgs := keygroup.RangeForOperator(maxP, 1, 0)
	ctx := &runtime.OperatorContext{MaxParallelism: maxP, KeyGroups: kgs, Parallelism: 1, ProcessingTime: &winClock{},
		Checkpointing: true, Config: map[string]string{deferSnapshotsKey: "1s"}}
	if err := inst.Op.Open(ctx); err != nil {
		b.Fatal(err)
	}
	in := inst.Inputs[0].(runtime.Input[bid])
	const ts = 1_700_000_000_500
	for k := range int64(keys) {
		in.ProcessElement(bid{Auction: 1_000_000 + k*7}, ts)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	var sync, cpu time.Duration
	windows := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c0 := cpuTime()
		t0 := time.Now()
		snap, err := inst.Op.(runtime.Snapshotter).SnapshotState(int64(i + 1))
		sync += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if snap.Materialize != nil {
			if err := snap.Materialize(); err != nil {
				b.Fatal(err)
			}
		}
		buf.Reset()
		if err := storage.WriteKeyedState(&buf, maxP, snap.Keyed, snap.Timers); err != nil {
			b.Fatal(err)
		}
		windows += snap.Keyed.Len()
		cpu += cpuTime() - c0
		b.StopTimer()
		for range touched {
			in.ProcessElement(bid{Auction: 1_000_000 + rng.Int64N(keys)*7}, ts)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(windows), "ns/window")
	b.ReportMetric(float64(sync.Nanoseconds())/float64(windows), "sync-ns/window")
	// CPU time, the GC's included: what a checkpoint takes from the
	// pipeline on a busy machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(windows), "cpu-ns/window")
	b.ReportMetric(float64(buf.Len())/float64(windows/b.N), "B/window")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
