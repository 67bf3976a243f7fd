package operators

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// TimeWindow is a window of event time or processing time: the unix
// milliseconds [Start, End), End exclusive, as Flink's TimeWindow.
type TimeWindow struct{ Start, End int64 }

// MaxTimestamp returns the largest timestamp in the window, End-1. Window
// results carry it as their timestamp, and an event-time window fires once
// the watermark reaches it.
func (w TimeWindow) MaxTimestamp() int64 { return w.End - 1 }

func (w TimeWindow) String() string { return fmt.Sprintf("[%d, %d)", w.Start, w.End) }

// intersects reports whether w and o overlap or touch; touching session
// windows merge, as in Flink's TimeWindow.intersects.
func (w TimeWindow) intersects(o TimeWindow) bool { return w.Start <= o.End && w.End >= o.Start }

// cover returns the smallest window holding both w and o.
func (w TimeWindow) cover(o TimeWindow) TimeWindow {
	return TimeWindow{Start: min(w.Start, o.Start), End: max(w.End, o.End)}
}

type assignerKind uint8

const (
	assignerUnset assignerKind = iota
	assignerTumbling
	assignerSliding
	assignerSession
)

// WindowAssigner assigns each record to the windows it belongs to. Build one
// with TumblingWindows, SlidingWindows or SessionWindows. It is a value:
// WithOffset returns a modified copy. An invalid assigner carries its error
// (Err) so that the DataStream API can report it when the job is built.
type WindowAssigner struct {
	kind           assignerKind
	processingTime bool
	// All in milliseconds.
	size, slide, offset, gap int64
	err                      error
}

// TumblingWindows assigns each record to the one window of the given size
// that holds its timestamp (event time) or the current processing time.
// Windows are aligned to the epoch: [k*size, (k+1)*size).
func TumblingWindows(size time.Duration, processingTime bool) WindowAssigner {
	a := WindowAssigner{kind: assignerTumbling, processingTime: processingTime}
	a.size, a.err = durationMillis(a.name(), "size", size)
	a.slide = a.size
	return a
}

// SlidingWindows assigns each record to the windows of the given size,
// starting every slide, that hold its time: size/slide windows per record
// when slide divides size.
func SlidingWindows(size, slide time.Duration, processingTime bool) WindowAssigner {
	a := WindowAssigner{kind: assignerSliding, processingTime: processingTime}
	var err1, err2 error
	a.size, err1 = durationMillis(a.name(), "size", size)
	a.slide, err2 = durationMillis(a.name(), "slide", slide)
	a.err = errors.Join(err1, err2)
	return a
}

// SessionWindows assigns each record to a session window [t, t+gap) that
// merges with every window of the same key it overlaps or touches, so that a
// session ends after gap without records of its key.
func SessionWindows(gap time.Duration, processingTime bool) WindowAssigner {
	a := WindowAssigner{kind: assignerSession, processingTime: processingTime}
	a.gap, a.err = durationMillis(a.name(), "gap", gap)
	return a
}

// WithOffset shifts the alignment of tumbling and sliding windows by offset:
// windows become [k*slide+offset, k*slide+offset+size). Its absolute value
// must be smaller than the slide (the size for tumbling windows); it may be
// negative, e.g. -8h for daily windows in UTC+8.
func (a WindowAssigner) WithOffset(offset time.Duration) WindowAssigner {
	if a.err != nil {
		return a
	}
	if a.kind != assignerTumbling && a.kind != assignerSliding {
		a.err = fmt.Errorf("%s: WithOffset applies to tumbling and sliding windows only", a.name())
		return a
	}
	ms := offset.Milliseconds()
	if time.Duration(ms)*time.Millisecond != offset {
		a.err = fmt.Errorf("%s: offset %v is not a whole number of milliseconds", a.name(), offset)
		return a
	}
	if ms <= -a.slide || ms >= a.slide {
		what := "slide"
		if a.kind == assignerTumbling {
			what = "size"
		}
		a.err = fmt.Errorf("%s: offset %v must be smaller in absolute value than the window %s %v; "+
			"an offset of a whole %s or more gives the same windows as a smaller one",
			a.name(), offset, what, time.Duration(a.slide)*time.Millisecond, what)
		return a
	}
	a.offset = ms
	return a
}

