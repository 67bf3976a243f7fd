// Package statetest is the conformance suite of keyed state backends: the
// behaviour every backend shares (typed states, namespaces, key groups),
// the RawStore contract, and snapshots that must equal those of the
// reference backends (state.Heap and state.MemRaw) for the same operations
// and restore across backends.
//
// A backend's tests call the Run functions with a NewBackend; the state
// package runs them against Heap and MemRaw, so the suite itself is checked
// against the reference implementations.
package statetest

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// NewBackend returns a new, empty backend for the key groups r. It may
// register cleanup with t (closing a DB, removing a directory).
type NewBackend func(t testing.TB, r keygroup.Range) state.Backend

// MaxParallelism is the number of key groups the suite uses.
const MaxParallelism = 128

// AllKeyGroups is the range of a backend at parallelism 1.
var AllKeyGroups = keygroup.Range{Start: 0, End: MaxParallelism - 1}

// KeyGroupOf returns the key group of key, as an operator computes it.
func KeyGroupOf(key string) int {
	return keygroup.ForKeyHash(codec.Hash64([]byte(key)), MaxParallelism)
}

// At makes (key, ns) current on b, as an operator does for a record.
func At(b state.Backend, key, ns string) {
	b.SetCurrentKey([]byte(key), KeyGroupOf(key))
	b.SetCurrentNamespace([]byte(ns))
}

// Must returns a function that returns v, failing t if err is not nil:
// Must(state.NewValueState[int](b, "v"))(t).
func Must[T any](v T, err error) func(t testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantValue[V comparable](t *testing.T, what string, got V, ok bool, want V, wantOK bool) {
	t.Helper()
	if got != want || ok != wantOK {
		t.Errorf("%s = (%v, %v), want (%v, %v)", what, got, ok, want, wantOK)
	}
}

// AvgAcc is the accumulator of Average.
type AvgAcc struct {
	Sum, Count int64
}

// Average is the AggregateFunction of the suite's aggregating states.
type Average struct{}

func (Average) CreateAccumulator() AvgAcc     { return AvgAcc{} }
func (Average) Add(in int64, a AvgAcc) AvgAcc { return AvgAcc{a.Sum + in, a.Count + 1} }
func (Average) GetResult(a AvgAcc) float64    { return float64(a.Sum) / float64(a.Count) }
func (Average) Merge(a, b AvgAcc) AvgAcc      { return AvgAcc{a.Sum + b.Sum, a.Count + b.Count} }
func sum(a, b int64) int64                    { return a + b }
func composite(key, ns string) string         { return string(appendComposite(nil, key, ns)) }
func appendComposite(dst []byte, key, ns string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(append(dst, key...), ns...)
}

// RunBehaviours runs the typed-state behaviour tests against fresh
// backends from newBackend.
func RunBehaviours(t *testing.T, newBackend NewBackend) {
	for _, bh := range []struct {
		name string
		run  func(t *testing.T, b state.Backend)
	}{
		{"ValueState", behaviourValueState},
		{"ValueStateStructs", behaviourValueStateStructs},
		{"Namespaces", behaviourNamespaces},
		{"KeyGroupIsolation", behaviourKeyGroupIsolation},
		{"StatesAreIndependent", behaviourStatesAreIndependent},
		{"KeyIsCopied", behaviourKeyIsCopied},
		{"ListState", behaviourListState},
		{"MapState", behaviourMapState},
		{"ReducingState", behaviourReducingState},
		{"AggregatingState", behaviourAggregatingState},
		{"Registration", behaviourRegistration},
		{"AccessWithoutKeyPanics", behaviourAccessWithoutKeyPanics},
		{"Timers", behaviourTimers},
	} {
		t.Run(bh.name, func(t *testing.T) { bh.run(t, newBackend(t, AllKeyGroups)) })
	}
	t.Run("WrongKeyGroupPanics", func(t *testing.T) {
		b := newBackend(t, keygroup.Range{Start: 10, End: 19})
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), "key group 20 is outside") {
				t.Errorf("recovered %v, want a key-group panic", r)
			}
		}()
		b.SetCurrentKey([]byte("k"), 20)
	})
}

