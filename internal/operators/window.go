package operators

// Keyed windows with Flink's semantics (WindowOperator with the default
// EventTimeTrigger / ProcessingTimeTrigger), built for throughput.
//
// Tumbling and sliding windows do not merge, so every key's window with a
// given end fires at the same moment. Their state is grouped by that end, so
// a watermark fires a whole window end in one pass instead of popping one
// timer per (key, window) from a heap:
//
//	kgw[key group]                                 ends[window end]
//	  keys[key] ─▶ keyWindows                        window, fired,
//	                 wins []{end, acc}  (by end)      key groups holding it
//	  byEnd[window end] ─▶ []*keyWindows                  ▲
//	                       (arrival order)                │ endTimers: heap of
//	                                                      │ (due, window end)
//
// A record costs one key-group hash and one map lookup (none when it has the
// previous record's key, as runs of a hot key do): its key's few live
// windows sit together in a slice sorted by end (a sliding window's record
// belongs to size/slide of them, nearly always the last ones). Firing an end
// walks, per key group, the keys that have that window, and without allowed
// lateness drops each key's window in the same pass. Accumulators are Go
// values, folded in place; only WindowProcess buffers elements. Keeping the
// key group as the outer index preserves the unit of rescaling:
// WindowStates walks the state key group by key group.
//
// Session windows merge, so their ends differ per key: each key group maps
// a key to its sessions, sorted and disjoint, and a heap holds one timer per
// session (lazily re-armed when a session grows, since growth only delays
// it).
//
// Lateness (event time only), as Flink: a window is late once
// MaxTimestamp()+allowedLateness <= watermark; a record all of whose windows
// are late is dropped and counted (NumLateRecordsDropped). A window fires
// when the watermark reaches its MaxTimestamp(); with allowed lateness it is
// kept until MaxTimestamp()+allowedLateness, and a late-but-allowed record
// fires it again at once with all its contents. Results carry the timestamp
// window.MaxTimestamp().
//
// Processing-time windows fire from processing-time callbacks: one is
// registered for the earliest pending window and re-armed after it fires.
// A window fires once the clock reaches its End (its last millisecond is
// over, as Flink delays processing-time timers by 1 ms), so no record can
// arrive for it afterwards. Allowed lateness does not apply to them (as in
// Flink). At the end of the input every pending processing-time window
// fires, as if the clock jumped ahead: a bounded job keeps its last, partial
// processing-time windows rather than losing them when the job ends.
// (Their results may follow the final watermark downstream, which is
// harmless for processing-time results.) Event-time windows need no such
// rule: the final MaxWatermark arrives before the end of the input and
// fires them all; EndInput leaves them alone.
//
// Checkpoints hold the windows as keyed state and timers in the canonical
// form (see SnapshotState), plus the watermark, so that a restored operator
// neither re-admits records it had dropped as late nor sees event time go
// back while the restarted sources catch up. The in-memory indexes above
// are rebuilt on restore, from the key groups the subtask owns.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/codec"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
)

// ProcessWindowFunction computes the result of one key's window from its
// contents: all its elements (WindowProcess), or the one reduced or
// aggregated value. elements belongs to the operator: read it during the
// call, do not keep or modify it.
type ProcessWindowFunction[K comparable, IN, OUT any] func(key K, window TimeWindow, elements []IN, out Collector[OUT]) error

// WindowSpec says how records are grouped into windows.
type WindowSpec struct {
	Assigner WindowAssigner
	// AllowedLateness keeps event-time windows after they fired, so that
	// records up to this late update (and re-fire) them.
	AllowedLateness time.Duration
}

// WindowStateEntry is the contents of one key's window, as a checkpoint
// stores it.
type WindowStateEntry struct {
	KeyGroup int
	Key      []byte // encoded with the operator's KeyEncoder
	Window   TimeWindow
	// Acc is the window's contents: the reduced value T (Reduce), the
	// accumulator ACC (Aggregate), or the buffered elements []T (Process).
	Acc any
	// Fired is set for an event-time window that has fired and is kept only
	// for its allowed lateness.
	Fired bool
}

// WindowState is implemented by window operators (their runtime.Operator):
// it exposes all window state by key group, for snapshots and restores.
type WindowState interface {
	// WindowStates yields every window of every key, by ascending key group,
	// then window end (sessions: encoded key, then window start).
	WindowStates() iter.Seq[WindowStateEntry]
	// RestoreWindowState adds one entry after Open and before any record.
	// Entries of key groups outside this subtask's range are ignored, so
	// that restoring every old subtask's entries rescales. When restored
	// entries disagree on whether a window has fired, it has not: a window
	// may fire twice after rescaling, but never not at all.
	RestoreWindowState(e WindowStateEntry) error
	// NumLateRecordsDropped counts records dropped because all their
	// windows were late (Flink's numLateRecordsDropped).
	NumLateRecordsDropped() int64
}

// windowFuncs says how a window operator folds records into accumulators
// and turns them into results.
type windowFuncs[T any, K comparable, ACC, OUT any] struct {
	create func(v T) ACC // the accumulator of a window's first record
	add    func(acc ACC, v T) ACC
	merge  func(a, b ACC) ACC // a is the earlier window's
	emit   func(key K, w TimeWindow, acc ACC, out Collector[OUT]) error
	// kind is the kind of keyed state the accumulators are in checkpoints:
	// reducing, aggregating, or list (buffered elements).
	kind state.Kind
	// codec returns how checkpoints encode the accumulators.
	codec func() (accCodec[ACC], error)
}

// NewWindowReduce returns the factory of a window operator that reduces
// each key's window with reduce and emits the reduced value.
func NewWindowReduce[T any, K comparable](keying *Keying[T, K], spec WindowSpec, reduce func(a, b T) T) *runtime.Factory {
	return newWindowFactory(keying, spec, func() windowFuncs[T, K, T, T] {
		return windowFuncs[T, K, T, T]{
			create: identity[T],
			add:    reduce,
			merge:  reduce,
			emit: func(_ K, _ TimeWindow, acc T, out Collector[T]) error {
				out.Collect(acc)
				return nil
			},
			kind:  state.KindReducing,
			codec: valueCodec[T],
		}
	})
}

// NewWindowReduceProcess returns the factory of a window operator that
// reduces each key's window with reduce and passes the reduced value to p.
func NewWindowReduceProcess[T any, K comparable, OUT any](keying *Keying[T, K], spec WindowSpec, reduce func(a, b T) T, p ProcessWindowFunction[K, T, OUT]) *runtime.Factory {
	return newWindowFactory(keying, spec, func() windowFuncs[T, K, T, OUT] {
		one := make([]T, 1)
		return windowFuncs[T, K, T, OUT]{
			create: identity[T],
			add:    reduce,
			merge:  reduce,
			emit: func(key K, w TimeWindow, acc T, out Collector[OUT]) error {
				one[0] = acc
				return p(key, w, one, out)
			},
			kind:  state.KindReducing,
			codec: valueCodec[T],
		}
	})
}