// Err returns why the assigner is invalid, or nil.
func (a WindowAssigner) Err() error {
	if a.kind == assignerUnset {
		return errors.New("no window assigner: build one with TumblingEventTimeWindows, SlidingEventTimeWindows, " +
			"EventTimeSessionWindows or their processing-time counterparts")
	}
	return a.err
}

// IsEventTime reports whether windows are of event time (fired by
// watermarks) rather than processing time (fired by the clock).
func (a WindowAssigner) IsEventTime() bool { return !a.processingTime }

// IsMerging reports whether windows merge (session windows).
func (a WindowAssigner) IsMerging() bool { return a.kind == assignerSession }

// String describes the assigner in Flink's terms, e.g.
// "SlidingEventTimeWindows(10s, 2s)".
func (a WindowAssigner) String() string {
	d := func(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
	switch a.kind {
	case assignerTumbling:
		if a.offset != 0 {
			return fmt.Sprintf("%s(%v, offset %v)", a.name(), d(a.size), d(a.offset))
		}
		return fmt.Sprintf("%s(%v)", a.name(), d(a.size))
	case assignerSliding:
		if a.offset != 0 {
			return fmt.Sprintf("%s(%v, %v, offset %v)", a.name(), d(a.size), d(a.slide), d(a.offset))
		}
		return fmt.Sprintf("%s(%v, %v)", a.name(), d(a.size), d(a.slide))
	case assignerSession:
		return fmt.Sprintf("%s(%v)", a.name(), d(a.gap))
	}
	return "WindowAssigner(unset)"
}

func (a WindowAssigner) name() string {
	t := "EventTime"
	if a.processingTime {
		t = "ProcessingTime"
	}
	switch a.kind {
	case assignerTumbling:
		return "Tumbling" + t + "Windows"
	case assignerSliding:
		return "Sliding" + t + "Windows"
	case assignerSession:
		return t + "SessionWindows"
	}
	return "WindowAssigner"
}

// AssignWindows appends to dst the windows a record with time ts (event
// timestamp or processing time, unix ms) belongs to. Sliding windows come
// latest start first, as Flink's SlidingEventTimeWindows returns them.
func (a WindowAssigner) AssignWindows(dst []TimeWindow, ts int64) []TimeWindow {
	switch a.kind {
	case assignerTumbling:
		start := WindowStart(ts, a.offset, a.size)
		return append(dst, TimeWindow{Start: start, End: start + a.size})
	case assignerSliding:
		for start := WindowStart(ts, a.offset, a.slide); start > ts-a.size; start -= a.slide {
			dst = append(dst, TimeWindow{Start: start, End: start + a.size})
		}
		return dst
	case assignerSession:
		return append(dst, TimeWindow{Start: ts, End: ts + a.gap})
	}
	return dst
}

// WindowStart returns the start of the window of the given size (and
// offset) that holds ts, for negative timestamps too: the largest
// k*size+offset <= ts. It is Flink's TimeWindow.getWindowStartWithOffset.
func WindowStart(ts, offset, size int64) int64 {
	rem := (ts - offset) % size
	if rem < 0 {
		return ts - (rem + size)
	}
	return ts - rem
}

// durationMillis checks that d is a positive whole number of milliseconds.
func durationMillis(assigner, what string, d time.Duration) (int64, error) {
	ms := d.Milliseconds()
	switch {
	case d <= 0:
		return 1, fmt.Errorf("%s: window %s %v must be positive", assigner, what, d)
	case time.Duration(ms)*time.Millisecond != d:
		return 1, fmt.Errorf("%s: window %s %v is not a whole number of milliseconds (windows have millisecond bounds)", assigner, what, d)
	case ms > math.MaxInt64/4:
		return 1, fmt.Errorf("%s: window %s %v is too large", assigner, what, d)
	}
	return ms, nil
}
