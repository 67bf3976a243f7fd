package sink

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

func TestCollectIsSafeAcrossSubtasks(t *testing.T) {
	const p, perSubtask = 8, 5000
	c := Collect[int]()
	var wg sync.WaitGroup
	for sub := range p {
		w := openSink[int](t, c, sub, p)
		wg.Go(func() {
			for i := range perSubtask {
				if err := w.Write(sub*perSubtask+i, int64(i)); err != nil {
					t.Error(err)
					return
				}
				if i%1000 == 0 {
					_ = c.Len() // reads race with writes
					_ = c.Values()
				}
			}
			if err := w.Finish(); err != nil {
				t.Error(err)
			}
			w.Close()
		})
	}
	wg.Wait()
	got := c.Values()
	if len(got) != p*perSubtask {
		t.Fatalf("collected %d values, want %d", len(got), p*perSubtask)
	}
	slices.Sort(got)
	for i, v := range got {
		if v != i {
			t.Fatalf("value %d missing or repeated", i)
		}
	}
	// Each subtask's records keep their order and timestamps.
	last := make(map[int]int64)
	for _, r := range c.Records() {
		sub := r.Value / perSubtask
		if prev, ok := last[sub]; ok && r.Timestamp != prev+1 {
			t.Fatalf("subtask %d: timestamp %d after %d", sub, r.Timestamp, prev)
		}
		last[sub] = r.Timestamp
	}
}

func TestCollectValuesIsACopy(t *testing.T) {
	c := Collect[string]()
	w := openSink[string](t, c, 0, 1)
	write(t, w, "a")
	v := c.Values()
	v[0] = "changed"
	if got := c.Values(); got[0] != "a" {
		t.Fatalf("Values aliases the sink's storage: %q", got)
	}
	if r := c.Records(); r[0].Timestamp != NoTimestamp {
		t.Fatalf("timestamp %d, want NoTimestamp", r[0].Timestamp)
	}
}

type point struct{ X, Y int }

func TestPrintFormatsLikeFlink(t *testing.T) {
	tests := []struct {
		prefix string
		p      int
		want   []string
	}{
		{"", 1, []string{"{1 2}", "{3 4}"}},
		{"out", 1, []string{"out> {1 2}", "out> {3 4}"}},
		{"", 2, []string{"1> {1 2}", "2> {3 4}"}},
		{"out", 3, []string{"out:1> {1 2}", "out:3> {3 4}"}},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		s := &printSink[point]{prefix: tc.prefix, w: &buf}
		first := openSink[point](t, s, 0, tc.p)
		lastSub := openSink[point](t, s, tc.p-1, tc.p)
		write(t, first, point{1, 2})
		write(t, lastSub, point{3, 4})
		if got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); !slices.Equal(got, tc.want) {
			t.Errorf("prefix %q p=%d: got %q, want %q", tc.prefix, tc.p, got, tc.want)
		}
	}
}

func TestPrintLinesDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	s := &printSink[string]{prefix: "x", w: &buf}
	var wg sync.WaitGroup
	for sub := range 4 {
		w := openSink[string](t, s, sub, 4)
		wg.Go(func() {
			for range 500 {
				w.Write(strings.Repeat("v", 100), 0)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2000 {
		t.Fatalf("%d lines, want 2000", len(lines))
	}
	sort.Strings(lines)
	for _, l := range lines {
		if len(l) != len("x:1> ")+100 {
			t.Fatalf("mangled line %q", l)
		}
	}
}

func TestBlackholeCounts(t *testing.T) {
	bh := Blackhole[int]()
	var wg sync.WaitGroup
	for sub := range 4 {
		w := openSink(t, bh, sub, 4)
		wg.Go(func() {
			for i := range 1000 * (sub + 1) {
				w.Write(i, 0)
			}
			w.Finish()
			if n := w.(Counter).Count(); n != int64(1000*(sub+1)) {
				t.Errorf("subtask %d counted %d", sub, n)
			}
		})
	}
	wg.Wait()
	if n := bh.(Counter).Count(); n != 10_000 {
		t.Fatalf("Count = %d, want 10000", n)
	}
}