// NewWindowAggregate returns the factory of a window operator that
// aggregates each key's window with agg and emits agg.GetResult.
func NewWindowAggregate[T any, K comparable, ACC, OUT any](keying *Keying[T, K], spec WindowSpec, agg state.AggregateFunction[T, ACC, OUT]) *runtime.Factory {
	return newWindowFactory(keying, spec, func() windowFuncs[T, K, ACC, OUT] {
		return windowFuncs[T, K, ACC, OUT]{
			create: func(v T) ACC { return agg.Add(v, agg.CreateAccumulator()) },
			add:    func(acc ACC, v T) ACC { return agg.Add(v, acc) },
			merge:  agg.Merge,
			emit: func(_ K, _ TimeWindow, acc ACC, out Collector[OUT]) error {
				out.Collect(agg.GetResult(acc))
				return nil
			},
			kind:  state.KindAggregating,
			codec: valueCodec[ACC],
		}
	})
}

// NewWindowAggregateProcess returns the factory of a window operator that
// aggregates each key's window with agg and passes the result to p.
func NewWindowAggregateProcess[T any, K comparable, ACC, V, OUT any](keying *Keying[T, K], spec WindowSpec, agg state.AggregateFunction[T, ACC, V], p ProcessWindowFunction[K, V, OUT]) *runtime.Factory {
	return newWindowFactory(keying, spec, func() windowFuncs[T, K, ACC, OUT] {
		one := make([]V, 1)
		return windowFuncs[T, K, ACC, OUT]{
			create: func(v T) ACC { return agg.Add(v, agg.CreateAccumulator()) },
			add:    func(acc ACC, v T) ACC { return agg.Add(v, acc) },
			merge:  agg.Merge,
			emit: func(key K, w TimeWindow, acc ACC, out Collector[OUT]) error {
				one[0] = agg.GetResult(acc)
				return p(key, w, one, out)
			},
			kind:  state.KindAggregating,
			codec: valueCodec[ACC],
		}
	})
}

// NewWindowProcess returns the factory of a window operator that buffers
// each key's window and passes all its elements, in arrival order, to p.
func NewWindowProcess[T any, K comparable, OUT any](keying *Keying[T, K], spec WindowSpec, p ProcessWindowFunction[K, T, OUT]) *runtime.Factory {
	return newWindowFactory(keying, spec, func() windowFuncs[T, K, []T, OUT] {
		return windowFuncs[T, K, []T, OUT]{
			create: func(v T) []T { return []T{v} },
			add:    func(acc []T, v T) []T { return append(acc, v) },
			merge:  func(a, b []T) []T { return append(a, b...) },
			emit:   func(key K, w TimeWindow, acc []T, out Collector[OUT]) error { return p(key, w, acc, out) },
			kind:   state.KindList,
			codec:  listCodec[T],
		}
	})
}

func identity[T any](v T) T { return v }

func newWindowFactory[T any, K comparable, ACC, OUT any](keying *Keying[T, K], spec WindowSpec, funcs func() windowFuncs[T, K, ACC, OUT]) *runtime.Factory {
	return keyedFactory[T, OUT](keying, func() (runtime.Operator, runtime.Input[T], func(any)) {
		op := newWindowOp(keying, spec, funcs())
		return op, op, func(o any) { op.out = o.(runtime.Output[OUT]) }
	})
}

// windowOp is the window operator of every flavour: ACC is T (reduce), the
// AggregateFunction's accumulator, or []T (process).
type windowOp[T any, K comparable, ACC, OUT any] struct {
	out      runtime.Output[OUT]
	ctx      *runtime.OperatorContext
	keying   *Keying[T, K]
	assigner WindowAssigner
	// lateness is the allowed lateness in ms; always 0 for processing time.
	lateness  int64
	eventTime bool
	merging   bool
	fn        windowFuncs[T, K, ACC, OUT]
	coll      windowCollector[OUT]

	maxP    int
	kgStart int
	nGroups int
	keyBuf  []byte
	winBuf  []TimeWindow
	// wm is the current event-time watermark.
	wm int64
	// ended is set at the end of the input: no processing-time callbacks
	// are armed after it.
	ended bool
	// armed holds the times of outstanding processing-time callbacks.
	armed []int64

	// Non-merging windows.
	kgw       []kgWindows[K, ACC] // by key group - kgStart
	ends      map[int64]*windowEnd
	endTimers timerHeap[endTimer]
	freeKeys  []*keyWindows[K, ACC]
	freeLists []*endKeys[K, ACC]
	// winsPerRecord is how many windows a record belongs to.
	winsPerRecord int
	// last is the key of the latest record and its windows, in key group
	// lastKgi, or nil: a run of records with one key (a hot key) skips
	// encoding, hashing and looking up the key. It is always the key's
	// entry in kgw[lastKgi].keys.
	last    *keyWindows[K, ACC]
	lastKgi int

	// Session windows.
	sessions      []map[K]*sessionList[ACC] // by key group - kgStart
	sessionTimers timerHeap[sessionTimer[K]]
	nextID        uint64
	timerSeq      uint64

	lateDropped int64

	// accCodec encodes accumulators for checkpoints; made by Open when
	// checkpoints are on or state is restored, else on the first snapshot.
	accCodec *accCodec[ACC]
	// plainKey and plainAcc say whether K and ACC can be copied as values
	// into a snapshot (2) or must be encoded (1); 0 until the first one.
	plainKey, plainAcc uint8
	// lastCopyKeys and lastCopyWins size the next snapshot's copy.
	lastCopyKeys, lastCopyWins int
}

// kgWindows holds one key group's non-merging windows.
type kgWindows[K comparable, ACC any] struct {
	keys  map[K]*keyWindows[K, ACC]
	byEnd map[int64]*endKeys[K, ACC]
}

// keyWindows holds one key's live windows.
type keyWindows[K comparable, ACC any] struct {
	key  K
	wins []keyWindow[ACC] // sorted by end
}

type keyWindow[ACC any] struct {
	end int64
	acc ACC
}

// endKeys lists the keys of a key group that have a window, in the order
// they entered it (which makes firing order deterministic).
type endKeys[K comparable, ACC any] struct{ keys []*keyWindows[K, ACC] }

// find returns the index of the window ending at end, or -1. Windows fire
// and are dropped in order of their ends, so that is usually the first.
func (kw *keyWindows[K, ACC]) find(end int64) int {
	if len(kw.wins) > 8 {
		i, ok := slices.BinarySearchFunc(kw.wins, end, func(w keyWindow[ACC], end int64) int { return cmp.Compare(w.end, end) })
		if !ok {
			return -1
		}
		return i
	}
	for i := range kw.wins {
		if kw.wins[i].end == end {
			return i
		}
	}
	return -1
}

// windowEnd is one live non-merging window (all its keys).
type windowEnd struct {
	w TimeWindow
	// fired is set once the window fired on time (event time); it then
	// waits for its cleanup time.
	fired bool
	// kgs lists the key groups (index from kgStart) holding the window.
	kgs []int32
}

type endTimer struct{ due, end int64 }

func (a endTimer) before(b endTimer) bool {
	return a.due < b.due || (a.due == b.due && a.end < b.end)
}

// session is one session window of one key.
type session[ACC any] struct {
	w   TimeWindow
	acc ACC
	id  uint64
	// timer is the time of the earliest timer known to be pending for the
	// session (valid when timerSet).
	timer    int64
	timerSet bool
	fired    bool
}

// sessionList holds one key's sessions, sorted by start and disjoint.
type sessionList[ACC any] struct{ s []session[ACC] }

type sessionTimer[K comparable] struct {
	due int64
	seq uint64
	id  uint64
	kgi int32
	key K
}

