package jobs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/nexmark"
	"github.com/weirstream/weir/internal/nexmark/reference"
	"github.com/weirstream/weir/stream"
)

// Each query runs on a small event count at several parallelisms and its
// output is compared with the straightforward computation in
// internal/nexmark/reference over the same events.

// nexmarkEvents returns the first n events of the suite's default
// configuration, exactly the events a job with --events n generates over
// all its source subtasks.
func nexmarkEvents(t testing.TB, n int64) []nexmark.Event {
	t.Helper()
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = n
	g := nexmark.NewGenerator(cfg, 0, 1)
	out := make([]nexmark.Event, 0, n)
	for g.HasNext() {
		var e nexmark.Event
		g.Next(&e)
		out = append(out, e)
	}
	if int64(len(out)) != n {
		t.Fatalf("generator produced %d events, want %d", len(out), n)
	}
	return out
}

// runNexmark runs query on n events at parallelism p and returns the lines
// of its output file, sorted.
func runNexmark(t testing.TB, query string, n int64, p int) []string {
	t.Helper()
	launch.Set(&launch.Settings{Parallelism: p, Quiet: true, Context: context.Background()})
	defer launch.Set(nil)
	out := filepath.Join(t.TempDir(), "out.txt")
	env := stream.NewEnvironment()
	if err := BuildNexmark(env, NexmarkOptions{Query: query, Events: n, Output: out}); err != nil {
		t.Fatal(err)
	}
	if err := env.Execute("nexmark-" + query); err != nil {
		t.Fatalf("%s at p=%d: %v", query, p, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(data) == 0 {
		lines = nil
	}
	slices.Sort(lines)
	return lines
}

// sameLines fails the test with the first differences between got and want.
func sameLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	gotSet := map[string]int{}
	for _, l := range got {
		gotSet[l]++
	}
	for _, l := range want {
		gotSet[l]--
	}
	var missing, extra []string
	for l, n := range gotSet {
		for ; n < 0; n++ {
			missing = append(missing, l)
		}
		for ; n > 0; n-- {
			extra = append(extra, l)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	t.Errorf("%s: %d lines, want %d; %d missing (first: %q), %d extra (first: %q)",
		what, len(got), len(want), len(missing), first(missing, 5), len(extra), first(extra, 5))
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func TestNexmarkStatelessQueriesMatchReference(t *testing.T) {
	const n = 20_000
	events := nexmarkEvents(t, n)
	for _, tc := range []struct {
		query string
		ref   func([]nexmark.Event) []string
	}{
		{"q0", reference.Q0}, {"q1", reference.Q1}, {"q2", reference.Q2},
	} {
		want := tc.ref(events)
		if len(want) == 0 {
			t.Fatalf("%s: the reference is empty; the test would prove nothing", tc.query)
		}
		for _, p := range []int{1, 3} {
			sameLines(t, tc.query, runNexmark(t, tc.query, n, p), want)
		}
	}
}

func TestNexmarkEventTimestamps(t *testing.T) {
	// Every event kind carries its own event time into the job: a person's
	// or auction's record must not take the (empty) bid's time.
	for _, e := range nexmarkEvents(t, 200) {
		if e.Timestamp() <= 0 {
			t.Fatalf("%v event with timestamp %d", e.Type, e.Timestamp())
		}
	}
}
