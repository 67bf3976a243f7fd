package pebblestate

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/statetest"
)

// nativeSnapshot snapshots b in native mode and takes the checkpoint the
// placeholder stands for.
func nativeSnapshot(t *testing.T, b *Backend) *Files {
	t.Helper()
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := b.opts.Native.Take(s)
	if !ok {
		t.Fatalf("Snapshot in native mode returned %d entries, not a placeholder", s.Len())
	}
	if _, again := b.opts.Native.Take(s); again {
		t.Fatal("a placeholder was taken twice")
	}
	return f
}

// remote makes a RemoteCheckpoint of f as a checkpoint store would after
// uploading it: Download copies the files, and counts the downloads.
func remote(f *Files, r keygroup.Range, downloads *int) *RemoteCheckpoint {
	rc := &RemoteCheckpoint{KeyGroups: r, Files: slices.Concat(f.SSTs, f.Other)}
	stored := t0TempCopy(f)
	rc.Download = func(_ context.Context, dir string) error {
		*downloads++
		for _, file := range rc.Files {
			if err := copyFile(filepath.Join(stored, file.Name), filepath.Join(dir, file.Name)); err != nil {
				return err
			}
		}
		return nil
	}
	return rc
}

// t0TempCopy copies the checkpoint f to a new directory beside it (the
// "store"), since the backend's own checkpoint directory is removed once
// uploaded.
func t0TempCopy(f *Files) string {
	dir := f.Dir + ".stored"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err)
	}
	for _, file := range slices.Concat(f.SSTs, f.Other) {
		if err := copyFile(filepath.Join(f.Dir, file.Name), filepath.Join(dir, file.Name)); err != nil {
			panic(err)
		}
	}
	return dir
}

// A backend in native mode snapshots to a native checkpoint; a new backend
// of the same key groups restores it as its DB, with the same SST IDs, and
// holds exactly the state of the snapshot.
func TestNativeSnapshotRestoresAsItsDB(t *testing.T) {
	root := t.TempDir()
	natives := NewNativeSnapshots()
	b := openTest(t, filepath.Join(root, "a"), statetest.AllKeyGroups, Options{Native: natives})
	statetest.NewFixture(100).Write(t, b)
	f := nativeSnapshot(t, b)
	if len(f.SSTs) == 0 {
		t.Fatalf("native checkpoint has no SSTs: %+v", f)
	}
	want := canonical(t, b)

	downloads := 0
	rc := remote(f, statetest.AllKeyGroups, &downloads)
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, filepath.Join(root, "c"), statetest.AllKeyGroups, Options{Native: natives})
	if err := c.RestoreNative(context.Background(), []any{rc}); err != nil {
		t.Fatal(err)
	}
	if downloads != 1 {
		t.Errorf("%d downloads, want 1", downloads)
	}
	if got := canonical(t, c); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs:\n%s", statetest.DiffSnapshots(want, got))
	}
	// The restored DB's next checkpoint names the restored SSTs by the IDs
	// they were uploaded under: an incremental checkpoint reuses them.
	again := nativeSnapshot(t, c)
	for _, sst := range f.SSTs {
		if !slices.Contains(ids(again.SSTs), sst.ID) {
			t.Errorf("SST %s of the restored checkpoint is not in the next one: %q", sst.ID, ids(again.SSTs))
		}
	}
}

// canonical returns b's canonical snapshot, whatever its mode.
func canonical(t *testing.T, b *Backend) *state.Snapshot {
	t.Helper()
	native := b.opts.Native
	b.opts.Native = nil
	defer func() { b.opts.Native = native }()
	return statetest.Must(b.Snapshot())(t)
}

