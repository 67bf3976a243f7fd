package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

func TestRetainerTable(t *testing.T) {
	r, err := NewRetainer(1)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		add  RetainedCheckpoint
		want []Discard
	}{
		{RetainedCheckpoint{ID: 1, Dir: "j/chk-1", Shared: []string{"s/a", "s/b"}}, nil},
		{RetainedCheckpoint{ID: 2, Dir: "j/chk-2", Shared: []string{"s/c", "s/b", "s/b"}}, []Discard{{ID: 1, Dir: "j/chk-1", Shared: []string{"s/a"}}}},
		{RetainedCheckpoint{ID: 5, Dir: "j/chk-5"}, []Discard{{ID: 2, Dir: "j/chk-2", Shared: []string{"s/b", "s/c"}}}},
		{RetainedCheckpoint{ID: 6, Dir: "j/chk-6", Shared: []string{"s/d"}}, []Discard{{ID: 5, Dir: "j/chk-5"}}},
	}
	for i, s := range steps {
		got, err := r.Add(s.add)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d: Add = %+v, want %+v", i, got, s.want)
		}
		if err := r.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Add(RetainedCheckpoint{ID: 6}); err == nil || !strings.Contains(err.Error(), "increasing IDs") {
		t.Fatalf("repeated ID: %v", err)
	}
	if _, err := r.Abandon(6, "j/chk-6", nil); err == nil {
		t.Fatal("abandoning a retained checkpoint succeeded")
	}
	d, err := r.Abandon(7, "j/chk-7", []string{"s/d", "s/e"})
	if err != nil || !reflect.DeepEqual(d, Discard{ID: 7, Dir: "j/chk-7", Shared: []string{"s/e"}}) {
		t.Fatalf("Abandon = %+v, %v; want only the unreferenced s/e", d, err)
	}
	if _, err := NewRetainer(0); err == nil || !strings.Contains(err.Error(), "state.checkpoints.num-retained=0") {
		t.Fatalf("NewRetainer(0): %v", err)
	}
}

// TestRetainerRandom checks the Retainer against a brute-force model: the
// retained checkpoints are the newest n added, and a discarded shared file
// is one the subsumed checkpoint named and no retained checkpoint names.
func TestRetainerRandom(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 1 + rng.IntN(4)
		r, _ := NewRetainer(n)
		var all []RetainedCheckpoint
		id := int64(0)
		for range 60 {
			id += 1 + rng.Int64N(3)
			var shared []string
			for range rng.IntN(6) {
				shared = append(shared, fmt.Sprintf("s/%d", rng.IntN(12)))
			}
			c := RetainedCheckpoint{ID: id, Dir: CheckpointDir("j", id), Shared: shared}
			discards, err := r.Add(c)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, c)
			retained := all[max(0, len(all)-n):]
			if got := r.Retained(); len(got) != len(retained) || got[0].ID != retained[0].ID {
				t.Fatalf("seed %d: retained %v, want the newest %d", seed, got, n)
			}
			named := map[string]bool{}
			for _, rc := range retained {
				for _, f := range rc.Shared {
					named[f] = true
				}
			}
			for _, d := range discards {
				old := all[slices.IndexFunc(all, func(c RetainedCheckpoint) bool { return c.ID == d.ID })]
				var want []string
				for _, f := range old.Shared {
					if !named[f] {
						want = append(want, f)
					}
				}
				want = slices.Compact(slices.Sorted(slices.Values(want)))
				if !slices.Equal(d.Shared, want) {
					t.Fatalf("seed %d: discarding %d deletes %v, want %v", seed, d.ID, d.Shared, want)
				}
			}
			if err := r.checkInvariants(); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
	}
}

// faultyStorage fails deletions after a budget of them, to simulate a
// crash (or an outage) in the middle of deleting a checkpoint.
type faultyStorage struct {
	Storage
	deletesLeft int // < 0: unlimited
}

var errInjected = errors.New("injected deletion failure")

func (f *faultyStorage) spend() error {
	if f.deletesLeft == 0 {
		return errInjected
	}
	if f.deletesLeft > 0 {
		f.deletesLeft--
	}
	return nil
}

