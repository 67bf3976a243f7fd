package coordinator

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRandomised feeds random event sequences (fixed seeds) to coordinators
// with random settings, the way a runner with a misbehaving job would, and
// checks after every step the invariants of the coordinator's state
// (checkInvariants) and of the actions it returned:
//
//   - trigger IDs strictly increase;
//   - no more than MaxConcurrent periodic checkpoints are in flight;
//   - every triggered checkpoint ends exactly once, completed or aborted,
//     and none is left in flight after Stop;
//   - an aborted checkpoint is never notified complete, and every abort is
//     followed by its NotifyAborted;
//   - savepoint requests are answered exactly once;
//   - timers are never in the past;
//   - FailJob leaves the coordinator stopped.
func TestRandomised(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	var total coverage
	for seed := range uint64(seeds) {
		total.add(runRandom(t, seed))
		if t.Failed() {
			return
		}
	}
	// The generator must reach every outcome, or the invariants prove little.
	for name, n := range map[string]int{
		"completed checkpoints":  total.completedCheckpoints,
		"completed savepoints":   total.completedSavepoints,
		"completed stops":        total.completedStops,
		"expired":                total.reasons["expired"],
		"declined":               total.reasons["declined"],
		"subsumed":               total.reasons["subsumed"],
		"task finished":          total.reasons["task finished"],
		"metadata":               total.reasons["metadata"],
		"stopped":                total.reasons["stopped"],
		"failed jobs":            total.failJobs,
		"discarded acks":         total.discardAcks,
		"discarded metadata":     total.discardMetadata,
		"discarded completed":    total.discardCompleted,
		"refused savepoints":     total.refused,
		"concurrent checkpoints": total.concurrent,
	} {
		if n == 0 {
			t.Errorf("random runs never produced %s", name)
		}
	}
	t.Logf("%+v", total)
}

type coverage struct {
	completedCheckpoints, completedSavepoints, completedStops int
	failJobs, discardAcks, discardMetadata, discardCompleted  int
	refused, concurrent                                       int
	reasons                                                   map[string]int
}

func (c *coverage) add(o coverage) {
	c.completedCheckpoints += o.completedCheckpoints
	c.completedSavepoints += o.completedSavepoints
	c.completedStops += o.completedStops
	c.failJobs += o.failJobs
	c.discardAcks += o.discardAcks
	c.discardMetadata += o.discardMetadata
	c.discardCompleted += o.discardCompleted
	c.refused += o.refused
	c.concurrent += o.concurrent
	if c.reasons == nil {
		c.reasons = map[string]int{}
	}
	for k, v := range o.reasons {
		c.reasons[k] += v
	}
}

// randomRun is the test's model of the runner: what it was told, and what
// must follow from it.
type randomRun struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	cfg  Config
	c    *Coordinator
	now  time.Time

	timer      time.Time
	lastID     CheckpointID
	kinds      map[CheckpointID]Kind
	ended      map[CheckpointID]string // "completed" or "aborted"
	persisting map[CheckpointID]bool   // asked to persist, not reported yet
	requests   map[RequestID]bool      // savepoint requests not answered yet
	nextReq    int
	cov        coverage
}

func runRandom(t *testing.T, seed uint64) coverage {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	tasks := []TaskID{{0, 0}, {0, 1}, {1, 0}, {2, 0}}
	cfg := Config{
		Options: Options{
			Interval:          time.Duration(rng.IntN(4)) * 5 * time.Second, // 0 (off), 5s, 10s, 15s
			Timeout:           time.Duration(5+rng.IntN(30)) * time.Second,
			MinPause:          time.Duration(rng.IntN(3)) * 2 * time.Second,
			MaxConcurrent:     1 + rng.IntN(3),
			TolerableFailures: rng.IntN(4),
			NumRetained:       1 + rng.IntN(3),
		},
		Sources: tasks[:2],
		Tasks:   tasks,
		FirstID: CheckpointID(rng.IntN(3) * 100),
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("seed %d: New: %v", seed, err)
	}
	r := &randomRun{
		t: t, seed: seed, rng: rng, cfg: cfg, c: c, now: t0,
		lastID: max(cfg.FirstID, 1) - 1, kinds: map[CheckpointID]Kind{}, ended: map[CheckpointID]string{},
		persisting: map[CheckpointID]bool{}, requests: map[RequestID]bool{},
		cov: coverage{reasons: map[string]int{}},
	}
	r.step(Start{})
	for i := 0; i < 400 && !t.Failed(); i++ {
		r.step(r.randomEvent())
	}
	r.step(Stop{})
	for id, k := range r.kinds {
		if r.ended[id] == "" {
			r.fail("%s %d never ended", k, id)
		}
	}
	if len(r.requests) > 0 {
		r.fail("savepoint requests never answered: %v", r.requests)
	}
	return r.cov
}

