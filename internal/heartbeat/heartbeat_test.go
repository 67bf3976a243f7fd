package heartbeat

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestMonitor(t *testing.T) {
	m := New(100 * time.Millisecond)
	if _, ok := m.NextDeadline(); ok {
		t.Fatal("empty monitor has a deadline")
	}
	m.Add("tm-b", at(0))
	m.Add("tm-a", at(10))
	m.Add("tm-c", at(50))

	if d, ok := m.NextDeadline(); !ok || !d.Equal(at(100)) {
		t.Fatalf("NextDeadline = %v, %v; want %v", d, ok, at(100))
	}
	if m.Received("nobody", at(20)) {
		t.Error("Received from an unknown id returned true")
	}
	if !m.Received("tm-b", at(60)) {
		t.Error("Received from tm-b returned false")
	}
	if d, _ := m.NextDeadline(); !d.Equal(at(110)) {
		t.Errorf("NextDeadline after tm-b's heartbeat = %v, want %v", d, at(110))
	}
	// Out of order: an older heartbeat does not move the last one back.
	m.Received("tm-b", at(30))
	if last, _ := m.LastHeartbeat("tm-b"); !last.Equal(at(60)) {
		t.Errorf("LastHeartbeat(tm-b) = %v, want %v", last, at(60))
	}

	if got := m.Expired(at(109)); len(got) != 0 {
		t.Errorf("Expired(109ms) = %v, want none", got)
	}
	// Exactly at tm-a's deadline.
	if got := m.Expired(at(110)); !slices.Equal(got, []string{"tm-a"}) {
		t.Errorf("Expired(110ms) = %v, want [tm-a]", got)
	}
	if _, ok := m.LastHeartbeat("tm-a"); ok {
		t.Error("expired tm-a is still monitored")
	}
	if m.Received("tm-a", at(111)) {
		t.Error("a heartbeat from expired tm-a was accepted")
	}
	if got := m.Expired(at(1000)); !slices.Equal(got, []string{"tm-b", "tm-c"}) {
		t.Errorf("Expired(1s) = %v, want [tm-b tm-c] sorted", got)
	}
	if _, ok := m.NextDeadline(); ok || m.Len() != 0 {
		t.Error("monitor not empty after everything expired")
	}
}

func TestAddAgainAndRemove(t *testing.T) {
	m := New(time.Second)
	m.Add("x", at(0))
	m.Add("x", at(500))
	if got := m.Expired(at(1000)); len(got) != 0 {
		t.Errorf("re-added x expired early: %v", got)
	}
	m.Remove("x")
	m.Remove("never-added")
	if got := m.Expired(at(5000)); len(got) != 0 {
		t.Errorf("removed x expired: %v", got)
	}
}

func TestZeroTimeout(t *testing.T) {
	m := New(0)
	m.Add("x", at(0))
	if got := m.Expired(at(0)); !slices.Equal(got, []string{"x"}) {
		t.Errorf("Expired = %v, want [x]", got)
	}
}

// TestRandomAgainstModel drives a Monitor and a naive model with the same
// random events and compares them.
func TestRandomAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const timeout = 50 * time.Millisecond
	m := New(timeout)
	model := map[string]time.Time{}
	now := t0
	for step := range 20000 {
		now = now.Add(time.Duration(r.IntN(20)) * time.Millisecond)
		id := fmt.Sprintf("tm-%d", r.IntN(8))
		switch r.IntN(4) {
		case 0:
			m.Add(id, now)
			model[id] = now
		case 1:
			m.Remove(id)
			delete(model, id)
		case 2:
			_, known := model[id]
			if got := m.Received(id, now); got != known {
				t.Fatalf("step %d: Received(%s) = %v, want %v", step, id, got, known)
			}
			if known {
				model[id] = now
			}
		case 3:
			var want []string
			for id, last := range model {
				if now.Sub(last) >= timeout {
					want = append(want, id)
					delete(model, id)
				}
			}
			slices.Sort(want)
			if got := m.Expired(now); !slices.Equal(got, want) {
				t.Fatalf("step %d: Expired = %v, want %v", step, got, want)
			}
		}
		d, ok := m.NextDeadline()
		if ok != (len(model) > 0) {
			t.Fatalf("step %d: NextDeadline ok = %v with %d monitored", step, ok, len(model))
		}
		for id, last := range model {
			if d.After(last.Add(timeout)) {
				t.Fatalf("step %d: NextDeadline %v is after %s's deadline", step, d, id)
			}
		}
	}
}
