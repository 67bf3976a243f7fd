package slotmanager

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/resource"
)

// model is the test's own record of the cluster, updated only from the
// actions the Manager returns; the Manager's View must always match it.
type model struct {
	slots    map[string][]string               // TM -> allocation ID per slot ("" free)
	profiles map[string][]resource.Profile     // TM -> slot profiles
	allocs   map[string]Allocation             // by ID
	declared map[string]map[string]Requirement // job -> group -> requirement
	reported map[[2]string]bool                // (job, group) timed out this pending period
	everIDs  map[string]bool
}

func (md *model) held(job, group string) int {
	n := 0
	for _, a := range md.allocs {
		if a.Job == job && a.Group == group {
			n++
		}
	}
	return n
}

func TestRandomInvariants(t *testing.T) {
	for seed := range uint64(30) {
		log1 := runRandom(t, seed, Pack)
		log2 := runRandom(t, seed, Pack)
		if !slices.Equal(log1, log2) {
			t.Fatalf("seed %d: same inputs gave different actions", seed)
		}
		runRandom(t, seed, Spread)
	}
}

func runRandom(t *testing.T, seed uint64, strategy Strategy) []string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	const timeout = 30 * time.Second
	m := New(Options{Strategy: strategy, RequestTimeout: timeout})
	md := &model{
		slots: map[string][]string{}, profiles: map[string][]resource.Profile{},
		allocs: map[string]Allocation{}, declared: map[string]map[string]Requirement{},
		reported: map[[2]string]bool{}, everIDs: map[string]bool{},
	}
	profiles := []resource.Profile{{}, small, large, {CPU: 500, TaskMemory: gib / 2}}
	tms := []string{"tm-1", "tm-2", "tm-3", "tm-4", "tm-5"}
	jobs := []string{"j1", "j2", "j3", "j4"}
	groups := []string{"", "a", "b"}
	now := t0
	var log []string

	for step := range 400 {
		now = now.Add(time.Duration(r.IntN(10)) * time.Second)
		var actions []Action
		op := ""
		allocated := map[[2]string]bool{}
		switch k := r.IntN(10); {
		case k < 2: // register
			id := tms[r.IntN(len(tms))]
			n := 1 + r.IntN(4)
			slots := make([]resource.Profile, n)
			for i := range slots {
				slots[i] = profiles[1+r.IntN(len(profiles)-1)]
			}
			op = fmt.Sprintf("register %s %d", id, n)
			var err error
			actions, err = m.RegisterTaskManager(id, slots, now)
			if _, exists := md.slots[id]; exists {
				if err == nil || !strings.Contains(err.Error(), "already registered") {
					t.Fatalf("seed %d step %d: re-registering %s: err = %v", seed, step, id, err)
				}
				break
			} else if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			md.slots[id] = make([]string, n)
			md.profiles[id] = slots
		case k < 3: // unregister
			id := tms[r.IntN(len(tms))]
			op = "unregister " + id
			actions = m.UnregisterTaskManager(id, now)
			var want []string
			for _, a := range md.slots[id] {
				if a != "" {
					want = append(want, a)
				}
			}
			var lost []string
			for _, a := range actions {
				if l, ok := a.(Lost); ok {
					if l.TaskManager != id {
						t.Fatalf("seed %d step %d: Lost %v not on %s", seed, step, l, id)
					}
					lost = append(lost, l.ID)
					delete(md.allocs, l.ID)
				}
			}
			if !slices.Equal(lost, want) {
				t.Fatalf("seed %d step %d: lost %v, want %v", seed, step, lost, want)
			}
			delete(md.slots, id)
			delete(md.profiles, id)
		case k < 6: // declare
			job := jobs[r.IntN(len(jobs))]
			var reqs []Requirement
			for _, g := range groups {
				if r.IntN(2) == 0 {
					reqs = append(reqs, Requirement{Group: g, Count: r.IntN(6), Profile: profiles[r.IntN(len(profiles))]})
				}
			}
			op = fmt.Sprintf("declare %s %v", job, reqs)
			var err error
			actions, err = m.Declare(job, reqs, now)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			md.declared[job] = map[string]Requirement{}
			for _, q := range reqs {
				if q.Count > 0 {
					md.declared[job][q.Group] = q
				}
			}
		case k < 8: // free
			ids := slices.Sorted(maps.Keys(md.allocs))
			id := "alloc-unknown"
			if len(ids) > 0 && r.IntN(8) > 0 {
				id = ids[r.IntN(len(ids))]
			}
			op = "free " + id
			if a, ok := md.allocs[id]; ok {
				md.slots[a.TaskManager][a.Slot] = ""
				delete(md.allocs, id)
			}
			actions = m.Free(id, now)
		case k < 9: // remove job
			job := jobs[r.IntN(len(jobs))]
			op = "remove " + job
			actions = m.RemoveJob(job, now)
			delete(md.declared, job)
			for _, a := range actions {
				if f, ok := a.(Freed); ok {
					if w := md.allocs[f.ID]; f.Job != job || w.ID != f.ID || w.TaskManager != f.TaskManager || w.Slot != f.Slot || w.Group != f.Group {
						t.Fatalf("seed %d step %d: Freed %+v does not match model %+v", seed, step, f, md.allocs[f.ID])
					}
					md.slots[f.TaskManager][f.Slot] = ""
					delete(md.allocs, f.ID)
				}
			}
			for _, a := range md.allocs {
				if a.Job == job {
					t.Fatalf("seed %d step %d: %s removed but %s not freed", seed, step, job, a.ID)
				}
			}
		default: // tick
			op = "tick"
			actions = m.Tick(now)
			for _, a := range actions {
				rt, ok := a.(RequestTimeout)
				if !ok {
					t.Fatalf("seed %d step %d: Tick returned %T", seed, step, a)
				}
				var te *TimeoutError
				if !errors.As(rt.Err, &te) || te.Job != rt.Job {
					t.Fatalf("seed %d step %d: bad timeout %v", seed, step, rt.Err)
				}
				key := [2]string{te.Job, te.Group}
				req, declared := md.declared[te.Job][te.Group]
				switch {
				case !declared || md.held(te.Job, te.Group) >= req.Count:
					t.Fatalf("seed %d step %d: timeout for a met requirement %v", seed, step, key)
				case md.reported[key]:
					t.Fatalf("seed %d step %d: timeout for %v reported twice", seed, step, key)
				case te.Waited < timeout:
					t.Fatalf("seed %d step %d: timeout after only %v", seed, step, te.Waited)
				}
				md.reported[key] = true
			}
		}

		// Apply Allocate actions to the model, checking each.
		for _, a := range actions {
			al, ok := a.(Allocate)
			if !ok {
				continue
			}
			s := md.slots[al.TaskManager]
			switch {
			case s == nil:
				t.Fatalf("seed %d step %d (%s): %s on unregistered %s", seed, step, op, al.ID, al.TaskManager)
			case al.Slot < 0 || al.Slot >= len(s):
				t.Fatalf("seed %d step %d (%s): %s on missing slot %d", seed, step, op, al.ID, al.Slot)
			case s[al.Slot] != "":
				t.Fatalf("seed %d step %d (%s): %s double-allocates %s/%d held by %s", seed, step, op, al.ID, al.TaskManager, al.Slot, s[al.Slot])
			case md.everIDs[al.ID]:
				t.Fatalf("seed %d step %d (%s): allocation ID %s reused", seed, step, op, al.ID)
			}
			req, ok := md.declared[al.Job][al.Group]
			if !ok {
				t.Fatalf("seed %d step %d (%s): %s for undeclared %s/%s", seed, step, op, al.ID, al.Job, al.Group)
			}
			if !req.Profile.Fits(md.profiles[al.TaskManager][al.Slot]) || !al.Profile.Equal(md.profiles[al.TaskManager][al.Slot]) {
				t.Fatalf("seed %d step %d (%s): %s slot %v does not fit %v", seed, step, op, al.ID, al.Profile, req.Profile)
			}
			s[al.Slot] = al.ID
			md.allocs[al.ID] = al.Allocation
			md.everIDs[al.ID] = true
			allocated[[2]string{al.Job, al.Group}] = true
		}
		for _, a := range actions {
			log = append(log, fmt.Sprintf("%d %s: %s", step, op, format([]Action{a})[0]))
		}

		checkAgainstModel(t, m, md, fmt.Sprintf("seed %d step %d (%s)", seed, step, op))
		// Nothing allocated beyond what is declared.
		for key := range allocated {
			if h, c := md.held(key[0], key[1]), md.declared[key[0]][key[1]].Count; h > c {
				t.Fatalf("seed %d step %d (%s): %v holds %d > declared %d after allocating", seed, step, op, key, h, c)
			}
		}
		// Every feasible request placed: a short requirement has no free slot it fits.
		for job, gs := range md.declared {
			for g, req := range gs {
				if md.held(job, g) >= req.Count {
					delete(md.reported, [2]string{job, g})
					continue
				}
				for tm, s := range md.slots {
					for i, a := range s {
						if a == "" && req.Profile.Fits(md.profiles[tm][i]) {
							t.Fatalf("seed %d step %d (%s): %s/%s is short but %s/%d is free and fits", seed, step, op, job, g, tm, i)
						}
					}
				}
			}
		}
		for key := range md.reported {
			if _, ok := md.declared[key[0]][key[1]]; !ok {
				delete(md.reported, key)
			}
		}
	}
	return log
}