func (a sessionTimer[K]) before(b sessionTimer[K]) bool {
	return a.due < b.due || (a.due == b.due && a.seq < b.seq)
}

// windowCollector emits a window function's results with the window's
// timestamp.
type windowCollector[OUT any] struct {
	out runtime.Output[OUT]
	ts  int64
}

func (c *windowCollector[OUT]) Collect(v OUT) { c.out.Collect(v, c.ts) }

func newWindowOp[T any, K comparable, ACC, OUT any](keying *Keying[T, K], spec WindowSpec, fn windowFuncs[T, K, ACC, OUT]) *windowOp[T, K, ACC, OUT] {
	op := &windowOp[T, K, ACC, OUT]{
		keying:    keying,
		assigner:  spec.Assigner,
		eventTime: spec.Assigner.IsEventTime(),
		merging:   spec.Assigner.IsMerging(),
		fn:        fn,
		wm:        runtime.MinWatermark,
	}
	if op.eventTime {
		op.lateness = max(spec.AllowedLateness.Milliseconds(), 0)
	}
	if a := spec.Assigner; !op.merging && a.slide > 0 {
		op.winsPerRecord = int(min((a.size+a.slide-1)/a.slide, 64))
	}
	return op
}

func (op *windowOp[T, K, ACC, OUT]) Open(ctx *runtime.OperatorContext) error {
	if err := op.assigner.Err(); err != nil {
		return err
	}
	op.ctx = ctx
	op.coll.out = op.out
	op.maxP = ctx.MaxParallelism
	op.kgStart = ctx.KeyGroups.Start
	op.nGroups = ctx.KeyGroups.Len()
	if op.merging {
		op.sessions = make([]map[K]*sessionList[ACC], op.nGroups)
	} else {
		op.kgw = make([]kgWindows[K, ACC], op.nGroups)
		op.ends = make(map[int64]*windowEnd)
	}
	if ctx.Checkpointing || ctx.Restored != nil {
		// Say at the start, not at the first checkpoint, that the
		// windows' contents cannot be checkpointed.
		if _, err := op.codec(); err != nil {
			return err
		}
	}
	if r := ctx.Restored; r != nil {
		if err := op.restore(r); err != nil {
			return fmt.Errorf("restoring the windows from checkpoint %d: %w", r.Checkpoint, err)
		}
	}
	return nil
}

func (op *windowOp[T, K, ACC, OUT]) ProcessElement(v T, ts int64) {
	key := op.keying.Select(v)
	var kw *keyWindows[K, ACC]
	var kgi int
	if op.last != nil && op.last.key == key {
		kw, kgi = op.last, op.lastKgi
	} else {
		op.keyBuf = op.keying.Encoder.Append(op.keyBuf[:0], key)
		kgi = KeyGroupOf(op.keyBuf, op.maxP) - op.kgStart
		if uint(kgi) >= uint(op.nGroups) {
			runtime.Fail(fmt.Errorf("record with key %v belongs to key group %d, outside this subtask's key groups %v: "+
				"the record reached the wrong subtask (keyed windows need a hash exchange on the same key)", key, kgi+op.kgStart, op.ctx.KeyGroups))
		}
	}
	if op.eventTime {
		if ts == runtime.NoTimestamp {
			runtime.Fail(errors.New("record has no event timestamp, which event-time windows need: " +
				"give the source a watermark strategy with a timestamp assigner (WithTimestampAssigner), or use processing-time windows"))
		}
	} else {
		ts = op.ctx.ProcessingTime.Now()
	}
	if op.merging {
		op.addToSession(kgi, key, v, ts)
		return
	}
	op.winBuf = op.assigner.AssignWindows(op.winBuf[:0], ts)
	skipped := true
	for _, w := range op.winBuf {
		if op.eventTime && op.cleanupTime(w) <= op.wm {
			continue // late: dropped for this window
		}
		skipped = false
		if kw == nil {
			kw = op.keyWindowsOf(kgi, key)
			op.last, op.lastKgi = kw, kgi
		}
		// The key's windows are sorted by end; a new record's windows are
		// nearly always the last ones, so search from the back.
		i := len(kw.wins) - 1
		for i >= 0 && kw.wins[i].end > w.End {
			i--
		}
		var e *keyWindow[ACC]
		if i >= 0 && kw.wins[i].end == w.End {
			e = &kw.wins[i]
			e.acc = op.fn.add(e.acc, v)
		} else {
			kw.wins = slices.Insert(kw.wins, i+1, keyWindow[ACC]{end: w.End, acc: op.fn.create(v)})
			e = &kw.wins[i+1]
			op.addToEnd(kgi, kw, w)
		}
		if op.eventTime && w.MaxTimestamp() <= op.wm {
			// Late but allowed: the window has fired; fire it again now.
			op.emit(key, w, e.acc)
		}
	}
	if skipped && op.eventTime && addSat(ts, op.lateness) <= op.wm {
		op.lateDropped++
	}
}

// ProcessWatermark fires the event-time windows the watermark completes,
// then forwards it. A watermark that does not advance the operator's is
// dropped: after a restore the sources start over below the restored one.
func (op *windowOp[T, K, ACC, OUT]) ProcessWatermark(_ int, wm int64) {
	if wm <= op.wm {
		return
	}
	op.wm = wm
	if op.eventTime {
		op.advance(wm)
	}
	op.out.EmitWatermark(wm)
}

// EndInput fires every pending processing-time window (see the file
// comment); event-time windows have fired on the final watermark.
func (op *windowOp[T, K, ACC, OUT]) EndInput(int) {
	if !op.eventTime {
		op.advance(math.MaxInt64)
	}
	op.ended = true
}

func (op *windowOp[T, K, ACC, OUT]) Close() error { return nil }

// NumLateRecordsDropped implements WindowState.
func (op *windowOp[T, K, ACC, OUT]) NumLateRecordsDropped() int64 { return op.lateDropped }

// cleanupTime is when a window's state is dropped: at its max timestamp
// plus the allowed lateness (processing time: at its max timestamp).
func (op *windowOp[T, K, ACC, OUT]) cleanupTime(w TimeWindow) int64 {
	return addSat(w.MaxTimestamp(), op.lateness)
}

// addSat returns a+b for b >= 0, saturating at MaxInt64 (Flink's
// cleanupTime overflow guard).
func addSat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}

// emit calls the window function for one key's window.
func (op *windowOp[T, K, ACC, OUT]) emit(key K, w TimeWindow, acc ACC) {
	op.coll.ts = w.MaxTimestamp()
	if err := op.fn.emit(key, w, acc, &op.coll); err != nil {
		runtime.Fail(fmt.Errorf("window function for key %v, window %v: %w", key, w, err))
	}
}

// advance fires and cleans up the windows due at or before now (the
// watermark, or the processing time).
func (op *windowOp[T, K, ACC, OUT]) advance(now int64) {
	if op.merging {
		op.advanceSessions(now)
	} else {
		op.advanceEnds(now)
	}
}

// Non-merging windows.

