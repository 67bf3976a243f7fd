package state

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
)

// TimerService holds the event-time and processing-time timers of one
// keyed operator instance. A timer is (timestamp, key, namespace) and
// remembers its key group; registering one that exists is a no-op. Timers
// fire in timestamp order, ties in a deterministic order (key length, key,
// namespace); before each fires, the service makes its key and namespace
// current on the backend.
//
// Time is an input: the service never reads a clock. The task calls
// AdvanceWatermark when a watermark arrives and AdvanceProcessingTime when
// the processing time it scheduled (NextProcessingTime) is reached.
type TimerService struct {
	b          Backend
	event      timerQueue
	processing timerQueue
	watermark  int64
	id         []byte // scratch timer id for register/delete
	firing     []byte // copy of the id of the timer being fired
}

// NewTimerService returns a timer service whose timers apply to the current
// key and namespace of b.
func NewTimerService(b Backend) *TimerService {
	return &TimerService{b: b, watermark: math.MinInt64}
}

// currentID encodes the timer (ts, current key, current namespace).
func (t *TimerService) currentID(ts int64) ([]byte, int) {
	kg := t.b.CurrentKeyGroup()
	if kg < 0 {
		panic("state: timer registered with no current key: timers can only be set while processing a keyed record or timer")
	}
	t.id = appendTimerID(t.id[:0], ts, t.b.CurrentKey(), t.b.CurrentNamespace())
	return t.id, kg
}

// RegisterEventTimeTimer registers a timer at ts for the current key and
// namespace; it fires when the watermark reaches ts. A timer at or before
// the current watermark fires at the next AdvanceWatermark.
func (t *TimerService) RegisterEventTimeTimer(ts int64) {
	id, kg := t.currentID(ts)
	t.event.add(id, ts, kg)
}

// DeleteEventTimeTimer deletes the current key and namespace's event-time
// timer at ts, if any.
func (t *TimerService) DeleteEventTimeTimer(ts int64) {
	id, _ := t.currentID(ts)
	t.event.delete(id)
}

// RegisterProcessingTimeTimer registers a processing-time timer at ts for
// the current key and namespace.
func (t *TimerService) RegisterProcessingTimeTimer(ts int64) {
	id, kg := t.currentID(ts)
	t.processing.add(id, ts, kg)
}

// DeleteProcessingTimeTimer deletes the current key and namespace's
// processing-time timer at ts, if any.
func (t *TimerService) DeleteProcessingTimeTimer(ts int64) {
	id, _ := t.currentID(ts)
	t.processing.delete(id)
}

// CurrentWatermark returns the highest watermark passed to
// AdvanceWatermark (math.MinInt64 before the first).
func (t *TimerService) CurrentWatermark() int64 { return t.watermark }

// AdvanceWatermark fires, in timestamp order, every event-time timer with
// ts <= wm: for each it sets the backend's current key and namespace, then
// calls fire(ts). Timers that fire registers at or before wm also fire in
// this call. Afterwards the backend's key and namespace are those of the
// last timer fired: set both before the next record.
func (t *TimerService) AdvanceWatermark(wm int64, fire func(ts int64)) {
	t.watermark = max(t.watermark, wm)
	t.fireUntil(&t.event, wm, fire)
}

// NextProcessingTime returns the earliest processing-time timer, if any:
// the time at which the task should call AdvanceProcessingTime.
func (t *TimerService) NextProcessingTime() (int64, bool) {
	if len(t.processing.heap) == 0 {
		return 0, false
	}
	return t.processing.heap[0].ts, true
}

// AdvanceProcessingTime fires, in timestamp order, every processing-time
// timer with ts <= now, as AdvanceWatermark does for event time.
func (t *TimerService) AdvanceProcessingTime(now int64, fire func(ts int64)) {
	t.fireUntil(&t.processing, now, fire)
}

func (t *TimerService) fireUntil(q *timerQueue, limit int64, fire func(ts int64)) {
	for len(q.heap) > 0 && q.heap[0].ts <= limit {
		tm := q.pop()
		// Copy the id out so that the timer can be reused by registrations
		// inside fire.
		t.firing = append(t.firing[:0], tm.id...)
		ts, kg := tm.ts, int(tm.keyGroup)
		q.release(tm)
		key, ns := splitTimerID(t.firing)
		t.b.SetCurrentKey(key, kg)
		t.b.SetCurrentNamespace(ns)
		fire(ts)
	}
}

// NumEventTimers returns the number of registered event-time timers.
func (t *TimerService) NumEventTimers() int { return len(t.event.heap) }

// NumProcessingTimers returns the number of registered processing-time timers.
func (t *TimerService) NumProcessingTimers() int { return len(t.processing.heap) }

// TimerSnapshot is the canonical form of a TimerService's timers, per key
// group, for checkpoints; it rescales like Snapshot.
type TimerSnapshot struct {
	// KeyGroups in ascending key-group order; key groups without timers
	// are left out.
	KeyGroups []TimerKeyGroup
}

// TimerKeyGroup holds the timers of one key group, each list in firing order.
type TimerKeyGroup struct {
	KeyGroup       int
	EventTime      []Timer
	ProcessingTime []Timer
}

// Timer is one timer. Empty byte fields are nil.
type Timer struct {
	Timestamp int64
	Key       []byte
	Namespace []byte
}

