package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
)

const testMaxP = 128

var allKeyGroups = keygroup.Range{Start: 0, End: testMaxP - 1}

// backends are the backends every behaviour test runs against.
var backends = []struct {
	name string
	new  func(keygroup.Range) Backend
}{
	{"heap", func(r keygroup.Range) Backend { return NewHeapBackend(r) }},
	{"raw", func(r keygroup.Range) Backend { return NewMemRawBackend(r) }},
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { fn(t, be.new(allKeyGroups)) })
	}
}

// behaviours run against every backend in backends (TestBehaviour).
var behaviours = []struct {
	name string
	run  func(t *testing.T, b Backend)
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
	{"TimerOrderDedupDelete", behaviourTimerOrderDedupDelete},
	{"TimersRegisteredInsideFire", behaviourTimersRegisteredInsideFire},
	{"ProcessingTimeTimers", behaviourProcessingTimeTimers},
}

func TestBehaviour(t *testing.T) {
	for _, be := range backends {
		for _, bh := range behaviours {
			t.Run(be.name+"/"+bh.name, func(t *testing.T) { bh.run(t, be.new(allKeyGroups)) })
		}
	}
}

func keyGroupOf(key string) int {
	return keygroup.ForKeyHash(codec.Hash64([]byte(key)), testMaxP)
}

