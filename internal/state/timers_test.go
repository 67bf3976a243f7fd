package state

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
)

// fired records one timer firing: its time and the key and namespace the
// backend had when fire ran.
type fired struct {
	ts      int64
	key, ns string
	kg      int
}

func (f fired) String() string { return fmt.Sprintf("%d:%s/%s", f.ts, f.key, f.ns) }

func recorder(b Backend, log *[]fired) func(int64) {
	return func(ts int64) {
		*log = append(*log, fired{ts, string(b.CurrentKey()), string(b.CurrentNamespace()), b.CurrentKeyGroup()})
	}
}

func firedStrings(l []fired) string {
	var s []string
	for _, f := range l {
		s = append(s, f.String())
	}
	return strings.Join(s, " ")
}

func behaviourTimerOrderDedupDelete(t *testing.T, b Backend) {
	ts := NewTimerService(b)
	reg := func(key, ns string, times ...int64) {
		at(b, key, ns)
		for _, x := range times {
			ts.RegisterEventTimeTimer(x)
		}
	}
	reg("b", "", 30, 10, 10) // duplicate 10
	reg("a", "", 10, 20)
	reg("a", "w", 10)
	reg("c", "", -5, math.MinInt64)
	reg("d", "", 40)
	at(b, "d", "")
	ts.DeleteEventTimeTimer(40)
	ts.DeleteEventTimeTimer(41) // not registered: no-op
	at(b, "a", "w")
	ts.DeleteEventTimeTimer(20) // (a, w, 20) does not exist; (a, "", 20) stays
	if n := ts.NumEventTimers(); n != 7 {
		t.Fatalf("NumEventTimers = %d, want 7", n)
	}
	var log []fired
	ts.AdvanceWatermark(15, recorder(b, &log))
	// Ties at 10 fire in key, then namespace order.
	if got, want := firedStrings(log), "-9223372036854775808:c/ -5:c/ 10:a/ 10:a/w 10:b/"; got != want {
		t.Errorf("fired %s, want %s", got, want)
	}
	for _, f := range log {
		if f.kg != keyGroupOf(f.key) {
			t.Errorf("timer %v fired with key group %d, want %d", f, f.kg, keyGroupOf(f.key))
		}
	}
	if ts.CurrentWatermark() != 15 {
		t.Errorf("CurrentWatermark = %d", ts.CurrentWatermark())
	}
	log = nil
	ts.AdvanceWatermark(15, recorder(b, &log))
	ts.AdvanceWatermark(5, recorder(b, &log)) // going back fires nothing
	if len(log) != 0 || ts.CurrentWatermark() != 15 {
		t.Errorf("fired %v again; watermark %d", log, ts.CurrentWatermark())
	}
	ts.AdvanceWatermark(math.MaxInt64, recorder(b, &log))
	if got, want := firedStrings(log), "20:a/ 30:b/"; got != want {
		t.Errorf("fired %s, want %s", got, want)
	}
	if ts.NumEventTimers() != 0 {
		t.Errorf("NumEventTimers = %d after firing all", ts.NumEventTimers())
	}
	// A fired timer can be registered again.
	reg("a", "", 10)
	log = nil
	ts.AdvanceWatermark(math.MaxInt64, recorder(b, &log))
	if got := firedStrings(log); got != "10:a/" {
		t.Errorf("re-registered timer fired %s", got)
	}
}

func behaviourTimersRegisteredInsideFire(t *testing.T, b Backend) {
	ts := NewTimerService(b)
	at(b, "a", "")
	ts.RegisterEventTimeTimer(10)
	at(b, "b", "")
	ts.RegisterEventTimeTimer(12)
	ts.RegisterEventTimeTimer(20)
	var log []fired
	rec := recorder(b, &log)
	again := true
	fire := func(x int64) {
		rec(x)
		key := string(b.CurrentKey())
		switch {
		case x == 10 && key == "a":
			ts.RegisterEventTimeTimer(11) // for a, within wm: fires in this call
			ts.RegisterEventTimeTimer(16) // beyond wm: stays
			ts.RegisterEventTimeTimer(5)  // before the current watermark: fires next
			at(b, "b", "")
			ts.DeleteEventTimeTimer(12) // another key's timer, deleted before it fires
		case x == 11 && again:
			again = false
			ts.RegisterEventTimeTimer(11) // the firing timer again: fires again
			ts.RegisterEventTimeTimer(11) // deduplicated
		}
	}
	ts.AdvanceWatermark(15, fire)
	if got, want := firedStrings(log), "10:a/ 5:a/ 11:a/ 11:a/"; got != want {
		t.Errorf("fired %s, want %s", got, want)
	}
	log = nil
	ts.AdvanceWatermark(100, fire)
	if got, want := firedStrings(log), "16:a/ 20:b/"; got != want {
		t.Errorf("then fired %s, want %s", got, want)
	}
}

func behaviourProcessingTimeTimers(t *testing.T, b Backend) {
	ts := NewTimerService(b)
	if _, ok := ts.NextProcessingTime(); ok {
		t.Error("NextProcessingTime on no timers")
	}
	at(b, "a", "")
	ts.RegisterProcessingTimeTimer(1000)
	ts.RegisterProcessingTimeTimer(500)
	ts.RegisterEventTimeTimer(100) // event time is separate
	at(b, "b", "w")
	ts.RegisterProcessingTimeTimer(700)
	ts.RegisterProcessingTimeTimer(700)
	ts.RegisterProcessingTimeTimer(800)
	ts.DeleteProcessingTimeTimer(800)
	if n := ts.NumProcessingTimers(); n != 3 {
		t.Errorf("NumProcessingTimers = %d, want 3", n)
	}
	if next, ok := ts.NextProcessingTime(); !ok || next != 500 {
		t.Errorf("NextProcessingTime = %d, %v", next, ok)
	}
	var log []fired
	ts.AdvanceProcessingTime(700, recorder(b, &log))
	if got, want := firedStrings(log), "500:a/ 700:b/w"; got != want {
		t.Errorf("fired %s, want %s", got, want)
	}
	if next, ok := ts.NextProcessingTime(); !ok || next != 1000 {
		t.Errorf("NextProcessingTime = %d, %v", next, ok)
	}
	if ts.NumEventTimers() != 1 {
		t.Errorf("processing time fired event timers")
	}
}

