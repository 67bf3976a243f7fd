// Package slotmanager owns the ResourceManager's SlotManager for static slots
// under the declarative slot protocol (DESIGN.md §4–§5).
//
// TaskManagers register a fixed list of slots. Each JobMaster declares, per
// slot sharing group, how many slots its job needs; the Manager matches the
// shortfall against free slots with a pluggable Strategy and says what to do
// in Actions, which its runner carries out:
//
//	RegisterTaskManager ─┐                      ┌─► Allocate  (TM offers slot to job)
//	Declare / Free      ─┼─► checkRequirements ─┼─► Freed     (TM: slot is free)
//	RemoveJob           ─┤                      ├─► Lost      (job: TM is gone)
//	UnregisterTM        ─┘   Tick ──────────────┴─► RequestTimeout (job: give up?)
//
// The Manager is a pure core: no goroutines, no locks, no clock. `now` is
// always an argument; the runner arms one timer at NextDeadline and calls
// Tick when it fires. Outputs are deterministic: the same inputs give the
// same actions in the same order.
//
// Like Flink's DeclarativeSlotManager, the Manager never takes slots away
// from a job that holds more than it declares: the JobMaster releases its
// excess slots itself (Free). Requirements that cannot be met stay pending
// until slots appear; after Options.RequestTimeout the job is told once per
// pending period, and decides whether to fail.
package slotmanager

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/resource"
)

// DefaultRequestTimeout is Flink's default slot.request.timeout, used when
// Options.RequestTimeout is zero.
const DefaultRequestTimeout = 5 * time.Minute

// Requirement is what a job declares for one slot sharing group: Count
// slots, each at least Profile (the zero Profile takes any slot).
type Requirement struct {
	Job     string
	Group   string // slot sharing group
	Count   int
	Profile resource.Profile
	// Timeout overrides Options.RequestTimeout for this requirement (the
	// job's own slot.request.timeout); zero means the Manager's.
	Timeout time.Duration
}

// Allocation is a slot allocated to a job. Profile is the slot's profile,
// which is at least the requirement's.
type Allocation struct {
	ID          string
	Job         string
	Group       string // the slot sharing group it was allocated for
	TaskManager string
	Slot        int
	Profile     resource.Profile
}

// Action is something the runner must carry out: Allocate, Freed, Lost
// or RequestTimeout, always as values (switch on Allocate, not *Allocate).
type Action interface{ isAction() }

// Allocate tells the runner to have the TaskManager offer this slot to the
// job.
type Allocate struct{ Allocation }

// Freed tells the runner to tell the TaskManager that the slot is free
// again (its job was removed).
type Freed struct{ Allocation }

// Lost tells the runner to tell the job that the allocation is gone because
// its TaskManager is; Reason says why.
type Lost struct {
	Allocation
	Reason string
}

// RequestTimeout tells the runner that a requirement of Job has been pending
// for longer than the request timeout. Err is a *TimeoutError that says what
// was asked, what the cluster has and what to do.
type RequestTimeout struct {
	Job string
	Err error
}

func (Allocate) isAction()       {}
func (Freed) isAction()          {}
func (Lost) isAction()           {}
func (RequestTimeout) isAction() {}

// TimeoutError describes a requirement that could not be met within the
// slot request timeout, and the cluster as it was at that moment.
type TimeoutError struct {
	Job, Group string
	Count      int              // slots declared for the group
	Held       int              // slots the job holds in the group
	Profile    resource.Profile // per-slot profile asked for; zero: any
	Waited     time.Duration    // how long the requirement has been pending

	TaskManagers int // registered TaskManagers
	TotalSlots   int // slots on them
	FreeSlots    int // free slots
	FittingFree  int // free slots large enough for Profile
	HeldByOthers int // slots allocated to other jobs
}

