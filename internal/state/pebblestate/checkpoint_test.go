package pebblestate

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/statetest"
)

func checkpoint(t *testing.T, b *Backend, dir string) Files {
	t.Helper()
	f, err := b.Checkpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func restore(t *testing.T, ckpt string, r keygroup.Range) *Backend {
	t.Helper()
	b, err := OpenFromCheckpoint(ckpt, filepath.Join(t.TempDir(), "work"), r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ids(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func names(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

// writeMore changes the fixture's state: new keys, cleared keys and maps,
// longer lists.
func writeMore(t *testing.T, b state.Backend) {
	s := statetest.NewFixture(0).Register(t, b)
	for i := range 100 {
		k := fmt.Sprintf("key-%03d", i)
		statetest.At(b, k, "")
		switch i % 4 {
		case 0:
			s.Value.Clear()
			s.Map.Clear()
		case 1:
			s.List.Add(99)
		case 2:
			s.Reduce.Clear()
		}
		statetest.At(b, fmt.Sprintf("new-%03d", i), "")
		s.Value.Update("new")
	}
}

// Write, checkpoint, change, checkpoint again: the second checkpoint
// shares the first's SSTs and adds new ones, and each restores exactly the
// state at its checkpoint.
func TestIncrementalCheckpoints(t *testing.T) {
	root := t.TempDir()
	b := openTest(t, filepath.Join(root, "work"), statetest.AllKeyGroups, Options{})
	statetest.NewFixture(100).Write(t, b)
	files1 := checkpoint(t, b, filepath.Join(root, "ckpt-1"))
	snap1 := statetest.Must(b.Snapshot())(t)

	writeMore(t, b)
	files2 := checkpoint(t, b, filepath.Join(root, "ckpt-2"))
	snap2 := statetest.Must(b.Snapshot())(t)
	if reflect.DeepEqual(snap1, snap2) {
		t.Fatal("writeMore changed nothing")
	}

	t.Logf("checkpoint 1: %+v\ncheckpoint 2: %+v", files1, files2)
	if len(files1.SSTs) == 0 {
		t.Fatalf("first checkpoint has no SSTs: %+v", files1)
	}
	// Two flushes leave two L0 files, below Pebble's compaction trigger
	// (4), so every SST of the first checkpoint is still live.
	var shared, added []string
	for _, f := range files2.SSTs {
		if slices.Contains(ids(files1.SSTs), f.ID) {
			shared = append(shared, f.ID)
		} else {
			added = append(added, f.ID)
		}
	}
	if len(shared) != len(files1.SSTs) || len(added) == 0 {
		t.Errorf("second checkpoint shares %q and adds %q; first had %q", shared, added, ids(files1.SSTs))
	}
	for _, fs := range []Files{files1, files2} {
		for _, f := range fs.SSTs {
			if !strings.HasSuffix(f.ID, "/"+f.Name) || len(f.ID) != 32+1+len(f.Name) || f.Size <= 0 {
				t.Errorf("SST %+v", f)
			}
		}
		other := names(fs.Other)
		for _, want := range []string{LineageFile, "MANIFEST-", "OPTIONS-"} {
			if !slices.ContainsFunc(other, func(n string) bool { return strings.HasPrefix(n, want) }) {
				t.Errorf("other files %q lack %s", other, want)
			}
		}
		for _, f := range fs.Other {
			if f.ID != "" {
				t.Errorf("other file %+v has an ID", f)
			}
		}
	}

	for i, c := range []struct {
		files Files
		snap  *state.Snapshot
	}{{files1, snap1}, {files2, snap2}} {
		r := restore(t, c.files.Dir, statetest.AllKeyGroups)
		if got := statetest.Must(r.Snapshot())(t); !reflect.DeepEqual(got, c.snap) {
			t.Fatalf("restored checkpoint %d differs:\n%s", i+1, statetest.DiffSnapshots(c.snap, got))
		}
		// The checkpoint directory is left as it was.
		again, err := listFiles(c.files.Dir, b.lineage)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, c.files) {
			t.Errorf("checkpoint %d changed by restoring it:\n%+v\n%+v", i+1, c.files, again)
		}
	}
	// The backend goes on after its checkpoints.
	statetest.NewFixture(100).Check(t, restore(t, files1.Dir, statetest.AllKeyGroups))
}

// A restored backend's checkpoints name inherited SSTs as they were named
// when uploaded, and its own SSTs with a new incarnation, even when two
// restores of one checkpoint write files with the same names.
func TestCheckpointIDsAcrossRestores(t *testing.T) {
	root := t.TempDir()
	b := openTest(t, filepath.Join(root, "work"), statetest.AllKeyGroups, Options{})
	statetest.NewFixture(50).Write(t, b)
	files1 := checkpoint(t, b, filepath.Join(root, "ckpt-1"))

	var forks []Files
	for i := range 2 {
		r := restore(t, files1.Dir, statetest.AllKeyGroups)
		s := statetest.Must(state.NewValueState[int](r, "fork"))(t)
		statetest.At(r, "k", "")
		s.Update(i)
		forks = append(forks, checkpoint(t, r, filepath.Join(root, fmt.Sprintf("fork-%d", i))))
	}
	// The original goes on too.
	s := statetest.Must(state.NewValueState[int](b, "fork"))(t)
	statetest.At(b, "k", "")
	s.Update(2)
	forks = append(forks, checkpoint(t, b, filepath.Join(root, "ckpt-2")))

	owner := map[string]int{} // ID → fork that added it
	for i, f := range forks {
		var added []File
		for _, sst := range f.SSTs {
			if !slices.Contains(ids(files1.SSTs), sst.ID) {
				added = append(added, sst)
			}
		}
		if len(added) == 0 {
			t.Fatalf("fork %d added no SST: %+v", i, f.SSTs)
		}
		for _, sst := range added {
			if j, ok := owner[sst.ID]; ok {
				t.Errorf("forks %d and %d both wrote SST ID %s", j, i, sst.ID)
			}
			owner[sst.ID] = i
		}
		for _, sst := range files1.SSTs {
			if !slices.Contains(ids(f.SSTs), sst.ID) {
				if i == len(forks)-1 {
					// The original has been running since checkpoint 1: a
					// background compaction may have replaced the SST.
					t.Logf("the original compacted inherited SST %s away", sst.ID)
					continue
				}
				t.Errorf("fork %d lost inherited SST %s", i, sst.ID)
			}
		}
	}
	// The forks' new SSTs have the same names: the IDs tell them apart.
	if n0, n1 := names(forks[0].SSTs), names(forks[1].SSTs); !slices.Equal(n0, n1) {
		t.Logf("forks named their SSTs differently (%q, %q); the test shows less", n0, n1)
	}
	for i, f := range forks {
		r := restore(t, f.Dir, statetest.AllKeyGroups)
		v := statetest.Must(state.NewValueState[int](r, "fork"))(t)
		statetest.At(r, "k", "")
		if got, ok := v.Value(); got != i || !ok {
			t.Errorf("fork %d restored (%d, %v)", i, got, ok)
		}
	}
}

// Opening a checkpoint with a narrower range keeps only its key groups.
func TestOpenFromCheckpointNarrower(t *testing.T) {
	root := t.TempDir()
	b := openTest(t, filepath.Join(root, "work"), statetest.AllKeyGroups, Options{})
	f := statetest.NewFixture(200)
	f.Write(t, b)
	files := checkpoint(t, b, filepath.Join(root, "ckpt"))
	all := statetest.Must(b.Snapshot())(t)
	for i := range 3 {
		r := keygroup.RangeForOperator(statetest.MaxParallelism, 3, i)
		nb := restore(t, files.Dir, r)
		want := &state.Snapshot{}
		for _, g := range all.KeyGroups {
			if r.Contains(g.KeyGroup) {
				want.KeyGroups = append(want.KeyGroups, g)
			}
		}
		if got := statetest.Must(nb.Snapshot())(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("subtask %d of 3: snapshot differs:\n%s", i, statetest.DiffSnapshots(want, got))
		}
		f.Check(t, nb)
	}
}

func TestCheckpointErrors(t *testing.T) {
	root := t.TempDir()
	b := openTest(t, filepath.Join(root, "work"), statetest.AllKeyGroups, Options{})
	statetest.NewFixture(5).Write(t, b)
	files := checkpoint(t, b, filepath.Join(root, "ckpt"))
	if _, err := b.Checkpoint(files.Dir); err == nil {
		t.Error("checkpoint into an existing directory succeeded")
	}
	busy := filepath.Join(root, "busy")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFromCheckpoint(files.Dir, busy, statetest.AllKeyGroups, Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a non-empty directory: %v", err)
	}
	empty := filepath.Join(root, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFromCheckpoint(empty, filepath.Join(root, "w2"), statetest.AllKeyGroups, Options{}); err == nil {
		t.Error("restore from an empty checkpoint directory succeeded")
	}
}

// With the WAL on, a checkpoint is still complete (the memtable is
// flushed), and restores.
func TestCheckpointWithWAL(t *testing.T) {
	root := t.TempDir()
	b := openTest(t, filepath.Join(root, "work"), statetest.AllKeyGroups, Options{WAL: true})
	f := statetest.NewFixture(50)
	f.Write(t, b)
	files := checkpoint(t, b, filepath.Join(root, "ckpt"))
	want := statetest.Must(b.Snapshot())(t)
	r := restore(t, files.Dir, statetest.AllKeyGroups)
	if got := statetest.Must(r.Snapshot())(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored differs:\n%s", statetest.DiffSnapshots(want, got))
	}
}

func TestLineage(t *testing.T) {
	lineage := []lineageEntry{{start: 1, id: strings.Repeat("a", 32)}, {start: 10, id: strings.Repeat("b", 32)}}
	for n, want := range map[uint64]string{1: "a", 9: "a", 10: "b", 1000: "b"} {
		if id, ok := incarnationOf(lineage, n); !ok || id[:1] != want {
			t.Errorf("file %d: (%q, %v), want %s…", n, id, ok, want)
		}
	}
	if _, ok := incarnationOf(lineage, 0); ok {
		t.Error("file 0 has an incarnation")
	}
	dir := t.TempDir()
	if err := writeLineage(dir, lineage); err != nil {
		t.Fatal(err)
	}
	got, err := readLineage(dir)
	if err != nil || !reflect.DeepEqual(got, lineage) {
		t.Errorf("read back %+v, %v", got, err)
	}
	for name, want := range map[string]uint64{"000012.sst": 12, "000003.log": 3, "MANIFEST-000005": 5, "OPTIONS-000007": 7} {
		if n, ok := fileNum(name); !ok || n != want {
			t.Errorf("fileNum(%q) = %d, %v", name, n, ok)
		}
	}
	for _, name := range []string{LineageFile, "marker.manifest.000001.MANIFEST-000001", "LOCK", "x.sst.tmp"} {
		if n, ok := fileNum(name); ok {
			t.Errorf("fileNum(%q) = %d", name, n)
		}
	}
}
