package state

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
)

// fixture is a set of states of every kind over many keys and namespaces,
// written into a backend and checked in another.
type fixture struct {
	keys []string
}

func newFixture(n int) fixture {
	f := fixture{}
	for i := range n {
		f.keys = append(f.keys, fmt.Sprintf("key-%03d", i))
	}
	return f
}

type fixtureStates struct {
	value  ValueState[string]
	list   ListState[int64]
	m      MapState[string, float64]
	reduce ReducingState[int64]
	agg    AggregatingState[int64, float64]
}

func registerFixture(t *testing.T, b Backend) fixtureStates {
	t.Helper()
	return fixtureStates{
		value:  must[ValueState[string]](t)(NewValueState[string](b, "value")),
		list:   must[ListState[int64]](t)(NewListState[int64](b, "list")),
		m:      must[MapState[string, float64]](t)(NewMapState[string, float64](b, "map")),
		reduce: must[ReducingState[int64]](t)(NewReducingState(b, "reduce", func(a, b int64) int64 { return a + b })),
		agg:    must[AggregatingState[int64, float64]](t)(NewAggregatingState[int64, avgAcc, float64](b, "agg", average{})),
	}
}

func fixtureNamespaces(i int) []string {
	if i%3 == 0 {
		return []string{"", "w1"}
	}
	return []string{""}
}

func (f fixture) write(t *testing.T, b Backend) {
	s := registerFixture(t, b)
	for i, k := range f.keys {
		for _, ns := range fixtureNamespaces(i) {
			at(b, k, ns)
			s.value.Update(k + "@" + ns)
			for j := range i%4 + 1 {
				s.list.Add(int64(j))
			}
			s.m.Put("a"+ns, float64(i))
			s.m.Put("b"+ns, float64(i)/2)
			s.reduce.Add(int64(i))
			s.reduce.Add(1)
			s.agg.Add(int64(i))
			s.agg.Add(int64(i + 2))
		}
	}
}

// check verifies the fixture's keys in the key groups of r and that b holds
// nothing for the others (seen through its snapshot).
func (f fixture) check(t *testing.T, b Backend) {
	t.Helper()
	r := b.KeyGroupRange()
	s := registerFixture(t, b)
	for i, k := range f.keys {
		if !r.Contains(keyGroupOf(k)) {
			continue
		}
		for _, ns := range fixtureNamespaces(i) {
			at(b, k, ns)
			v, ok := s.value.Value()
			wantValue(t, k+"/"+ns+" value", v, ok, k+"@"+ns, true)
			var wantList []int64
			for j := range i%4 + 1 {
				wantList = append(wantList, int64(j))
			}
			if got := s.list.Get(); !slices.Equal(got, wantList) {
				t.Errorf("%s/%s list = %v, want %v", k, ns, got, wantList)
			}
			if got, want := maps.Collect(s.m.All()), map[string]float64{"a" + ns: float64(i), "b" + ns: float64(i) / 2}; !maps.Equal(got, want) {
				t.Errorf("%s/%s map = %v, want %v", k, ns, got, want)
			}
			r, ok := s.reduce.Get()
			wantValue(t, k+"/"+ns+" reduce", r, ok, int64(i+1), true)
			a, ok := s.agg.Get()
			wantValue(t, k+"/"+ns+" agg", a, ok, float64(i+1), true)
		}
	}
	snap := must[*Snapshot](t)(b.Snapshot())
	for _, g := range snap.KeyGroups {
		if !r.Contains(g.KeyGroup) {
			t.Errorf("backend for %v holds key group %d", r, g.KeyGroup)
		}
	}
}

func TestSnapshotIsCanonical(t *testing.T) {
	f := newFixture(60)
	var snaps []*Snapshot
	for _, be := range backends {
		b := be.new(allKeyGroups)
		f.write(t, b)
		snaps = append(snaps, must[*Snapshot](t)(b.Snapshot()))
	}
	if !reflect.DeepEqual(snaps[0], snaps[1]) {
		t.Fatalf("heap and raw snapshots of the same state differ:\n%s", diffSnapshots(snaps[0], snaps[1]))
	}
	s := snaps[0]
	if s.Len() == 0 {
		t.Fatal("empty snapshot")
	}
	for i, g := range s.KeyGroups {
		if i > 0 && s.KeyGroups[i-1].KeyGroup >= g.KeyGroup {
			t.Errorf("key groups out of order: %d then %d", s.KeyGroups[i-1].KeyGroup, g.KeyGroup)
		}
		if !slices.IsSortedFunc(g.Entries, compareEntries) {
			t.Errorf("entries of key group %d not sorted", g.KeyGroup)
		}
		for _, e := range g.Entries {
			if keyGroupOf(string(e.Key)) != g.KeyGroup {
				t.Errorf("entry %q in key group %d, want %d", e.Key, g.KeyGroup, keyGroupOf(string(e.Key)))
			}
			if (e.Kind == KindMap) != (e.UserKey != nil) {
				t.Errorf("%s entry with user key %q", e.Kind, e.UserKey)
			}
		}
	}
}