// Error says what was asked for, what the cluster has and what to do.
func (e *TimeoutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %q: slot sharing group %q asks for %s", e.Job, e.Group, plural(e.Count, "slot"))
	if e.Profile.IsZero() {
		b.WriteString(" (any profile)")
	} else {
		fmt.Fprintf(&b, " of at least %v", e.Profile)
	}
	fmt.Fprintf(&b, " but holds %d after waiting %v (slot.request.timeout); ", e.Held, e.Waited.Round(time.Millisecond))
	if e.TaskManagers == 0 {
		b.WriteString("no TaskManagers are registered")
	} else {
		fmt.Fprintf(&b, "the cluster has %s with %s: %d free", plural(e.TaskManagers, "TaskManager"), plural(e.TotalSlots, "slot"), e.FreeSlots)
		if !e.Profile.IsZero() {
			fmt.Fprintf(&b, " (%d large enough)", e.FittingFree)
		}
		fmt.Fprintf(&b, ", %d held by other jobs", e.HeldByOthers)
	}
	b.WriteString("; start more TaskManagers")
	if !e.Profile.IsZero() {
		b.WriteString(" (with large enough slots)")
	}
	b.WriteString(", lower the job's parallelism, or raise slot.request.timeout")
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Options configure a Manager. The zero Options are valid.
type Options struct {
	// Strategy picks slots; nil means Pack.
	Strategy Strategy
	// RequestTimeout is slot.request.timeout: how long a requirement may
	// stay unmet before the job is told. Zero means DefaultRequestTimeout;
	// negative means never.
	RequestTimeout time.Duration
	// NewID returns a fresh allocation ID; nil means "alloc-1", "alloc-2",
	// and so on. It must never repeat an ID still in use.
	NewID func() string
}

// Manager is the SlotManager. Its methods must be called from one
// goroutine (the ResourceManager's main goroutine). The zero Manager is not
// usable; call New.
type Manager struct {
	strategy Strategy
	timeout  time.Duration // <= 0: never
	newID    func() string
	counter  int

	tms    map[string]*taskManager
	allocs map[string]*Allocation
	jobs   map[string]*jobState
}

type taskManager struct {
	id    string
	slots []slot
}

type slot struct {
	profile resource.Profile
	alloc   string // "" when free
}

type jobState struct {
	reqs map[string]*requirement // by group; Count > 0
	held map[string]int          // allocations held, by group
}

type requirement struct {
	Requirement
	pending  bool      // unmet after the last matching
	since    time.Time // when it became pending
	timedOut bool      // RequestTimeout reported for this pending period
}

// timeoutOf is how long r may stay pending; negative means forever.
func (m *Manager) timeoutOf(r *requirement) time.Duration {
	if r.Timeout != 0 {
		return r.Timeout
	}
	return m.timeout
}

// New returns an empty Manager.
func New(o Options) *Manager {
	m := &Manager{
		strategy: o.Strategy,
		timeout:  o.RequestTimeout,
		newID:    o.NewID,
		tms:      make(map[string]*taskManager),
		allocs:   make(map[string]*Allocation),
		jobs:     make(map[string]*jobState),
	}
	if m.strategy == nil {
		m.strategy = Pack
	}
	if m.timeout == 0 {
		m.timeout = DefaultRequestTimeout
	}
	if m.newID == nil {
		m.newID = func() string {
			m.counter++
			return fmt.Sprintf("alloc-%d", m.counter)
		}
	}
	return m
}

// RegisterTaskManager adds TaskManager id with the given slots (slot i has
// profile slots[i]) and allocates them to pending requirements. It is an
// error, and nothing changes, if id is empty or already registered, or the
// slot list is empty or has a negative profile.
func (m *Manager) RegisterTaskManager(id string, slots []resource.Profile, now time.Time) ([]Action, error) {
	if id == "" {
		return nil, fmt.Errorf("cannot register a TaskManager with an empty ID; give each TaskManager a unique resource ID")
	}
	if _, ok := m.tms[id]; ok {
		return nil, fmt.Errorf("TaskManager %s is already registered; unregister it first or give the new one another ID", id)
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("TaskManager %s registers no slots; set taskmanager.numberOfTaskSlots to at least 1", id)
	}
	for i, p := range slots {
		if p.IsNegative() {
			return nil, fmt.Errorf("TaskManager %s: slot %d has negative resources (%v); every dimension must be zero or more", id, i, p)
		}
	}
	tm := &taskManager{id: id, slots: make([]slot, len(slots))}
	for i, p := range slots {
		tm.slots[i] = slot{profile: clone(p)}
	}
	m.tms[id] = tm
	return m.checkRequirements(now), nil
}

// UnregisterTaskManager removes TaskManager id. Every allocation on it is
// lost: one Lost action per allocation, in slot order; then the jobs'
// still-declared requirements are matched again on the remaining
// TaskManagers. Unregistering an unknown id does nothing.
func (m *Manager) UnregisterTaskManager(id string, now time.Time) []Action {
	tm, ok := m.tms[id]
	if !ok {
		return nil
	}
	var actions []Action
	for _, s := range tm.slots {
		if s.alloc == "" {
			continue
		}
		a := m.release(s.alloc)
		actions = append(actions, Lost{Allocation: a, Reason: fmt.Sprintf("TaskManager %s was unregistered", id)})
	}
	delete(m.tms, id)
	return append(actions, m.checkRequirements(now)...)
}

// Declare replaces job's requirements with reqs, one per slot sharing group
// (a Requirement's Job may be empty or must equal job), and allocates the
// shortfall. A shortfall that cannot be met is pending since now; a
// requirement that was already pending keeps its start while it stays unmet,
// so re-declaring does not postpone its timeout. Groups left out of reqs (or
// with Count 0) are no longer required; slots the job holds beyond its
// requirements are not taken away, the JobMaster frees them.
//
// It is an error, and nothing changes, if job is empty or a requirement names
// another job, repeats a group, or has a negative count or profile.
func (m *Manager) Declare(job string, reqs []Requirement, now time.Time) ([]Action, error) {
	if job == "" {
		return nil, fmt.Errorf("cannot declare requirements for a job with an empty ID")
	}
	next := make(map[string]*requirement, len(reqs))
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		switch {
		case r.Job != "" && r.Job != job:
			return nil, fmt.Errorf("job %q declares a requirement for job %q; a job may only declare its own requirements", job, r.Job)
		case seen[r.Group]:
			return nil, fmt.Errorf("job %q declares slot sharing group %q twice; declare each group once with the total count", job, r.Group)
		case r.Count < 0:
			return nil, fmt.Errorf("job %q: slot sharing group %q asks for %d slots; the count must be zero or more", job, r.Group, r.Count)
		case r.Profile.IsNegative():
			return nil, fmt.Errorf("job %q: slot sharing group %q asks for a negative profile (%v); every dimension must be zero or more", job, r.Group, r.Profile)
		}
		seen[r.Group] = true
		if r.Count == 0 {
			continue
		}
		r.Job = job
		r.Profile = clone(r.Profile)
		nr := &requirement{Requirement: r}
		if j := m.jobs[job]; j != nil {
			if old := j.reqs[r.Group]; old != nil {
				nr.pending, nr.since, nr.timedOut = old.pending, old.since, old.timedOut
			}
		}
		next[r.Group] = nr
	}
	j := m.jobs[job]
	if j == nil {
		j = &jobState{held: make(map[string]int)}
		m.jobs[job] = j
	}
	j.reqs = next
	m.dropIfIdle(job)
	return m.checkRequirements(now), nil
}