// at makes (key, ns) current on b, as an operator does for a record.
func at(b Backend, key, ns string) {
	b.SetCurrentKey([]byte(key), keyGroupOf(key))
	b.SetCurrentNamespace([]byte(ns))
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
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

type avgAcc struct {
	Sum, Count int64
}

type average struct{}

func (average) CreateAccumulator() avgAcc { return avgAcc{} }
func (average) Add(in int64, a avgAcc) avgAcc {
	return avgAcc{a.Sum + in, a.Count + 1}
}
func (average) GetResult(a avgAcc) float64 { return float64(a.Sum) / float64(a.Count) }
func (average) Merge(a, b avgAcc) avgAcc   { return avgAcc{a.Sum + b.Sum, a.Count + b.Count} }

func behaviourValueState(t *testing.T, b Backend) {
	s := must[ValueState[int64]](t)(NewValueState[int64](b, "count"))
	at(b, "alice", "")
	v, ok := s.Value()
	wantValue(t, "alice before update", v, ok, 0, false)
	s.Update(3)
	v, ok = s.Value()
	wantValue(t, "alice", v, ok, 3, true)
	s.Update(4)
	at(b, "bob", "")
	v, ok = s.Value()
	wantValue(t, "bob", v, ok, 0, false)
	s.Update(10)
	at(b, "alice", "")
	v, ok = s.Value()
	wantValue(t, "alice again", v, ok, 4, true)
	s.Clear()
	v, ok = s.Value()
	wantValue(t, "alice cleared", v, ok, 0, false)
	s.Clear() // clearing nothing is fine
	at(b, "bob", "")
	v, ok = s.Value()
	wantValue(t, "bob after alice cleared", v, ok, 10, true)
	// Zero is a value, not absence.
	at(b, "carol", "")
	s.Update(0)
	v, ok = s.Value()
	wantValue(t, "carol zero", v, ok, 0, true)
}

type bid struct {
	Auction int64
	Price   float64
	Bidder  string
}

func behaviourValueStateStructs(t *testing.T, b Backend) {
	s := must[ValueState[bid]](t)(NewValueState[bid](b, "best"))
	at(b, "a", "")
	s.Update(bid{1, 2.5, "x"})
	v, ok := s.Value()
	wantValue(t, "best", v, ok, bid{1, 2.5, "x"}, true)
}

func behaviourNamespaces(t *testing.T, b Backend) {
	s := must[ValueState[string]](t)(NewValueState[string](b, "v"))
	for _, c := range []struct{ key, ns string }{
		{"k", ""}, {"k", "w1"}, {"k", "w2"}, {"j", "w1"},
		// Pairs whose concatenation is equal must stay apart.
		{"a", "bc"}, {"ab", "c"}, {"abc", ""},
		// A plain key equal to the composite bytes of ("a", "b").
		{string(appendComposite(nil, []byte("a"), []byte("b"))), ""}, {"a", "b"},
	} {
		at(b, c.key, c.ns)
		s.Update(c.key + "/" + c.ns)
	}
	for _, c := range []struct{ key, ns string }{
		{"k", ""}, {"k", "w1"}, {"k", "w2"}, {"j", "w1"}, {"a", "bc"}, {"ab", "c"}, {"abc", ""},
		{string(appendComposite(nil, []byte("a"), []byte("b"))), ""}, {"a", "b"},
	} {
		at(b, c.key, c.ns)
		v, ok := s.Value()
		wantValue(t, fmt.Sprintf("(%q, %q)", c.key, c.ns), v, ok, c.key+"/"+c.ns, true)
	}
	at(b, "k", "w1")
	s.Clear()
	v, ok := s.Value()
	wantValue(t, "k/w1 cleared", v, ok, "", false)
	at(b, "k", "w2")
	v, ok = s.Value()
	wantValue(t, "k/w2", v, ok, "k/w2", true)
	at(b, "k", "")
	v, ok = s.Value()
	wantValue(t, "k/", v, ok, "k/", true)
	at(b, "j", "")
	v, ok = s.Value()
	wantValue(t, "j/ (only j/w1 exists)", v, ok, "", false)
}

// The same key bytes in two key groups are two entries: state is stored per
// key group, so that key groups can move between subtasks.
func behaviourKeyGroupIsolation(t *testing.T, b Backend) {
	s := must[ValueState[int]](t)(NewValueState[int](b, "v"))
	b.SetCurrentKey([]byte("k"), 1)
	s.Update(1)
	b.SetCurrentKey([]byte("k"), 2)
	v, ok := s.Value()
	wantValue(t, "k in group 2", v, ok, 0, false)
	s.Update(2)
	b.SetCurrentKey([]byte("k"), 1)
	v, ok = s.Value()
	wantValue(t, "k in group 1", v, ok, 1, true)
}

func behaviourStatesAreIndependent(t *testing.T, b Backend) {
	s1 := must[ValueState[int]](t)(NewValueState[int](b, "one"))
	s2 := must[ValueState[int]](t)(NewValueState[int](b, "two"))
	at(b, "k", "")
	s1.Update(1)
	s2.Update(2)
	s1.Clear()
	v, ok := s2.Value()
	wantValue(t, "two", v, ok, 2, true)
}

func behaviourKeyIsCopied(t *testing.T, b Backend) {
	s := must[ValueState[int]](t)(NewValueState[int](b, "v"))
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

func behaviourListState(t *testing.T, b Backend) {
	s := must[ListState[string]](t)(NewListState[string](b, "l"))
	at(b, "k", "")
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
	// Appending to the returned slice does not change the state.
	got := s.Get()
	_ = append(got, "x")
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
	add := []string{"z"}
	at(b, "fresh", "")
	s.AddAll(add)
	add[0] = "changed" // AddAll copies
	if got := s.Get(); !slices.Equal(got, []string{"z"}) {
		t.Errorf("fresh Get after AddAll = %q", got)
	}
	at(b, "k", "w")
	if got := s.Get(); got != nil {
		t.Errorf("k/w Get = %q, want nil", got)
	}
	s.Add("w")
	at(b, "k", "")
	s.Update(nil)
	if got := s.Get(); got != nil {
		t.Errorf("Get after Update(nil) = %q, want nil", got)
	}
	s.Add("again")
	s.Clear()
	if got := s.Get(); got != nil {
		t.Errorf("Get after Clear = %q, want nil", got)
	}
	at(b, "k", "w")
	if got := s.Get(); !slices.Equal(got, []string{"w"}) {
		t.Errorf("k/w Get = %q", got)
	}
}

func behaviourMapState(t *testing.T, b Backend) {
	s := must[MapState[string, int]](t)(NewMapState[string, int](b, "m"))
	at(b, "k", "")
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
	keys := slices.Sorted(s.Keys())
	if !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Errorf("Keys = %q", keys)
	}
	// Early break.
	n := 0
	for range s.All() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after first entry ran %d iterations", n)
	}
	// Removing while iterating.
	for k := range s.Keys() {
		if k != "b" {
			s.Remove(k)
		}
	}
	if got := maps.Collect(s.All()); !maps.Equal(got, map[string]int{"b": 2}) {
		t.Errorf("All after removing in loop = %v", got)
	}
	s.Remove("nope")
	at(b, "k", "w")
	if !s.IsEmpty() {
		t.Error("k/w not empty")
	}
	s.Put("w", 7)
	at(b, "j", "")
	if !s.IsEmpty() || len(maps.Collect(s.All())) != 0 {
		t.Error("j not empty")
	}
	at(b, "k", "")
	s.Remove("b")
	if !s.IsEmpty() {
		t.Error("map not empty after removing its last key")
	}
	s.Put("x", 1)
	s.Clear()
	if !s.IsEmpty() {
		t.Error("map not empty after Clear")
	}
	at(b, "k", "w")
	v, ok = s.Get("w")
	wantValue(t, "k/w Get(w)", v, ok, 7, true)
}

