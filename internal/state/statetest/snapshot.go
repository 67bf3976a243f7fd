package statetest

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// References are the reference backends whose snapshots every backend's
// must equal.
var References = []struct {
	Name string
	New  NewBackend
}{
	{"heap", func(_ testing.TB, r keygroup.Range) state.Backend { return state.NewHeapBackend(r) }},
	{"memraw", func(_ testing.TB, r keygroup.Range) state.Backend { return state.NewMemRawBackend(r) }},
}

// RunSnapshots runs the snapshot and restore tests: snapshots equal to the
// references' for the same operations (a fixture and a seeded random
// sequence), restores from and into the references, rescaling to narrower
// key-group ranges, and kind conflicts.
func RunSnapshots(t *testing.T, newBackend NewBackend) {
	t.Run("EqualsReferences", func(t *testing.T) {
		f := NewFixture(60)
		b := newBackend(t, AllKeyGroups)
		f.Write(t, b)
		got := Must(b.Snapshot())(t)
		CheckCanonical(t, got)
		for _, ref := range References {
			rb := ref.New(t, AllKeyGroups)
			f.Write(t, rb)
			if want := Must(rb.Snapshot())(t); !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot differs from %s's:\n%s", ref.Name, DiffSnapshots(want, got))
			}
		}
	})
	t.Run("RandomOps", func(t *testing.T) {
		bs := []state.Backend{newBackend(t, AllKeyGroups)}
		for _, ref := range References {
			bs = append(bs, ref.New(t, AllKeyGroups))
		}
		RunRandomOps(t, 1, 3000, bs...)
	})
	t.Run("Empty", func(t *testing.T) {
		b := newBackend(t, AllKeyGroups)
		if s := Must(b.Snapshot())(t); !reflect.DeepEqual(s, &state.Snapshot{}) {
			t.Errorf("snapshot of an empty backend = %+v", s)
		}
	})
	pairs := []struct {
		name     string
		from, to NewBackend
	}{{"self", newBackend, newBackend}}
	for _, ref := range References {
		pairs = append(pairs,
			struct {
				name     string
				from, to NewBackend
			}{"from-" + ref.Name, ref.New, newBackend},
			struct {
				name     string
				from, to NewBackend
			}{"to-" + ref.Name, newBackend, ref.New})
	}
	for _, p := range pairs {
		t.Run("Restore/"+p.name, func(t *testing.T) { restoreAcross(t, p.from, p.to) })
		t.Run("Rescale/"+p.name, func(t *testing.T) { rescale(t, p.from, p.to) })
	}
	t.Run("RestoreIntoRegisteredStates", func(t *testing.T) {
		f := NewFixture(30)
		src := state.NewHeapBackend(AllKeyGroups)
		f.Write(t, src)
		b := newBackend(t, AllKeyGroups)
		f.Register(t, b)
		if err := b.Restore(Must(src.Snapshot())(t)); err != nil {
			t.Fatal(err)
		}
		f.Check(t, b)
	})
	t.Run("RestoreKindConflicts", func(t *testing.T) { restoreKindConflicts(t, newBackend) })
}

func restoreAcross(t *testing.T, from, to NewBackend) {
	f := NewFixture(60)
	src := from(t, AllKeyGroups)
	f.Write(t, src)
	snap := Must(src.Snapshot())(t)
	dst := to(t, AllKeyGroups)
	if err := dst.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// Restored state snapshots unchanged before and after its states are
	// registered.
	if again := Must(dst.Snapshot())(t); !reflect.DeepEqual(again, snap) {
		t.Fatalf("snapshot of restored, unregistered state differs:\n%s", DiffSnapshots(snap, again))
	}
	f.Check(t, dst)
	if again := Must(dst.Snapshot())(t); !reflect.DeepEqual(again, snap) {
		t.Fatalf("snapshot after registering differs:\n%s", DiffSnapshots(snap, again))
	}
}

