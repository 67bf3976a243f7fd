package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/operators"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/stream"
)

// gatedSource emits 0..n-1 over its subtasks (subtask i: i, i+p, …) but only
// numbers below the gate, so a test can hold the job at a point of its
// input. Its readers store their next number in checkpoints.
type gatedSource struct {
	n    int
	gate *atomic.Int64
}

type gatedReader struct {
	next, step, n int
	gate          *atomic.Int64
}

func (s gatedSource) Open(ctx connector.SourceContext) (connector.SourceReader[int], error) {
	r := &gatedReader{next: ctx.Subtask, step: ctx.Parallelism, n: s.n, gate: s.gate}
	if ctx.Restored != nil {
		if len(ctx.Restored) != ctx.Parallelism {
			return nil, errors.New("gatedSource cannot be rescaled")
		}
		r.next = int(binary.BigEndian.Uint64(ctx.Restored[ctx.Subtask]))
	}
	return r, nil
}

func (r *gatedReader) Read(out connector.SourceOutput[int]) (connector.ReadStatus, error) {
	for range 64 {
		if r.next >= r.n {
			return connector.EndOfInput, nil
		}
		if int64(r.next) >= r.gate.Load() {
			return connector.NothingAvailable, nil
		}
		out.Collect(r.next)
		r.next += r.step
	}
	return connector.MoreAvailable, nil
}

func (r *gatedReader) SnapshotState() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(r.next)), nil
}

func (r *gatedReader) Close() error { return nil }

// ackCollector gathers acknowledgements and completes a checkpoint when
// every task has acknowledged it.
type ackCollector struct {
	mu       sync.Mutex
	tasks    int
	acks     map[int64][]runtime.TaskAck
	declined map[int64]error
	finished int
	complete chan int64
}

func newAckCollector(tasks int) *ackCollector {
	return &ackCollector{tasks: tasks, acks: map[int64][]runtime.TaskAck{}, declined: map[int64]error{}, complete: make(chan int64, 16)}
}

func (c *ackCollector) Ack(a runtime.TaskAck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acks[a.Checkpoint] = append(c.acks[a.Checkpoint], a)
	if len(c.acks[a.Checkpoint]) == c.tasks {
		c.complete <- a.Checkpoint
	}
}

func (c *ackCollector) Decline(id int64, task runtime.TaskID, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.declined[id] = err
}

func (c *ackCollector) Finished(runtime.TaskID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished++
}