func diffSnapshots(a, b *Snapshot) string {
	var out strings.Builder
	flat := func(s *Snapshot) []string {
		var l []string
		for _, g := range s.KeyGroups {
			for _, e := range g.Entries {
				l = append(l, fmt.Sprintf("kg%d %+v", g.KeyGroup, e))
			}
		}
		return l
	}
	fa, fb := flat(a), flat(b)
	for _, e := range fa {
		if !slices.Contains(fb, e) {
			fmt.Fprintf(&out, "- %s\n", e)
		}
	}
	for _, e := range fb {
		if !slices.Contains(fa, e) {
			fmt.Fprintf(&out, "+ %s\n", e)
		}
	}
	return out.String()
}

// Every backend restores every backend's snapshot.
func TestSnapshotRestoreAcrossBackends(t *testing.T) {
	f := newFixture(60)
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+"→"+to.name, func(t *testing.T) {
				src := from.new(allKeyGroups)
				f.write(t, src)
				snap := must[*Snapshot](t)(src.Snapshot())
				dst := to.new(allKeyGroups)
				if err := dst.Restore(snap); err != nil {
					t.Fatal(err)
				}
				// Unregistered restored state snapshots unchanged.
				if again := must[*Snapshot](t)(dst.Snapshot()); !reflect.DeepEqual(again, snap) {
					t.Fatalf("snapshot of restored, unregistered state differs:\n%s", diffSnapshots(snap, again))
				}
				f.check(t, dst)
				if again := must[*Snapshot](t)(dst.Snapshot()); !reflect.DeepEqual(again, snap) {
					t.Fatalf("snapshot after registering differs:\n%s", diffSnapshots(snap, again))
				}
			})
		}
	}
}

// Restoring into a backend whose states are already registered.
func TestRestoreIntoRegisteredStates(t *testing.T) {
	f := newFixture(30)
	src := NewHeapBackend(allKeyGroups)
	f.write(t, src)
	snap := must[*Snapshot](t)(src.Snapshot())
	forEachBackend(t, func(t *testing.T, b Backend) {
		registerFixture(t, b)
		if err := b.Restore(snap); err != nil {
			t.Fatal(err)
		}
		f.check(t, b)
	})
}

// Rescaling: state written at parallelism 1 restores into 2 and 3 subtasks,
// each keeping exactly its key groups; then back into 1.
func TestRescale(t *testing.T) {
	f := newFixture(200)
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+"→"+to.name, func(t *testing.T) {
				src := from.new(allKeyGroups)
				f.write(t, src)
				orig := must[*Snapshot](t)(src.Snapshot())
				for _, p := range []int{2, 3} {
					var parts []*Snapshot
					for i := range p {
						b := to.new(keygroup.RangeForOperator(testMaxP, p, i))
						if err := b.Restore(orig); err != nil {
							t.Fatal(err)
						}
						f.check(t, b)
						parts = append(parts, must[*Snapshot](t)(b.Snapshot()))
					}
					// Scale back in: one subtask restores every part.
					one := from.new(allKeyGroups)
					for _, s := range parts {
						if err := one.Restore(s); err != nil {
							t.Fatal(err)
						}
					}
					if got := must[*Snapshot](t)(one.Snapshot()); !reflect.DeepEqual(got, orig) {
						t.Fatalf("p=%d and back: snapshot differs:\n%s", p, diffSnapshots(orig, got))
					}
					f.check(t, one)
				}
			})
		}
	}
}

func TestRestoreKindConflicts(t *testing.T) {
	src := NewHeapBackend(allKeyGroups)
	v := must[ValueState[int]](t)(NewValueState[int](src, "s"))
	at(src, "k", "")
	v.Update(1)
	snap := must[*Snapshot](t)(src.Snapshot())
	forEachBackend(t, func(t *testing.T, b Backend) {
		// Registered as a list, restored as a value.
		if _, err := NewListState[int](b, "s"); err != nil {
			t.Fatal(err)
		}
		err := b.Restore(snap)
		if err == nil || !strings.Contains(err.Error(), `"s" as value state`) || !strings.Contains(err.Error(), "as list state") {
			t.Errorf("Restore over a list state: %v", err)
		}
	})
	forEachBackend(t, func(t *testing.T, b Backend) {
		// Restored as a value, registered as a map.
		if err := b.Restore(snap); err != nil {
			t.Fatal(err)
		}
		_, err := NewMapState[string, int](b, "s")
		if err == nil || !strings.Contains(err.Error(), "restored as value state") {
			t.Errorf("map over a restored value: %v", err)
		}
		// The right kind with the wrong type fails to decode on the heap
		// (the raw backend finds out on access).
		if _, ok := b.(*Heap); ok {
			_, err := NewValueState[string](b, "s")
			if err == nil || !strings.Contains(err.Error(), `state "s": restoring key group`) {
				t.Errorf("string value over a restored int: %v", err)
			}
		}
	})
}

func TestHeapSnapshotEncodeFailure(t *testing.T) {
	type node struct{ Next *node }
	b := NewHeapBackend(allKeyGroups)
	s := must[ValueState[*node]](t)(NewValueState[*node](b, "cycle"))
	n := &node{}
	n.Next = n
	at(b, "k", "")
	s.Update(n)
	if _, err := b.Snapshot(); err == nil || !strings.Contains(err.Error(), "snapshotting") {
		t.Errorf("Snapshot of a pointer cycle: %v", err)
	}
}