// Free frees an allocation: its slot becomes free and may be allocated to
// pending requirements, including its own job's if that job still declares
// more than it holds. No Freed action is returned for it, since the caller
// (the JobMaster or TaskManager releasing the slot) already knows. Freeing an
// unknown or already freed allocation does nothing.
func (m *Manager) Free(allocationID string, now time.Time) []Action {
	a, ok := m.allocs[allocationID]
	if !ok {
		return nil
	}
	m.release(a.ID)
	return m.checkRequirements(now)
}

// RemoveJob drops job's requirements and frees all its allocations, one
// Freed action each (in TaskManager then slot order) so the runner can tell
// the TaskManagers; the freed slots may then satisfy other jobs.
func (m *Manager) RemoveJob(job string, now time.Time) []Action {
	var actions []Action
	for _, a := range m.Allocations(job) {
		m.release(a.ID)
		actions = append(actions, Freed{Allocation: a})
	}
	delete(m.jobs, job)
	return append(actions, m.checkRequirements(now)...)
}

// Tick reports, once per pending period, every requirement that has been
// pending for RequestTimeout or longer at now (in job then group order). It
// changes no allocations and keeps the requirement pending: the job decides
// whether to fail or lower its requirements.
func (m *Manager) Tick(now time.Time) []Action {
	var actions []Action
	for _, jobID := range slices.Sorted(maps.Keys(m.jobs)) {
		j := m.jobs[jobID]
		for _, group := range slices.Sorted(maps.Keys(j.reqs)) {
			r := j.reqs[group]
			if !r.pending || r.timedOut || m.timeoutOf(r) < 0 || now.Before(r.since.Add(m.timeoutOf(r))) {
				continue
			}
			r.timedOut = true
			actions = append(actions, RequestTimeout{Job: jobID, Err: m.timeoutError(r, now)})
		}
	}
	return actions
}