func (f *faultyStorage) Delete(ctx context.Context, name string) error {
	if err := f.spend(); err != nil {
		return err
	}
	return f.Storage.Delete(ctx, name)
}

func (f *faultyStorage) DeleteAll(ctx context.Context, dir string) error {
	if err := f.spend(); err != nil {
		return err
	}
	// Delete part of the directory before failing, as a crash would.
	files, _ := f.Storage.ListAll(ctx, dir)
	if len(files) > 1 && f.deletesLeft == 0 {
		f.Storage.Delete(ctx, files[0].Name)
		return errInjected
	}
	return f.Storage.DeleteAll(ctx, dir)
}

// jobSim simulates the checkpoints of one job over a Storage: it writes
// checkpoints the way a coordinator with an incremental backend would
// (exclusive files, new shared uploads, reuse of the latest completed
// checkpoint's shared files, _metadata last) and keeps the model of which
// checkpoints are complete.
type jobSim struct {
	t           *testing.T
	st          Storage
	rng         *rand.Rand
	n           int
	ret         *Retention
	nextID      int64
	completed   []int64                          // IDs of complete checkpoints not yet deleted, ascending
	metadata    map[int64]*checkpointpb.Metadata // by ID
	checkpoints int
}

func (j *jobSim) ctx() context.Context { return context.Background() }

