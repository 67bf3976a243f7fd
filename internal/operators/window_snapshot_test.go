package operators

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// TestEndsSnapshotIsCanonical checks the snapshot of non-merging windows
// (endsCopy.build, which orders nothing by comparing entries or timers)
// against the canonical form worked out from WindowStates: per key group,
// one entry per key and window sorted by key and namespace, and the
// timers Flink's trigger would have pending, sorted as the timer service
// fires them. Keys of one length take the integer ordering, keys of
// several lengths the bytewise one.
func TestEndsSnapshotIsCanonical(t *testing.T) {
	ms := time.Millisecond
	specs := map[string]WindowSpec{
		"tumbling+lateness": {Assigner: TumblingWindows(10*ms, false), AllowedLateness: 25 * ms},
		"sliding":           {Assigner: SlidingWindows(20*ms, 5*ms, false)},
		"sliding+lateness":  {Assigner: SlidingWindows(20*ms, 5*ms, false), AllowedLateness: 10 * ms},
		"processing time":   {Assigner: SlidingWindows(20*ms, 5*ms, true)},
	}
	keyFormats := map[string]string{"one length": "key%04d", "several lengths": "k%d"}
	for specName, spec := range specs {
		for keysName, keyFormat := range keyFormats {
			for flavour, f := range resultFactories(t, spec) {
				t.Run(fmt.Sprintf("%s/%s/%s", specName, keysName, flavour), func(t *testing.T) {
					h, err := openWinSubtask(f, 2, 1, nil, 0, true)
					if err != nil {
						t.Fatal(err)
					}
					// 20 records per ms over 2 000 keys, a tenth of them up to
					// 40 ms late, the watermark 30 ms behind: many keys per key
					// group, windows that have fired and wait, others not.
					rng := rand.New(rand.NewPCG(7, 8))
					maxTS := int64(0)
					for i := range 4000 {
						ts := int64(i / 20)
						if rng.IntN(10) == 0 {
							ts -= rng.Int64N(40)
						}
						maxTS = max(maxTS, ts)
						e := wev{Key: fmt.Sprintf(keyFormat, rng.IntN(2000)), TS: ts, V: rng.Int64N(100)}
						if KeyGroupOf([]byte(e.Key), testMaxP) >= testMaxP/2 {
							h.element(counted(e), e.TS)
						}
						if i%50 == 49 {
							h.watermark(maxTS - 30)
							h.clock.advance(int64(i/20) - 10)
						}
					}
					snap, err := h.op.(runtime.Snapshotter).SnapshotState(1)
					if err != nil {
						t.Fatal(err)
					}
					checkCanonicalWindows(t, h.op, spec, snap)
				})
			}
		}
	}
}

func checkCanonicalWindows(t *testing.T, op runtime.Operator, spec WindowSpec, snap *runtime.OperatorSnapshot) {
	t.Helper()
	eventTime := spec.Assigner.IsEventTime()
	lateness := spec.AllowedLateness.Milliseconds()
	if !eventTime {
		lateness = 0
	}
	type kgEntry struct {
		kg  int
		key string
		ns  string
	}
	var want []kgEntry
	wantTimers := map[int][]state.Timer{}
	for e := range op.(WindowState).WindowStates() {
		ns := appendWindowNamespace(nil, e.Window)
		want = append(want, kgEntry{e.KeyGroup, string(e.Key), string(ns)})
		mt := e.Window.MaxTimestamp()
		if !eventTime || !e.Fired {
			wantTimers[e.KeyGroup] = append(wantTimers[e.KeyGroup], state.Timer{Timestamp: mt, Key: e.Key, Namespace: ns})
		}
		if eventTime && lateness > 0 {
			wantTimers[e.KeyGroup] = append(wantTimers[e.KeyGroup], state.Timer{Timestamp: mt + lateness, Key: e.Key, Namespace: ns})
		}
	}
	if len(want) == 0 {
		t.Fatal("the script left no windows to snapshot")
	}
	slices.SortFunc(want, func(a, b kgEntry) int {
		if a.kg != b.kg {
			return a.kg - b.kg
		}
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.ns, b.ns))
	})
	var got []kgEntry
	for _, g := range snap.Keyed.KeyGroups {
		for _, e := range g.Entries {
			if e.State != windowContentsState {
				t.Fatalf("entry of state %q", e.State)
			}
			got = append(got, kgEntry{g.KeyGroup, string(e.Key), string(e.Namespace)})
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("entries (key group, key, window) differ from the canonical order:\n got %v\nwant %v", got[:min(len(got), 8)], want[:min(len(want), 8)])
	}
	nTimers := 0
	for _, g := range snap.Timers.KeyGroups {
		ts := g.EventTime
		if !eventTime {
			ts = g.ProcessingTime
			if len(g.EventTime) > 0 {
				t.Fatalf("key group %d: event-time timers for processing-time windows", g.KeyGroup)
			}
		} else if len(g.ProcessingTime) > 0 {
			t.Fatalf("key group %d: processing-time timers for event-time windows", g.KeyGroup)
		}
		w := wantTimers[g.KeyGroup]
		slices.SortFunc(w, compareTimers)
		eq := slices.EqualFunc(ts, w, func(a, b state.Timer) bool {
			return a.Timestamp == b.Timestamp && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Namespace, b.Namespace)
		})
		if !eq {
			t.Fatalf("key group %d: %d timers differ from the %d canonical ones, sorted", g.KeyGroup, len(ts), len(w))
		}
		nTimers += len(ts)
	}
	wn := 0
	for _, w := range wantTimers {
		wn += len(w)
	}
	if nTimers != wn {
		t.Fatalf("%d timers, want %d", nTimers, wn)
	}
}
