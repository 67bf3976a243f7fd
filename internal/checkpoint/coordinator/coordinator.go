package coordinator

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// recentCompleted is how many completed checkpoint IDs are remembered so
// that a late duplicate acknowledgement of one is ignored rather than
// discarded (Flink remembers 16 expired IDs for its log message).
const recentCompleted = 64

// Coordinator decides a job's checkpoints. It is not safe for concurrent
// use: the JobMaster's main goroutine owns it. Create it with New.
type Coordinator struct {
	cfg     Config
	sources []TaskID // sorted
	tasks   []TaskID // sorted
	isTask  map[TaskID]bool

	running  bool
	finished map[TaskID]bool

	nextID  CheckpointID
	pending map[CheckpointID]*inFlight

	// nextDue is when the next periodic checkpoint is due; zero when none
	// will be (off, stopping, all sources finished, not running).
	nextDue time.Time
	// lastCompletion is when the last checkpoint or savepoint completed.
	lastCompletion time.Time
	// stopping: a stop-with-savepoint is in flight. stopped: one completed;
	// the job is ending and no periodic checkpoint follows.
	stopping, stopped bool

	// Consecutive-failure accounting (Flink's CheckpointFailureManager).
	failures      int
	lastSucceeded CheckpointID

	retained  []CheckpointID
	completed []CheckpointID // ring of recent completions, for late acks

	armed   time.Time // the timer the runner holds; zero if none
	lastNow time.Time

	counts Counts
}

// inFlight is one triggered checkpoint that has not ended.
type inFlight struct {
	id          CheckpointID
	kind        Kind
	drain       bool
	request     RequestID
	phase       Phase
	triggeredAt time.Time
	deadline    time.Time
	plan        []TaskID // tasks that must acknowledge, sorted
	finished    []TaskID // tasks finished before the trigger
	awaiting    map[TaskID]bool
	acks        map[TaskID]any
}

func (p *inFlight) moveTo(to Phase) {
	if !p.phase.canMoveTo(to) {
		panic(fmt.Sprintf("checkpoint coordinator: checkpoint %d cannot move from %s to %s", p.id, p.phase, to))
	}
	p.phase = to
}

func (p *inFlight) inPlan(t TaskID) bool {
	_, ok := p.acks[t]
	return ok || p.awaiting[t]
}

// Counts are the coordinator's running totals, for metrics and the REST
// checkpoint overview.
type Counts struct {
	Triggered  int // checkpoints and savepoints triggered
	InProgress int // triggered and not ended
	Completed  int
	Failed     int // aborted for any reason, subsumption included (as Flink counts)
}

// PendingStatus describes one checkpoint in flight.
type PendingStatus struct {
	ID          CheckpointID
	Kind        Kind
	Phase       Phase
	TriggeredAt time.Time
	Acked       int
	Expected    int
}

// New checks cfg and returns a stopped coordinator; send Start when the
// job's tasks run.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:      cfg,
		sources:  sortedTasks(cfg.Sources),
		tasks:    sortedTasks(cfg.Tasks),
		isTask:   make(map[TaskID]bool, len(cfg.Tasks)),
		finished: map[TaskID]bool{},
		nextID:   max(cfg.FirstID, 1),
		pending:  map[CheckpointID]*inFlight{},
		retained: slices.Clone(cfg.Retained),
	}
	for _, t := range cfg.Tasks {
		c.isTask[t] = true
	}
	if n := len(c.retained); n > 0 {
		c.lastSucceeded = c.retained[n-1]
	}
	return c, nil
}

// Handle applies one event at time now and returns what the runner must do,
// in order. A now before the previous call's is taken as that one, so a
// wall clock stepping back cannot move deadlines; pass time.Now(), whose
// monotonic reading makes that rare.
func (c *Coordinator) Handle(now time.Time, ev Event) []Action {
	if now.Before(c.lastNow) {
		now = c.lastNow
	}
	c.lastNow = now
	var out []Action
	c.expire(now, &out)
	switch e := ev.(type) {
	case Start:
		c.start(now)
	case Tick:
		// Time passing is all a tick brings; expire and maybeTrigger act on it.
	case Ack:
		c.ack(e, &out)
	case Decline:
		c.decline(e, &out)
	case TaskFinished:
		c.taskFinished(e, &out)
	case TriggerSavepoint:
		c.triggerSavepoint(now, e, &out)
	case CheckpointNow:
		if c.periodicArmed() && now.Before(c.nextDue) {
			c.nextDue = now
		}
	case MetadataWritten:
		c.metadataWritten(now, e, &out)
	case MetadataFailed:
		c.metadataFailed(e, &out)
	case Stop:
		c.stop(ErrStopped, &out)
	default:
		panic(fmt.Sprintf("checkpoint coordinator: unknown event %T", ev))
	}
	c.maybeTriggerPeriodic(now, &out)
	c.rearm(&out)
	return out
}