// rescale restores a parallelism-1 snapshot into 2 and 3 subtasks, each
// keeping exactly its key groups, then all parts back into one.
func rescale(t *testing.T, from, to NewBackend) {
	f := NewFixture(200)
	src := from(t, AllKeyGroups)
	f.Write(t, src)
	orig := Must(src.Snapshot())(t)
	for _, p := range []int{2, 3} {
		var parts []*state.Snapshot
		for i := range p {
			r := keygroup.RangeForOperator(MaxParallelism, p, i)
			b := to(t, r)
			if err := b.Restore(orig); err != nil {
				t.Fatal(err)
			}
			part := Must(b.Snapshot())(t)
			if want := restrict(orig, r); !reflect.DeepEqual(part, want) {
				t.Fatalf("p=%d subtask %d (%v): snapshot is not the original's key groups:\n%s", p, i, r, DiffSnapshots(want, part))
			}
			f.Check(t, b)
			parts = append(parts, part)
		}
		one := from(t, AllKeyGroups)
		for _, s := range parts {
			if err := one.Restore(s); err != nil {
				t.Fatal(err)
			}
		}
		if got := Must(one.Snapshot())(t); !reflect.DeepEqual(got, orig) {
			t.Fatalf("p=%d and back: snapshot differs:\n%s", p, DiffSnapshots(orig, got))
		}
	}
}

// restrict returns the key groups of s in r.
func restrict(s *state.Snapshot, r keygroup.Range) *state.Snapshot {
	out := &state.Snapshot{}
	for _, g := range s.KeyGroups {
		if r.Contains(g.KeyGroup) {
			out.KeyGroups = append(out.KeyGroups, g)
		}
	}
	return out
}

func restoreKindConflicts(t *testing.T, newBackend NewBackend) {
	src := state.NewHeapBackend(AllKeyGroups)
	v := Must(state.NewValueState[int](src, "s"))(t)
	At(src, "k", "")
	v.Update(1)
	snap := Must(src.Snapshot())(t)

	b := newBackend(t, AllKeyGroups)
	if _, err := state.NewListState[int](b, "s"); err != nil {
		t.Fatal(err)
	}
	err := b.Restore(snap)
	if err == nil || !strings.Contains(err.Error(), `"s" as value state`) || !strings.Contains(err.Error(), "as list state") {
		t.Errorf("Restore over a list state: %v", err)
	}

	b = newBackend(t, AllKeyGroups)
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	_, err = state.NewMapState[string, int](b, "s")
	if err == nil || !strings.Contains(err.Error(), "restored as value state") {
		t.Errorf("map over a restored value: %v", err)
	}
}

// CheckCanonical checks the order snapshot.go requires: key groups
// ascending and non-empty, entries sorted by state, key, namespace, user
// key, and user keys exactly on map entries; empty byte fields are nil.
func CheckCanonical(t testing.TB, s *state.Snapshot) {
	t.Helper()
	for i, g := range s.KeyGroups {
		if i > 0 && s.KeyGroups[i-1].KeyGroup >= g.KeyGroup {
			t.Errorf("key groups out of order: %d then %d", s.KeyGroups[i-1].KeyGroup, g.KeyGroup)
		}
		if len(g.Entries) == 0 {
			t.Errorf("key group %d listed without entries", g.KeyGroup)
		}
		if !slices.IsSortedFunc(g.Entries, compareEntries) {
			t.Errorf("entries of key group %d not sorted", g.KeyGroup)
		}
		for _, e := range g.Entries {
			if e.Kind != state.KindMap && e.UserKey != nil {
				t.Errorf("%s entry with user key %q", e.Kind, e.UserKey)
			}
			for _, f := range [][]byte{e.Key, e.Namespace, e.UserKey, e.Value} {
				if f != nil && len(f) == 0 {
					t.Errorf("entry %+v has an empty, non-nil field", e)
				}
			}
		}
	}
}

func compareEntries(a, b state.Entry) int {
	return cmp.Or(
		cmp.Compare(a.State, b.State),
		bytes.Compare(a.Key, b.Key),
		bytes.Compare(a.Namespace, b.Namespace),
		bytes.Compare(a.UserKey, b.UserKey),
	)
}

// DiffSnapshots lists the entries only in a (-) and only in b (+).
func DiffSnapshots(a, b *state.Snapshot) string {
	flat := func(s *state.Snapshot) []string {
		var l []string
		for _, g := range s.KeyGroups {
			for _, e := range g.Entries {
				l = append(l, fmt.Sprintf("kg%d %s %s key=%q ns=%q uk=%q value=%x", g.KeyGroup, e.State, e.Kind, e.Key, e.Namespace, e.UserKey, e.Value))
			}
		}
		return l
	}
	fa, fb := flat(a), flat(b)
	var out strings.Builder
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
	if out.Len() == 0 {
		return "(same entries; order or nil-ness differs)"
	}
	return out.String()
}

