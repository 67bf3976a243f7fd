package statetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// RunRawStore runs the state.RawStore contract tests against fresh
// backends from newBackend, which must implement state.RawStore.
func RunRawStore(t *testing.T, newBackend NewBackend) {
	raw := func(t *testing.T, r keygroup.Range) state.RawStore {
		b := newBackend(t, r)
		s, ok := b.(state.RawStore)
		if !ok {
			t.Fatalf("%T does not implement state.RawStore", b)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s state.RawStore)
	}{
		{"Scalar", rawScalar},
		{"Entries", rawEntries},
		{"ScanOrder", rawScanOrder},
		{"ScanWhileWriting", rawScanWhileWriting},
		{"DeleteEntriesIsExact", rawDeleteEntriesIsExact},
		{"MapStateIteratesInKeyOrder", rawMapStateOrder},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, raw(t, AllKeyGroups)) })
	}
	t.Run("KeyGroupOutOfRange", func(t *testing.T) { rawKeyGroupOutOfRange(t, raw(t, keygroup.Range{Start: 10, End: 19})) })
}

func wantBytes(t *testing.T, what string, got []byte, ok bool, err error, want string, wantOK bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if ok != wantOK || string(got) != want {
		t.Errorf("%s = (%q, %v), want (%q, %v)", what, got, ok, want, wantOK)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func rawScalar(t *testing.T, s state.RawStore) {
	k, kg := []byte("key"), 5
	v, ok, err := s.Get("v", k, nil, kg)
	wantBytes(t, "Get of a state never written", v, ok, err, "", false)
	check(t, s.Delete("v", k, nil, kg)) // deleting nothing is fine
	buf := []byte("one")
	check(t, s.Put("v", k, nil, kg, buf))
	copy(buf, "XXX") // the store copied it
	v, ok, err = s.Get("v", k, nil, kg)
	wantBytes(t, "Get", v, ok, err, "one", true)
	check(t, s.Put("v", k, []byte("ns"), kg, []byte("two")))
	v, ok, err = s.Get("v", k, nil, kg)
	wantBytes(t, "Get after writing another namespace", v, ok, err, "one", true)
	check(t, s.Put("v", k, nil, kg, nil))
	v, ok, err = s.Get("v", k, nil, kg)
	wantBytes(t, "Get of an empty value", v, ok, err, "", true)
	check(t, s.Delete("v", k, nil, kg))
	v, ok, err = s.Get("v", k, nil, kg)
	wantBytes(t, "Get after Delete", v, ok, err, "", false)
	v, ok, err = s.Get("v", k, []byte("ns"), kg)
	wantBytes(t, "other namespace after Delete", v, ok, err, "two", true)

	// Append creates, extends, and starts over after Put or Delete.
	check(t, s.Append("l", k, nil, kg, []byte("a")))
	check(t, s.Append("l", k, nil, kg, []byte("bc")))
	v, ok, err = s.Get("l", k, nil, kg)
	wantBytes(t, "Get after Append", v, ok, err, "abc", true)
	check(t, s.Put("l", k, nil, kg, []byte("x")))
	check(t, s.Append("l", k, nil, kg, []byte("y")))
	v, ok, err = s.Get("l", k, nil, kg)
	wantBytes(t, "Append after Put", v, ok, err, "xy", true)
	check(t, s.Delete("l", k, nil, kg))
	check(t, s.Append("l", k, nil, kg, []byte("z")))
	v, ok, err = s.Get("l", k, nil, kg)
	wantBytes(t, "Append after Delete", v, ok, err, "z", true)
	// A returned slice stays valid until the next call.
	v1, _, _ := s.Get("l", k, nil, kg)
	if string(v1) != "z" {
		t.Errorf("Get = %q", v1)
	}
	// States with a common name prefix are separate.
	check(t, s.Put("l2", k, nil, kg, []byte("other")))
	v, ok, err = s.Get("l", k, nil, kg)
	wantBytes(t, "l after writing l2", v, ok, err, "z", true)
}

func rawEntries(t *testing.T, s state.RawStore) {
	k, kg := []byte("key"), 7
	v, ok, err := s.GetEntry("m", k, nil, kg, []byte("a"))
	wantBytes(t, "GetEntry of a state never written", v, ok, err, "", false)
	check(t, s.DeleteEntry("m", k, nil, kg, []byte("a")))
	check(t, s.DeleteEntries("m", k, nil, kg))
	uk := []byte("a")
	check(t, s.PutEntry("m", k, nil, kg, uk, []byte("1")))
	uk[0] = 'b' // the store copied the user key
	check(t, s.PutEntry("m", k, nil, kg, uk, []byte("2")))
	check(t, s.PutEntry("m", k, nil, kg, nil, []byte("empty user key")))
	v, ok, err = s.GetEntry("m", k, nil, kg, []byte("a"))
	wantBytes(t, "GetEntry(a)", v, ok, err, "1", true)
	v, ok, err = s.GetEntry("m", k, nil, kg, nil)
	wantBytes(t, "GetEntry(empty)", v, ok, err, "empty user key", true)
	v, ok, err = s.GetEntry("m", k, []byte("ns"), kg, []byte("a"))
	wantBytes(t, "GetEntry in another namespace", v, ok, err, "", false)
	check(t, s.DeleteEntry("m", k, nil, kg, []byte("a")))
	v, ok, err = s.GetEntry("m", k, nil, kg, []byte("a"))
	wantBytes(t, "GetEntry after DeleteEntry", v, ok, err, "", false)
	if got := scanAll(t, s, "m", k, nil, kg); got != `""=empty user key b=2` {
		t.Errorf("Scan = %s", got)
	}
	check(t, s.DeleteEntries("m", k, nil, kg))
	if got := scanAll(t, s, "m", k, nil, kg); got != "" {
		t.Errorf("Scan after DeleteEntries = %s", got)
	}
}

// scanAll formats the entries a Scan yields: uk=v separated by spaces,
// empty user keys as "".
func scanAll(t *testing.T, s state.RawStore, name string, key, ns []byte, kg int) string {
	t.Helper()
	var out []string
	check(t, s.Scan(name, key, ns, kg, func(uk, v []byte) bool {
		if len(uk) == 0 {
			out = append(out, `""=`+string(v))
		} else {
			out = append(out, string(uk)+"="+string(v))
		}
		return true
	}))
	return strings.Join(out, " ")
}

func rawScanOrder(t *testing.T, s state.RawStore) {
	k, kg := []byte("k"), 3
	uks := []string{"b", "a\x00", "", "\xff", "ab", "a", "\xff\xff", "a\xff", "\x00"}
	for _, uk := range uks {
		check(t, s.PutEntry("m", k, nil, kg, []byte(uk), []byte(uk)))
	}
	var got []string
	check(t, s.Scan("m", k, nil, kg, func(uk, v []byte) bool {
		if !bytes.Equal(uk, v) {
			t.Errorf("user key %q has value %q", uk, v)
		}
		got = append(got, string(uk))
		return true
	}))
	want := slices.Sorted(slices.Values(uks))
	if !slices.Equal(got, want) {
		t.Errorf("Scan order %q, want %q", got, want)
	}
	// Early stop.
	n := 0
	check(t, s.Scan("m", k, nil, kg, func(_, _ []byte) bool { n++; return n < 3 }))
	if n != 3 {
		t.Errorf("scan stopped after %d entries, want 3", n)
	}
	// A scan inside a scan.
	check(t, s.PutEntry("m", []byte("other"), nil, kg, []byte("x"), []byte("1")))
	var outer, inner int
	check(t, s.Scan("m", k, nil, kg, func(_, _ []byte) bool {
		outer++
		check(t, s.Scan("m", []byte("other"), nil, kg, func(_, _ []byte) bool { inner++; return true }))
		return true
	}))
	if outer != len(uks) || inner != len(uks) {
		t.Errorf("nested scans saw %d and %d entries, want %d each", outer, inner, len(uks))
	}
}

func rawScanWhileWriting(t *testing.T, s state.RawStore) {
	k, kg := []byte("k"), 4
	for i := range 10 {
		check(t, s.PutEntry("m", k, nil, kg, fmt.Appendf(nil, "%02d", i), []byte("v")))
	}
	seen := 0
	check(t, s.Scan("m", k, nil, kg, func(uk, _ []byte) bool {
		seen++
		// Delete this entry and a later one, overwrite another, add one.
		check(t, s.DeleteEntry("m", k, nil, kg, uk))
		check(t, s.PutEntry("m", k, nil, kg, []byte("05"), []byte("w")))
		check(t, s.Put("other", k, nil, kg, []byte("x")))
		return true
	}))
	if seen < 1 || seen > 11 {
		t.Errorf("scan saw %d entries", seen)
	}
	got := scanAll(t, s, "m", k, nil, kg)
	if got != "05=w" && got != "" {
		t.Errorf("after deleting every scanned entry: %s", got)
	}
}

func rawDeleteEntriesIsExact(t *testing.T, s state.RawStore) {
	kg := 9
	put := func(name, key, ns, uk string) {
		check(t, s.PutEntry(name, []byte(key), []byte(ns), kg, []byte(uk), []byte(name+"/"+key+"/"+ns+"/"+uk)))
	}
	for _, ns := range []string{"", "w", "w\x00", "\x00"} {
		for _, key := range []string{"", "a", "ab", "a\x00", "b"} {
			for i := range 20 {
				put("m", key, ns, fmt.Sprint(i))
			}
			put("m2", key, ns, "x")
		}
	}
	check(t, s.Put("v", []byte("a"), nil, kg, []byte("scalar")))
	check(t, s.PutEntry("m", []byte("a"), nil, kg+1, []byte("0"), []byte("next group")))
	// 20 entries: deleted with a range delete by a store that has one;
	// the small map below key by key.
	check(t, s.DeleteEntries("m", []byte("a"), nil, kg))
	check(t, s.DeleteEntries("m2", []byte("a"), []byte("w"), kg))
	for _, ns := range []string{"", "w", "w\x00", "\x00"} {
		for _, key := range []string{"", "a", "ab", "a\x00", "b"} {
			n := len(strings.Fields(scanAll(t, s, "m", []byte(key), []byte(ns), kg)))
			want := 20
			if key == "a" && ns == "" {
				want = 0
			}
			if n != want {
				t.Errorf("m (%q, %q) has %d entries, want %d", key, ns, n, want)
			}
			n = len(strings.Fields(scanAll(t, s, "m2", []byte(key), []byte(ns), kg)))
			want = 1
			if key == "a" && ns == "w" {
				want = 0
			}
			if n != want {
				t.Errorf("m2 (%q, %q) has %d entries, want %d", key, ns, n, want)
			}
		}
	}
	v, ok, err := s.Get("v", []byte("a"), nil, kg)
	wantBytes(t, "value state of the cleared key", v, ok, err, "scalar", true)
	v, ok, err = s.GetEntry("m", []byte("a"), nil, kg+1, []byte("0"))
	wantBytes(t, "same key in the next key group", v, ok, err, "next group", true)
}

// Raw backends iterate map state by encoded user key.
func rawMapStateOrder(t *testing.T, s state.RawStore) {
	m := Must(state.NewMapState[int64, string](s, "m"))(t)
	At(s, "k", "")
	for _, k := range []int64{5, -1, 300, 0, 1 << 40, -1 << 40, 127, 128} {
		m.Put(k, fmt.Sprint(k))
	}
	c := codec.MustFor[int64]()
	var prev []byte
	n := 0
	for k, v := range m.All() {
		if v != fmt.Sprint(k) {
			t.Errorf("%d → %q", k, v)
		}
		enc := c.Append(nil, k)
		if prev != nil && bytes.Compare(prev, enc) >= 0 {
			t.Errorf("key %d (%x) after %x: not in encoded order", k, enc, prev)
		}
		prev = enc
		n++
	}
	if n != 8 {
		t.Errorf("iterated %d entries, want 8", n)
	}
}

func rawKeyGroupOutOfRange(t *testing.T, s state.RawStore) {
	k := []byte("k")
	for _, kg := range []int{9, 20, -1} {
		for op, err := range map[string]error{
			"Put":           s.Put("v", k, nil, kg, []byte("x")),
			"Append":        s.Append("v", k, nil, kg, []byte("x")),
			"Delete":        s.Delete("v", k, nil, kg),
			"PutEntry":      s.PutEntry("m", k, nil, kg, k, k),
			"DeleteEntry":   s.DeleteEntry("m", k, nil, kg, k),
			"DeleteEntries": s.DeleteEntries("m", k, nil, kg),
			"Scan":          s.Scan("m", k, nil, kg, func(_, _ []byte) bool { return true }),
		} {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("key group %d is outside", kg)) {
				t.Errorf("%s in key group %d: %v", op, kg, err)
			}
		}
		if _, _, err := s.Get("v", k, nil, kg); err == nil {
			t.Errorf("Get in key group %d: no error", kg)
		}
		if _, _, err := s.GetEntry("m", k, nil, kg, k); err == nil {
			t.Errorf("GetEntry in key group %d: no error", kg)
		}
	}
	if snap := Must(s.Snapshot())(t); snap.Len() != 0 {
		t.Errorf("snapshot holds %d entries after refused writes", snap.Len())
	}
}