// NextDeadline returns the earliest time at which Tick will report a
// timeout, and false if no requirement is waiting to time out.
func (m *Manager) NextDeadline() (time.Time, bool) {
	var next time.Time
	found := false
	for _, j := range m.jobs {
		for _, r := range j.reqs {
			if !r.pending || r.timedOut || m.timeoutOf(r) < 0 {
				continue
			}
			if d := r.since.Add(m.timeoutOf(r)); !found || d.Before(next) {
				next, found = d, true
			}
		}
	}
	return next, found
}

// View returns a snapshot of every registered TaskManager's slots, sorted
// by TaskManager ID and slot index.
func (m *Manager) View() View {
	v := View{TaskManagers: make([]TaskManagerView, 0, len(m.tms))}
	for _, id := range slices.Sorted(maps.Keys(m.tms)) {
		tm := m.tms[id]
		tv := TaskManagerView{ID: id, Slots: make([]SlotView, len(tm.slots))}
		for i, s := range tm.slots {
			sv := SlotView{Index: i, Profile: clone(s.profile), Allocation: s.alloc}
			if s.alloc != "" {
				sv.Job = m.allocs[s.alloc].Job
			}
			tv.Slots[i] = sv
		}
		v.TaskManagers = append(v.TaskManagers, tv)
	}
	return v
}

// Allocations returns job's allocations sorted by TaskManager and slot.
func (m *Manager) Allocations(job string) []Allocation {
	var out []Allocation
	for _, a := range m.allocs {
		if a.Job == job {
			out = append(out, copyAllocation(*a))
		}
	}
	slices.SortFunc(out, func(a, b Allocation) int {
		return cmp.Or(cmp.Compare(a.TaskManager, b.TaskManager), cmp.Compare(a.Slot, b.Slot))
	})
	return out
}

// Requirements returns job's current requirements (Count > 0), sorted by
// group.
func (m *Manager) Requirements(job string) []Requirement {
	j := m.jobs[job]
	if j == nil {
		return nil
	}
	var out []Requirement
	for _, g := range slices.Sorted(maps.Keys(j.reqs)) {
		r := j.reqs[g].Requirement
		r.Profile = clone(r.Profile)
		out = append(out, r)
	}
	return out
}