// Fixture is a set of states of every kind over many keys and namespaces,
// written into one backend and checked in another.
type Fixture struct {
	Keys []string
}

// NewFixture returns a fixture of n keys.
func NewFixture(n int) Fixture {
	f := Fixture{}
	for i := range n {
		f.Keys = append(f.Keys, fmt.Sprintf("key-%03d", i))
	}
	return f
}

// FixtureStates are the fixture's states in one backend.
type FixtureStates struct {
	Value  state.ValueState[string]
	List   state.ListState[int64]
	Map    state.MapState[string, float64]
	Reduce state.ReducingState[int64]
	Agg    state.AggregatingState[int64, float64]
}

// Register registers the fixture's states in b.
func (Fixture) Register(t testing.TB, b state.Backend) FixtureStates {
	t.Helper()
	return FixtureStates{
		Value:  Must(state.NewValueState[string](b, "value"))(t),
		List:   Must(state.NewListState[int64](b, "list"))(t),
		Map:    Must(state.NewMapState[string, float64](b, "map"))(t),
		Reduce: Must(state.NewReducingState(b, "reduce", sum))(t),
		Agg:    Must(state.NewAggregatingState[int64, AvgAcc, float64](b, "agg", Average{}))(t),
	}
}

func fixtureNamespaces(i int) []string {
	if i%3 == 0 {
		return []string{"", "w1"}
	}
	return []string{""}
}

// Write writes the fixture into b.
func (f Fixture) Write(t testing.TB, b state.Backend) {
	s := f.Register(t, b)
	for i, k := range f.Keys {
		for _, ns := range fixtureNamespaces(i) {
			At(b, k, ns)
			s.Value.Update(k + "@" + ns)
			for j := range i%4 + 1 {
				s.List.Add(int64(j))
			}
			s.Map.Put("a"+ns, float64(i))
			s.Map.Put("b"+ns, float64(i)/2)
			s.Reduce.Add(int64(i))
			s.Reduce.Add(1)
			s.Agg.Add(int64(i))
			s.Agg.Add(int64(i + 2))
		}
	}
}

// Check verifies the fixture's keys in b's key groups, and that b's
// snapshot holds no others.
func (f Fixture) Check(t testing.TB, b state.Backend) {
	t.Helper()
	r := b.KeyGroupRange()
	s := f.Register(t, b)
	for i, k := range f.Keys {
		if !r.Contains(KeyGroupOf(k)) {
			continue
		}
		for _, ns := range fixtureNamespaces(i) {
			At(b, k, ns)
			if v, ok := s.Value.Value(); v != k+"@"+ns || !ok {
				t.Errorf("%s/%s value = (%q, %v)", k, ns, v, ok)
			}
			var wantList []int64
			for j := range i%4 + 1 {
				wantList = append(wantList, int64(j))
			}
			if got := s.List.Get(); !slices.Equal(got, wantList) {
				t.Errorf("%s/%s list = %v, want %v", k, ns, got, wantList)
			}
			if got, want := maps.Collect(s.Map.All()), map[string]float64{"a" + ns: float64(i), "b" + ns: float64(i) / 2}; !maps.Equal(got, want) {
				t.Errorf("%s/%s map = %v, want %v", k, ns, got, want)
			}
			if v, ok := s.Reduce.Get(); v != int64(i+1) || !ok {
				t.Errorf("%s/%s reduce = (%d, %v), want %d", k, ns, v, ok, i+1)
			}
			if v, ok := s.Agg.Get(); v != float64(i+1) || !ok {
				t.Errorf("%s/%s agg = (%v, %v), want %d", k, ns, v, ok, i+1)
			}
		}
	}
	for _, g := range Must(b.Snapshot())(t).KeyGroups {
		if !r.Contains(g.KeyGroup) {
			t.Errorf("backend for %v holds key group %d", r, g.KeyGroup)
		}
	}
}

// randomStates are the states RunRandomOps drives in one backend.
type randomStates struct {
	value  state.ValueState[string]
	count  state.ValueState[int64]
	list   state.ListState[int64]
	m      state.MapState[string, int64]
	reduce state.ReducingState[int64]
	agg    state.AggregatingState[int64, float64]
}