func checkAgainstModel(t *testing.T, m *Manager, md *model, where string) {
	t.Helper()
	v := m.View()
	if len(v.TaskManagers) != len(md.slots) {
		t.Fatalf("%s: view has %d TaskManagers, model %d", where, len(v.TaskManagers), len(md.slots))
	}
	seen := map[string]bool{}
	for i, tm := range v.TaskManagers {
		if i > 0 && v.TaskManagers[i-1].ID >= tm.ID {
			t.Fatalf("%s: view not sorted", where)
		}
		want, ok := md.slots[tm.ID]
		if !ok || len(want) != len(tm.Slots) {
			t.Fatalf("%s: view has %s with %d slots, model %v", where, tm.ID, len(tm.Slots), want)
		}
		for j, s := range tm.Slots {
			if s.Index != j || s.Allocation != want[j] {
				t.Fatalf("%s: %s/%d holds %q, model %q", where, tm.ID, j, s.Allocation, want[j])
			}
			if s.Allocation != "" {
				if seen[s.Allocation] {
					t.Fatalf("%s: allocation %s in two slots", where, s.Allocation)
				}
				seen[s.Allocation] = true
				if s.Job != md.allocs[s.Allocation].Job {
					t.Fatalf("%s: %s/%d job %q, model %q", where, tm.ID, j, s.Job, md.allocs[s.Allocation].Job)
				}
			}
		}
	}
	if len(seen) != len(md.allocs) {
		t.Fatalf("%s: %d allocated slots, model has %d allocations", where, len(seen), len(md.allocs))
	}
	for _, job := range []string{"j1", "j2", "j3", "j4"} {
		var want []Allocation
		for _, a := range md.allocs {
			if a.Job == job {
				want = append(want, a)
			}
		}
		got := m.Allocations(job)
		if len(got) != len(want) {
			t.Fatalf("%s: Allocations(%s) has %d, model %d", where, job, len(got), len(want))
		}
		for _, a := range got {
			if w := md.allocs[a.ID]; w.TaskManager != a.TaskManager || w.Slot != a.Slot || w.Group != a.Group || w.Job != a.Job {
				t.Fatalf("%s: allocation %+v, model %+v", where, a, w)
			}
		}
	}
}
