package operators

// Snapshots of non-merging (tumbling and sliding) windows.
//
// A checkpoint of Nexmark q5 holds about a million (key, window)
// accumulators, and every one of them changes between two checkpoints a
// second apart, so the cost per window is what counts. Both parts of the
// snapshot are written for it:
//
//   - On the task goroutine (endsCopy via copyEnds) each key group's map is
//     walked once and each key's windows are appended to one flat array
//     with a single copy (the key's []keyWindow is contiguous); a window's
//     bounds and fired flag are not copied per window but taken from the
//     window end, which all keys share. Keys and accumulators with
//     references are encoded at once instead, as before.
//   - Off it (endsCopy.build) the canonical entries and timers are built
//     without comparing any of them: keys of one length up to 8 bytes (all
//     integer keys) are ordered as integers; a window's namespace is shared
//     by every entry and timer of that window; the timers of a key group are
//     placed by a counting sort on their timestamps, since within one
//     timestamp they follow the entries' key order. All entries and all
//     timers of the snapshot are two allocations.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"

	"github.com/weirstream/weir/internal/state"
)

// endsCopy is the synchronous part of a snapshot of non-merging windows.
type endsCopy[K comparable, ACC any] struct {
	// groups index keys: key group g has keys [g.k0, g.k1).
	groups []copiedGroup
	// keys holds the keys when K has no references; else keyEnc holds
	// them encoded, key i at keyEnc[keyOff[i]:keyOff[i+1]].
	keys   []K
	keyEnc []byte
	keyOff []int
	// Key i's windows are wins[winOff[i]:winOff[i+1]], by end. Their
	// accumulators are in wins when ACC has no references; else accEnc
	// holds them encoded, window j at accEnc[accOff[j]:accOff[j+1]].
	winOff []int
	wins   []keyWindow[ACC]
	accEnc []byte
	accOff []int
	// ends are the live window ends, ascending: the windows' bounds and
	// whether they fired.
	ends []copiedEnd

	enc       *KeyEncoder[K]
	ac        *accCodec[ACC]
	kind      state.Kind
	eventTime bool
	lateness  int64
}

type copiedEnd struct {
	end   int64
	w     TimeWindow
	fired bool
}

// copyEnds copies the non-merging windows for a snapshot (see endsCopy).
func (op *windowOp[T, K, ACC, OUT]) copyEnds(ac *accCodec[ACC]) (_ *endsCopy[K, ACC], err error) {
	op.classifyTypes()
	plainKey, plainAcc := op.plainKey == 2, op.plainAcc == 2
	// Room for a little growth since the last snapshot: the windows of a
	// growing state are copied once, not grown into.
	nk, nw := op.lastCopyKeys+op.lastCopyKeys/8+16, op.lastCopyWins+op.lastCopyWins/8+16
	wc := &endsCopy[K, ACC]{
		enc: op.keying.Encoder, ac: ac, kind: op.fn.kind, eventTime: op.eventTime, lateness: op.lateness,
		winOff: make([]int, 1, nk+1),
		wins:   make([]keyWindow[ACC], 0, nw),
	}
	if plainKey {
		wc.keys = make([]K, 0, nk)
	} else {
		wc.keyOff = make([]int, 1, nk+1)
	}
	if !plainAcc {
		wc.accOff = make([]int, 1, nw+1)
	}
	for kgi := range op.nGroups {
		k0 := len(wc.winOff) - 1
		for k, kw := range op.kgw[kgi].keys {
			if len(kw.wins) == 0 {
				continue
			}
			if plainKey {
				wc.keys = append(wc.keys, k)
			} else {
				wc.keyEnc = wc.enc.Append(wc.keyEnc, k)
				wc.keyOff = append(wc.keyOff, len(wc.keyEnc))
			}
			if plainAcc {
				wc.wins = append(wc.wins, kw.wins...)
			} else {
				for i := range kw.wins {
					x := &kw.wins[i]
					wc.wins = append(wc.wins, keyWindow[ACC]{end: x.end})
					if wc.accEnc, err = ac.append(wc.accEnc, x.acc); err != nil {
						return nil, fmt.Errorf("window ending at %d of key %v: %w", x.end, k, err)
					}
					wc.accOff = append(wc.accOff, len(wc.accEnc))
				}
			}
			wc.winOff = append(wc.winOff, len(wc.wins))
		}
		if k1 := len(wc.winOff) - 1; k1 > k0 {
			wc.groups = append(wc.groups, copiedGroup{kg: kgi + op.kgStart, k0: k0, k1: k1})
		}
	}
	wc.ends = make([]copiedEnd, 0, len(op.ends))
	for end, we := range op.ends {
		wc.ends = append(wc.ends, copiedEnd{end: end, w: we.w, fired: we.fired})
	}
	slices.SortFunc(wc.ends, func(a, b copiedEnd) int { return cmp.Compare(a.end, b.end) })
	op.lastCopyKeys, op.lastCopyWins = len(wc.winOff)-1, len(wc.wins)
	return wc, nil
}