// checkRequirements allocates free slots to every requirement with a
// shortfall, oldest pending first (then by job and group), and updates which
// requirements are pending. It is the one place allocations are made.
func (m *Manager) checkRequirements(now time.Time) []Action {
	type open struct {
		r     *requirement
		since time.Time
	}
	var opens []open
	for _, j := range m.jobs {
		for _, r := range j.reqs {
			if j.held[r.Group] < r.Count {
				since := now
				if r.pending {
					since = r.since
				}
				opens = append(opens, open{r, since})
			}
		}
	}
	slices.SortFunc(opens, func(a, b open) int {
		return cmp.Or(a.since.Compare(b.since), cmp.Compare(a.r.Job, b.r.Job), cmp.Compare(a.r.Group, b.r.Group))
	})

	var actions []Action
	for _, o := range opens {
		if !m.anyFree() {
			break
		}
		r := o.r
		short := r.Count - m.jobs[r.Job].held[r.Group]
		req := r.Requirement
		req.Profile = clone(req.Profile)
		refs := m.strategy(m.View(), req, short)
		for _, ref := range refs {
			if short == 0 {
				break
			}
			tm := m.tms[ref.TaskManager]
			if tm == nil || ref.Slot < 0 || ref.Slot >= len(tm.slots) {
				continue // unknown slot: a strategy bug, ignored
			}
			s := &tm.slots[ref.Slot]
			if s.alloc != "" || !r.Profile.Fits(s.profile) {
				continue // taken (or picked twice) or too small: ignored
			}
			a := m.allocate(r, tm, ref.Slot)
			actions = append(actions, Allocate{Allocation: a})
			short--
		}
	}

	for _, j := range m.jobs {
		for _, r := range j.reqs {
			switch {
			case j.held[r.Group] >= r.Count:
				r.pending, r.since, r.timedOut = false, time.Time{}, false
			case !r.pending:
				r.pending, r.since, r.timedOut = true, now, false
			}
		}
	}
	return actions
}

func (m *Manager) anyFree() bool {
	for _, tm := range m.tms {
		for _, s := range tm.slots {
			if s.alloc == "" {
				return true
			}
		}
	}
	return false
}

// allocate gives slot idx of tm to requirement r.
func (m *Manager) allocate(r *requirement, tm *taskManager, idx int) Allocation {
	id := m.newID()
	if _, dup := m.allocs[id]; dup || id == "" {
		// Reusing an ID would hand one slot's fencing token to two
		// allocations; no safe recovery exists.
		panic(fmt.Sprintf("slotmanager: Options.NewID returned %q, which is empty or already in use; it must return a fresh ID every call", id))
	}
	a := &Allocation{ID: id, Job: r.Job, Group: r.Group, TaskManager: tm.id, Slot: idx, Profile: clone(tm.slots[idx].profile)}
	m.allocs[id] = a
	tm.slots[idx].alloc = id
	m.jobs[r.Job].held[r.Group]++
	return copyAllocation(*a)
}

// release removes allocation id from its slot, its job's count and the
// index, forgets the job if that leaves it idle, and returns the allocation.
func (m *Manager) release(id string) Allocation {
	a := m.allocs[id]
	delete(m.allocs, id)
	m.tms[a.TaskManager].slots[a.Slot].alloc = ""
	if j := m.jobs[a.Job]; j != nil {
		j.held[a.Group]--
		if j.held[a.Group] == 0 {
			delete(j.held, a.Group)
		}
		m.dropIfIdle(a.Job)
	}
	return *a
}

// dropIfIdle forgets job if it neither requires nor holds anything.
func (m *Manager) dropIfIdle(job string) {
	if j := m.jobs[job]; j != nil && len(j.reqs) == 0 && len(j.held) == 0 {
		delete(m.jobs, job)
	}
}

func (m *Manager) timeoutError(r *requirement, now time.Time) *TimeoutError {
	e := &TimeoutError{
		Job:          r.Job,
		Group:        r.Group,
		Count:        r.Count,
		Held:         m.jobs[r.Job].held[r.Group],
		Profile:      clone(r.Profile),
		Waited:       now.Sub(r.since),
		TaskManagers: len(m.tms),
	}
	for _, tm := range m.tms {
		for _, s := range tm.slots {
			e.TotalSlots++
			switch {
			case s.alloc == "":
				e.FreeSlots++
				if r.Profile.Fits(s.profile) {
					e.FittingFree++
				}
			case m.allocs[s.alloc].Job != r.Job:
				e.HeldByOthers++
			}
		}
	}
	return e
}

func clone(p resource.Profile) resource.Profile {
	p.Extended = maps.Clone(p.Extended)
	return p
}

func copyAllocation(a Allocation) Allocation {
	a.Profile = clone(a.Profile)
	return a
}
