package slotmanager

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/resource"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

const gib = int64(1) << 30

var (
	small = resource.Profile{CPU: 1000, TaskMemory: gib}
	large = resource.Profile{CPU: 4000, TaskMemory: 8 * gib, Extended: map[string]int64{"gpu": 1}}
)

func slotsOf(p resource.Profile, n int) []resource.Profile {
	s := make([]resource.Profile, n)
	for i := range s {
		s[i] = p
	}
	return s
}

// format renders actions one per line, e.g. "allocate alloc-1 q1/default tm-a/0".
func format(actions []Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		switch a := a.(type) {
		case Allocate:
			out = append(out, fmt.Sprintf("allocate %s %s/%s %s/%d", a.ID, a.Job, a.Group, a.TaskManager, a.Slot))
		case Freed:
			out = append(out, fmt.Sprintf("freed %s %s/%s %s/%d", a.ID, a.Job, a.Group, a.TaskManager, a.Slot))
		case Lost:
			out = append(out, fmt.Sprintf("lost %s %s/%s %s/%d: %s", a.ID, a.Job, a.Group, a.TaskManager, a.Slot, a.Reason))
		case RequestTimeout:
			out = append(out, fmt.Sprintf("timeout %s", a.Job))
		default:
			out = append(out, fmt.Sprintf("unknown %T", a))
		}
	}
	return out
}

func expect(t *testing.T, what string, got []Action, want ...string) {
	t.Helper()
	if g := format(got); !slices.Equal(g, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, g, want)
	}
}