func (c *Coordinator) start(now time.Time) {
	if c.running {
		return
	}
	c.running = true
	clear(c.finished)
	c.stopping, c.stopped = false, false
	c.nextDue = time.Time{}
	if c.cfg.Interval > 0 {
		d := c.cfg.InitialDelay
		if d == 0 {
			d = c.cfg.Interval
		}
		c.nextDue = now.Add(d)
	}
}

// stop aborts everything in flight (not counted as failures) and stops
// triggering until the next Start.
func (c *Coordinator) stop(reason error, out *[]Action) {
	c.running = false
	c.nextDue = time.Time{}
	for _, p := range c.inIDOrder() {
		c.abort(p, fmt.Errorf("%s %d: %w", p.kind, p.id, reason), false, out)
	}
	c.stopping = false
}

func (c *Coordinator) expire(now time.Time, out *[]Action) {
	for _, p := range c.inIDOrder() {
		if _, still := c.pending[p.id]; !still || now.Before(p.deadline) {
			continue // ended by an earlier abort in this loop (FailJob), or not due
		}
		c.abort(p, fmt.Errorf("%s %d %w: not completed within the %v timeout (%s)",
			p.kind, p.id, ErrExpired, c.cfg.Timeout, p.progress()), true, out)
	}
}

// progress says how far a checkpoint got, naming a few tasks it waits for.
func (p *inFlight) progress() string {
	if p.phase == Persisting {
		return "all tasks acknowledged; metadata not written"
	}
	waiting := sortedTasks(slices.Collect(maps.Keys(p.awaiting)))
	names := make([]string, 0, 3)
	for _, t := range waiting[:min(3, len(waiting))] {
		names = append(names, t.String())
	}
	more := ""
	if len(waiting) > 3 {
		more = fmt.Sprintf(" and %d more", len(waiting)-3)
	}
	return fmt.Sprintf("%d of %d tasks acknowledged; waiting for %s%s",
		len(p.acks), len(p.plan), strings.Join(names, ", "), more)
}

func (c *Coordinator) ack(e Ack, out *[]Action) {
	p := c.pending[e.ID]
	if p == nil {
		if !c.wasCompleted(e.ID) {
			*out = append(*out, DiscardAck{ID: e.ID, Task: e.Task, State: e.State})
		}
		return
	}
	if !p.inPlan(e.Task) {
		*out = append(*out, DiscardAck{ID: e.ID, Task: e.Task, State: e.State})
		return
	}
	if !p.awaiting[e.Task] {
		return // duplicate: its state may be the state already acknowledged
	}
	delete(p.awaiting, e.Task)
	p.acks[e.Task] = e.State
	if len(p.awaiting) > 0 {
		return
	}
	p.moveTo(Persisting)
	*out = append(*out, PersistCheckpoint{
		ID: p.id, Kind: p.kind, Timestamp: p.triggeredAt,
		Acks: maps.Clone(p.acks), Finished: slices.Clone(p.finished),
	})
}

// wasCompleted reports whether id is a retained or recently completed
// checkpoint, whose late acks must not be discarded.
func (c *Coordinator) wasCompleted(id CheckpointID) bool {
	return slices.Contains(c.completed, id) || slices.Contains(c.retained, id)
}

func (c *Coordinator) decline(e Decline, out *[]Action) {
	p := c.pending[e.ID]
	if p == nil || p.phase != Pending || !p.inPlan(e.Task) {
		return // ended already, every task acknowledged, or not a task it asked
	}
	reason := e.Reason
	if reason == nil {
		reason = errors.New("no reason given")
	}
	c.abort(p, fmt.Errorf("%s %d %w by task %s: %w", p.kind, p.id, ErrDeclined, e.Task, reason),
		!errors.Is(reason, ErrTaskNotReady), out)
}