// Native checkpoints of two subtasks restore into three: each new subtask
// copies its key groups out of the old checkpoints that hold them.
func TestNativeRestoreRescales(t *testing.T) {
	root := t.TempDir()
	natives := NewNativeSnapshots()
	heap := state.NewHeapBackend(statetest.AllKeyGroups)
	statetest.NewFixture(200).Write(t, heap)
	want := statetest.Must(heap.Snapshot())(t)
	var olds []any
	downloads := 0
	for i := range 2 {
		r := keygroup.RangeForOperator(statetest.MaxParallelism, 2, i)
		b := openTest(t, filepath.Join(root, "old", string(rune('a'+i))), r, Options{Native: natives})
		if err := b.Restore(want); err != nil {
			t.Fatal(err)
		}
		olds = append(olds, remote(nativeSnapshot(t, b), r, &downloads), nil)
	}
	for i := range 3 {
		r := keygroup.RangeForOperator(statetest.MaxParallelism, 3, i)
		n := openTest(t, filepath.Join(root, "new", string(rune('a'+i))), r, Options{})
		if err := n.RestoreNative(context.Background(), olds); err != nil {
			t.Fatal(err)
		}
		wantPart := &state.Snapshot{}
		for _, g := range want.KeyGroups {
			if r.Contains(g.KeyGroup) {
				wantPart.KeyGroups = append(wantPart.KeyGroups, g)
			}
		}
		if got := canonical(t, n); !reflect.DeepEqual(got, wantPart) {
			t.Fatalf("subtask %d of 3 (%v) restored:\n%s", i, r, statetest.DiffSnapshots(wantPart, got))
		}
		// The copies are gone.
		if m, _ := filepath.Glob(n.dir + ".restore-*"); len(m) > 0 {
			t.Errorf("restore left %q", m)
		}
	}
	// Subtask 1 of 3 overlaps both old subtasks; the others one each.
	if downloads != 4 {
		t.Errorf("%d downloads, want 4", downloads)
	}
}

// A native checkpoint reads back as canonical state for another backend,
// locally (a savepoint of a backend in native mode) or remotely (a heap
// backend restoring an incremental checkpoint).
func TestNativeCheckpointReadsCanonical(t *testing.T) {
	root := t.TempDir()
	natives := NewNativeSnapshots()
	b := openTest(t, filepath.Join(root, "a"), statetest.AllKeyGroups, Options{Native: natives})
	statetest.NewFixture(50).Write(t, b)
	f := nativeSnapshot(t, b)
	want := canonical(t, b)
	half := keygroup.Range{Start: 0, End: 63}

	local := statetest.Must(f.ReadCanonical(half))(t)
	heap := state.NewHeapBackend(half)
	if err := heap.Restore(want); err != nil {
		t.Fatal(err)
	}
	if wantHalf := statetest.Must(heap.Snapshot())(t); !reflect.DeepEqual(local, wantHalf) {
		t.Fatalf("local checkpoint read as canonical:\n%s", statetest.DiffSnapshots(wantHalf, local))
	}
	if _, err := os.Stat(f.Dir + ".read"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadCanonical left its copy: %v", err)
	}

	downloads := 0
	rc := remote(f, statetest.AllKeyGroups, &downloads)
	var ns state.NativeState = rc
	got := statetest.Must(ns.ReadCanonical(context.Background(), statetest.AllKeyGroups))(t)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("remote checkpoint read as canonical:\n%s", statetest.DiffSnapshots(want, got))
	}
}

// A checkpoint whose placeholder nobody took (the checkpoint was declined)
// is deleted at the next snapshot; Dispose deletes the DB and leaves taken
// checkpoints to their takers.
func TestNativeSnapshotCleanup(t *testing.T) {
	root := t.TempDir()
	natives := NewNativeSnapshots()
	b := openTest(t, filepath.Join(root, "a"), statetest.AllKeyGroups, Options{Native: natives})
	statetest.NewFixture(10).Write(t, b)
	s1 := statetest.Must(b.Snapshot())(t)
	first := filepath.Join(root, "a"+checkpointsSuffix, "1")
	if _, err := os.Stat(first); err != nil {
		t.Fatal(err)
	}
	taken := nativeSnapshot(t, b) // the second; the first was never taken
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("untaken checkpoint %s still there: %v", first, err)
	}
	if _, ok := natives.Take(s1); ok {
		t.Error("the untaken placeholder can still be taken")
	}
	if _, err := os.Stat(taken.Dir); err != nil {
		t.Errorf("taken checkpoint: %v", err)
	}
	if err := b.Dispose(); err != nil {
		t.Fatal(err)
	}
	// The DB is gone; the taken checkpoint is its taker's to remove.
	if _, err := os.Stat(filepath.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DB directory after Dispose: %v", err)
	}
	if _, err := os.Stat(taken.Dir); err != nil {
		t.Errorf("taken checkpoint after Dispose: %v", err)
	}
	if err := taken.Remove(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "*", "*")); len(m) > 0 {
		t.Errorf("left after Dispose and Remove: %q", m)
	}
	if err := b.Dispose(); err != nil {
		t.Errorf("second Dispose: %v", err)
	}
}

// The placeholder cannot be stored as canonical state by mistake.
func TestPlaceholderIsNotCanonical(t *testing.T) {
	p := placeholder()
	for _, g := range p.KeyGroups {
		if g.KeyGroup >= 0 {
			t.Fatalf("placeholder %+v holds a valid key group", p)
		}
	}
}