func register(t *testing.T, m *Manager, id string, slots []resource.Profile, now time.Time) []Action {
	t.Helper()
	a, err := m.RegisterTaskManager(id, slots, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func declare(t *testing.T, m *Manager, job string, now time.Time, reqs ...Requirement) []Action {
	t.Helper()
	a, err := m.Declare(job, reqs, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMatchAcrossTaskManagers(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm-b", slotsOf(small, 2), sec(0))
	register(t, m, "tm-a", slotsOf(small, 2), sec(0))
	expect(t, "declare 3", declare(t, m, "q1", sec(1), Requirement{Group: "default", Count: 3}),
		"allocate alloc-1 q1/default tm-a/0",
		"allocate alloc-2 q1/default tm-a/1",
		"allocate alloc-3 q1/default tm-b/0")
	// Re-declaring the same requirement allocates nothing more.
	expect(t, "re-declare", declare(t, m, "q1", sec(2), Requirement{Group: "default", Count: 3}))
	// A second job takes the last slot and waits for the rest.
	expect(t, "declare q2", declare(t, m, "q2", sec(3), Requirement{Job: "q2", Group: "g", Count: 2}),
		"allocate alloc-4 q2/g tm-b/1")
	if d, ok := m.NextDeadline(); !ok || !d.Equal(sec(3).Add(DefaultRequestTimeout)) {
		t.Errorf("NextDeadline = %v, %v", d, ok)
	}
	got := m.Allocations("q1")
	if len(got) != 3 || got[0].TaskManager != "tm-a" || got[2].Slot != 0 || got[0].Group != "default" || !got[0].Profile.Equal(small) {
		t.Errorf("Allocations(q1) = %+v", got)
	}
	// q1 shrinks and frees a slot: q2, pending, gets it.
	expect(t, "q1 lowers", declare(t, m, "q1", sec(4), Requirement{Group: "default", Count: 2}))
	expect(t, "q1 frees", m.Free("alloc-2", sec(5)), "allocate alloc-5 q2/g tm-a/1")
	if _, ok := m.NextDeadline(); ok {
		t.Error("nothing is pending but NextDeadline is set")
	}
	expect(t, "free unknown", m.Free("alloc-2", sec(6)))
}

func TestPackVersusSpread(t *testing.T) {
	setup := func(s Strategy) *Manager {
		m := New(Options{Strategy: s})
		register(t, m, "tm-a", slotsOf(small, 3), sec(0))
		register(t, m, "tm-b", slotsOf(small, 3), sec(0))
		register(t, m, "tm-c", slotsOf(small, 3), sec(0))
		// tm-b is partly used.
		declare(t, m, "other", sec(0), Requirement{Count: 1})
		return m
	}
	pack := setup(Pack)
	if a := pack.Allocations("other"); a[0].TaskManager != "tm-a" {
		t.Fatalf("pack put the first slot on %s", a[0].TaskManager)
	}
	expect(t, "pack", declare(t, pack, "q", sec(1), Requirement{Count: 4}),
		// tm-a has fewest free slots (2): fill it, then tm-b.
		"allocate alloc-2 q/ tm-a/1", "allocate alloc-3 q/ tm-a/2",
		"allocate alloc-4 q/ tm-b/0", "allocate alloc-5 q/ tm-b/1")

	spread := setup(Spread)
	expect(t, "spread", declare(t, spread, "q", sec(1), Requirement{Count: 4}),
		// tm-b and tm-c have 3 free, tm-a 2: round-robin by most free.
		"allocate alloc-2 q/ tm-b/0", "allocate alloc-3 q/ tm-c/0",
		"allocate alloc-4 q/ tm-a/1", "allocate alloc-5 q/ tm-b/1")
}

func TestStrategiesTable(t *testing.T) {
	view := View{TaskManagers: []TaskManagerView{
		{ID: "a", Slots: []SlotView{{Index: 0, Profile: small}, {Index: 1, Profile: large}, {Index: 2, Profile: small, Job: "x", Allocation: "x1"}}},
		{ID: "b", Slots: []SlotView{{Index: 0, Profile: large}, {Index: 1, Profile: large}, {Index: 2, Profile: large}}},
		{ID: "c", Slots: []SlotView{{Index: 0, Profile: small, Job: "x", Allocation: "x2"}}},
	}}
	tests := []struct {
		name     string
		strategy Strategy
		profile  resource.Profile
		n        int
		want     []SlotRef
	}{
		{"pack any", Pack, resource.Profile{}, 3, []SlotRef{{"a", 0}, {"a", 1}, {"b", 0}}},
		{"pack large", Pack, large, 5, []SlotRef{{"a", 1}, {"b", 0}, {"b", 1}, {"b", 2}}},
		{"pack none", Pack, resource.Profile{}, 0, nil},
		{"spread any", Spread, resource.Profile{}, 4, []SlotRef{{"b", 0}, {"a", 0}, {"b", 1}, {"a", 1}}},
		{"spread large", Spread, large, 3, []SlotRef{{"b", 0}, {"a", 1}, {"b", 1}}},
		{"nothing fits", Spread, resource.Profile{Extended: map[string]int64{"gpu": 2}}, 2, nil},
	}
	for _, tt := range tests {
		got := tt.strategy(view, Requirement{Profile: tt.profile}, tt.n)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestProfileMatching(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm-small", slotsOf(small, 2), sec(0))
	gpu := resource.Profile{CPU: 2000, Extended: map[string]int64{"gpu": 1}}
	expect(t, "gpu job waits", declare(t, m, "ml", sec(1), Requirement{Group: "train", Count: 1, Profile: gpu}))
	expect(t, "large TM arrives", register(t, m, "tm-large", slotsOf(large, 1), sec(2)),
		"allocate alloc-1 ml/train tm-large/0")
	expect(t, "any-slot job uses small", declare(t, m, "etl", sec(3), Requirement{Count: 3}),
		"allocate alloc-2 etl/ tm-small/0", "allocate alloc-3 etl/ tm-small/1")
}

func TestTaskManagerLostRematches(t *testing.T) {
	m := New(Options{Strategy: Spread})
	register(t, m, "tm-a", slotsOf(small, 2), sec(0))
	register(t, m, "tm-b", slotsOf(small, 2), sec(0))
	register(t, m, "tm-c", slotsOf(small, 2), sec(0))
	expect(t, "declare", declare(t, m, "q", sec(1), Requirement{Group: "g", Count: 4}),
		"allocate alloc-1 q/g tm-a/0", "allocate alloc-2 q/g tm-b/0",
		"allocate alloc-3 q/g tm-c/0", "allocate alloc-4 q/g tm-a/1")
	expect(t, "tm-a lost", m.UnregisterTaskManager("tm-a", sec(2)),
		"lost alloc-1 q/g tm-a/0: TaskManager tm-a was unregistered",
		"lost alloc-4 q/g tm-a/1: TaskManager tm-a was unregistered",
		"allocate alloc-5 q/g tm-b/1", "allocate alloc-6 q/g tm-c/1")
	for _, a := range m.Allocations("q") {
		if a.TaskManager == "tm-a" {
			t.Errorf("allocation %s still on tm-a", a.ID)
		}
	}
	// Losing another leaves the job short: pending since the loss.
	expect(t, "tm-b lost", m.UnregisterTaskManager("tm-b", sec(3)),
		"lost alloc-2 q/g tm-b/0: TaskManager tm-b was unregistered",
		"lost alloc-5 q/g tm-b/1: TaskManager tm-b was unregistered")
	if d, ok := m.NextDeadline(); !ok || !d.Equal(sec(3).Add(DefaultRequestTimeout)) {
		t.Errorf("NextDeadline = %v, %v", d, ok)
	}
	expect(t, "unknown TM", m.UnregisterTaskManager("tm-b", sec(4)))
	// A re-registered TaskManager is matched again.
	expect(t, "tm-b back", register(t, m, "tm-b", slotsOf(small, 2), sec(5)),
		"allocate alloc-7 q/g tm-b/0", "allocate alloc-8 q/g tm-b/1")
}

func TestRequestTimeout(t *testing.T) {
	m := New(Options{RequestTimeout: 10 * time.Second})
	register(t, m, "tm-1", slotsOf(small, 2), sec(0))
	declare(t, m, "other", sec(0), Requirement{Count: 1, Group: "default"}) // takes tm-1/0
	register(t, m, "tm-2", slotsOf(large, 1), sec(0))
	big := resource.Profile{CPU: 2000, TaskMemory: 2 * gib}
	expect(t, "declare", declare(t, m, "q5", sec(1), Requirement{Group: "default", Count: 8, Profile: big}),
		"allocate alloc-2 q5/default tm-2/0")

	// Re-declaring while unmet keeps the pending start.
	declare(t, m, "q5", sec(5), Requirement{Group: "default", Count: 9, Profile: big})
	if d, _ := m.NextDeadline(); !d.Equal(sec(11)) {
		t.Fatalf("NextDeadline = %v, want %v", d, sec(11))
	}
	expect(t, "before the deadline", m.Tick(sec(10)))
	actions := m.Tick(sec(11))
	expect(t, "at the deadline", actions, "timeout q5")
	err := actions[0].(RequestTimeout).Err
	var te *TimeoutError
	if !errors.As(err, &te) || te.TotalSlots != 3 || te.FreeSlots != 1 || te.FittingFree != 0 || te.HeldByOthers != 1 || te.Held != 1 {
		t.Fatalf("err = %#v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`job "q5"`, `slot sharing group "default"`, "asks for 9 slots", "cpu=2, task=2 GiB",
		"holds 1", "10s", "2 TaskManagers", "3 slots", "1 free", "0 large enough", "1 held by other jobs",
		"start more TaskManagers", "lower the job's parallelism", "raise slot.request.timeout",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("timeout message lacks %q:\n%s", want, msg)
		}
	}
	// Reported once per pending period, and no allocation changed.
	expect(t, "again", m.Tick(sec(100)))
	if _, ok := m.NextDeadline(); ok {
		t.Error("NextDeadline set after the timeout was reported")
	}
	if len(m.Allocations("q5")) != 1 {
		t.Error("Tick changed allocations")
	}

	// Met, then unmet again: a new pending period with a new timeout.
	declare(t, m, "q5", sec(200), Requirement{Group: "default", Count: 1, Profile: big})
	declare(t, m, "q5", sec(300), Requirement{Group: "default", Count: 2, Profile: big})
	if d, ok := m.NextDeadline(); !ok || !d.Equal(sec(310)) {
		t.Fatalf("NextDeadline = %v, %v; want %v", d, ok, sec(310))
	}
	expect(t, "second period", m.Tick(sec(310)), "timeout q5")
}

func TestTimeoutMessageEmptyCluster(t *testing.T) {
	m := New(Options{RequestTimeout: time.Second})
	declare(t, m, "q", sec(0), Requirement{Group: "default", Count: 2})
	a := m.Tick(sec(1))
	if len(a) != 1 {
		t.Fatalf("Tick = %v", format(a))
	}
	msg := a[0].(RequestTimeout).Err.Error()
	for _, want := range []string{"asks for 2 slots (any profile)", "no TaskManagers are registered", "start more TaskManagers"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "large enough") {
		t.Errorf("message about any-profile slots mentions size: %s", msg)
	}
}

func TestNoTimeoutWhenNegative(t *testing.T) {
	m := New(Options{RequestTimeout: -1})
	declare(t, m, "q", sec(0), Requirement{Count: 1})
	if _, ok := m.NextDeadline(); ok {
		t.Error("NextDeadline set with timeouts disabled")
	}
	expect(t, "tick", m.Tick(sec(1e6)))
}

func TestOldestPendingServedFirst(t *testing.T) {
	m := New(Options{})
	declare(t, m, "z-old", sec(1), Requirement{Count: 1})
	declare(t, m, "a-new", sec(2), Requirement{Count: 1})
	expect(t, "one slot", register(t, m, "tm", slotsOf(small, 1), sec(3)), "allocate alloc-1 z-old/ tm/0")
	expect(t, "another", register(t, m, "tm2", slotsOf(small, 1), sec(4)), "allocate alloc-2 a-new/ tm2/0")
}

func TestRemoveJob(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm", slotsOf(small, 2), sec(0))
	declare(t, m, "a", sec(1), Requirement{Group: "x", Count: 1}, Requirement{Group: "y", Count: 1})
	declare(t, m, "b", sec(2), Requirement{Count: 1})
	expect(t, "remove a", m.RemoveJob("a", sec(3)),
		"freed alloc-1 a/x tm/0", "freed alloc-2 a/y tm/1", "allocate alloc-3 b/ tm/0")
	if len(m.Allocations("a")) != 0 || m.Requirements("a") != nil {
		t.Error("job a still known")
	}
	expect(t, "remove unknown", m.RemoveJob("nobody", sec(4)))
}

func TestExcessNotTakenAway(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm", slotsOf(small, 3), sec(0))
	declare(t, m, "q", sec(0), Requirement{Count: 3})
	declare(t, m, "other", sec(1), Requirement{Count: 1})
	expect(t, "q lowers to 1", declare(t, m, "q", sec(2), Requirement{Count: 1}))
	if len(m.Allocations("q")) != 3 {
		t.Error("lowering the requirement took slots away")
	}
	// The JobMaster frees its excess; other gets the first freed slot, and
	// the second stays free.
	expect(t, "free 1", m.Free("alloc-2", sec(3)), "allocate alloc-4 other/ tm/1")
	expect(t, "free 2", m.Free("alloc-3", sec(4)))
	// Dropping every requirement keeps held slots until freed.
	declare(t, m, "q", sec(5))
	if len(m.Allocations("q")) != 1 {
		t.Error("an empty declaration took slots away")
	}
}

func TestErrors(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm", slotsOf(small, 1), sec(0))
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"duplicate TM", second(m.RegisterTaskManager("tm", slotsOf(small, 1), sec(1))), "TaskManager tm is already registered"},
		{"empty TM id", second(m.RegisterTaskManager("", slotsOf(small, 1), sec(1))), "empty ID"},
		{"no slots", second(m.RegisterTaskManager("tm2", nil, sec(1))), "registers no slots"},
		{"negative slot", second(m.RegisterTaskManager("tm2", []resource.Profile{{CPU: -1}}, sec(1))), "slot 0 has negative resources"},
		{"empty job", second(m.Declare("", nil, sec(1))), "empty ID"},
		{"other job", second(m.Declare("a", []Requirement{{Job: "b", Count: 1}}, sec(1))), `declares a requirement for job "b"`},
		{"duplicate group", second(m.Declare("a", []Requirement{{Group: "g", Count: 1}, {Group: "g", Count: 2}}, sec(1))), `group "g" twice`},
		{"negative count", second(m.Declare("a", []Requirement{{Group: "g", Count: -1}}, sec(1))), "asks for -1 slots"},
		{"negative profile", second(m.Declare("a", []Requirement{{Count: 1, Profile: resource.Profile{TaskMemory: -5}}}, sec(1))), "negative profile"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, c.err, c.want)
		}
	}
	// Failed calls changed nothing.
	if v := m.View(); len(v.TaskManagers) != 1 || m.Requirements("a") != nil {
		t.Errorf("a failed call changed state: %+v", v)
	}
}

func second[T any](_ T, err error) error { return err }

func TestBadStrategyIgnored(t *testing.T) {
	bad := func(view View, req Requirement, n int) []SlotRef {
		return []SlotRef{{"nope", 0}, {"tm", 9}, {"tm", -1}, {"tm", 0}, {"tm", 0}, {"tm", 1}, {"tm", 2}}
	}
	m := New(Options{Strategy: bad})
	register(t, m, "tm", []resource.Profile{small, {CPU: 1}, small}, sec(0))
	// Unknown and out-of-range refs are skipped, tm/0 is taken once, tm/1
	// is too small; only tm/0 and tm/2 are allocated.
	expect(t, "declare", declare(t, m, "q", sec(1), Requirement{Count: 3, Profile: small}),
		"allocate alloc-1 q/ tm/0", "allocate alloc-2 q/ tm/2")
}

func TestCustomNewID(t *testing.T) {
	n := 0
	m := New(Options{NewID: func() string { n++; return fmt.Sprintf("x%d", n) }})
	register(t, m, "tm", slotsOf(small, 1), sec(0))
	expect(t, "declare", declare(t, m, "q", sec(0), Requirement{Count: 1}), "allocate x1 q/ tm/0")

	dup := New(Options{NewID: func() string { return "same" }})
	register(t, dup, "tm", slotsOf(small, 2), sec(0))
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "already in use") {
			t.Errorf("recover() = %v, want a panic about a reused ID", r)
		}
	}()
	declare(t, dup, "q", sec(0), Requirement{Count: 2})
}

func TestResultsDoNotAlias(t *testing.T) {
	m := New(Options{})
	register(t, m, "tm", slotsOf(large, 1), sec(0))
	a := declare(t, m, "q", sec(0), Requirement{Count: 1})[0].(Allocate)
	a.Profile.Extended["gpu"] = 99
	m.View().TaskManagers[0].Slots[0].Profile.Extended["gpu"] = 98
	m.Allocations("q")[0].Profile.Extended["gpu"] = 97
	if got := m.View().TaskManagers[0].Slots[0].Profile.Extended["gpu"]; got != 1 {
		t.Errorf("caller's changes leaked into the manager: gpu = %d", got)
	}
	if large.Extended["gpu"] != 1 {
		t.Error("registration aliased the caller's profile")
	}
}