func behaviourReducingState(t *testing.T, b Backend) {
	s := must[ReducingState[int64]](t)(NewReducingState(b, "sum", func(a, b int64) int64 { return a + b }))
	at(b, "k", "")
	v, ok := s.Get()
	wantValue(t, "empty", v, ok, 0, false)
	for i := range int64(5) {
		s.Add(i)
	}
	v, ok = s.Get()
	wantValue(t, "sum", v, ok, 10, true)
	at(b, "k", "w")
	s.Add(100)
	v, ok = s.Get()
	wantValue(t, "k/w", v, ok, 100, true)
	at(b, "k", "")
	s.Clear()
	v, ok = s.Get()
	wantValue(t, "cleared", v, ok, 0, false)
}

func behaviourAggregatingState(t *testing.T, b Backend) {
	s := must[AggregatingState[int64, float64]](t)(NewAggregatingState[int64, avgAcc, float64](b, "avg", average{}))
	at(b, "k", "")
	v, ok := s.Get()
	wantValue(t, "empty", v, ok, 0, false)
	s.Add(1)
	s.Add(2)
	s.Add(6)
	v, ok = s.Get()
	wantValue(t, "avg", v, ok, 3, true)
	at(b, "j", "")
	s.Add(5)
	v, ok = s.Get()
	wantValue(t, "j", v, ok, 5, true)
	s.Clear()
	v, ok = s.Get()
	wantValue(t, "j cleared", v, ok, 0, false)
	at(b, "k", "")
	v, ok = s.Get()
	wantValue(t, "k", v, ok, 3, true)
}