func behaviourValueState(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[int64](b, "count"))(t)
	At(b, "alice", "")
	v, ok := s.Value()
	wantValue(t, "alice before update", v, ok, 0, false)
	s.Update(3)
	v, ok = s.Value()
	wantValue(t, "alice", v, ok, 3, true)
	s.Update(4)
	At(b, "bob", "")
	v, ok = s.Value()
	wantValue(t, "bob", v, ok, 0, false)
	s.Update(10)
	At(b, "alice", "")
	v, ok = s.Value()
	wantValue(t, "alice again", v, ok, 4, true)
	s.Clear()
	v, ok = s.Value()
	wantValue(t, "alice cleared", v, ok, 0, false)
	s.Clear() // clearing nothing is fine
	At(b, "bob", "")
	v, ok = s.Value()
	wantValue(t, "bob after alice cleared", v, ok, 10, true)
	At(b, "carol", "") // zero is a value, not absence
	s.Update(0)
	v, ok = s.Value()
	wantValue(t, "carol zero", v, ok, 0, true)
	At(b, "", "") // the empty key is a key
	s.Update(7)
	v, ok = s.Value()
	wantValue(t, "empty key", v, ok, 7, true)
}

type bid struct {
	Auction int64
	Price   float64
	Bidder  string
}

func behaviourValueStateStructs(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[bid](b, "best"))(t)
	At(b, "a", "")
	s.Update(bid{1, 2.5, "x"})
	v, ok := s.Value()
	wantValue(t, "best", v, ok, bid{1, 2.5, "x"}, true)
}

func behaviourNamespaces(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[string](b, "v"))(t)
	cases := []struct{ key, ns string }{
		{"k", ""}, {"k", "w1"}, {"k", "w2"}, {"j", "w1"},
		// Pairs whose concatenation is equal must stay apart.
		{"a", "bc"}, {"ab", "c"}, {"abc", ""},
		// A plain key equal to an encoding of ("a", "b").
		{composite("a", "b"), ""}, {"a", "b"},
		// Keys and namespaces that look like length prefixes.
		{"\x01", "\x01a"}, {"\x01\x01", "a"}, {"", "\x00"}, {"\x00", ""},
	}
	for _, c := range cases {
		At(b, c.key, c.ns)
		s.Update(c.key + "/" + c.ns)
	}
	for _, c := range cases {
		At(b, c.key, c.ns)
		v, ok := s.Value()
		wantValue(t, fmt.Sprintf("(%q, %q)", c.key, c.ns), v, ok, c.key+"/"+c.ns, true)
	}
	At(b, "k", "w1")
	s.Clear()
	v, ok := s.Value()
	wantValue(t, "k/w1 cleared", v, ok, "", false)
	At(b, "k", "w2")
	v, ok = s.Value()
	wantValue(t, "k/w2", v, ok, "k/w2", true)
	At(b, "k", "")
	v, ok = s.Value()
	wantValue(t, "k/", v, ok, "k/", true)
	At(b, "j", "")
	v, ok = s.Value()
	wantValue(t, "j/ (only j/w1 exists)", v, ok, "", false)
}

// The same key bytes in two key groups are two entries: state is stored per
// key group, so that key groups can move between subtasks.
func behaviourKeyGroupIsolation(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[int](b, "v"))(t)
	b.SetCurrentKey([]byte("k"), 1)
	s.Update(1)
	b.SetCurrentKey([]byte("k"), 2)
	v, ok := s.Value()
	wantValue(t, "k in group 2", v, ok, 0, false)
	s.Update(2)
	b.SetCurrentKey([]byte("k"), 1)
	v, ok = s.Value()
	wantValue(t, "k in group 1", v, ok, 1, true)
	b.SetCurrentKey([]byte("k"), MaxParallelism-1) // the last key group
	s.Update(3)
	v, ok = s.Value()
	wantValue(t, "k in the last group", v, ok, 3, true)
}

func behaviourStatesAreIndependent(t *testing.T, b state.Backend) {
	s1 := Must(state.NewValueState[int](b, "one"))(t)
	s2 := Must(state.NewValueState[int](b, "two"))(t)
	m := Must(state.NewMapState[string, int](b, "map"))(t)
	At(b, "k", "")
	s1.Update(1)
	s2.Update(2)
	m.Put("x", 3)
	s1.Clear()
	v, ok := s2.Value()
	wantValue(t, "two", v, ok, 2, true)
	m.Clear()
	v, ok = s2.Value()
	wantValue(t, "two after clearing a map", v, ok, 2, true)
}