func registerRandom(t testing.TB, b state.Backend) randomStates {
	return randomStates{
		value:  Must(state.NewValueState[string](b, "value"))(t),
		count:  Must(state.NewValueState[int64](b, "count"))(t),
		list:   Must(state.NewListState[int64](b, "list"))(t),
		m:      Must(state.NewMapState[string, int64](b, "map"))(t),
		reduce: Must(state.NewReducingState(b, "reduce", sum))(t),
		agg:    Must(state.NewAggregatingState[int64, AvgAcc, float64](b, "agg", Average{}))(t),
	}
}

type randomOp struct {
	key, ns string
	op      int
	n       int64
	uk      string
}

const randomOpKinds = 18

// apply runs op on s and returns what it read, if anything.
func (op randomOp) apply(b state.Backend, s randomStates) string {
	At(b, op.key, op.ns)
	switch op.op {
	case 0:
		s.value.Update(fmt.Sprint(op.n))
	case 1:
		s.value.Clear()
	case 2:
		v, ok := s.value.Value()
		return fmt.Sprint(v, ok)
	case 3:
		v, _ := s.count.Value()
		s.count.Update(v + op.n)
		return fmt.Sprint(v)
	case 4:
		s.list.Add(op.n)
	case 5:
		s.list.AddAll([]int64{op.n, op.n + 1, op.n + 2}[:mod(op.n, 4)])
	case 6:
		s.list.Update([]int64{op.n, -op.n}[:mod(op.n, 2)*2]) // or clear it
	case 7:
		s.list.Clear()
	case 8:
		return fmt.Sprint(s.list.Get())
	case 9, 10:
		s.m.Put(op.uk, op.n)
	case 11:
		s.m.Remove(op.uk)
	case 12:
		v, ok := s.m.Get(op.uk)
		return fmt.Sprint(v, ok, s.m.Contains(op.uk), s.m.IsEmpty())
	case 13:
		if mod(op.n, 4) == 0 {
			s.m.Clear()
		}
		return fmt.Sprint(maps.Collect(s.m.All())) // fmt sorts map keys
	case 14:
		s.reduce.Add(op.n)
	case 15:
		if mod(op.n, 3) == 0 {
			s.reduce.Clear()
		}
		v, ok := s.reduce.Get()
		return fmt.Sprint(v, ok)
	case 16:
		s.agg.Add(op.n)
	case 17:
		if mod(op.n, 3) == 0 {
			s.agg.Clear()
		}
		v, ok := s.agg.Get()
		return fmt.Sprint(v, ok)
	}
	return ""
}

func mod(n, m int64) int64 { return (n%m + m) % m }

// RunRandomOps applies n random operations (from seed) on every state kind
// to all backends in lockstep, failing if any read differs, and compares
// their snapshots every 1000 operations and at the end. The first backend
// is the one under test.
func RunRandomOps(t *testing.T, seed uint64, n int, bs ...state.Backend) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := []string{"", "a", "ab", "a\x00", "\x01a"}
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("k%02d", i))
	}
	nss := []string{"", "", "w1", "w2", "w1\x00"}
	states := make([]randomStates, len(bs))
	for i, b := range bs {
		states[i] = registerRandom(t, b)
	}
	compare := func(at int) {
		t.Helper()
		want := Must(bs[len(bs)-1].Snapshot())(t)
		CheckCanonical(t, want)
		for i, b := range bs[:len(bs)-1] {
			if got := Must(b.Snapshot())(t); !reflect.DeepEqual(got, want) {
				t.Fatalf("after %d ops, snapshot of backend %d (%T) differs from %T's:\n%s", at, i, b, bs[len(bs)-1], DiffSnapshots(want, got))
			}
		}
	}
	for i := range n {
		op := randomOp{
			key: keys[rng.IntN(len(keys))],
			ns:  nss[rng.IntN(len(nss))],
			op:  rng.IntN(randomOpKinds),
			n:   rng.Int64N(1000) - 100,
			uk:  fmt.Sprint(rng.IntN(25)),
		}
		var first string
		for j, b := range bs {
			got := op.apply(b, states[j])
			if j == 0 {
				first = got
			} else if got != first {
				t.Fatalf("op %d %+v: %T read %q, %T read %q", i, op, bs[0], first, b, got)
			}
		}
		if i%1000 == 999 {
			compare(i + 1)
		}
	}
	compare(n)
}