func (c *Coordinator) taskFinished(e TaskFinished, out *[]Action) {
	if !c.isTask[e.Task] || c.finished[e.Task] {
		return
	}
	c.finished[e.Task] = true
	for _, p := range c.inIDOrder() {
		if _, still := c.pending[p.id]; still && p.awaiting[e.Task] {
			c.abort(p, fmt.Errorf("%s %d: %w (task %s)", p.kind, p.id, ErrTaskFinished, e.Task), false, out)
		}
	}
	if c.allSourcesFinished() {
		c.nextDue = time.Time{}
	}
}

func (c *Coordinator) triggerSavepoint(now time.Time, e TriggerSavepoint, out *[]Action) {
	refuse := func(why string, cause error) {
		*out = append(*out, SavepointDone{Request: e.Request,
			Err: fmt.Errorf("%s request %q refused: %s: %w", e.Kind, e.Request, why, cause)})
	}
	switch {
	case !e.Kind.IsSavepoint():
		refuse("only savepoints and stop-with-savepoint can be requested", ErrRefused)
	case !c.running:
		refuse("the job is not running", ErrStopped)
	case c.stopping || c.stopped:
		refuse("the job is already stopping with a savepoint", ErrRefused)
	case c.allSourcesFinished():
		refuse("every source has finished, so the job is about to end", ErrRefused)
	default:
		c.trigger(now, e.Kind, e.Drain && e.Kind == StopWithSavepoint, e.Request, out)
		if e.Kind == StopWithSavepoint {
			c.stopping = true
		}
	}
}

func (c *Coordinator) metadataWritten(now time.Time, e MetadataWritten, out *[]Action) {
	p := c.pending[e.ID]
	switch {
	case p == nil && c.wasCompleted(e.ID):
		return // a repeated report
	case p == nil:
		*out = append(*out, DiscardMetadata{ID: e.ID})
		return
	case p.phase != Persisting:
		return // not asked to persist yet: a runner bug; nothing safe to do
	}
	p.moveTo(Completed)
	delete(c.pending, p.id)
	c.counts.Completed++
	c.lastCompletion = now
	if p.id > c.lastSucceeded {
		c.lastSucceeded = p.id
		c.failures = 0
	}
	c.completed = append(c.completed, p.id)
	if len(c.completed) > recentCompleted {
		c.completed = c.completed[1:]
	}
	if p.kind.notifiesTasks() {
		for _, q := range c.inIDOrder() {
			if q.id < p.id && q.kind == Checkpoint {
				c.abort(q, fmt.Errorf("%s %d %w by %s %d", q.kind, q.id, ErrSubsumed, p.kind, p.id), false, out)
			}
		}
		*out = append(*out, NotifyComplete{ID: p.id, Tasks: c.live(p.plan)})
	}
	if p.kind == Checkpoint {
		c.retained = append(c.retained, p.id)
		for len(c.retained) > c.cfg.NumRetained {
			*out = append(*out, DiscardCompleted{ID: c.retained[0]})
			c.retained = c.retained[1:]
		}
	}
	if p.kind.IsSavepoint() {
		*out = append(*out, SavepointDone{Request: p.request, ID: p.id})
	}
	if p.kind == StopWithSavepoint {
		c.stopping, c.stopped = false, true
		c.nextDue = time.Time{}
	}
}

func (c *Coordinator) metadataFailed(e MetadataFailed, out *[]Action) {
	p := c.pending[e.ID]
	if p == nil || p.phase != Persisting {
		return
	}
	cause := e.Err
	if cause == nil {
		cause = errors.New("no reason given")
	}
	c.abort(p, fmt.Errorf("%s %d: %w: %w", p.kind, p.id, ErrMetadata, cause), true, out)
}

// maybeTriggerPeriodic triggers the periodic checkpoint if it is due and
// allowed; otherwise rearm keeps the timer for when it may be.
func (c *Coordinator) maybeTriggerPeriodic(now time.Time, out *[]Action) {
	if !c.periodicArmed() || now.Before(c.nextDue) || len(c.pending) >= c.cfg.MaxConcurrent {
		return
	}
	if now.Before(c.pauseEnd()) {
		return
	}
	c.trigger(now, Checkpoint, false, "", out)
	c.nextDue = now.Add(c.cfg.Interval)
}