func behaviourKeyIsCopied(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[int](b, "v"))(t)
	key := []byte("key1")
	b.SetCurrentKey(key, 3)
	s.Update(1)
	key[3] = '2' // the caller reuses its buffer
	b.SetCurrentKey([]byte("key1"), 3)
	v, ok := s.Value()
	wantValue(t, "key1", v, ok, 1, true)
	b.SetCurrentKey(key, 3)
	v, ok = s.Value()
	wantValue(t, "key2", v, ok, 0, false)
}

func behaviourListState(t *testing.T, b state.Backend) {
	s := Must(state.NewListState[string](b, "l"))(t)
	At(b, "k", "")
	if got := s.Get(); got != nil {
		t.Errorf("empty Get = %q, want nil", got)
	}
	s.Add("a")
	s.Add("b")
	s.AddAll([]string{"c", "d"})
	s.AddAll(nil)
	if got := s.Get(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Get = %q", got)
	}
	got := s.Get()
	_ = append(got, "x") // appending to the result does not change the state
	s.Add("e")
	if got := s.Get(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("Get after append to result = %q", got)
	}
	in := []string{"x", "y"}
	s.Update(in)
	in[0] = "changed" // Update copies
	if got := s.Get(); !slices.Equal(got, []string{"x", "y"}) {
		t.Errorf("Get after Update = %q", got)
	}
	s.Add("z") // Add after Update appends to the new list
	if got := s.Get(); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Errorf("Get after Update and Add = %q", got)
	}
	add := []string{"z"}
	At(b, "fresh", "")
	s.AddAll(add)
	add[0] = "changed" // AddAll copies
	if got := s.Get(); !slices.Equal(got, []string{"z"}) {
		t.Errorf("fresh Get after AddAll = %q", got)
	}
	At(b, "k", "w")
	if got := s.Get(); got != nil {
		t.Errorf("k/w Get = %q, want nil", got)
	}
	s.Add("w")
	At(b, "k", "")
	s.Update(nil)
	if got := s.Get(); got != nil {
		t.Errorf("Get after Update(nil) = %q, want nil", got)
	}
	s.Add("again")
	s.Clear()
	if got := s.Get(); got != nil {
		t.Errorf("Get after Clear = %q, want nil", got)
	}
	s.Add("after clear")
	if got := s.Get(); !slices.Equal(got, []string{"after clear"}) {
		t.Errorf("Get after Clear and Add = %q", got)
	}
	At(b, "k", "w")
	if got := s.Get(); !slices.Equal(got, []string{"w"}) {
		t.Errorf("k/w Get = %q", got)
	}
}

func behaviourMapState(t *testing.T, b state.Backend) {
	s := Must(state.NewMapState[string, int](b, "m"))(t)
	At(b, "k", "")
	if !s.IsEmpty() {
		t.Error("new map not empty")
	}
	v, ok := s.Get("a")
	wantValue(t, "Get(a) on empty", v, ok, 0, false)
	s.Put("a", 1)
	s.Put("b", 2)
	s.Put("c", 3)
	s.Put("a", 10)
	v, ok = s.Get("a")
	wantValue(t, "Get(a)", v, ok, 10, true)
	if !s.Contains("b") || s.Contains("z") {
		t.Error("Contains wrong")
	}
	if got := maps.Collect(s.All()); !maps.Equal(got, map[string]int{"a": 10, "b": 2, "c": 3}) {
		t.Errorf("All = %v", got)
	}
	if keys := slices.Sorted(s.Keys()); !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Errorf("Keys = %q", keys)
	}
	n := 0
	for range s.All() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after first entry ran %d iterations", n)
	}
	for k := range s.Keys() { // removing while iterating
		if k != "b" {
			s.Remove(k)
		}
	}
	if got := maps.Collect(s.All()); !maps.Equal(got, map[string]int{"b": 2}) {
		t.Errorf("All after removing in loop = %v", got)
	}
	s.Remove("nope")
	At(b, "k", "w")
	if !s.IsEmpty() {
		t.Error("k/w not empty")
	}
	s.Put("w", 7)
	At(b, "j", "")
	if !s.IsEmpty() || len(maps.Collect(s.All())) != 0 {
		t.Error("j not empty")
	}
	At(b, "k", "")
	s.Remove("b")
	if !s.IsEmpty() {
		t.Error("map not empty after removing its last key")
	}
	s.Put("x", 1)
	s.Clear()
	if !s.IsEmpty() {
		t.Error("map not empty after Clear")
	}
	// A large map, cleared at once.
	for i := range 100 {
		s.Put(fmt.Sprint(i), i)
	}
	if got := len(maps.Collect(s.All())); got != 100 {
		t.Errorf("%d entries, want 100", got)
	}
	s.Clear()
	if !s.IsEmpty() {
		t.Error("large map not empty after Clear")
	}
	s.Put("again", 1)
	if got := maps.Collect(s.All()); !maps.Equal(got, map[string]int{"again": 1}) {
		t.Errorf("All after Clear and Put = %v", got)
	}
	At(b, "k", "w")
	v, ok = s.Get("w")
	wantValue(t, "k/w Get(w)", v, ok, 7, true)
}