// keyWindowsOf returns the live windows of a key, creating them.
func (op *windowOp[T, K, ACC, OUT]) keyWindowsOf(kgi int, key K) *keyWindows[K, ACC] {
	g := &op.kgw[kgi]
	if kw := g.keys[key]; kw != nil {
		return kw
	}
	if g.keys == nil {
		g.keys = make(map[K]*keyWindows[K, ACC])
		g.byEnd = make(map[int64]*endKeys[K, ACC])
	}
	var kw *keyWindows[K, ACC]
	if n := len(op.freeKeys); n > 0 {
		kw = op.freeKeys[n-1]
		op.freeKeys = op.freeKeys[:n-1]
	} else {
		// Room for the windows of one record: a key's windows never need
		// to grow in the common case, one record per window slide or less.
		kw = &keyWindows[K, ACC]{wins: make([]keyWindow[ACC], 0, op.winsPerRecord)}
	}
	kw.key = key
	g.keys[key] = kw
	return kw
}

// addToEnd records that key group kgi's key kw has window w, registering
// the window end if it is new.
func (op *windowOp[T, K, ACC, OUT]) addToEnd(kgi int, kw *keyWindows[K, ACC], w TimeWindow) {
	g := &op.kgw[kgi]
	l := g.byEnd[w.End]
	if l == nil {
		if n := len(op.freeLists); n > 0 {
			l = op.freeLists[n-1]
			op.freeLists = op.freeLists[:n-1]
		} else {
			l = &endKeys[K, ACC]{}
		}
		g.byEnd[w.End] = l
		we := op.ends[w.End]
		if we == nil {
			we = &windowEnd{w: w, fired: op.eventTime && w.MaxTimestamp() <= op.wm}
			op.ends[w.End] = we
			op.endTimers.push(endTimer{due: op.endDue(we), end: w.End})
			op.armProcessingTime()
		}
		we.kgs = append(we.kgs, int32(kgi))
	}
	l.keys = append(l.keys, kw)
}

// endDue is when a window end next needs attention: its firing, then its
// cleanup.
func (op *windowOp[T, K, ACC, OUT]) endDue(we *windowEnd) int64 {
	if we.fired {
		return op.cleanupTime(we.w)
	}
	return we.w.MaxTimestamp()
}

func (op *windowOp[T, K, ACC, OUT]) advanceEnds(now int64) {
	for op.endTimers.len() > 0 && op.endTimers.top().due <= now {
		et := op.endTimers.pop()
		we := op.ends[et.end]
		if we == nil || op.endDue(we) != et.due {
			continue // superseded (a restore changed the window's state)
		}
		switch {
		case !we.fired && op.cleanupTime(we.w) <= now:
			// No lateness to wait for (the usual case): fire and drop
			// in one pass over the window's keys, not two.
			op.fireEnd(we, true)
		case !we.fired:
			op.fireEnd(we, false)
			we.fired = true
			op.endTimers.push(endTimer{due: op.cleanupTime(we.w), end: et.end})
		default:
			op.dropEnd(we)
		}
	}
}

// fireEnd fires a window for all its keys: by key group, then in the order
// the keys entered the window. With drop, it also drops the window, each
// key's right after it fired.
func (op *windowOp[T, K, ACC, OUT]) fireEnd(we *windowEnd, drop bool) {
	slices.Sort(we.kgs)
	end := we.w.End
	for _, kgi := range we.kgs {
		g := &op.kgw[kgi]
		l := g.byEnd[end]
		for _, kw := range l.keys {
			i := kw.find(end)
			op.emit(kw.key, we.w, kw.wins[i].acc)
			if drop {
				op.dropKeyWindow(g, kw, i)
			}
		}
		if drop {
			op.dropEndList(g, end, l)
		}
	}
	if drop {
		delete(op.ends, end)
	}
}

// dropEnd drops a window's state for all its keys; keys left without
// windows are forgotten.
func (op *windowOp[T, K, ACC, OUT]) dropEnd(we *windowEnd) {
	end := we.w.End
	for _, kgi := range we.kgs {
		g := &op.kgw[kgi]
		l := g.byEnd[end]
		for _, kw := range l.keys {
			op.dropKeyWindow(g, kw, kw.find(end))
		}
		op.dropEndList(g, end, l)
	}
	delete(op.ends, end)
}

// dropKeyWindow drops key kw's window i; a key left without windows is
// forgotten.
func (op *windowOp[T, K, ACC, OUT]) dropKeyWindow(g *kgWindows[K, ACC], kw *keyWindows[K, ACC], i int) {
	kw.wins = slices.Delete(kw.wins, i, i+1) // zeroes the freed element
	if len(kw.wins) == 0 {
		delete(g.keys, kw.key)
		if op.last == kw {
			op.last = nil
		}
		if len(op.freeKeys) < 4096 {
			var zero K
			kw.key = zero
			op.freeKeys = append(op.freeKeys, kw)
		}
	}
}

// dropEndList forgets key group g's list l of the keys with window end.
func (op *windowOp[T, K, ACC, OUT]) dropEndList(g *kgWindows[K, ACC], end int64, l *endKeys[K, ACC]) {
	delete(g.byEnd, end)
	if len(op.freeLists) < 2*op.nGroups+16 {
		clear(l.keys)
		l.keys = l.keys[:0]
		op.freeLists = append(op.freeLists, l)
	}
}

// Session windows.

// addToSession adds a record at time ts to its key's session window,
// merging the sessions the new window [ts, ts+gap) overlaps or touches.
func (op *windowOp[T, K, ACC, OUT]) addToSession(kgi int, key K, v T, ts int64) {
	nw := TimeWindow{Start: ts, End: addSat(ts, op.assigner.gap)}
	m := op.sessions[kgi]
	if m == nil {
		m = make(map[K]*sessionList[ACC])
		op.sessions[kgi] = m
	}
	sl := m[key]
	var ss []session[ACC]
	if sl != nil {
		ss = sl.s
	}
	// The sessions are disjoint and sorted, so those nw intersects are a run.
	i := sort.Search(len(ss), func(i int) bool { return ss[i].w.End >= nw.Start })
	j := i
	for j < len(ss) && ss[j].w.Start <= nw.End {
		j++
	}
	var s session[ACC]
	if i == j {
		if op.eventTime && op.cleanupTime(nw) <= op.wm {
			// A late window that merges with nothing: drop the record.
			if addSat(ts, op.lateness) <= op.wm {
				op.lateDropped++
			}
			return
		}
		s = session[ACC]{w: nw, acc: op.fn.create(v), id: op.nextID}
		op.nextID++
	} else {
		// Merging into live sessions cannot make a late window: they are
		// not late, and the merged window ends no earlier than any of them.
		s = ss[i]
		acc := s.acc
		for k := i + 1; k < j; k++ {
			s.w = s.w.cover(ss[k].w)
			acc = op.fn.merge(acc, ss[k].acc)
		}
		s.w = s.w.cover(nw)
		s.acc = op.fn.add(acc, v)
	}
	// EventTimeTrigger: a window the watermark has passed fires at once.
	s.fired = op.eventTime && s.w.MaxTimestamp() <= op.wm
	if sl == nil {
		sl = &sessionList[ACC]{}
		m[key] = sl
	}
	sl.s = slices.Replace(ss, i, j, s)
	sp := &sl.s[i]
	op.scheduleSession(int32(kgi), key, sp)
	if sp.fired {
		op.emit(key, sp.w, sp.acc)
	}
}

// sessionDue is when a session next needs attention: its firing, then its
// cleanup.
func (op *windowOp[T, K, ACC, OUT]) sessionDue(s *session[ACC]) int64 {
	if s.fired {
		return op.cleanupTime(s.w)
	}
	return s.w.MaxTimestamp()
}