// Snapshot returns a copy of all timers.
func (t *TimerService) Snapshot() *TimerSnapshot {
	byKG := make(map[int]*TimerKeyGroup)
	group := func(kg int) *TimerKeyGroup {
		g := byKG[kg]
		if g == nil {
			g = &TimerKeyGroup{KeyGroup: kg}
			byKG[kg] = g
		}
		return g
	}
	for _, list := range []struct {
		q   *timerQueue
		dst func(*TimerKeyGroup) *[]Timer
	}{
		{&t.event, func(g *TimerKeyGroup) *[]Timer { return &g.EventTime }},
		{&t.processing, func(g *TimerKeyGroup) *[]Timer { return &g.ProcessingTime }},
	} {
		timers := slices.Clone(list.q.heap)
		slices.SortFunc(timers, compareTimers)
		for _, tm := range timers {
			key, ns := splitTimerID([]byte(tm.id))
			dst := list.dst(group(int(tm.keyGroup)))
			*dst = append(*dst, Timer{Timestamp: tm.ts, Key: nilIfEmpty(key), Namespace: nilIfEmpty(ns)})
		}
	}
	snap := &TimerSnapshot{}
	for _, g := range byKG {
		snap.KeyGroups = append(snap.KeyGroups, *g)
	}
	slices.SortFunc(snap.KeyGroups, func(a, b TimerKeyGroup) int { return a.KeyGroup - b.KeyGroup })
	return snap
}

// Restore registers the timers of s whose key group is in the backend's
// range and ignores the rest; to rescale, restore every old subtask's
// snapshot.
func (t *TimerService) Restore(s *TimerSnapshot) {
	r := t.b.KeyGroupRange()
	for _, g := range s.KeyGroups {
		if !r.Contains(g.KeyGroup) {
			continue
		}
		for _, tm := range g.EventTime {
			t.id = appendTimerID(t.id[:0], tm.Timestamp, tm.Key, tm.Namespace)
			t.event.add(t.id, tm.Timestamp, g.KeyGroup)
		}
		for _, tm := range g.ProcessingTime {
			t.id = appendTimerID(t.id[:0], tm.Timestamp, tm.Key, tm.Namespace)
			t.processing.add(t.id, tm.Timestamp, g.KeyGroup)
		}
	}
}

// A timer's id is ts (8 bytes, big-endian, sign bit flipped so that byte
// order is numeric order) ‖ uvarint(len(key)) ‖ key ‖ ns: unique per
// (ts, key, ns), and the string the dedup map is keyed by.
func appendTimerID(dst []byte, ts int64, key, ns []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts)^(1<<63))
	return appendComposite(dst, key, ns)
}

// splitTimerID returns the key and namespace of an id, as sub-slices.
func splitTimerID(id []byte) (key, ns []byte) {
	rest := id[8:]
	n, w := binary.Uvarint(rest)
	return rest[w : w+int(n)], rest[w+int(n):]
}

type timer struct {
	ts       int64
	keyGroup int32
	index    int32  // position in the heap
	id       string // see appendTimerID
}

func compareTimers(a, b *timer) int {
	if a.ts != b.ts {
		if a.ts < b.ts {
			return -1
		}
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// timerQueue is a binary min-heap of timers with a map from id to timer for
// deduplication and deletion; each timer knows its heap index.
type timerQueue struct {
	heap []*timer
	byID map[string]*timer
	free []*timer // released timers, reused to save allocations
}

func (q *timerQueue) add(id []byte, ts int64, kg int) {
	if _, ok := q.byID[string(id)]; ok {
		return
	}
	if q.byID == nil {
		q.byID = make(map[string]*timer)
	}
	var tm *timer
	if n := len(q.free); n > 0 {
		tm, q.free = q.free[n-1], q.free[:n-1]
	} else {
		tm = new(timer)
	}
	*tm = timer{ts: ts, keyGroup: int32(kg), index: int32(len(q.heap)), id: string(id)}
	q.byID[tm.id] = tm
	q.heap = append(q.heap, tm)
	q.up(len(q.heap) - 1)
}

func (q *timerQueue) delete(id []byte) {
	tm, ok := q.byID[string(id)]
	if !ok {
		return
	}
	q.removeAt(int(tm.index))
	q.release(tm)
}

// pop removes and returns the earliest timer; release it after use.
func (q *timerQueue) pop() *timer {
	tm := q.heap[0]
	q.removeAt(0)
	return tm
}

func (q *timerQueue) release(tm *timer) {
	*tm = timer{}
	q.free = append(q.free, tm)
}

func (q *timerQueue) removeAt(i int) {
	tm := q.heap[i]
	delete(q.byID, tm.id)
	last := len(q.heap) - 1
	if i != last {
		q.swap(i, last)
	}
	q.heap[last] = nil
	q.heap = q.heap[:last]
	if i != last {
		if !q.down(i) {
			q.up(i)
		}
	}
}

func (q *timerQueue) less(i, j int) bool { return compareTimers(q.heap[i], q.heap[j]) < 0 }

func (q *timerQueue) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].index = int32(i)
	q.heap[j].index = int32(j)
}

func (q *timerQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (q *timerQueue) down(i0 int) bool {
	i, n := i0, len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && q.less(r, l) {
			c = r
		}
		if !q.less(c, i) {
			break
		}
		q.swap(i, c)
		i = c
	}
	return i > i0
}