func behaviourReducingState(t *testing.T, b state.Backend) {
	s := Must(state.NewReducingState(b, "sum", sum))(t)
	At(b, "k", "")
	v, ok := s.Get()
	wantValue(t, "empty", v, ok, 0, false)
	for i := range int64(5) {
		s.Add(i)
	}
	v, ok = s.Get()
	wantValue(t, "sum", v, ok, 10, true)
	At(b, "k", "w")
	s.Add(100)
	v, ok = s.Get()
	wantValue(t, "k/w", v, ok, 100, true)
	At(b, "k", "")
	s.Clear()
	v, ok = s.Get()
	wantValue(t, "cleared", v, ok, 0, false)
}

func behaviourAggregatingState(t *testing.T, b state.Backend) {
	s := Must(state.NewAggregatingState[int64, AvgAcc, float64](b, "avg", Average{}))(t)
	At(b, "k", "")
	v, ok := s.Get()
	wantValue(t, "empty", v, ok, 0, false)
	s.Add(1)
	s.Add(2)
	s.Add(6)
	v, ok = s.Get()
	wantValue(t, "avg", v, ok, 3, true)
	At(b, "j", "")
	s.Add(5)
	v, ok = s.Get()
	wantValue(t, "j", v, ok, 5, true)
	s.Clear()
	v, ok = s.Get()
	wantValue(t, "j cleared", v, ok, 0, false)
	At(b, "k", "")
	v, ok = s.Get()
	wantValue(t, "k", v, ok, 3, true)
}

func behaviourRegistration(t *testing.T, b state.Backend) {
	v1 := Must(state.NewValueState[int](b, "s"))(t)
	v2 := Must(state.NewValueState[int](b, "s"))(t)
	if v1 != v2 {
		t.Error("same name and type returned two states")
	}
	At(b, "k", "")
	v1.Update(5)
	v, ok := v2.Value()
	wantValue(t, "through second handle", v, ok, 5, true)
	for _, tc := range []struct {
		name string
		err  func() error
		want []string
	}{
		{"other type", func() error { _, err := state.NewValueState[string](b, "s"); return err },
			[]string{`"s"`, "ValueState[int]", "ValueState[string]"}},
		{"other kind", func() error { _, err := state.NewListState[int](b, "s"); return err },
			[]string{`"s"`, "ValueState[int]", "ListState[int]"}},
		{"empty name", func() error { _, err := state.NewValueState[int](b, ""); return err },
			[]string{"name must not be empty"}},
		{"no codec", func() error { _, err := state.NewValueState[func()](b, "f"); return err },
			[]string{`"f"`, "no codec", "func()"}},
	} {
		err := tc.err()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
	if _, err := state.NewValueState[int](b, "f"); err != nil {
		t.Errorf("registering a name after a failed registration: %v", err)
	}
}

func behaviourAccessWithoutKeyPanics(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[int](b, "v"))(t)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "no current key") {
			t.Errorf("recovered %v, want a no-current-key panic", r)
		}
	}()
	s.Value()
}

// Timers fire with their key and namespace current, so state reads in the
// callback see that key's state.
func behaviourTimers(t *testing.T, b state.Backend) {
	s := Must(state.NewValueState[string](b, "v"))(t)
	ts := state.NewTimerService(b)
	for i, k := range []string{"b", "a", "c"} {
		At(b, k, "w")
		s.Update(k + "@w")
		ts.RegisterEventTimeTimer(int64(10 * (i + 1)))
	}
	var got []string
	ts.AdvanceWatermark(100, func(int64) {
		v, _ := s.Value()
		got = append(got, v)
		s.Clear()
	})
	if want := []string{"b@w", "a@w", "c@w"}; !slices.Equal(got, want) {
		t.Errorf("fired with values %q, want %q", got, want)
	}
	At(b, "a", "w")
	if v, ok := s.Value(); ok {
		t.Errorf("a/w = %q after the timer cleared it", v)
	}
}