func (c *ackCollector) await(t *testing.T, id int64) []runtime.TaskAck {
	t.Helper()
	select {
	case got := <-c.complete:
		if got != id {
			t.Fatalf("checkpoint %d completed, want %d", got, id)
		}
	case <-time.After(patience):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("checkpoint %d: %d of %d tasks acknowledged (declined: %v)", id, len(c.acks[id]), c.tasks, c.declined[id])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acks[id]
}

// restoreFrom turns a checkpoint's acknowledgements into restore input.
func restoreFrom(id int64, acks []runtime.TaskAck, parallelism map[string]int) map[string]*runtime.RestoredState {
	out := map[string]*runtime.RestoredState{}
	for _, a := range acks {
		for uid, snap := range a.Operators {
			r := out[uid]
			if r == nil {
				r = &runtime.RestoredState{Checkpoint: id, Snapshots: make([]*runtime.OperatorSnapshot, parallelism[uid])}
				out[uid] = r
			}
			r.Snapshots[a.Task.Subtask] = snap
		}
	}
	return out
}

// sumsJob: numbers → keyed running sum per number%7 (parallelism 3, over a
// hash exchange) → sink that keeps the largest sum per key.
func sumsJob(t *testing.T, src connector.Source[int], sums *sync.Map) *runtime.Job {
	b := &jobBuilder{}
	s := b.add("src", operators.NewSource(src, stream.NoWatermarks[int](), time.Hour), 2)
	keying := newKeying(t, func(v int) int { return v % 7 })
	r := b.keyed("sum", operators.NewKeyedReduce(keying, func(a, x int) int { return a + x }), 3, s)
	sink := &probe[int]{element: func(_ *runtime.OperatorContext, v int, _ int64) {}}
	if sums != nil {
		sink.element = func(_ *runtime.OperatorContext, v int, _ int64) {
			// The key of a running sum is not in the sum; the sink sees the
			// sums of each key in increasing order, so keep them all.
			sums.Store(v, true)
		}
	}
	b.add("sink", sink.factory(), 1, from(r))
	return b.job(t)
}

// stateSum adds up the keyed sums in the snapshots of operator "sum".
func stateSum(t *testing.T, acks []runtime.TaskAck) int {
	t.Helper()
	c := codec.MustFor[int]()
	total := 0
	for _, a := range acks {
		snap := a.Operators["sum"]
		if snap == nil || snap.Keyed == nil {
			continue
		}
		for _, kg := range snap.Keyed.KeyGroups {
			for _, e := range kg.Entries {
				v, _, err := c.Decode(e.Value)
				if err != nil {
					t.Fatal(err)
				}
				total += v
			}
		}
	}
	return total
}

// sourcePositions returns the next number of each source subtask.
func sourcePositions(acks []runtime.TaskAck) map[int32]int {
	pos := map[int32]int{}
	for _, a := range acks {
		if snap := a.Operators["src"]; snap != nil {
			pos[a.Task.Subtask] = int(binary.BigEndian.Uint64(snap.Operator))
		}
	}
	return pos
}

// emittedSum is the sum of the numbers source subtasks emitted before their
// positions.
func emittedSum(pos map[int32]int, p int) int {
	total := 0
	for s, next := range pos {
		for v := int(s); v < next; v += p {
			total += v
		}
	}
	return total
}

// TestCheckpointIsAConsistentCut checks that the keyed state in a
// checkpoint holds exactly the records the sources had emitted before
// their barriers, while records are in flight.
func TestCheckpointIsAConsistentCut(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 200_000
	gate := &atomic.Int64{}
	gate.Store(1000)
	job := sumsJob(t, gatedSource{n: n, gate: gate}, nil)
	acks := newAckCollector(2 + 3 + 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := runtime.Start(ctx, job, runtime.Options{Checkpoints: acks, Credits: 2, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoint 1 with the sources held at the gate.
	time.Sleep(20 * time.Millisecond)
	r.TriggerCheckpoint(1)
	cp := acks.await(t, 1)
	if got, want := stateSum(t, cp), emittedSum(sourcePositions(cp), 2); got != want {
		t.Fatalf("checkpoint 1: state holds a sum of %d, the sources had emitted %d", got, want)
	}
	// Checkpoints while the sources run flat out.
	gate.Store(n)
	midStream := 0
	for id := int64(2); id <= 6; id++ {
		r.TriggerCheckpoint(id)
		cp := acks.await(t, id)
		pos := sourcePositions(cp)
		if pos[0] > 1000 && pos[0] < n-2 && pos[1] > 1000 && pos[1] < n-1 {
			midStream++
		}
		if got, want := stateSum(t, cp), emittedSum(pos, 2); got != want {
			t.Fatalf("checkpoint %d: state holds a sum of %d, the sources had emitted %d (positions %v)", id, got, want, pos)
		}
	}
	if midStream == 0 {
		t.Fatal("no checkpoint was taken while the sources were running; the test proves nothing")
	}
	// The job finishes its input, then waits to be released.
	eventually(t, "all tasks finished", func() bool {
		acks.mu.Lock()
		defer acks.mu.Unlock()
		return acks.finished == 6
	})
	r.TriggerCheckpoint(7)
	final := acks.await(t, 7)
	for _, a := range final {
		if !a.Finished {
			t.Fatalf("task %v acknowledged the final checkpoint as not finished", a.Task)
		}
	}
	if got, want := stateSum(t, final), n*(n-1)/2; got != want {
		t.Fatalf("final checkpoint: state sum %d, want %d", got, want)
	}
	r.Release()
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFromCheckpointIsExactlyOnce crashes a job after a checkpoint,
// restores a new one from it, and checks that the final sums count every
// record once.
func TestRestoreFromCheckpointIsExactlyOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	const n = 100_000
	for _, cut := range []int64{0, 5_000, 50_000} {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			gate := &atomic.Int64{}
			gate.Store(cut)
			acks := newAckCollector(6)
			ctx, cancel := context.WithCancel(context.Background())
			r, err := runtime.Start(ctx, sumsJob(t, gatedSource{n: n, gate: gate}, nil), runtime.Options{Checkpoints: acks})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			r.TriggerCheckpoint(1)
			cp := acks.await(t, 1)
			// Records after the checkpoint are processed, then the job dies.
			gate.Store(cut + 10_000)
			time.Sleep(10 * time.Millisecond)
			cancel()
			if err := r.Wait(); !errors.Is(err, runtime.ErrCanceled) {
				t.Fatalf("crashed job: %v", err)
			}

			all := &atomic.Int64{}
			all.Store(n)
			sums := &sync.Map{}
			restore := restoreFrom(1, cp, map[string]int{"src": 2, "sum": 3})
			err = runtime.Execute(context.Background(), sumsJob(t, gatedSource{n: n, gate: all}, sums), runtime.Options{Restore: restore})
			if err != nil {
				t.Fatal(err)
			}
			// The largest running sum of each key is its total.
			want := map[int]int{}
			for v := range n {
				want[v%7] += v
			}
			for k, total := range want {
				if _, ok := sums.Load(total); !ok {
					t.Errorf("key %d: the total %d never reached the sink: records lost or counted twice", k, total)
				}
			}
		})
	}
}