// scheduleSession makes sure a timer is pending for the session at or
// before its due time. A session that grows keeps its earlier timer, which
// re-arms itself when it finds the session not yet due.
func (op *windowOp[T, K, ACC, OUT]) scheduleSession(kgi int32, key K, s *session[ACC]) {
	d := op.sessionDue(s)
	if s.timerSet && s.timer <= d {
		return
	}
	s.timer, s.timerSet = d, true
	op.sessionTimers.push(sessionTimer[K]{due: d, seq: op.timerSeq, id: s.id, kgi: kgi, key: key})
	op.timerSeq++
	op.armProcessingTime()
}

func (op *windowOp[T, K, ACC, OUT]) advanceSessions(now int64) {
	for op.sessionTimers.len() > 0 && op.sessionTimers.top().due <= now {
		st := op.sessionTimers.pop()
		m := op.sessions[st.kgi]
		sl := m[st.key]
		if sl == nil {
			continue
		}
		idx := slices.IndexFunc(sl.s, func(s session[ACC]) bool { return s.id == st.id })
		if idx < 0 {
			continue // merged into another session
		}
		s := &sl.s[idx]
		if s.timerSet && s.timer == st.due {
			s.timerSet = false
		}
		if op.sessionDue(s) > st.due {
			op.scheduleSession(st.kgi, st.key, s) // grew since
			continue
		}
		if !s.fired {
			s.fired = true
			op.emit(st.key, s.w, s.acc)
			if op.cleanupTime(s.w) > now {
				op.scheduleSession(st.kgi, st.key, s)
				continue
			}
		}
		sl.s = slices.Delete(sl.s, idx, idx+1)
		if len(sl.s) == 0 {
			delete(m, st.key)
		}
	}
}

// Processing time.

// armProcessingTime registers a processing-time callback for the earliest
// pending window unless one is registered at or before it.
func (op *windowOp[T, K, ACC, OUT]) armProcessingTime() {
	if op.eventTime || op.ended {
		return
	}
	var next int64
	switch {
	case op.merging && op.sessionTimers.len() > 0:
		next = op.sessionTimers.top().due
	case !op.merging && op.endTimers.len() > 0:
		next = op.endTimers.top().due
	default:
		return
	}
	for _, a := range op.armed {
		if a <= next {
			return
		}
	}
	op.armed = append(op.armed, next)
	// Fire once the clock has passed the due millisecond, as Flink delays
	// processing-time timers by 1 ms: a record processed during a window's
	// last millisecond still belongs to it, so the window must not fire
	// before that millisecond is over.
	op.ctx.ProcessingTime.Register(addSat(next, 1), func(now int64) { op.onProcessingTime(next, now) })
}

func (op *windowOp[T, K, ACC, OUT]) onProcessingTime(due, now int64) {
	if i := slices.Index(op.armed, due); i >= 0 {
		op.armed = slices.Delete(op.armed, i, i+1)
	}
	if op.ended {
		return
	}
	op.advance(now - 1) // the milliseconds before now are over
	op.armProcessingTime()
}

// Snapshot and restore.

// windowContentsState names the windows' contents in checkpoints, as in
// Flink's WindowOperator.
const windowContentsState = "window-contents"

// SnapshotState implements runtime.Snapshotter. The windows go into the
// snapshot as canonical keyed state and timers, so that checkpoint storage
// keeps them by key group and a restore with another parallelism moves
// them with their key groups:
//
//	Keyed     state "window-contents", one entry per key and window: kind
//	          reducing (Reduce), aggregating (Aggregate) or list
//	          (Process); the key in the KeyEncoder's encoding; the window
//	          as namespace (appendWindowNamespace); the codec encoding of
//	          the reduced value or accumulator, or the concatenated encoded
//	          elements (list)
//	Timers    per window, those Flink's trigger would have pending: its
//	          firing timer at MaxTimestamp() until it fired, and (event
//	          time, with allowed lateness) its cleanup timer
//	Operator  the watermark (encodeOperatorState)
//
// The indexes over the windows (window ends, per-key-group key lists, timer
// heaps, the last-key cache, free lists) are not state: restore rebuilds
// them from the entries.
//
// The snapshot is taken in two parts. On the task goroutine SnapshotState
// only copies the windows (copyEnds, or copyWindows for sessions): keys and
// accumulators of types without references are copied as values, others
// are encoded at once, so that nothing the operator changes later is
// shared. Encoding, ordering and building the canonical entries and timers
// (build) could be done there too, but when the job's checkpoints are periodic
// (execution.checkpointing.interval is set, and the job master persists
// them) it is left to OperatorSnapshot.Materialize, which the job master
// calls off the task goroutine.
func (op *windowOp[T, K, ACC, OUT]) SnapshotState(int64) (_ *runtime.OperatorSnapshot, err error) {
	ac, err := op.codec()
	if err != nil {
		return nil, err
	}
	defer recoverEncodeError(&err)
	var wc interface {
		build() (*state.Snapshot, *state.TimerSnapshot, error)
	}
	if op.merging {
		wc, err = op.copyWindows(ac)
	} else {
		wc, err = op.copyEnds(ac)
	}
	if err != nil {
		return nil, err
	}
	snap := &runtime.OperatorSnapshot{Operator: encodeOperatorState([]int64{op.wm}, nil)}
	if !op.deferSnapshots() {
		if snap.Keyed, snap.Timers, err = wc.build(); err != nil {
			return nil, err
		}
		return snap, nil
	}
	var once sync.Once
	var merr error
	snap.Materialize = func() error {
		once.Do(func() {
			keyed, timers, err := wc.build()
			if err != nil {
				merr = fmt.Errorf("encoding the windows' contents: %w", err)
				return
			}
			snap.Keyed, snap.Timers = keyed, timers
		})
		return merr
	}
	return snap, nil
}

// deferSnapshotsKey is the configuration key whose presence says that the
// job's checkpoints are periodic: those the job master persists, calling
// OperatorSnapshot.Materialize first.
const deferSnapshotsKey = "execution.checkpointing.interval"

// deferSnapshots reports whether SnapshotState leaves building the
// canonical state to OperatorSnapshot.Materialize. Consumers that read
// acknowledged snapshots directly (tests, tools driving the runtime
// themselves) do not set the interval and get complete snapshots.
func (op *windowOp[T, K, ACC, OUT]) deferSnapshots() bool {
	if forceSyncWindowSnapshots || op.ctx == nil {
		return false
	}
	_, ok := op.ctx.Config[deferSnapshotsKey]
	return ok
}

// forceSyncWindowSnapshots makes every window snapshot complete in
// SnapshotState (tests).
var forceSyncWindowSnapshots = false

// recoverEncodeError turns a panic with a *codec.EncodeError (a value that
// cannot be encoded: a pointer cycle, a failing MarshalBinary) into *err,
// which fails the checkpoint, not the task.
func recoverEncodeError(err *error) {
	if r := recover(); r != nil {
		ee, ok := r.(*codec.EncodeError)
		if !ok {
			panic(r)
		}
		*err = fmt.Errorf("encoding the windows' contents: %w", ee)
	}
}