// write writes the files of checkpoint id, and its metadata if complete.
// It returns the metadata and the shared files it uploaded.
func (j *jobSim) write(st Storage, id int64, complete bool) (*checkpointpb.Metadata, []string) {
	t, ctx := j.t, j.ctx()
	loc := CheckpointLocation(testJobID, id)
	sub := &checkpointpb.SubtaskState{Subtask: 0, KeyGroupStart: 0, KeyGroupEnd: 7}
	put := func(name string) Written {
		data := make([]byte, 1+j.rng.IntN(50))
		w, err := PutBytes(ctx, st, name, data)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	for i := range j.rng.IntN(3) {
		path := fmt.Sprintf("op-0-%d.keyed", i)
		w := put(Join(loc.Dir, path))
		sub.KeyedState = append(sub.KeyedState, &checkpointpb.StateHandle{Handle: &checkpointpb.StateHandle_File{File: FileHandleOf(checkpointpb.Scope_EXCLUSIVE, path, w)}})
	}
	native := &checkpointpb.NativeKeyedState{Backend: "pebble"}
	// Reuse some SSTs of the latest completed checkpoint (the reuse rule).
	if len(j.completed) > 0 {
		latest := j.metadata[j.completed[len(j.completed)-1]]
		for _, f := range latest.Operators[0].Subtasks[0].GetNativeKeyedState().GetSharedFiles() {
			if j.rng.IntN(3) > 0 {
				native.SharedFiles = append(native.SharedFiles, f)
			}
		}
	}
	var uploaded []string
	for range j.rng.IntN(4) {
		j.checkpoints++
		backendName := fmt.Sprintf("%06d.sst", j.checkpoints)
		path := NewSharedName(backendName)
		w := put(Join(loc.SharedDir, path))
		uploaded = append(uploaded, Join(loc.SharedDir, path))
		native.SharedFiles = append(native.SharedFiles, &checkpointpb.BackendFile{Name: backendName, Id: "inc/" + backendName, File: FileHandleOf(checkpointpb.Scope_SHARED, path, w)})
	}
	slices.SortFunc(native.SharedFiles, func(a, b *checkpointpb.BackendFile) int { return strings.Compare(a.Name, b.Name) })
	w := put(Join(loc.Dir, "MANIFEST-000001"))
	native.PrivateFiles = []*checkpointpb.BackendFile{{Name: "MANIFEST-000001", File: FileHandleOf(checkpointpb.Scope_EXCLUSIVE, "MANIFEST-000001", w)}}
	sub.NativeKeyedState = native
	md := &checkpointpb.Metadata{JobId: testJobID, CheckpointId: id, Kind: checkpointpb.Kind_CHECKPOINT,
		Operators: []*checkpointpb.OperatorState{{Uid: "op", Parallelism: 1, MaxParallelism: 8, Subtasks: []*checkpointpb.SubtaskState{sub}}}}
	if complete {
		if _, err := WriteMetadata(ctx, st, loc, md); err != nil {
			t.Fatal(err)
		}
	}
	return md, uploaded
}

// complete takes checkpoint nextID and tells retention; st may fail.
func (j *jobSim) complete(st Storage) error {
	id := j.nextID
	j.nextID++
	md, _ := j.write(st, id, true)
	j.completed = append(j.completed, id)
	j.metadata[id] = md
	err := j.ret.Completed(j.ctx(), md)
	// Whatever happened to the deletions, only the newest n are retained.
	j.completed = j.completed[max(0, len(j.completed)-j.n):]
	return err
}

func (j *jobSim) restart() RebuildReport {
	ret, rep, err := OpenRetention(j.ctx(), j.st, testJobID, j.n)
	if err != nil {
		j.t.Fatal(err)
	}
	j.ret = ret
	return rep
}

// check asserts that the job's files on storage are exactly the files of
// the retained checkpoints: their _metadata and every file they name.
func (j *jobSim) check(step string) {
	t, ctx := j.t, j.ctx()
	want := map[string]bool{}
	for _, id := range j.completed {
		loc := CheckpointLocation(testJobID, id)
		refs, err := ReferencedFiles(loc, j.metadata[id])
		if err != nil {
			t.Fatal(err)
		}
		want[loc.MetadataFile()] = true
		for _, f := range slices.Concat(refs.Exclusive, refs.Shared) {
			want[f] = true
		}
	}
	files, err := j.st.ListAll(ctx, JobDir(testJobID))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Name)
	}
	wantList := slices.Sorted(func(yield func(string) bool) {
		for f := range want {
			if !yield(f) {
				return
			}
		}
	})
	if !slices.Equal(got, wantList) {
		var extra, missing []string
		for _, f := range got {
			if !want[f] {
				extra = append(extra, f)
			}
		}
		for _, f := range wantList {
			if !slices.Contains(got, f) {
				missing = append(missing, f)
			}
		}
		t.Fatalf("after %s (retained %v): files not needed by a retained checkpoint: %v; files missing: %v", step, j.completed, extra, missing)
	}
	var ids []int64
	for _, c := range j.ret.Retained() {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, j.completed) && !(len(ids) == 0 && len(j.completed) == 0) {
		t.Fatalf("after %s: Retention retains %v, the model %v", step, ids, j.completed)
	}
	if len(j.completed) > 0 {
		found, err := Latest(ctx, j.st, testJobID)
		if err != nil {
			t.Fatalf("after %s: Latest: %v", step, err)
		}
		if latest := j.completed[len(j.completed)-1]; found.Metadata.GetCheckpointId() != latest || !proto.Equal(found.Metadata, j.metadata[latest]) {
			t.Fatalf("after %s: Latest found %d, want %d", step, found.Metadata.GetCheckpointId(), latest)
		}
	} else if _, err := Latest(ctx, j.st, testJobID); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("after %s: Latest with no checkpoint: %v", step, err)
	}
}