func (c *Coordinator) periodicArmed() bool {
	return c.running && !c.nextDue.IsZero() && !c.stopping && !c.stopped
}

// pauseEnd is the earliest time min-pause allows the next periodic trigger.
func (c *Coordinator) pauseEnd() time.Time {
	if c.lastCompletion.IsZero() {
		return time.Time{}
	}
	return c.lastCompletion.Add(c.cfg.MinPause)
}

func (c *Coordinator) trigger(now time.Time, kind Kind, drain bool, req RequestID, out *[]Action) {
	p := &inFlight{
		id: c.nextID, kind: kind, drain: drain, request: req, phase: Pending,
		triggeredAt: now, deadline: now.Add(c.cfg.Timeout),
		awaiting: map[TaskID]bool{}, acks: map[TaskID]any{},
	}
	c.nextID++
	for _, t := range c.tasks {
		if c.finished[t] {
			p.finished = append(p.finished, t)
			continue
		}
		p.plan = append(p.plan, t)
		p.awaiting[t] = true
	}
	c.pending[p.id] = p
	c.counts.Triggered++
	*out = append(*out, TriggerCheckpoint{ID: p.id, Timestamp: now, Kind: kind, Drain: drain, Tasks: c.live(c.sources)})
}

// abort ends p without completing it. countable says whether the failure
// counts toward tolerable-failed-checkpoints (only checkpoints ever do).
func (c *Coordinator) abort(p *inFlight, reason error, countable bool, out *[]Action) {
	p.moveTo(Aborted)
	delete(c.pending, p.id)
	c.counts.Failed++
	*out = append(*out,
		AbortCheckpoint{ID: p.id, Kind: p.kind, Reason: reason, Acks: p.acks},
		NotifyAborted{ID: p.id, Tasks: c.live(p.plan)})
	if p.kind.IsSavepoint() {
		*out = append(*out, SavepointDone{Request: p.request, ID: p.id, Err: reason})
	}
	if p.kind == StopWithSavepoint {
		c.stopping = false // periodic checkpoints resume
	}
	if !countable || p.kind != Checkpoint || !c.running || p.id <= c.lastSucceeded {
		return
	}
	c.failures++
	if c.failures <= c.cfg.TolerableFailures {
		return
	}
	n := c.failures
	c.failures = 0
	*out = append(*out, FailJob{Reason: fmt.Errorf(
		"%w: %d in a row exceeds execution.checkpointing.tolerable-failed-checkpoints=%d "+
			"(raise it, or fix why checkpoints fail); the last: %w",
		ErrTooManyFailures, n, c.cfg.TolerableFailures, reason)})
	c.stop(fmt.Errorf("the job is failing after too many failed checkpoints: %w", ErrStopped), out)
}

// rearm emits SetTimer when the earliest moment the coordinator must act
// again has changed.
func (c *Coordinator) rearm(out *[]Action) {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if c.running {
		for _, p := range c.pending {
			earlier(p.deadline)
		}
		if c.periodicArmed() && len(c.pending) < c.cfg.MaxConcurrent {
			due := c.nextDue
			if pe := c.pauseEnd(); pe.After(due) {
				due = pe
			}
			earlier(due)
		}
	}
	if !next.Equal(c.armed) {
		c.armed = next
		*out = append(*out, SetTimer{At: next})
	}
}

func (c *Coordinator) allSourcesFinished() bool {
	for _, s := range c.sources {
		if !c.finished[s] {
			return false
		}
	}
	return true
}

// live returns the tasks of ts that have not finished.
func (c *Coordinator) live(ts []TaskID) []TaskID {
	out := make([]TaskID, 0, len(ts))
	for _, t := range ts {
		if !c.finished[t] {
			out = append(out, t)
		}
	}
	return out
}

func (c *Coordinator) inIDOrder() []*inFlight {
	ps := slices.Collect(maps.Values(c.pending))
	slices.SortFunc(ps, func(a, b *inFlight) int { return cmp.Compare(a.id, b.id) })
	return ps
}