// A random sequence of operations against a simple model: a sorted set.
func TestTimerServiceModel(t *testing.T) {
	type tm struct {
		ts      int64
		key, ns string
	}
	less := func(a, b tm) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(len(a.key), len(b.key)), strings.Compare(a.key, b.key), strings.Compare(a.ns, b.ns))
	}
	rng := rand.New(rand.NewPCG(7, 9))
	b := NewHeapBackend(allKeyGroups)
	ts := NewTimerService(b)
	model := map[tm]bool{}
	keys := []string{"a", "b", "cc", "d"}
	nss := []string{"", "x", "yy"}
	wm := int64(0)
	for step := range 20000 {
		x := tm{wm + rng.Int64N(50) - 5, keys[rng.IntN(len(keys))], nss[rng.IntN(len(nss))]}
		switch op := rng.IntN(10); {
		case op < 6:
			at(b, x.key, x.ns)
			ts.RegisterEventTimeTimer(x.ts)
			model[x] = true
		case op < 8:
			at(b, x.key, x.ns)
			ts.DeleteEventTimeTimer(x.ts)
			delete(model, x)
		default:
			wm += rng.Int64N(20)
			var want []tm
			for m := range model {
				if m.ts <= wm {
					want = append(want, m)
					delete(model, m)
				}
			}
			slices.SortFunc(want, less)
			var got []tm
			ts.AdvanceWatermark(wm, func(at int64) {
				got = append(got, tm{at, string(b.CurrentKey()), string(b.CurrentNamespace())})
			})
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: watermark %d fired %v, want %v", step, wm, got, want)
			}
		}
		if ts.NumEventTimers() != len(model) {
			t.Fatalf("step %d: %d timers, model has %d", step, ts.NumEventTimers(), len(model))
		}
	}
}

func TestTimerSnapshotRescale(t *testing.T) {
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+"→"+to.name, func(t *testing.T) {
				src := from.new(allKeyGroups)
				ts := NewTimerService(src)
				var keys []string
				for i := range 100 {
					k := fmt.Sprintf("k%d", i)
					keys = append(keys, k)
					at(src, k, "")
					ts.RegisterEventTimeTimer(int64(i % 7))
					ts.RegisterProcessingTimeTimer(int64(1000 + i))
					at(src, k, "w")
					ts.RegisterEventTimeTimer(int64(50 + i%3))
				}
				snap := ts.Snapshot()
				for i, g := range snap.KeyGroups {
					if i > 0 && snap.KeyGroups[i-1].KeyGroup >= g.KeyGroup {
						t.Fatal("timer key groups out of order")
					}
					for _, x := range slices.Concat(g.EventTime, g.ProcessingTime) {
						if keyGroupOf(string(x.Key)) != g.KeyGroup {
							t.Fatalf("timer of %q in key group %d", x.Key, g.KeyGroup)
						}
					}
				}
				// Fire everything in the original to get the reference.
				var want []fired
				ts.AdvanceWatermark(math.MaxInt64, recorder(src, &want))
				ts.AdvanceProcessingTime(math.MaxInt64, recorder(src, &want))
				if len(want) != 300 {
					t.Fatalf("original fired %d timers, want 300", len(want))
				}

				// Restore into three subtasks: each fires exactly its key
				// groups' timers, and the union is the original.
				var got []fired
				var parts []*TimerSnapshot
				for i := range 3 {
					b := to.new(keygroup.RangeForOperator(testMaxP, 3, i))
					rs := NewTimerService(b)
					rs.Restore(snap)
					parts = append(parts, rs.Snapshot())
					var log []fired
					rs.AdvanceWatermark(math.MaxInt64, recorder(b, &log))
					rs.AdvanceProcessingTime(math.MaxInt64, recorder(b, &log))
					for _, f := range log {
						if !b.KeyGroupRange().Contains(f.kg) {
							t.Errorf("subtask %d fired a timer of key group %d", i, f.kg)
						}
					}
					got = append(got, log...)
				}
				sortFired := func(l []fired) {
					slices.SortFunc(l, func(a, b fired) int {
						return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.key, b.key), strings.Compare(a.ns, b.ns))
					})
				}
				sortFired(got)
				sortFired(want)
				if !slices.Equal(got, want) {
					t.Errorf("rescaled subtasks fired %d timers, want %d", len(got), len(want))
				}
				// Scale back in.
				one := NewTimerService(from.new(allKeyGroups))
				for _, p := range parts {
					one.Restore(p)
				}
				if again := one.Snapshot(); !reflect.DeepEqual(again, snap) {
					t.Errorf("timers after split and merge differ")
				}
			})
		}
	}
}

func TestTimerWithoutKeyPanics(t *testing.T) {
	ts := NewTimerService(NewHeapBackend(allKeyGroups))
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "no current key") {
			t.Errorf("recovered %v", r)
		}
	}()
	ts.RegisterEventTimeTimer(1)
}
