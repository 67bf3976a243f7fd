package coordinator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// t0 is the fake clock's origin; steps give times as offsets from it.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// The test job: two source subtasks and one sink subtask.
var (
	src0 = TaskID{0, 0}
	src1 = TaskID{0, 1}
	sink = TaskID{1, 0}
)

func testConfig() Config {
	return Config{
		Options: Options{
			Interval:      10 * time.Second,
			Timeout:       30 * time.Second,
			MaxConcurrent: 1,
			NumRetained:   1,
		},
		Sources: []TaskID{src0, src1},
		Tasks:   []TaskID{src0, src1, sink},
	}
}

// step is one line of a script: at offset At from t0, Handle Ev, and expect
// the actions Want (formatted by describe). A nil Want is not checked.
type step struct {
	At   time.Duration
	Ev   Event
	Want []string
}

type harness struct {
	t   *testing.T
	c   *Coordinator
	now time.Time
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{t: t, c: c, now: t0}
}

// at handles ev at t0+d, checks the invariants and returns the actions.
func (h *harness) at(d time.Duration, ev Event) []Action {
	h.t.Helper()
	now := t0.Add(d)
	if now.Before(h.now) {
		h.t.Fatalf("script goes back in time: %v after %v", d, h.now.Sub(t0))
	}
	h.now = now
	acts := h.c.Handle(now, ev)
	if err := h.c.checkInvariants(now); err != nil {
		h.t.Fatalf("after %T at %v: invariant broken: %v\nactions: %q", ev, d, err, describe(acts))
	}
	return acts
}

func (h *harness) run(script []step) {
	h.t.Helper()
	for i, s := range script {
		got := describe(h.at(s.At, s.Ev))
		if s.Want != nil && !slices.Equal(got, s.Want) {
			h.t.Fatalf("step %d (%T at %v):\n got: %q\nwant: %q", i, s.Ev, s.At, got, s.Want)
		}
	}
}

// acks returns the steps by which each task in ts acknowledges id, each
// expecting no action.
func acks(at time.Duration, id CheckpointID, ts ...TaskID) []step {
	var out []step
	for _, t := range ts {
		out = append(out, step{At: at, Ev: ack(id, t), Want: []string{}})
	}
	return out
}

func ack(id CheckpointID, t TaskID) Ack { return Ack{ID: id, Task: t, State: stateOf(id, t)} }

func stateOf(id CheckpointID, t TaskID) string { return fmt.Sprintf("state-%d-%s", id, t) }

// script flattens steps and step groups.
func script(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			out = append(out, p)
		case []step:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("script: %T", p))
		}
	}
	return out
}

// describe formats actions compactly, times as offsets from t0 and errors as
// the package's reason they wrap.
func describe(acts []Action) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, describeOne(a))
	}
	return out
}

func describeOne(a Action) string {
	switch a := a.(type) {
	case TriggerCheckpoint:
		drain := ""
		if a.Drain {
			drain = " drain"
		}
		return fmt.Sprintf("trigger %s %d @%v%s %s", a.Kind, a.ID, a.Timestamp.Sub(t0), drain, tasks(a.Tasks))
	case PersistCheckpoint:
		s := fmt.Sprintf("persist %s %d @%v acks=%s", a.Kind, a.ID, a.Timestamp.Sub(t0), ackTasks(a.Acks))
		if len(a.Finished) > 0 {
			s += " finished=" + tasks(a.Finished)
		}
		return s
	case NotifyComplete:
		return fmt.Sprintf("complete %d %s", a.ID, tasks(a.Tasks))
	case AbortCheckpoint:
		return fmt.Sprintf("abort %s %d (%s) acks=%s", a.Kind, a.ID, reasonOf(a.Reason), ackTasks(a.Acks))
	case NotifyAborted:
		return fmt.Sprintf("aborted %d %s", a.ID, tasks(a.Tasks))
	case SavepointDone:
		if a.Err != nil {
			return fmt.Sprintf("savepoint %s failed %d (%s)", a.Request, a.ID, reasonOf(a.Err))
		}
		return fmt.Sprintf("savepoint %s done %d", a.Request, a.ID)
	case FailJob:
		if !errors.Is(a.Reason, ErrTooManyFailures) {
			return "fail job (bad reason: " + a.Reason.Error() + ")"
		}
		return fmt.Sprintf("fail job (%s)", reasonOf(a.Reason))
	case SetTimer:
		if a.At.IsZero() {
			return "timer off"
		}
		return fmt.Sprintf("timer @%v", a.At.Sub(t0))
	case DiscardAck:
		return fmt.Sprintf("discard ack %d %s %v", a.ID, a.Task, a.State)
	case DiscardMetadata:
		return fmt.Sprintf("discard metadata %d", a.ID)
	case DiscardCompleted:
		return fmt.Sprintf("discard completed %d", a.ID)
	}
	return fmt.Sprintf("unknown action %T", a)
}

// reasonOf names the first of the package's reasons that err wraps.
func reasonOf(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrExpired, "expired"}, {ErrSubsumed, "subsumed"}, {ErrTaskFinished, "task finished"},
		{ErrMetadata, "metadata"}, {ErrRefused, "refused"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	// Declines and stops may wrap other reasons; name them after those.
	switch {
	case errors.Is(err, ErrDeclined) && errors.Is(err, ErrTaskNotReady):
		return "declined not-ready"
	case errors.Is(err, ErrDeclined):
		return "declined"
	case errors.Is(err, ErrStopped):
		return "stopped"
	}
	return "?? " + err.Error()
}

func ackTasks(m map[TaskID]any) string {
	return tasks(sortedTasks(slices.Collect(maps.Keys(m))))
}