func behaviourRegistration(t *testing.T, b Backend) {
	v1 := must[ValueState[int]](t)(NewValueState[int](b, "s"))
	v2 := must[ValueState[int]](t)(NewValueState[int](b, "s"))
	if v1 != v2 {
		t.Error("same name and type returned two states")
	}
	at(b, "k", "")
	v1.Update(5)
	v, ok := v2.Value()
	wantValue(t, "through second handle", v, ok, 5, true)

	for _, tc := range []struct {
		name string
		err  func() error
		want []string
	}{
		{"other type", func() error { _, err := NewValueState[string](b, "s"); return err },
			[]string{`"s"`, "ValueState[int]", "ValueState[string]"}},
		{"other kind", func() error { _, err := NewListState[int](b, "s"); return err },
			[]string{`"s"`, "ValueState[int]", "ListState[int]"}},
		{"reducing over value", func() error {
			_, err := NewReducingState(b, "s", func(a, b int) int { return a + b })
			return err
		}, []string{"ValueState[int]", "ReducingState[int]"}},
		{"map types", func() error {
			if _, err := NewMapState[string, int](b, "m"); err != nil {
				return err
			}
			_, err := NewMapState[string, int64](b, "m")
			return err
		}, []string{"MapState[string, int]", "MapState[string, int64]"}},
		{"empty name", func() error { _, err := NewValueState[int](b, ""); return err },
			[]string{"name must not be empty"}},
		{"nil reduce", func() error { _, err := NewReducingState[int](b, "r", nil); return err },
			[]string{`"r"`, "reduce function"}},
		{"nil aggregate", func() error {
			_, err := NewAggregatingState[int64, avgAcc, float64](b, "a", nil)
			return err
		}, []string{`"a"`, "AggregateFunction"}},
		{"no codec", func() error { _, err := NewValueState[func()](b, "f"); return err },
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
	// A failed registration registers nothing.
	if _, err := NewValueState[int](b, "f"); err != nil {
		t.Errorf("registering a name after a failed registration: %v", err)
	}
}

func behaviourAccessWithoutKeyPanics(t *testing.T, b Backend) {
	s := must[ValueState[int]](t)(NewValueState[int](b, "v"))
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "no current key") {
			t.Errorf("recovered %v, want a no-current-key panic", r)
		}
	}()
	s.Value()
}

func TestWrongKeyGroupPanics(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := be.new(keygroup.Range{Start: 10, End: 19})
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), "key group 20 is outside") {
					t.Errorf("recovered %v, want a key-group panic", r)
				}
			}()
			b.SetCurrentKey([]byte("k"), 20)
		})
	}
}

func TestRawCorruptValuePanicsWithAccessError(t *testing.T) {
	b := NewMemRawBackend(allKeyGroups)
	s := must[ValueState[string]](t)(NewValueState[string](b, "v"))
	at(b, "k", "")
	if err := b.Put("v", []byte("k"), nil, keyGroupOf("k"), []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ae, ok := recover().(*AccessError)
		if !ok || ae.State != "v" || !errors.Is(ae, codec.ErrTruncated) && !errors.Is(ae, codec.ErrCorrupt) {
			t.Errorf("recovered %v, want *AccessError wrapping a decode error", ae)
		}
	}()
	s.Value()
}

func TestUnsupportedBackend(t *testing.T) {
	type bare struct{ Backend }
	_, err := NewValueState[int](bare{}, "v")
	if err == nil || !strings.Contains(err.Error(), "RawStore") {
		t.Errorf("err = %v", err)
	}
}

// The heap backend's per-record path allocates nothing once a key exists.
func TestHeapHotPathDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	b := NewHeapBackend(allKeyGroups)
	v := must[ValueState[int64]](t)(NewValueState[int64](b, "v"))
	r := must[ReducingState[int64]](t)(NewReducingState(b, "r", func(a, b int64) int64 { return a + b }))
	m := must[MapState[int64, int64]](t)(NewMapState[int64, int64](b, "m"))
	l := must[ListState[int64]](t)(NewListState[int64](b, "l"))
	ts := NewTimerService(b)
	keys := [][]byte{[]byte("alpha"), []byte("beta"), []byte("a-rather-longer-key-of-forty-bytes-------")}
	nss := [][]byte{nil, []byte("window-1")}
	var kgs []int
	for _, k := range keys {
		kgs = append(kgs, keyGroupOf(string(k)))
		for _, ns := range nss {
			b.SetCurrentKey(k, keyGroupOf(string(k)))
			b.SetCurrentNamespace(ns)
			v.Update(1)
			r.Add(1)
			m.Put(7, 1)
			l.Add(1)
			ts.RegisterEventTimeTimer(100)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i, k := range keys {
			for _, ns := range nss {
				b.SetCurrentKey(k, kgs[i])
				b.SetCurrentNamespace(ns)
				x, _ := v.Value()
				v.Update(x + 1)
				r.Add(1)
				y, _ := m.Get(7)
				m.Put(7, y+1)
				_ = l.Get()
				ts.RegisterEventTimeTimer(100) // exists: deduplicated
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}
