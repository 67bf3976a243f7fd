package taskmanager

import (
	"fmt"

	"github.com/weirstream/weir/internal/resource"
)

// slotTable is the TaskManager's static slots and who holds them. It is a
// pure state machine (no I/O, no clock) driven by the agent's mailbox
// goroutine; its transitions are reserve (free → held, or held → held for
// the same allocation: idempotent), free (held → free) and clear.
type slotTable struct {
	profiles []resource.Profile
	held     []slotHold // by index; the zero slotHold is free
}

// slotHold is who holds a slot: an allocation of a job, fenced by the
// JobMaster it was offered to.
type slotHold struct {
	allocation string
	job        string
	jobMaster  string
}

func (h slotHold) free() bool { return h.allocation == "" }

func newSlotTable(profiles []resource.Profile) *slotTable {
	return &slotTable{profiles: profiles, held: make([]slotHold, len(profiles))}
}

// reserve gives slot index to allocation of job. Reserving a slot again for
// the allocation that holds it succeeds (the master may repeat a request
// whose offer it did not see); any other holder makes it fail.
func (t *slotTable) reserve(index int, allocation, job, jobMaster string) error {
	if allocation == "" || job == "" {
		return fmt.Errorf("slot request without an allocation id or job id")
	}
	if index < 0 || index >= len(t.held) {
		return fmt.Errorf("slot %d does not exist: this TaskManager has %d slots (0 to %d)", index, len(t.held), len(t.held)-1)
	}
	h := t.held[index]
	if h.allocation == allocation {
		if h.job != job {
			return fmt.Errorf("allocation %s holds slot %d for job %s, not job %s", allocation, index, h.job, job)
		}
		t.held[index].jobMaster = jobMaster
		return nil
	}
	if !h.free() {
		return fmt.Errorf("slot %d is taken by allocation %s of job %s", index, h.allocation, h.job)
	}
	if other, ok := t.find(allocation); ok {
		return fmt.Errorf("allocation %s already holds slot %d", allocation, other)
	}
	t.held[index] = slotHold{allocation: allocation, job: job, jobMaster: jobMaster}
	return nil
}

// find returns the index of the slot that allocation holds.
func (t *slotTable) find(allocation string) (int, bool) {
	for i, h := range t.held {
		if !h.free() && h.allocation == allocation {
			return i, true
		}
	}
	return 0, false
}

// free releases the slot that allocation holds for job; ok is false if it
// holds none (a stale or foreign FreeSlot).
func (t *slotTable) free(allocation, job string) (index int, ok bool) {
	i, ok := t.find(allocation)
	if !ok || t.held[i].job != job {
		return 0, false
	}
	t.held[i] = slotHold{}
	return i, true
}

// jobSlots returns how many slots job holds.
func (t *slotTable) jobSlots(job string) int {
	n := 0
	for _, h := range t.held {
		if !h.free() && h.job == job {
			n++
		}
	}
	return n
}

// clear frees every slot (the master that allocated them is gone).
func (t *slotTable) clear() {
	clear(t.held)
}

// used returns how many slots are held.
func (t *slotTable) used() int {
	n := 0
	for _, h := range t.held {
		if !h.free() {
			n++
		}
	}
	return n
}

// jobProfile returns the sum of the profiles of the slots job holds.
func (t *slotTable) jobProfile(job string) resource.Profile {
	var sum resource.Profile
	for i, h := range t.held {
		if !h.free() && h.job == job {
			sum = sum.Add(t.profiles[i])
		}
	}
	return sum
}