// TestRetentionRandom runs random sequences of checkpoints, aborts, crashes
// while writing or deleting, corrupt metadata and restarts, and checks after
// every step that the files on storage are exactly those the retained
// checkpoints need.
func TestRetentionRandom(t *testing.T) {
	for _, b := range backends()[:2] {
		t.Run(b.name, func(t *testing.T) {
			seeds := uint64(12)
			if b.name != "file" {
				seeds = 4
			}
			injected, swept := 0, 0
			defer func() {
				if injected == 0 || swept == 0 {
					t.Errorf("the sequences injected %d deletion failures and rebuilt away %d leftovers; the test is not exercising crashes", injected, swept)
				}
			}()
			for seed := range seeds {
				rng := rand.New(rand.NewPCG(seed, 2024))
				st := b.open(t)
				j := &jobSim{t: t, st: st, rng: rng, n: 1 + rng.IntN(3), nextID: 1, metadata: map[int64]*checkpointpb.Metadata{}}
				j.restart() // a fresh job: nothing to rebuild
				j.check("start")
				for step := range 40 {
					var what string
					switch op := rng.IntN(10); {
					case op < 4:
						what = "complete"
						if err := j.complete(st); err != nil {
							t.Fatal(err)
						}
					case op == 4:
						what = "abort"
						id := j.nextID
						j.nextID++
						_, uploaded := j.write(st, id, false)
						if err := j.ret.Abandoned(j.ctx(), id, uploaded); err != nil {
							t.Fatal(err)
						}
					case op == 5:
						what = "crash while writing, restart"
						j.write(st, j.nextID, false)
						j.nextID++
						swept += j.restart().Deleted
					case op == 6:
						what = "crash while deleting, restart"
						j.ret.st = &faultyStorage{Storage: st, deletesLeft: rng.IntN(4)}
						if err := j.complete(st); errors.Is(err, errInjected) {
							injected++
						} else if err != nil {
							t.Fatal(err)
						}
						swept += j.restart().Deleted
					case op == 7:
						what = "failed deletion, retried by the next checkpoint"
						j.ret.st = &faultyStorage{Storage: st, deletesLeft: rng.IntN(3)}
						if err := j.complete(st); errors.Is(err, errInjected) {
							injected++
							if len(j.ret.Pending()) == 0 {
								t.Fatal("a failed deletion left nothing pending")
							}
						} else if err != nil {
							t.Fatal(err)
						}
						j.ret.st = st
						if err := j.complete(st); err != nil {
							t.Fatal(err)
						}
					case op == 8:
						what = "restart"
						swept += j.restart().Deleted
					case op == 9:
						what = "corrupt latest metadata, restart"
						if len(j.completed) == 0 {
							continue
						}
						latest := j.completed[len(j.completed)-1]
						loc := CheckpointLocation(testJobID, latest)
						b, _ := ReadAll(j.ctx(), st, loc.MetadataFile())
						b = b[:len(b)/2]
						PutBytes(j.ctx(), st, loc.MetadataFile(), b)
						found, err := Latest(j.ctx(), st, testJobID)
						if len(j.completed) > 1 {
							if err != nil || found.Metadata.GetCheckpointId() != j.completed[len(j.completed)-2] ||
								len(found.Skipped) != 1 || !strings.Contains(found.Skipped[0], "truncated") {
								t.Fatalf("Latest with a corrupt newest checkpoint = %+v, %v", found, err)
							}
						} else if !errors.Is(err, ErrNoCheckpoint) || !strings.Contains(err.Error(), "truncated") {
							t.Fatalf("Latest with the only checkpoint corrupt: %v", err)
						}
						j.completed = j.completed[:len(j.completed)-1]
						rep := j.restart()
						if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], fmt.Sprintf("checkpoint %d", latest)) {
							t.Fatalf("rebuild warnings = %v", rep.Warnings)
						}
					}
					j.check(fmt.Sprintf("seed %d step %d (%s)", seed, step, what))
				}
			}
		})
	}
}

func TestRetentionNeverTouchesTaskOwnedOrForeignFiles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Storage) {
		ctx := context.Background()
		keep := []string{
			Join(testJobID, TaskOwnedDirName, "sink/txn-1"),
			Join(testJobID, "notes.txt"),
			Join(testJobID, "chk-x", "file"),
			Join("other-job", "chk-1", MetadataName),
			Join("other-job", SharedDirName, "f"),
		}
		for _, f := range keep {
			if _, err := PutBytes(ctx, st, f, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		j := &jobSim{t: t, st: st, rng: rand.New(rand.NewPCG(1, 1)), n: 1, nextID: 1, metadata: map[int64]*checkpointpb.Metadata{}}
		j.restart()
		for range 4 {
			if err := j.complete(st); err != nil {
				t.Fatal(err)
			}
		}
		j.restart()
		for _, f := range keep {
			if _, err := st.Stat(ctx, f); err != nil {
				t.Errorf("%s was deleted: %v", f, err)
			}
		}
	})
}