// windowCopy is the synchronous part of a snapshot of session windows:
// every window of every key, by key group, with nothing shared with the
// live operator. (Non-merging windows: endsCopy, window_snapshot.go.)
type windowCopy[K comparable, ACC any] struct {
	groups []copiedGroup
	keys   []copiedKey[K]
	wins   []copiedWindow[ACC]
	// keyBuf and valBuf hold the keys and accumulators encoded while
	// copying (types with references), else nothing yet.
	keyBuf, valBuf           []byte
	keysEncoded, accsEncoded bool

	enc       *KeyEncoder[K]
	ac        *accCodec[ACC]
	kind      state.Kind
	eventTime bool
	lateness  int64
}

// copiedGroup is a key group's keys: keys[k0:k1].
type copiedGroup struct{ kg, k0, k1 int }

// copiedKey is one key and its windows: wins[w0:w1], in window order. The
// key is either key or keyBuf[e0:e1].
type copiedKey[K comparable] struct {
	key    K
	e0, e1 int
	w0, w1 int
}

// copiedWindow is one key's window; its contents are acc or valBuf[v0:v1].
type copiedWindow[ACC any] struct {
	w      TimeWindow
	acc    ACC
	v0, v1 int
	fired  bool
}

// copyWindows copies the session windows for a snapshot (see windowCopy).
func (op *windowOp[T, K, ACC, OUT]) copyWindows(ac *accCodec[ACC]) (*windowCopy[K, ACC], error) {
	op.classifyTypes()
	wc := &windowCopy[K, ACC]{
		keysEncoded: op.plainKey != 2, accsEncoded: op.plainAcc != 2,
		enc: op.keying.Encoder, ac: ac, kind: op.fn.kind, eventTime: op.eventTime, lateness: op.lateness,
		keys: make([]copiedKey[K], 0, op.lastCopyKeys), wins: make([]copiedWindow[ACC], 0, op.lastCopyWins),
	}
	addKey := func(k K) {
		ck := copiedKey[K]{w0: len(wc.wins)}
		if wc.keysEncoded {
			ck.e0 = len(wc.keyBuf)
			wc.keyBuf = wc.enc.Append(wc.keyBuf, k)
			ck.e1 = len(wc.keyBuf)
		} else {
			ck.key = k
		}
		wc.keys = append(wc.keys, ck)
	}
	addWindow := func(k K, w TimeWindow, acc ACC, fired bool) error {
		cw := copiedWindow[ACC]{w: w, fired: fired}
		if wc.accsEncoded {
			cw.v0 = len(wc.valBuf)
			var err error
			if wc.valBuf, err = ac.append(wc.valBuf, acc); err != nil {
				return fmt.Errorf("window %v of key %v: %w", w, k, err)
			}
			cw.v1 = len(wc.valBuf)
		} else {
			cw.acc = acc
		}
		wc.wins = append(wc.wins, cw)
		wc.keys[len(wc.keys)-1].w1 = len(wc.wins)
		return nil
	}
	for kgi := 0; kgi < op.nGroups; kgi++ {
		k0 := len(wc.keys)
		for k, sl := range op.sessions[kgi] {
			if len(sl.s) == 0 {
				continue
			}
			addKey(k)
			for i := range sl.s {
				s := &sl.s[i]
				if err := addWindow(k, s.w, s.acc, s.fired); err != nil {
					return nil, err
				}
			}
		}
		if len(wc.keys) > k0 {
			wc.groups = append(wc.groups, copiedGroup{kg: kgi + op.kgStart, k0: k0, k1: len(wc.keys)})
		}
	}
	op.lastCopyKeys, op.lastCopyWins = len(wc.keys), len(wc.wins)
	return wc, nil
}

// isPlainType reports whether values of t hold no references through which
// they could change after being copied (strings are immutable).
func isPlainType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	case reflect.Array:
		return isPlainType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !isPlainType(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// build returns the canonical keyed state and timers of the copied windows
// (see SnapshotState): per key group, the entries by key, then namespace;
// the timers as compareTimers orders them. Keys are encoded once and
// ordered once, not per window; a key's windows are already in namespace
// order, so no entry or timer is compared by its bytes.
func (wc *windowCopy[K, ACC]) build() (keyed *state.Snapshot, timers *state.TimerSnapshot, err error) {
	defer recoverEncodeError(&err)
	keyed, timers = &state.Snapshot{}, &state.TimerSnapshot{}
	if len(wc.groups) == 0 {
		return keyed, timers, nil
	}
	keyBuf := wc.keyBuf
	if !wc.keysEncoded {
		keyBuf = make([]byte, 0, 8*len(wc.keys))
		for i := range wc.keys {
			k := &wc.keys[i]
			k.e0 = len(keyBuf)
			keyBuf = wc.enc.Append(keyBuf, k.key)
			k.e1 = len(keyBuf)
		}
	}
	valBuf := wc.valBuf
	if !wc.accsEncoded {
		for ki := range wc.keys {
			k := &wc.keys[ki]
			for i := k.w0; i < k.w1; i++ {
				cw := &wc.wins[i]
				cw.v0 = len(valBuf)
				if valBuf, err = wc.ac.append(valBuf, cw.acc); err != nil {
					return nil, nil, fmt.Errorf("window %v of key %v: %w", cw.w, k.key, err)
				}
				cw.v1 = len(valBuf)
			}
		}
	}
	keyOf := func(k *copiedKey[K]) []byte { return nilIfEmpty(keyBuf[k.e0:k.e1:k.e1]) }
	keyed.KeyGroups = make([]state.KeyGroupState, 0, len(wc.groups))
	timers.KeyGroups = make([]state.TimerKeyGroup, 0, len(wc.groups))
	type timerRec struct {
		ts    int64
		trank int32
		entry int32
	}
	var (
		order, torder []int32
		trank         []int32
		recs          []timerRec
	)
	for _, g := range wc.groups {
		nk := g.k1 - g.k0
		n := wc.keys[g.k1-1].w1 - wc.keys[g.k0].w0
		// The keys by their bytes (entries), and by uvarint(len) ‖ bytes
		// (timers): the same order when all keys have one length.
		order = order[:0]
		sameLen := true
		l0 := wc.keys[g.k0].e1 - wc.keys[g.k0].e0
		for i := g.k0; i < g.k1; i++ {
			order = append(order, int32(i))
			sameLen = sameLen && wc.keys[i].e1-wc.keys[i].e0 == l0
		}
		slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(keyOf(&wc.keys[a]), keyOf(&wc.keys[b])) })
		trank = slices.Grow(trank[:0], nk)[:nk]
		if sameLen {
			for r, ki := range order {
				trank[int(ki)-g.k0] = int32(r)
			}
		} else {
			torder = append(torder[:0], order...)
			slices.SortFunc(torder, func(a, b int32) int { return compareTimerKeys(keyOf(&wc.keys[a]), keyOf(&wc.keys[b])) })
			for r, ki := range torder {
				trank[int(ki)-g.k0] = int32(r)
			}
		}
		entries := make([]state.Entry, 0, n)
		nsBuf := make([]byte, 16*n)
		recs = recs[:0]
		for _, ki := range order {
			k := &wc.keys[ki]
			key := keyOf(k)
			tr := trank[int(ki)-g.k0]
			for i := k.w0; i < k.w1; i++ {
				cw := &wc.wins[i]
				p := 16 * len(entries)
				ns := nsBuf[p : p+16 : p+16]
				appendWindowNamespace(ns[:0], cw.w)
				e := int32(len(entries))
				entries = append(entries, state.Entry{State: windowContentsState, Kind: wc.kind, Key: key, Namespace: ns,
					Value: nilIfEmpty(valBuf[cw.v0:cw.v1:cw.v1])})
				mt := cw.w.MaxTimestamp()
				if !wc.eventTime {
					recs = append(recs, timerRec{mt, tr, e})
					continue
				}
				if !cw.fired {
					recs = append(recs, timerRec{mt, tr, e})
				}
				// A fired window always waits for a cleanup later than its firing.
				if c := addSat(mt, wc.lateness); c != mt {
					recs = append(recs, timerRec{c, tr, e})
				}
			}
		}
		// A key's entries are in namespace order, so the entry index
		// orders the timers of one key and time.
		slices.SortFunc(recs, func(a, b timerRec) int {
			return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.trank, b.trank), cmp.Compare(a.entry, b.entry))
		})
		var ts []state.Timer
		if len(recs) > 0 {
			ts = make([]state.Timer, len(recs))
			for i, r := range recs {
				e := &entries[r.entry]
				ts[i] = state.Timer{Timestamp: r.ts, Key: e.Key, Namespace: e.Namespace}
			}
		}
		keyed.KeyGroups = append(keyed.KeyGroups, state.KeyGroupState{KeyGroup: g.kg, Entries: entries})
		tg := state.TimerKeyGroup{KeyGroup: g.kg}
		if wc.eventTime {
			tg.EventTime = ts
		} else {
			tg.ProcessingTime = ts
		}
		timers.KeyGroups = append(timers.KeyGroups, tg)
	}
	return keyed, timers, nil
}

