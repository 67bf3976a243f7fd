package jobmaster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/coordinator"
	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/keygroup"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/pebblestate"
)

// incHarness drives the job master's part of incremental checkpoints as
// its mailbox does, for one keyed operator "sum" of parallelism 1 with a
// Pebble backend in native mode: checkpoint persists the backend's native
// snapshot, and complete / abort tell the outcome.
type incHarness struct {
	t       testing.TB
	jobID   string
	st      storage.Storage
	inc     *incremental
	natives *pebblestate.NativeSnapshots
	b       *pebblestate.Backend
	ops     map[string]operatorInfo
	mds     map[int64]*pb.Metadata
}

const testJobID = "0123456789abcdef0123456789abcdef"

func newIncHarness(t testing.TB, numRetained int) *incHarness {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.New()
	for k, v := range map[string]string{
		config.IncrementalCheckpoints.Name: "true",
		config.StateBackendType.Name:       "pebble",
		config.CheckpointsNumRetained.Name: fmt.Sprint(numRetained),
	} {
		if err := cfg.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	inc, err := openIncremental(context.Background(), st, testJobID, cfg, t.Logf)
	if err != nil || inc == nil {
		t.Fatalf("openIncremental: %v, %v", inc, err)
	}
	t.Cleanup(inc.close)
	h := &incHarness{t: t, jobID: testJobID, st: st, inc: inc, natives: pebblestate.NewNativeSnapshots(),
		ops: map[string]operatorInfo{"sum": {parallelism: 1, maxParallelism: 128}}, mds: map[int64]*pb.Metadata{}}
	h.b, err = pebblestate.Open(filepath.Join(dir, "local", "db"), keygroup.Range{Start: 0, End: 127}, pebblestate.Options{Native: h.natives})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.b.Dispose() })
	// The harness writes raw entries: say what they are.
	if err := h.b.Registry().Declare("v", state.KindValue); err != nil {
		t.Fatal(err)
	}
	return h
}

// write puts n values of size random (incompressible) bytes under keys
// [from, from+n) into state "v"; gen seeds them.
func (h *incHarness) write(from, n, size int, gen byte) {
	rng := rand.NewChaCha8([32]byte{gen, byte(from), byte(from >> 8), byte(from >> 16), byte(from >> 24)})
	v := make([]byte, size)
	for i := from; i < from+n; i++ {
		_, _ = rng.Read(v)
		key := fmt.Appendf(nil, "key-%09d", i)
		if err := h.b.Put("v", key, nil, i%128, v); err != nil {
			h.t.Fatal(err)
		}
	}
}

// checkpoint takes and persists checkpoint id.
func (h *incHarness) checkpoint(id int64) *pb.Metadata {
	h.t.Helper()
	s, err := h.b.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	f, ok := h.natives.Take(s)
	if !ok {
		h.t.Fatal("the backend took no native snapshot")
	}
	acks := []runtime.TaskAck{{Checkpoint: id, Task: runtime.TaskID{Vertex: 1}, Operators: map[string]*runtime.OperatorSnapshot{"sum": {Native: f}}}}
	if err := h.inc.persist(context.Background(), h.st, storage.CheckpointLocation(h.jobID, id), h.jobID, h.ops, id, time.Now(), acks); err != nil {
		h.t.Fatal(err)
	}
	md, err := storage.ReadMetadata(context.Background(), h.st, storage.CheckpointLocation(h.jobID, id))
	if err != nil {
		h.t.Fatal(err)
	}
	h.mds[id] = md
	return md
}

// settle waits for the queued retention requests.
func (h *incHarness) settle() {
	done := make(chan struct{})
	h.inc.enqueue(func(context.Context, *storage.Retention) { close(done) })
	<-done
}

// sharedOf returns the storage names of the shared files md names.
func sharedOf(t testing.TB, md *pb.Metadata) []string {
	refs, err := storage.ReferencedFiles(storage.CheckpointLocation(md.JobId, md.CheckpointId), md)
	if err != nil {
		t.Fatal(err)
	}
	return refs.Shared
}

// listShared lists the job's shared directory.
func (h *incHarness) listShared() []string {
	files, err := h.st.ListAll(context.Background(), storage.Join(h.jobID, storage.SharedDirName))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		out = append(out, f.Name)
	}
	return out
}

// uploaded is the bytes checkpoint md stored that prev (nil: none) does
// not name: its new shared files and its exclusive files.
func uploaded(t testing.TB, prev, md *pb.Metadata) (n, total int64) {
	had := map[string]bool{}
	if prev != nil {
		for _, f := range sharedOf(t, prev) {
			had[f] = true
		}
	}
	loc := storage.CheckpointLocation(md.JobId, md.CheckpointId)
	for _, op := range md.Operators {
		for _, sub := range op.Subtasks {
			for _, h := range sub.KeyedState {
				n += h.GetFile().GetSize()
				total += h.GetFile().GetSize()
			}
			ns := sub.GetNativeKeyedState()
			for _, f := range slices.Concat(ns.GetSharedFiles(), ns.GetPrivateFiles()) {
				name, err := loc.Resolve(f.File)
				if err != nil {
					t.Fatal(err)
				}
				total += f.File.Size
				if !had[name] {
					n += f.File.Size
				}
			}
		}
	}
	return n, total
}

