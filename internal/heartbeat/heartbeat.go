// Package heartbeat owns the pure heartbeat monitor that the ResourceManager,
// JobMasters and TaskManagers use to notice a peer that has gone quiet
// (DESIGN.md §4).
//
// A Monitor is a synchronous state machine: it starts no goroutines, holds no
// lock and never reads the clock. Its runner feeds it heartbeats with the
// time they arrived, arms one timer at NextDeadline, and when the timer fires
// calls Expired and treats every id returned as lost:
//
//	heartbeat from id ──► Received(id, now)
//	timer fires       ──► Expired(now) ──► peers to disconnect
//	                      NextDeadline() ──► re-arm the timer
package heartbeat

import (
	"slices"
	"time"
)

// Monitor tracks when each monitored peer was last heard from. A peer whose
// last heartbeat is timeout or more in the past has expired. The zero
// Monitor is not usable; call New.
type Monitor struct {
	timeout time.Duration
	last    map[string]time.Time
}

// New returns a Monitor that expires a peer once timeout has passed since its
// last heartbeat. A timeout of zero or less expires every peer at the first
// Expired call.
func New(timeout time.Duration) *Monitor {
	return &Monitor{timeout: timeout, last: make(map[string]time.Time)}
}

// Timeout returns the heartbeat timeout the Monitor was built with.
func (m *Monitor) Timeout() time.Duration { return m.timeout }

// Add starts monitoring id as if a heartbeat arrived at now. Adding an id that
// is already monitored restarts its timeout from now.
func (m *Monitor) Add(id string, now time.Time) {
	m.last[id] = now
}

// Remove stops monitoring id. Removing an unknown id does nothing.
func (m *Monitor) Remove(id string) {
	delete(m.last, id)
}

// Received records a heartbeat from id at now and reports whether id is
// monitored; a heartbeat from an unknown (or already expired) id is ignored
// and returns false, so the runner can tell the peer to register again. A
// heartbeat stamped before the last one recorded (delivered out of order)
// does not move the last heartbeat back.
func (m *Monitor) Received(id string, now time.Time) bool {
	last, ok := m.last[id]
	if !ok {
		return false
	}
	if now.After(last) {
		m.last[id] = now
	}
	return true
}

// Expired returns, sorted, the ids whose last heartbeat is timeout or more
// before now, and stops monitoring them. An id expires exactly at its
// deadline (see NextDeadline), so a timer set to the deadline finds it.
func (m *Monitor) Expired(now time.Time) []string {
	var ids []string
	for id, last := range m.last {
		if !now.Before(last.Add(m.timeout)) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		delete(m.last, id)
	}
	slices.Sort(ids)
	return ids
}

// NextDeadline returns the earliest time at which a monitored id expires if
// nothing is heard from it, and false when nothing is monitored.
func (m *Monitor) NextDeadline() (time.Time, bool) {
	var next time.Time
	found := false
	for _, last := range m.last {
		d := last.Add(m.timeout)
		if !found || d.Before(next) {
			next, found = d, true
		}
	}
	return next, found
}

// LastHeartbeat returns when id was last heard from, and false if id is not
// monitored.
func (m *Monitor) LastHeartbeat(id string) (time.Time, bool) {
	last, ok := m.last[id]
	return last, ok
}

// Len returns how many ids are monitored.
func (m *Monitor) Len() int { return len(m.last) }