// compareTimerKeys orders keys as compareTimers does: by uvarint(len(key))
// ‖ key.
func compareTimerKeys(a, b []byte) int {
	if len(a) == len(b) {
		return bytes.Compare(a, b)
	}
	var la, lb [binary.MaxVarintLen64]byte
	return bytes.Compare(binary.AppendUvarint(la[:0], uint64(len(a))), binary.AppendUvarint(lb[:0], uint64(len(b))))
}

// restore rebuilds the windows of this subtask's key groups from the
// snapshots of every old subtask (see SnapshotState). A window has fired
// when its timers are pending but not its firing timer; a window without
// timers has not (it fires, at worst, again).
func (op *windowOp[T, K, ACC, OUT]) restore(r *runtime.RestoredState) error {
	wms, fns, err := decodeRestoredOperatorState(op.ctx, 1)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(fns, func(b []byte) bool { return b != nil }) {
		return errors.New("the checkpoint holds function state for this operator, which a window operator never stores; " +
			"the operator's uid now names a different operator")
	}
	if wms != nil {
		op.wm = wms[0]
	}
	ac, err := op.codec()
	if err != nil {
		return err
	}
	const (
		hasTimer  = 1
		hasFiring = 2
	)
	for i, snap := range r.Snapshots {
		if snap != nil && snap.Materialize != nil {
			// A snapshot restored from memory (see SnapshotState).
			if err := snap.Materialize(); err != nil {
				return fmt.Errorf("subtask %d of %d: %w", i, len(r.Snapshots), err)
			}
		}
		if snap == nil || snap.Keyed == nil {
			continue
		}
		// Window timers by key ‖ namespace (the namespace has a fixed length).
		timers := map[string]uint8{}
		if snap.Timers != nil && op.eventTime {
			for _, g := range snap.Timers.KeyGroups {
				if !op.ctx.KeyGroups.Contains(g.KeyGroup) {
					continue
				}
				for _, tm := range g.EventTime {
					w, err := decodeWindowNamespace(tm.Namespace)
					if err != nil {
						return fmt.Errorf("subtask %d of %d: a timer of key %q: %w", i, len(r.Snapshots), tm.Key, err)
					}
					id := string(tm.Key) + string(tm.Namespace)
					timers[id] |= hasTimer
					if tm.Timestamp == w.MaxTimestamp() {
						timers[id] |= hasFiring
					}
				}
			}
		}
		for _, g := range snap.Keyed.KeyGroups {
			if !op.ctx.KeyGroups.Contains(g.KeyGroup) {
				continue
			}
			for _, e := range g.Entries {
				if e.State != windowContentsState {
					return fmt.Errorf("subtask %d of %d holds state %q (%s), which a window operator does not have; "+
						"the operator's uid now names a different operator", i, len(r.Snapshots), e.State, e.Kind)
				}
				if e.Kind != op.fn.kind {
					return fmt.Errorf("subtask %d of %d holds the windows' contents as %s state, but this window operator keeps %s state; "+
						"the operator's uid now names a different window function (Reduce, Aggregate or Process)", i, len(r.Snapshots), e.Kind, op.fn.kind)
				}
				w, err := decodeWindowNamespace(e.Namespace)
				if err != nil {
					return fmt.Errorf("subtask %d of %d: a window of key %q: %w", i, len(r.Snapshots), e.Key, err)
				}
				acc, err := ac.decode(e.Value)
				if err != nil {
					return fmt.Errorf("subtask %d of %d: window %v of key %q: %w", i, len(r.Snapshots), w, e.Key, err)
				}
				t := timers[string(e.Key)+string(e.Namespace)]
				fired := t&hasTimer != 0 && t&hasFiring == 0
				err = op.RestoreWindowState(WindowStateEntry{KeyGroup: g.KeyGroup, Key: e.Key, Window: w, Acc: acc, Fired: fired})
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// codec returns how checkpoints encode the accumulators.
func (op *windowOp[T, K, ACC, OUT]) codec() (*accCodec[ACC], error) {
	if op.accCodec == nil {
		c, err := op.fn.codec()
		if err != nil {
			return nil, fmt.Errorf("the windows' contents cannot be stored in checkpoints: %w", err)
		}
		op.accCodec = &c
	}
	return op.accCodec, nil
}

// accCodec encodes a window's accumulator for checkpoints.
type accCodec[ACC any] struct {
	append func(dst []byte, acc ACC) ([]byte, error)
	decode func(b []byte) (ACC, error)
}

// valueCodec encodes a reduced value or an accumulator with the codec.
func valueCodec[V any]() (accCodec[V], error) {
	c, err := codec.For[V]()
	if err != nil {
		return accCodec[V]{}, err
	}
	return accCodec[V]{
		append: func(dst []byte, v V) ([]byte, error) { return c.Append(dst, v), nil },
		decode: func(b []byte) (V, error) {
			v, n, err := c.Decode(b)
			if err == nil && n != len(b) {
				err = fmt.Errorf("%d bytes left over after the window's contents", len(b)-n)
			}
			return v, err
		},
	}, nil
}

// listCodec encodes buffered elements as list state does: concatenated.
func listCodec[T any]() (accCodec[[]T], error) {
	c, err := codec.For[T]()
	if err != nil {
		return accCodec[[]T]{}, err
	}
	return accCodec[[]T]{
		append: func(dst []byte, vs []T) ([]byte, error) {
			n := len(dst)
			for _, v := range vs {
				dst = c.Append(dst, v)
			}
			if len(vs) > 0 && len(dst) == n {
				return nil, fmt.Errorf("the elements' type %T encodes to no bytes, so a checkpoint cannot count them", *new(T))
			}
			return dst, nil
		},
		decode: func(b []byte) ([]T, error) {
			var vs []T
			for len(b) > 0 {
				v, n, err := c.Decode(b)
				if err != nil {
					return nil, err
				}
				if n <= 0 {
					return nil, errors.New("an element decoded from no bytes")
				}
				vs = append(vs, v)
				b = b[n:]
			}
			return vs, nil
		},
	}, nil
}

// appendWindowNamespace appends a window as a state namespace: start and
// end, 8 bytes big-endian each with the sign bit flipped, so that byte
// order is time order.
func appendWindowNamespace(dst []byte, w TimeWindow) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(w.Start)^(1<<63))
	return binary.BigEndian.AppendUint64(dst, uint64(w.End)^(1<<63))
}

func decodeWindowNamespace(b []byte) (TimeWindow, error) {
	if len(b) != 16 {
		return TimeWindow{}, fmt.Errorf("the window namespace has %d bytes, want 16: the state is corrupt or not a time window's", len(b))
	}
	w := TimeWindow{Start: int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), End: int64(binary.BigEndian.Uint64(b[8:]) ^ (1 << 63))}
	if w.End <= w.Start {
		return TimeWindow{}, fmt.Errorf("the window namespace holds the empty window %v: the state is corrupt", w)
	}
	return w, nil
}

// compareTimers orders timers as state.TimerService fires them: by time,
// then uvarint(len(key)) ‖ key ‖ namespace.
func compareTimers(a, b state.Timer) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	var la, lb [binary.MaxVarintLen64]byte
	return cmp.Or(
		bytes.Compare(binary.AppendUvarint(la[:0], uint64(len(a.Key))), binary.AppendUvarint(lb[:0], uint64(len(b.Key)))),
		bytes.Compare(a.Key, b.Key),
		bytes.Compare(a.Namespace, b.Namespace))
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// eachWindow calls fn for every window of every key (the key encoded), by
// ascending key group, then window end (sessions: encoded key, then window
// start), until fn returns false.
func (op *windowOp[T, K, ACC, OUT]) eachWindow(fn func(kg int, key []byte, w TimeWindow, acc ACC, fired bool) bool) {
	for kgi := 0; kgi < op.nGroups; kgi++ {
		kg := kgi + op.kgStart
		if op.merging {
			type keyed struct {
				enc []byte
				sl  *sessionList[ACC]
			}
			var keys []keyed
			for k, sl := range op.sessions[kgi] {
				keys = append(keys, keyed{op.keying.Encoder.Append(nil, k), sl})
			}
			slices.SortFunc(keys, func(a, b keyed) int { return bytes.Compare(a.enc, b.enc) })
			for _, k := range keys {
				for _, s := range k.sl.s {
					if !fn(kg, k.enc, s.w, s.acc, s.fired) {
						return
					}
				}
			}
			continue
		}
		g := &op.kgw[kgi]
		for _, end := range slices.Sorted(maps.Keys(g.byEnd)) {
			we := op.ends[end]
			for _, kw := range g.byEnd[end].keys {
				if !fn(kg, op.keying.Encoder.Append(nil, kw.key), we.w, kw.wins[kw.find(end)].acc, we.fired) {
					return
				}
			}
		}
	}
}

// WindowStates implements WindowState.
func (op *windowOp[T, K, ACC, OUT]) WindowStates() iter.Seq[WindowStateEntry] {
	return func(yield func(WindowStateEntry) bool) {
		op.eachWindow(func(kg int, key []byte, w TimeWindow, acc ACC, fired bool) bool {
			return yield(WindowStateEntry{KeyGroup: kg, Key: key, Window: w, Acc: acc, Fired: fired})
		})
	}
}

// RestoreWindowState implements WindowState.
func (op *windowOp[T, K, ACC, OUT]) RestoreWindowState(e WindowStateEntry) error {
	kgi := e.KeyGroup - op.kgStart
	if kgi < 0 || kgi >= op.nGroups {
		return nil
	}
	key, err := op.keying.Encoder.Decode(e.Key)
	if err != nil {
		return fmt.Errorf("restoring window %v: %w", e.Window, err)
	}
	if kg := KeyGroupOf(e.Key, op.maxP); kg != e.KeyGroup {
		return fmt.Errorf("restoring window %v of key %v: the key belongs to key group %d, not %d; "+
			"the state was written with another max parallelism, which must not change", e.Window, key, kg, e.KeyGroup)
	}
	acc, ok := e.Acc.(ACC)
	if !ok {
		return fmt.Errorf("restoring window %v of key %v: contents are %T, but this window operator holds %T; "+
			"the operator's uid now names a different window function", e.Window, key, e.Acc, *new(ACC))
	}
	fired := e.Fired && op.eventTime
	if op.merging {
		return op.restoreSession(kgi, key, e.Window, acc, fired)
	}
	w := e.Window
	if w.End-w.Start != op.assigner.size || WindowStart(w.Start, op.assigner.offset, op.assigner.slide) != w.Start {
		return fmt.Errorf("restoring window %v of key %v: it is not a window of %v; the window assigner must not change", w, key, op.assigner)
	}
	kw := op.keyWindowsOf(kgi, key)
	i := sort.Search(len(kw.wins), func(i int) bool { return kw.wins[i].end >= w.End })
	if i < len(kw.wins) && kw.wins[i].end == w.End {
		return fmt.Errorf("restoring window %v of key %v: restored twice", w, key)
	}
	isNew := op.ends[w.End] == nil
	kw.wins = slices.Insert(kw.wins, i, keyWindow[ACC]{end: w.End, acc: acc})
	op.addToEnd(kgi, kw, w)
	we := op.ends[w.End]
	// A new end took its fired state from the current watermark; take the
	// snapshot's instead. Entries that disagree: see RestoreWindowState.
	if (isNew && we.fired != fired) || (!isNew && we.fired && !fired) {
		we.fired = fired
		op.endTimers.push(endTimer{due: op.endDue(we), end: w.End})
		op.armProcessingTime()
	}
	return nil
}

func (op *windowOp[T, K, ACC, OUT]) restoreSession(kgi int, key K, w TimeWindow, acc ACC, fired bool) error {
	m := op.sessions[kgi]
	if m == nil {
		m = make(map[K]*sessionList[ACC])
		op.sessions[kgi] = m
	}
	sl := m[key]
	if sl == nil {
		sl = &sessionList[ACC]{}
		m[key] = sl
	}
	i := sort.Search(len(sl.s), func(i int) bool { return sl.s[i].w.Start >= w.Start })
	if (i > 0 && sl.s[i-1].w.intersects(w)) || (i < len(sl.s) && sl.s[i].w.intersects(w)) {
		return fmt.Errorf("restoring session window %v of key %v: it overlaps another restored session of the key", w, key)
	}
	sl.s = slices.Insert(sl.s, i, session[ACC]{w: w, acc: acc, id: op.nextID, fired: fired})
	op.nextID++
	op.scheduleSession(int32(kgi), key, &sl.s[i])
	return nil
}

// timerHeap is a binary min-heap of timers.
type timerHeap[E interface{ before(E) bool }] struct{ items []E }

func (h *timerHeap[E]) len() int { return len(h.items) }
func (h *timerHeap[E]) top() E   { return h.items[0] }

func (h *timerHeap[E]) push(e E) {
	h.items = append(h.items, e)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.items[i].before(h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *timerHeap[E]) pop() E {
	top := h.items[0]
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	var zero E
	h.items[n] = zero
	h.items = h.items[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.items[l].before(h.items[m]) {
			m = l
		}
		if r < n && h.items[r].before(h.items[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
	return top
}
