package pebblestate

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/statetest"
)

func openTest(t testing.TB, dir string, r keygroup.Range, opts Options) *Backend {
	t.Helper()
	b, err := Open(dir, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

func newBackend(t testing.TB, r keygroup.Range) state.Backend {
	return openTest(t, t.TempDir(), r, Options{})
}

func TestBehaviours(t *testing.T) { statetest.RunBehaviours(t, newBackend) }
func TestRawStore(t *testing.T)   { statetest.RunRawStore(t, newBackend) }
func TestSnapshots(t *testing.T)  { statetest.RunSnapshots(t, newBackend) }

// With the WAL on, the backend behaves the same.
func TestWithWAL(t *testing.T) {
	withWAL := func(t testing.TB, r keygroup.Range) state.Backend {
		return openTest(t, t.TempDir(), r, Options{WAL: true})
	}
	statetest.RunRawStore(t, withWAL)
}

// A second seed, with a small memtable so that the random operations are
// spread over flushed SSTs, merges across SSTs and compactions.
func TestRandomOpsAcrossFlushes(t *testing.T) {
	b := openTest(t, t.TempDir(), statetest.AllKeyGroups, Options{MemTableSize: 32 << 10})
	statetest.RunRandomOps(t, 2, 6000, b, state.NewHeapBackend(statetest.AllKeyGroups))
	m := b.db.Metrics()
	t.Logf("%d flushes, %d compactions", m.Flush.Count, m.Compact.Count)
	if m.Flush.Count < 2 {
		t.Errorf("%d flushes, want several", m.Flush.Count)
	}
}

func TestKeyLayout(t *testing.T) {
	k := appendEntryPrefix(nil, 0x1234, 3, []byte("key"), []byte("ns"))
	if want := []byte("\x12\x34\x03\x03key\x02ns"); !bytes.Equal(k, want) {
		t.Errorf("entry prefix = %q, want %q", k, want)
	}
	e, err := decodeEntryKey(append(k, "uk"...))
	if err != nil {
		t.Fatal(err)
	}
	if e.keyGroup != 0x1234 || e.stateID != 3 || string(e.key) != "key" || string(e.ns) != "ns" || string(e.userKey) != "uk" {
		t.Errorf("decoded %+v", e)
	}
	for _, bad := range []string{"", "\x00", "\x00\x00\x80", "\x00\x00\x01\x05ab", "\x00\x00\x01\x01a\x03b"} {
		if _, err := decodeEntryKey([]byte(bad)); err == nil {
			t.Errorf("decoded corrupt key %q", bad)
		}
	}
	for _, c := range []struct{ prefix, want string }{
		{"\x00\x01ab", "\x00\x01ac"},
		{"\x00\x01a\xff", "\x00\x01b"},
		{"\x7f\xff\xff", "\x80"},
	} {
		if got := appendSuccessor(nil, []byte(c.prefix)); string(got) != c.want {
			t.Errorf("successor of %q = %q, want %q", c.prefix, got, c.want)
		}
	}
	// The last key group's end stays below the metadata.
	if end := appendKeyGroup(nil, maxKeyGroups); end[0] >= metaPrefix {
		t.Errorf("key groups end at %x, inside the metadata", end)
	}
}

// Reopening a directory keeps the state ids and kinds: the states read back
// their values, new states get new ids, and kinds are enforced as for
// restored state.
func TestReopenPersistsStateIDs(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, statetest.AllKeyGroups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := statetest.NewFixture(50)
	f.Write(t, b)
	// A state written through the RawStore before it is registered.
	kg := statetest.KeyGroupOf("k")
	if err := b.Put("late", []byte("k"), nil, kg, codec.MustFor[int8]().Append(nil, 1)); err != nil {
		t.Fatal(err)
	}
	late := statetest.Must(state.NewValueState[int8](b, "late"))(t)
	statetest.At(b, "k", "")
	if v, ok := late.Value(); v != 1 || !ok {
		t.Fatalf("late = (%d, %v), want 1", v, ok)
	}
	ids := map[string]uint64{}
	for name, s := range b.states {
		ids[name] = s.id
	}
	want := statetest.Must(b.Snapshot())(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openTest(t, dir, statetest.AllKeyGroups, Options{})
	for name, id := range ids {
		if s := b.states[name]; s == nil || s.id != id {
			t.Errorf("state %q reopened as %+v, want id %d", name, s, id)
		}
	}
	if names := b.Registry().Names(); !reflect.DeepEqual(names, []string{"agg", "late", "list", "map", "reduce", "value"}) {
		t.Errorf("reopened registry holds %q", names)
	}
	// Snapshot before any state is registered: kinds come from the DB.
	if got := statetest.Must(b.Snapshot())(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot after reopening differs:\n%s", statetest.DiffSnapshots(want, got))
	}
	f.Check(t, b)
	if _, err := state.NewListState[int8](b, "late"); err == nil || !strings.Contains(err.Error(), "restored as value state") {
		t.Errorf("registering a reopened value state as a list: %v", err)
	}
	fresh := statetest.Must(state.NewValueState[string](b, "fresh"))(t)
	fresh.Update("x")
	if id := b.states["fresh"].id; id <= uint64(len(ids)) {
		t.Errorf("new state got id %d, which a reopened state may hold (%v)", id, ids)
	}
}

// Open keeps only its key groups: reopening with a narrower range deletes
// the others, for good.
func TestOpenClipsKeyGroups(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, statetest.AllKeyGroups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := statetest.NewFixture(100)
	f.Write(t, b)
	all := statetest.Must(b.Snapshot())(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r := keygroup.Range{Start: 20, End: 63}
	b, err = Open(dir, r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := &state.Snapshot{}
	for _, g := range all.KeyGroups {
		if r.Contains(g.KeyGroup) {
			want.KeyGroups = append(want.KeyGroups, g)
		}
	}
	if got := statetest.Must(b.Snapshot())(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("narrowed snapshot differs:\n%s", statetest.DiffSnapshots(want, got))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTest(t, dir, statetest.AllKeyGroups, Options{})
	if got := statetest.Must(b.Snapshot())(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("widened again: snapshot differs:\n%s", statetest.DiffSnapshots(want, got))
	}
}

func TestOpenRefusesKeyGroupsBeyondTheLayout(t *testing.T) {
	_, err := Open(t.TempDir(), keygroup.Range{Start: 0, End: maxKeyGroups}, Options{})
	if err == nil || !strings.Contains(err.Error(), "max parallelism") {
		t.Errorf("Open with key group %d: %v", maxKeyGroups, err)
	}
}

func TestDestroyRemovesTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "subtask-0")
	b, err := Open(dir, statetest.AllKeyGroups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	statetest.NewFixture(10).Write(t, b)
	if err := b.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := filepath.Glob(filepath.Join(dir, "*")); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(dir); len(m) != 0 {
		t.Errorf("%s still exists", dir)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close after Destroy: %v", err)
	}
}

func TestConcatMerger(t *testing.T) {
	for _, older := range []bool{false, true} {
		m, err := concatenate.Merge(nil, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		want := "m"
		for i := range 100 {
			op := []byte{byte('a' + i%26)}
			if older {
				err, want = m.MergeOlder(op), string(op)+want
			} else {
				err, want = m.MergeNewer(op), want+string(op)
			}
			if err != nil {
				t.Fatal(err)
			}
			op[0] = '!' // the merger copied it
		}
		got, _, err := m.Finish(true)
		if err != nil || string(got) != want {
			t.Errorf("older=%v: merged %q, %v; want %q", older, got, err, want)
		}
	}
}