func TestOpenRetentionFailsWithoutDeletingOnReadErrors(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	j := &jobSim{t: t, st: st, rng: rand.New(rand.NewPCG(5, 5)), n: 1, nextID: 1, metadata: map[int64]*checkpointpb.Metadata{}}
	j.restart()
	for range 3 {
		if err := j.complete(st); err != nil {
			t.Fatal(err)
		}
	}
	// An orphan that a successful rebuild would delete.
	orphan := Join(testJobID, SharedDirName, "orphan")
	PutBytes(ctx, st, orphan, []byte("x"))
	// A metadata file from a newer Weir is not corruption: refuse to guess.
	latest := CheckpointLocation(testJobID, j.completed[0]).MetadataFile()
	b, _ := ReadAll(ctx, st, latest)
	b[8] = 9
	PutBytes(ctx, st, latest, b)
	if _, _, err := OpenRetention(ctx, st, testJobID, 1); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("OpenRetention with a newer-format metadata: %v", err)
	}
	if _, err := Latest(ctx, st, testJobID); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("Latest with a newer-format metadata: %v", err)
	}
	if _, err := st.Stat(ctx, orphan); err != nil {
		t.Fatalf("a failed rebuild deleted files: %v", err)
	}
	// An I/O error likewise.
	if _, _, err := OpenRetention(ctx, &unreadable{st}, testJobID, 1); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("OpenRetention with unreadable metadata: %v", err)
	}
	if _, err := st.Stat(ctx, orphan); err != nil {
		t.Fatalf("a failed rebuild deleted files: %v", err)
	}
}

// unreadable is a Storage whose files cannot be opened.
type unreadable struct{ Storage }

func (u *unreadable) Open(context.Context, string) (File, error) {
	return nil, errors.New("disk on fire")
}

func TestRetentionRejects(t *testing.T) {
	ctx := context.Background()
	st, _ := Open(ctx, t.TempDir())
	ret, _, err := OpenRetention(ctx, st, testJobID, 2)
	if err != nil {
		t.Fatal(err)
	}
	md := sampleMetadata(3)
	md.JobId = "ffffffffffffffffffffffffffffffff"
	if err := ret.Completed(ctx, md); err == nil || !strings.Contains(err.Error(), "belongs to job") {
		t.Errorf("another job's checkpoint: %v", err)
	}
	md = sampleMetadata(3)
	md.Kind, md.SavepointFormat = checkpointpb.Kind_SAVEPOINT, checkpointpb.SavepointFormat_CANONICAL
	if err := ret.Completed(ctx, md); err == nil || !strings.Contains(err.Error(), "savepoints belong to the user") {
		t.Errorf("a savepoint: %v", err)
	}
	if _, _, err := OpenRetention(ctx, st, "../x", 1); err == nil {
		t.Error("a job ID with .. accepted")
	}
	if _, err := Latest(ctx, st, testJobID); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Latest of a job without checkpoints: %v", err)
	}
}

// TestSavepointIsRelocatable writes a savepoint, moves its directory, and
// restores from the new place.
func TestSavepointIsRelocatable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Storage) {
		ctx := context.Background()
		dir := NewSavepointDirName(testJobID)
		loc := SavepointLocation(dir)
		w, err := PutBytes(ctx, st, Join(dir, "op-0.keyed"), []byte("state"))
		if err != nil {
			t.Fatal(err)
		}
		md := &checkpointpb.Metadata{JobId: testJobID, CheckpointId: 4, Kind: checkpointpb.Kind_SAVEPOINT, SavepointFormat: checkpointpb.SavepointFormat_CANONICAL,
			Operators: []*checkpointpb.OperatorState{{Uid: "op", Parallelism: 1, MaxParallelism: 8, Subtasks: []*checkpointpb.SubtaskState{
				{KeyGroupStart: 0, KeyGroupEnd: 7, KeyedState: []*checkpointpb.StateHandle{{Handle: &checkpointpb.StateHandle_File{File: FileHandleOf(checkpointpb.Scope_EXCLUSIVE, "op-0.keyed", w)}}}}}}}}
		if _, err := WriteMetadata(ctx, st, loc, md); err != nil {
			t.Fatal(err)
		}
		// "Move" it: copy every file under a new directory, delete the old.
		files, _ := st.ListAll(ctx, dir)
		for _, f := range files {
			b, _ := ReadAll(ctx, st, f.Name)
			PutBytes(ctx, st, Join("moved", strings.TrimPrefix(f.Name, dir+"/")), b)
		}
		st.DeleteAll(ctx, dir)
		moved := SavepointLocation("moved")
		got, err := ReadMetadata(ctx, st, moved)
		if err != nil {
			t.Fatal(err)
		}
		f, err := OpenState(ctx, st, moved, got.Operators[0].Subtasks[0].KeyedState[0])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		if string(b) != "state" {
			t.Fatalf("state read from the moved savepoint = %q", b)
		}
	})
}