func (r *randomRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("seed %d at %v: %s", r.seed, r.now.Sub(t0), fmt.Sprintf(format, args...))
}

func (r *randomRun) randomEvent() Event {
	rng := r.rng
	pending := r.c.Pending()
	pick := func() (PendingStatus, bool) {
		if len(pending) == 0 {
			return PendingStatus{}, false
		}
		return pending[rng.IntN(len(pending))], true
	}
	task := func() TaskID { return r.cfg.Tasks[rng.IntN(len(r.cfg.Tasks))] }
	switch n := rng.IntN(100); {
	case n < 20: // time passes: to the timer, or a little
		if !r.timer.IsZero() && rng.IntN(3) == 0 {
			r.now = r.timer
		} else {
			r.now = r.now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		return Tick{}
	case n < 65: // an ack, mostly for something in flight
		if p, ok := pick(); ok && rng.IntN(10) > 0 {
			// Mostly a task it still waits for (peeking at the coordinator's
			// state), else any task: a duplicate or a stranger.
			awaiting := sortedTasks(slices.Collect(maps.Keys(r.c.pending[p.ID].awaiting)))
			if len(awaiting) > 0 && rng.IntN(5) > 0 {
				return Ack{ID: p.ID, Task: awaiting[rng.IntN(len(awaiting))], State: rng.Int()}
			}
			return Ack{ID: p.ID, Task: task(), State: rng.Int()}
		}
		return Ack{ID: r.lastID - CheckpointID(rng.IntN(3)) + 1, Task: task(), State: rng.Int()}
	case n < 68:
		if p, ok := pick(); ok {
			var reason error = errors.New("random decline")
			if rng.IntN(2) == 0 {
				reason = fmt.Errorf("restoring: %w", ErrTaskNotReady)
			}
			return Decline{ID: p.ID, Task: task(), Reason: reason}
		}
		return Tick{}
	case n < 70:
		return TaskFinished{Task: task()}
	case n < 74:
		r.nextReq++
		req := RequestID(fmt.Sprintf("r%d", r.nextReq))
		r.requests[req] = true
		kinds := []Kind{Savepoint, Savepoint, Savepoint, StopWithSavepoint, Checkpoint}
		return TriggerSavepoint{Request: req, Kind: kinds[rng.IntN(len(kinds))], Drain: rng.IntN(2) == 0}
	case n < 92: // the runner reports a persist it was asked for, sometimes a stale one
		ids := make([]CheckpointID, 0, len(r.persisting))
		for id := range r.persisting {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			return Tick{}
		}
		id := ids[rng.IntN(len(ids))]
		delete(r.persisting, id) // reported now, whatever became of the checkpoint meanwhile
		if rng.IntN(8) == 0 {
			return MetadataFailed{ID: id, Err: errors.New("random I/O error")}
		}
		return MetadataWritten{ID: id}
	case n < 94:
		return Stop{}
	default:
		return Start{}
	}
}

func (r *randomRun) step(ev Event) {
	r.t.Helper()
	acts := r.c.Handle(r.now, ev)
	if err := r.c.checkInvariants(r.now); err != nil {
		r.fail("after %T: %v\nactions: %q", ev, err, describe(acts))
	}
	for i, a := range acts {
		switch a := a.(type) {
		case TriggerCheckpoint:
			if a.ID <= r.lastID {
				r.fail("trigger %d after %d: IDs must increase", a.ID, r.lastID)
			}
			if !a.Timestamp.Equal(r.now) {
				r.fail("trigger %d stamped %v at %v", a.ID, a.Timestamp, r.now)
			}
			r.lastID = a.ID
			r.kinds[a.ID] = a.Kind
			if a.Kind == Checkpoint && r.inFlight(Checkpoint) > 1 {
				r.cov.concurrent++
			}
			if n := r.inFlight(Checkpoint); n > r.cfg.MaxConcurrent {
				r.fail("%d checkpoints in flight, max %d", n, r.cfg.MaxConcurrent)
			}
		case PersistCheckpoint:
			r.mustBeInFlight(a.ID, "persist")
			if r.persisting[a.ID] {
				r.fail("persist %d twice", a.ID)
			}
			r.persisting[a.ID] = true
		case NotifyComplete:
			r.mustBeInFlight(a.ID, "notify complete")
			if !r.kinds[a.ID].notifiesTasks() {
				r.fail("notify complete for %s %d", r.kinds[a.ID], a.ID)
			}
			if _, ok := ev.(MetadataWritten); !ok {
				r.fail("notify complete %d on %T, not on its metadata", a.ID, ev)
			}
			r.end(a.ID, "completed")
			if r.kinds[a.ID] == Checkpoint {
				r.cov.completedCheckpoints++
			} else {
				r.cov.completedStops++
			}
		case AbortCheckpoint:
			r.mustBeInFlight(a.ID, "abort")
			r.end(a.ID, "aborted")
			r.cov.reasons[reasonOf(a.Reason)]++
			if i+1 >= len(acts) {
				r.fail("abort %d is the last action: %q", a.ID, describe(acts))
			}
			if na, ok := acts[i+1].(NotifyAborted); !ok || na.ID != a.ID {
				r.fail("abort %d not followed by its NotifyAborted: %q", a.ID, describe(acts))
			}
		case NotifyAborted:
			if r.ended[a.ID] != "aborted" {
				r.fail("notify aborted %d, which is %q", a.ID, r.ended[a.ID])
			}
		case SavepointDone:
			if !r.requests[a.Request] {
				r.fail("savepoint request %q answered twice or never made", a.Request)
			}
			delete(r.requests, a.Request)
			switch {
			case a.ID == 0:
				if a.Err == nil {
					r.fail("savepoint %q done without an ID or an error", a.Request)
				}
				r.cov.refused++
			case a.Err == nil:
				if k := r.kinds[a.ID]; k == StopWithSavepoint {
					if r.ended[a.ID] != "completed" {
						r.fail("stop-with-savepoint %d done before its NotifyComplete", a.ID)
					}
				} else {
					r.mustBeInFlight(a.ID, "savepoint done")
					r.end(a.ID, "completed")
					r.cov.completedSavepoints++
				}
			default:
				if r.ended[a.ID] != "aborted" {
					r.fail("savepoint %d failed but not aborted", a.ID)
				}
			}
		case FailJob:
			r.cov.failJobs++
			if r.c.Running() {
				r.fail("still running after FailJob")
			}
		case SetTimer:
			if !a.At.IsZero() && !a.At.After(r.now) {
				r.fail("timer at %v is not after now", a.At.Sub(t0))
			}
			r.timer = a.At
		case DiscardAck:
			r.cov.discardAcks++
			if r.ended[a.ID] == "completed" && slices.Contains(r.c.Retained(), a.ID) {
				r.fail("discard ack of retained checkpoint %d", a.ID)
			}
		case DiscardMetadata:
			r.cov.discardMetadata++
			if r.ended[a.ID] == "completed" {
				r.fail("discard metadata of completed checkpoint %d", a.ID)
			}
		case DiscardCompleted:
			r.cov.discardCompleted++
			if r.ended[a.ID] != "completed" && a.ID >= max(r.cfg.FirstID, 1) {
				r.fail("discard completed %d, which is %q", a.ID, r.ended[a.ID])
			}
		default:
			r.fail("unknown action %T", a)
		}
	}
	if !r.c.Running() && len(r.c.Pending()) > 0 {
		r.fail("stopped with checkpoints in flight")
	}
}

func (r *randomRun) mustBeInFlight(id CheckpointID, what string) {
	r.t.Helper()
	if _, ok := r.kinds[id]; !ok {
		r.fail("%s %d, never triggered", what, id)
	}
	if e := r.ended[id]; e != "" {
		r.fail("%s %d, already %s", what, id, e)
	}
}

func (r *randomRun) end(id CheckpointID, how string) { r.ended[id] = how }

func (r *randomRun) inFlight(k Kind) int {
	n := 0
	for id, kind := range r.kinds {
		if kind == k && r.ended[id] == "" {
			n++
		}
	}
	return n
}