// An incremental checkpoint uploads only the SSTs the latest completed
// checkpoint does not name; retention deletes a subsumed checkpoint and the
// shared files nothing retained names, and an aborted checkpoint with the
// files it uploaded; the retained checkpoint restores exactly.
func TestIncrementalCheckpointReusesAndRetains(t *testing.T) {
	h := newIncHarness(t, 1)
	h.write(0, 2000, 100, 1)
	md1 := h.checkpoint(1)
	h.inc.completed(1, coordinator.Checkpoint)
	if n, _ := nativeCount(md1); n != 1 {
		t.Fatalf("checkpoint 1 has %d native subtasks", n)
	}

	h.write(0, 20, 100, 2) // 1% of the keys change
	md2 := h.checkpoint(2)
	shared1, shared2 := sharedOf(t, md1), sharedOf(t, md2)
	// Two flushes: both of checkpoint 1's SSTs' are still live (below
	// Pebble's L0 compaction trigger), so checkpoint 2 names them again.
	for _, f := range shared1 {
		if !slices.Contains(shared2, f) {
			t.Errorf("checkpoint 2 does not reuse %s of checkpoint 1: %q", f, shared2)
		}
	}
	if len(shared2) <= len(shared1) {
		t.Errorf("checkpoint 2 added no SST: %q", shared2)
	}
	if n, total := uploaded(t, md1, md2); n*5 > total {
		t.Errorf("checkpoint 2 uploaded %d of %d bytes", n, total)
	}
	wantState := canonicalOf(t, h.b, h.natives)
	h.inc.completed(2, coordinator.Checkpoint)
	h.settle()
	// num-retained=1: checkpoint 1 is gone, its files all live on in 2.
	if _, err := storage.ReadMetadata(context.Background(), h.st, storage.CheckpointLocation(h.jobID, 1)); err == nil {
		t.Error("subsumed checkpoint 1 still has metadata")
	}
	if got := h.listShared(); !slices.Equal(got, shared2) {
		t.Errorf("shared/ holds %q, want checkpoint 2's %q", got, shared2)
	}

	// Checkpoint 3 uploads a new SST and is aborted: that SST goes, the
	// ones it reused from 2 stay.
	h.write(5000, 100, 100, 3)
	md3 := h.checkpoint(3)
	if !slices.ContainsFunc(sharedOf(t, md3), func(f string) bool { return !slices.Contains(shared2, f) }) {
		t.Fatalf("checkpoint 3 uploaded no SST: %q", sharedOf(t, md3))
	}
	h.inc.abandoned(3, nil)
	h.settle()
	if got := h.listShared(); !slices.Equal(got, shared2) {
		t.Errorf("after aborting checkpoint 3 shared/ holds %q, want %q", got, shared2)
	}
	if files, _ := h.st.ListAll(context.Background(), storage.CheckpointDir(h.jobID, 3)); len(files) > 0 {
		t.Errorf("aborted checkpoint 3 left %v", files)
	}

	// Checkpoint 2 restores, natively, into a backend in a new directory.
	restored, err := restoreFrom(context.Background(), h.st, storage.CheckpointLocation(h.jobID, 2), md2, h.ops, false)
	if err != nil {
		t.Fatal(err)
	}
	snap := restored["sum"].Snapshots[0]
	if snap.Native == nil || snap.Keyed != nil {
		t.Fatalf("restored snapshot %+v: want native state only", snap)
	}
	b, err := pebblestate.Open(filepath.Join(t.TempDir(), "db"), keygroup.Range{Start: 0, End: 127}, pebblestate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Dispose()
	if err := b.RestoreNative(context.Background(), []any{snap.Native}); err != nil {
		t.Fatal(err)
	}
	if got := canonicalOf(t, b, nil); !reflect.DeepEqual(got, wantState) {
		t.Errorf("checkpoint 2 restored %d entries, want %d", got.Len(), wantState.Len())
	}
}

// A savepoint of a backend in native mode is canonical.
func TestSavepointOfNativeStateIsCanonical(t *testing.T) {
	h := newIncHarness(t, 1)
	h.write(0, 100, 10, 1)
	want := canonicalOf(t, h.b, h.natives)
	s, err := h.b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := h.natives.Take(s)
	acks := []runtime.TaskAck{{Checkpoint: 1, Task: runtime.TaskID{Vertex: 1}, Operators: map[string]*runtime.OperatorSnapshot{"sum": {Native: f}}}}
	loc := storage.SavepointLocation("savepoint-x")
	md, err := buildMetadata(context.Background(), h.st, loc, h.jobID, h.ops, 1, pb.Kind_SAVEPOINT, time.Now(), acks)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := nativeCount(md); n != 0 {
		t.Fatalf("savepoint has native state")
	}
	if _, err := storage.WriteMetadata(context.Background(), h.st, loc, md); err != nil {
		t.Fatal(err)
	}
	restored, err := restoreFrom(context.Background(), h.st, loc, md, h.ops, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := restored["sum"].Snapshots[0].Keyed; !reflect.DeepEqual(got, want) {
		t.Errorf("savepoint holds %d entries, want %d", got.Len(), want.Len())
	}
}

func nativeCount(md *pb.Metadata) (n int, files int) {
	for _, op := range md.Operators {
		for _, sub := range op.Subtasks {
			if ns := sub.GetNativeKeyedState(); ns != nil {
				n++
				files += len(ns.SharedFiles)
			}
		}
	}
	return n, files
}

// canonicalOf returns b's canonical snapshot; natives are those of b if it
// is in native mode.
func canonicalOf(t testing.TB, b *pebblestate.Backend, natives *pebblestate.NativeSnapshots) *state.Snapshot {
	t.Helper()
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if natives == nil {
		return s
	}
	if f, ok := natives.Take(s); ok {
		defer f.Remove()
		if s, err = f.ReadCanonical(b.KeyGroupRange()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