func TestOpenRestorePoint(t *testing.T) {
	ctx := context.Background()
	srv := startS3(t, "weir")
	s3opts := Options{S3: S3Options{Endpoint: srv.URL, Region: "us-east-1", AccessKey: testAccessKey, SecretKey: testSecretKey, PathStyleAccess: true, MaxRetries: 1}}
	dir := t.TempDir()
	for _, root := range []string{"file://" + dir, "s3://weir/base"} {
		st, err := OpenWith(ctx, root, s3opts)
		if err != nil {
			t.Fatal(err)
		}
		// A retained checkpoint with shared files.
		j := &jobSim{t: t, st: st, rng: rand.New(rand.NewPCG(8, 8)), n: 1, nextID: 1, metadata: map[int64]*checkpointpb.Metadata{}}
		j.restart()
		for {
			if err := j.complete(st); err != nil {
				t.Fatal(err)
			}
			if len(j.metadata[j.nextID-1].Operators[0].Subtasks[0].GetNativeKeyedState().GetSharedFiles()) > 0 {
				break
			}
		}
		id := j.nextID - 1
		for _, uri := range []string{
			root + "/" + CheckpointDir(testJobID, id),
			root + "/" + CheckpointDir(testJobID, id) + "/",
			root + "/" + CheckpointDir(testJobID, id) + "/_metadata",
		} {
			rp, err := OpenRestorePoint(ctx, uri, s3opts)
			if err != nil {
				t.Fatalf("%s: %v", uri, err)
			}
			if !proto.Equal(rp.Metadata, j.metadata[id]) {
				t.Fatalf("%s: wrong metadata", uri)
			}
			for _, f := range rp.Metadata.Operators[0].Subtasks[0].NativeKeyedState.SharedFiles {
				name, err := rp.Location.Resolve(f.File)
				if err != nil {
					t.Fatal(err)
				}
				if err := Fetch(ctx, rp.Storage, name, f.File.Size, f.File.Crc32C, io.Discard); err != nil {
					t.Fatalf("%s: shared file: %v", uri, err)
				}
			}
			rp.Storage.Close()
		}
		// A savepoint.
		spDir := NewSavepointDirName(testJobID)
		sp := &checkpointpb.Metadata{JobId: testJobID, CheckpointId: 9, Kind: checkpointpb.Kind_SAVEPOINT, SavepointFormat: checkpointpb.SavepointFormat_CANONICAL}
		if _, err := WriteMetadata(ctx, st, SavepointLocation(spDir), sp); err != nil {
			t.Fatal(err)
		}
		for _, uri := range []string{root + "/" + spDir, root + "/" + spDir + "/_metadata"} {
			rp, err := OpenRestorePoint(ctx, uri, s3opts)
			if err != nil || rp.Metadata.GetKind() != checkpointpb.Kind_SAVEPOINT || rp.Location != (Location{}) {
				t.Fatalf("%s: %+v, %v", uri, rp, err)
			}
			rp.Storage.Close()
		}
		// Nothing there.
		_, err = OpenRestorePoint(ctx, root+"/no-such-savepoint", s3opts)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no-such-savepoint") {
			t.Fatalf("missing savepoint: %v", err)
		}
		st.Close()
	}
	if _, err := os.Stat(dir + "/no-such-savepoint"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenRestorePoint created the missing directory: %v", err)
	}
}
