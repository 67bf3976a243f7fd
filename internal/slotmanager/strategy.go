package slotmanager

import (
	"cmp"
	"slices"

	"github.com/weirstream/weir/internal/resource"
)

// Strategy picks n free slots for req from view: slots whose Allocation is
// "" and whose Profile req.Profile fits in. It returns fewer than n when not
// enough fit, and must be a pure function of its arguments so that the
// Manager's decisions are deterministic. The Manager ignores any returned
// ref that is unknown, not free, does not fit, or repeats an earlier one.
type Strategy func(view View, req Requirement, n int) []SlotRef

// SlotRef names one slot: a TaskManager and the slot's index on it.
type SlotRef struct {
	TaskManager string
	Slot        int
}

// View is a read-only snapshot of the cluster's slots, TaskManagers sorted
// by ID and slots by index.
type View struct {
	TaskManagers []TaskManagerView
}

// TaskManagerView is one TaskManager's slots.
type TaskManagerView struct {
	ID    string
	Slots []SlotView
}

// SlotView is one slot: its index, its resources and, when it is allocated,
// the job and allocation holding it (both "" when free).
type SlotView struct {
	Index      int
	Profile    resource.Profile
	Job        string
	Allocation string
}

// Free reports whether the slot is free.
func (s SlotView) Free() bool { return s.Allocation == "" }

// fits reports whether s is free and large enough for req.
func fits(s SlotView, req Requirement) bool {
	return s.Free() && req.Profile.Fits(s.Profile)
}

// FreeSlots returns how many of tm's slots are free.
func (tm TaskManagerView) FreeSlots() int {
	n := 0
	for _, s := range tm.Slots {
		if s.Free() {
			n++
		}
	}
	return n
}

// candidate is a TaskManager with the free slots that fit a requirement.
type candidate struct {
	id      string
	free    int   // all free slots, fitting or not
	fitting []int // indexes of free slots that fit, in view order
}

func candidates(view View, req Requirement) []candidate {
	var cs []candidate
	for _, tm := range view.TaskManagers {
		c := candidate{id: tm.ID, free: tm.FreeSlots()}
		for _, s := range tm.Slots {
			if fits(s, req) {
				c.fitting = append(c.fitting, s.Index)
			}
		}
		if len(c.fitting) > 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

// Pack is the bin-packing strategy and the default: it fills the TaskManager
// with the fewest free slots first (ties by ID), taking its fitting slots in
// index order before moving on, so that emptier TaskManagers stay empty and
// can be released.
func Pack(view View, req Requirement, n int) []SlotRef {
	if n <= 0 {
		return nil
	}
	cs := candidates(view, req)
	slices.SortStableFunc(cs, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.free, b.free), cmp.Compare(a.id, b.id))
	})
	var refs []SlotRef
	for _, c := range cs {
		for _, idx := range c.fitting {
			refs = append(refs, SlotRef{TaskManager: c.id, Slot: idx})
			if len(refs) == n {
				return refs
			}
		}
	}
	return refs
}

// Spread spreads slots evenly over TaskManagers, like Flink's
// cluster.evenly-spread-out-slots: each pick takes the lowest fitting slot
// of the TaskManager that has the most free slots left (ties by ID), so
// equal TaskManagers are used round-robin.
func Spread(view View, req Requirement, n int) []SlotRef {
	if n <= 0 {
		return nil
	}
	cs := candidates(view, req)
	var refs []SlotRef
	for len(refs) < n {
		best := -1
		for i, c := range cs {
			if len(c.fitting) == 0 {
				continue
			}
			if best < 0 || c.free > cs[best].free || (c.free == cs[best].free && c.id < cs[best].id) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		c := &cs[best]
		refs = append(refs, SlotRef{TaskManager: c.id, Slot: c.fitting[0]})
		c.fitting = c.fitting[1:]
		c.free--
	}
	return refs
}
