package jobs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/nexmark"
)

// The Nexmark source runs here as a restored job runs it: in phases, each
// subtask opening with the states the previous phase's subtasks snapshotted
// after reading part of their shares. Over all phases every event must be
// generated exactly once, whatever the parallelisms.

func eventKey(e nexmark.Event) string {
	switch e.Type {
	case nexmark.PersonEvent:
		return fmt.Sprintf("P%+v", *e.Person)
	case nexmark.AuctionEvent:
		return fmt.Sprintf("A%+v", *e.Auction)
	}
	return fmt.Sprintf("B%+v", e.Bid)
}

// nexmarkPhases reads each phase's subtasks up to reads[phase] records
// (cut at random record counts), the last phase to the end, and returns
// the keys of all events read, per phase and subtask in order.
func nexmarkPhases(t *testing.T, cfg nexmark.GeneratorConfig, ps, reads []int, rng *rand.Rand) [][][]string {
	t.Helper()
	var states [][]byte
	var out [][][]string
	for pi, p := range ps {
		last := pi == len(ps)-1
		next := make([][]byte, p)
		phase := make([][]string, p)
		for k := range p {
			r, err := nexmarkSource{cfg: cfg}.Open(connector.SourceContext{OperatorName: "nexmark", Subtask: k, Parallelism: p, Restored: states})
			if err != nil {
				t.Fatalf("phase %d, p=%d: %v", pi, p, err)
			}
			lr := r.(connector.LimitedReader[nexmark.Event])
			var rec eventRecorder
			for !last && len(rec.keys) < reads[pi] || last {
				status, err := lr.ReadAtMost(&rec, 1+rng.IntN(700))
				if err != nil {
					t.Fatal(err)
				}
				if status == connector.EndOfInput {
					break
				}
			}
			phase[k] = rec.keys
			if next[k], err = r.(connector.CheckpointedReader).SnapshotState(); err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
		out = append(out, phase)
		states = next
	}
	return out
}

// eventRecorder keeps the events' keys and checks that their timestamps
// are their event times and never decrease.
type eventRecorder struct {
	keys []string
	last int64
}

func (r *eventRecorder) Collect(e nexmark.Event) { panic("nexmark events carry their event time") }
func (r *eventRecorder) CollectWithTimestamp(e nexmark.Event, ts int64) {
	if ts != e.Timestamp() || ts < r.last {
		panic(fmt.Sprintf("event %s carries timestamp %d after %d, want its event time %d, not decreasing", eventKey(e), ts, r.last, e.Timestamp()))
	}
	r.last = ts
	r.keys = append(r.keys, eventKey(e))
}

func TestNexmarkSourceRescalesExactly(t *testing.T) {
	const n = 6000
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = n
	var want []string
	for _, e := range nexmarkEvents(t, n) {
		want = append(want, eventKey(e))
	}
	sortedWant := slices.Sorted(slices.Values(want))
	rng := rand.New(rand.NewPCG(5, 5))
	for _, tc := range []struct {
		ps    []int
		reads []int
	}{
		{[]int{2, 3, 1}, []int{1000, 700, 0}},
		{[]int{2, 3, 1}, []int{1, 2000, 0}},
		{[]int{2, 3, 1}, []int{3000, 1, 0}},
		{[]int{1, 1}, []int{2500, 0}},
		{[]int{3, 3, 3}, []int{400, 900, 0}},
		{[]int{4, 2, 5, 1}, []int{300, 800, 100, 0}},
	} {
		out := nexmarkPhases(t, cfg, tc.ps, tc.reads, rng)
		var all []string
		for _, phase := range out {
			for _, keys := range phase {
				all = append(all, keys...)
			}
		}
		if slices.Equal(tc.ps, []int{1, 1}) && !slices.Equal(all, want) {
			t.Fatalf("p=1 resumed: events differ from an uninterrupted run")
		}
		slices.Sort(all)
		if !slices.Equal(all, sortedWant) {
			t.Fatalf("parallelisms %v, reads %v: %d events, want each of %d once", tc.ps, tc.reads, len(all), len(want))
		}
	}
}

func TestNexmarkSourceCorruptState(t *testing.T) {
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = 10
	_, err := nexmarkSource{cfg: cfg}.Open(connector.SourceContext{OperatorName: "nexmark", Parallelism: 1, Restored: [][]byte{{1, 'i', 1}}})
	if err == nil {
		t.Fatal("Open with a truncated state succeeded")
	}
	for _, want := range []string{`source "nexmark"`, "cannot resume", "truncated"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
	}
}