// classifyTypes decides once whether keys and accumulators can be copied
// into a snapshot as values.
func (op *windowOp[T, K, ACC, OUT]) classifyTypes() {
	if op.plainKey != 0 {
		return
	}
	op.plainKey, op.plainAcc = 1, 1
	if isPlainType(reflect.TypeFor[K]()) {
		op.plainKey = 2
	}
	if isPlainType(reflect.TypeFor[ACC]()) {
		op.plainAcc = 2
	}
}

// build returns the canonical keyed state and timers of the copied windows
// (see SnapshotState and the file comment).
func (wc *endsCopy[K, ACC]) build() (keyed *state.Snapshot, timers *state.TimerSnapshot, err error) {
	defer recoverEncodeError(&err)
	keyed, timers = &state.Snapshot{}, &state.TimerSnapshot{}
	if len(wc.groups) == 0 {
		return keyed, timers, nil
	}
	nkeys := len(wc.winOff) - 1
	// The keys, encoded.
	keyEnc, keyOff := wc.keyEnc, wc.keyOff
	if wc.keys != nil {
		keyEnc = make([]byte, 0, 8*nkeys)
		keyOff = make([]int, 1, nkeys+1)
		for _, k := range wc.keys {
			keyEnc = wc.enc.Append(keyEnc, k)
			keyOff = append(keyOff, len(keyEnc))
		}
	}
	keyOf := func(i int) []byte { return nilIfEmpty(keyEnc[keyOff[i]:keyOff[i+1]:keyOff[i+1]]) }
	// One namespace per window end, shared by its entries and timers.
	nsBuf := make([]byte, 0, 16*len(wc.ends))
	ns := make([][]byte, len(wc.ends))
	for i, e := range wc.ends {
		nsBuf = appendWindowNamespace(nsBuf, e.w)
		ns[i] = nsBuf[16*i : 16*i+16 : 16*i+16]
	}
	endIndex := func(end int64, from int) int {
		// A key's windows are by end, so the next one is usually next.
		if from < len(wc.ends) && wc.ends[from].end == end {
			return from
		}
		i, ok := slices.BinarySearchFunc(wc.ends, end, func(e copiedEnd, end int64) int { return cmp.Compare(e.end, end) })
		if !ok {
			return -1
		}
		return i
	}
	// Values: encoded now, unless they were while copying. Entries point
	// into valBuf as it is when they are made; appending later never
	// changes those bytes.
	var valBuf []byte
	if wc.accOff == nil {
		valBuf = make([]byte, 0, 2*len(wc.wins)+64)
	}
	nTimers := len(wc.wins)
	if wc.eventTime && wc.lateness > 0 {
		nTimers *= 2 // at most: a firing and a cleanup timer per window
	}
	allEntries := make([]state.Entry, len(wc.wins))
	allTimers := make([]state.Timer, 0, nTimers)
	keyed.KeyGroups = make([]state.KeyGroupState, 0, len(wc.groups))
	timers.KeyGroups = make([]state.TimerKeyGroup, 0, len(wc.groups))

	// The times of the windows' timers: each window end's firing and
	// cleanup timers (-1 if it has none) index the distinct times, in
	// order, so that timers are placed by time without comparing them.
	var times []int64
	for _, ce := range wc.ends {
		mt := ce.w.MaxTimestamp()
		times = append(times, mt, addSat(mt, wc.lateness))
	}
	slices.Sort(times)
	times = slices.Compact(times)
	slot := func(ts int64) int32 {
		i, _ := slices.BinarySearch(times, ts)
		return int32(i)
	}
	firingSlot, cleanupSlot := make([]int32, len(wc.ends)), make([]int32, len(wc.ends))
	for i, ce := range wc.ends {
		mt := ce.w.MaxTimestamp()
		firingSlot[i], cleanupSlot[i] = -1, -1
		if !wc.eventTime || !ce.fired {
			firingSlot[i] = slot(mt)
		}
		// A fired window always waits for a cleanup later than its firing.
		if c := addSat(mt, wc.lateness); wc.eventTime && c != mt {
			cleanupSlot[i] = slot(c)
		}
	}
	// A timer before its placement: its time's slot, its key's rank among
	// the timer keys, and its entry.
	type pending struct {
		slot, trank, entry int32
	}
	var (
		order, torder []int32
		trank         []int32
		sortKeys      []prefixKey
		recs, sorted  []pending
		slotPos       = make([]int, len(times))
	)
	entryPos := 0
	for _, g := range wc.groups {
		nk := g.k1 - g.k0
		// The keys by their bytes (entries), and by uvarint(len) ‖ bytes
		// (timers): the same order when all keys have one length.
		order = order[:0]
		l0 := keyOff[g.k0+1] - keyOff[g.k0]
		sameLen := true
		for i := g.k0; i < g.k1; i++ {
			order = append(order, int32(i))
			sameLen = sameLen && keyOff[i+1]-keyOff[i] == l0
		}
		if sameLen && l0 <= 8 {
			sortKeys = sortKeys[:0]
			for i := g.k0; i < g.k1; i++ {
				sortKeys = append(sortKeys, prefixKey{p: loadPrefix(keyEnc[keyOff[i]:keyOff[i+1]]), i: int32(i)})
			}
			slices.SortFunc(sortKeys, func(a, b prefixKey) int { return cmp.Compare(a.p, b.p) })
			for r, s := range sortKeys {
				order[r] = s.i
			}
		} else {
			slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(keyOf(int(a)), keyOf(int(b))) })
		}
		trank = slices.Grow(trank[:0], nk)[:nk]
		if sameLen {
			for r, ki := range order {
				trank[int(ki)-g.k0] = int32(r)
			}
		} else {
			torder = append(torder[:0], order...)
			slices.SortFunc(torder, func(a, b int32) int { return compareTimerKeys(keyOf(int(a)), keyOf(int(b))) })
			for r, ki := range torder {
				trank[int(ki)-g.k0] = int32(r)
			}
		}
		n := wc.winOff[g.k1] - wc.winOff[g.k0]
		entries := allEntries[entryPos : entryPos+n : entryPos+n]
		entryPos += n
		recs = recs[:0]
		// Entries in key order; each key's timers by entry, with the key's
		// rank among the timer keys kept for placing them below.
		e := 0
		for _, ki := range order {
			key := keyOf(int(ki))
			tr := trank[int(ki)-g.k0]
			ei := 0
			for j := wc.winOff[ki]; j < wc.winOff[ki+1]; j++ {
				x := &wc.wins[j]
				if ei = endIndex(x.end, ei); ei < 0 {
					// A bug: every window's end is in the operator's ends.
					return nil, nil, fmt.Errorf("window ending at %d of key %v is not among the live windows", x.end, wc.keyString(int(ki)))
				}
				ce := &wc.ends[ei]
				var val []byte
				if wc.accOff != nil {
					val = wc.accEnc[wc.accOff[j]:wc.accOff[j+1]:wc.accOff[j+1]]
				} else {
					v0 := len(valBuf)
					if valBuf, err = wc.ac.append(valBuf, x.acc); err != nil {
						return nil, nil, fmt.Errorf("window %v of key %v: %w", ce.w, wc.keyString(int(ki)), err)
					}
					val = valBuf[v0:len(valBuf):len(valBuf)]
				}
				entries[e] = state.Entry{State: windowContentsState, Kind: wc.kind, Key: key, Namespace: ns[ei], Value: nilIfEmpty(val)}
				if fs := firingSlot[ei]; fs >= 0 {
					recs = append(recs, pending{fs, tr, int32(e)})
				}
				if cs := cleanupSlot[ei]; cs >= 0 {
					recs = append(recs, pending{cs, tr, int32(e)})
				}
				ei++
				e++
			}
		}
		// Timers by time, then timer key rank, then entry (a key's entries
		// are in namespace order). Placing them by time, stably, in
		// order of timer key rank gives exactly that order.
		if !sameLen {
			// recs are in entry key order; make them timer key order (a
			// key's timers stay together, in entry order).
			slices.SortStableFunc(recs, func(a, b pending) int { return cmp.Compare(a.trank, b.trank) })
		}
		clear(slotPos)
		for _, r := range recs {
			slotPos[r.slot]++
		}
		pos := 0
		for i, c := range slotPos {
			slotPos[i] = pos
			pos += c
		}
		sorted = slices.Grow(sorted[:0], len(recs))[:len(recs)]
		for _, r := range recs {
			sorted[slotPos[r.slot]] = r
			slotPos[r.slot]++
		}
		t0 := len(allTimers)
		for _, r := range sorted {
			en := &entries[r.entry]
			allTimers = append(allTimers, state.Timer{Timestamp: times[r.slot], Key: en.Key, Namespace: en.Namespace})
		}
		var ts []state.Timer
		if len(allTimers) > t0 {
			ts = allTimers[t0:len(allTimers):len(allTimers)]
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

// keyString is key i for error messages.
func (wc *endsCopy[K, ACC]) keyString(i int) string {
	if wc.keys != nil {
		return fmt.Sprint(wc.keys[i])
	}
	return fmt.Sprintf("%q", wc.keyEnc[wc.keyOff[i]:wc.keyOff[i+1]])
}

// prefixKey orders keys of one length up to 8 bytes by an integer: their
// bytes, big-endian, left-aligned.
type prefixKey struct {
	p uint64
	i int32
}

func loadPrefix(b []byte) uint64 {
	if len(b) == 8 {
		return binary.BigEndian.Uint64(b)
	}
	var a [8]byte
	copy(a[:], b)
	return binary.BigEndian.Uint64(a[:])
}