// Running reports whether the coordinator is between Start and Stop (or
// FailJob).
func (c *Coordinator) Running() bool { return c.running }

// NextID is the ID the next checkpoint or savepoint will get; persist it
// (the HA checkpoint-ID counter) so a new master continues after it.
func (c *Coordinator) NextID() CheckpointID { return c.nextID }

// Retained returns the completed checkpoints kept, oldest first.
func (c *Coordinator) Retained() []CheckpointID { return slices.Clone(c.retained) }

// ConsecutiveFailures is the current count of consecutive failed
// checkpoints.
func (c *Coordinator) ConsecutiveFailures() int { return c.failures }

// Counts returns the running totals.
func (c *Coordinator) Counts() Counts {
	n := c.counts
	n.InProgress = len(c.pending)
	return n
}

// Pending describes the checkpoints in flight, oldest first.
func (c *Coordinator) Pending() []PendingStatus {
	var out []PendingStatus
	for _, p := range c.inIDOrder() {
		out = append(out, PendingStatus{ID: p.id, Kind: p.kind, Phase: p.phase,
			TriggeredAt: p.triggeredAt, Acked: len(p.acks), Expected: len(p.plan)})
	}
	return out
}

// checkInvariants returns the first broken invariant of the coordinator's
// state after a Handle at now; tests call it after every step.
func (c *Coordinator) checkInvariants(now time.Time) error {
	checkpoints, stops := 0, 0
	for id, p := range c.pending {
		switch {
		case id != p.id:
			return fmt.Errorf("pending[%d] holds checkpoint %d", id, p.id)
		case id >= c.nextID:
			return fmt.Errorf("pending checkpoint %d not below next ID %d", id, c.nextID)
		case p.phase != Pending && p.phase != Persisting:
			return fmt.Errorf("checkpoint %d in flight in phase %s", id, p.phase)
		case len(p.acks)+len(p.awaiting) != len(p.plan):
			return fmt.Errorf("checkpoint %d: %d acks + %d awaiting != %d planned", id, len(p.acks), len(p.awaiting), len(p.plan))
		case (p.phase == Persisting) != (len(p.awaiting) == 0):
			return fmt.Errorf("checkpoint %d in phase %s with %d acks awaited", id, p.phase, len(p.awaiting))
		case !now.Before(p.deadline):
			return fmt.Errorf("checkpoint %d still in flight at %v, past its deadline %v", id, now, p.deadline)
		case !c.running:
			return fmt.Errorf("checkpoint %d in flight while stopped", id)
		}
		if p.kind == Checkpoint {
			checkpoints++
		}
		if p.kind == StopWithSavepoint {
			stops++
		}
	}
	switch {
	case checkpoints > c.cfg.MaxConcurrent:
		return fmt.Errorf("%d checkpoints in flight, more than max %d", checkpoints, c.cfg.MaxConcurrent)
	case c.stopping != (stops == 1) || stops > 1:
		return fmt.Errorf("stopping=%v with %d stop-with-savepoints in flight", c.stopping, stops)
	case c.failures > c.cfg.TolerableFailures:
		return fmt.Errorf("%d consecutive failures kept, more than tolerable %d", c.failures, c.cfg.TolerableFailures)
	case len(c.retained) > c.cfg.NumRetained:
		return fmt.Errorf("%d checkpoints retained, more than %d", len(c.retained), c.cfg.NumRetained)
	case !c.armed.IsZero() && !c.armed.After(now):
		return fmt.Errorf("timer at %v is not after now %v", c.armed, now)
	case len(c.pending) > 0 && c.armed.IsZero():
		return fmt.Errorf("%d checkpoints in flight but no timer for their timeout", len(c.pending))
	case c.periodicArmed() && len(c.pending) == 0 && c.armed.IsZero():
		return fmt.Errorf("periodic checkpoints on and nothing in flight, but no timer: checkpointing stalled")
	case c.running && c.cfg.Interval > 0 && !c.stopping && !c.stopped && !c.allSourcesFinished() && c.nextDue.IsZero():
		return fmt.Errorf("periodic checkpoints on but none due")
	}
	for i := 1; i < len(c.retained); i++ {
		if c.retained[i] <= c.retained[i-1] {
			return fmt.Errorf("retained checkpoints %v not increasing", c.retained)
		}
	}
	return nil
}
