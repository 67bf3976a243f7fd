package operators

import (
	"testing"
	"time"
)

// A key whose windows all fired and were dropped must start afresh when it
// comes back, also right after itself (the window operator remembers the
// latest record's key) and when it is the zero value, and whether or not
// its freed state was reused for another key meanwhile.
func TestWindowKeyReturnsAfterItsWindowsWereDropped(t *testing.T) {
	spec := WindowSpec{Assigner: TumblingWindows(10*time.Millisecond, false)}
	h := newWinHarness[wev, wev](t, NewWindowReduce(wevKeying(t), spec, sumReduce), 1, 0)
	h.element(wev{Key: "", TS: 1, V: 1}, 1)
	h.watermark(9) // fires and drops [0, 10) of ""
	h.element(wev{Key: "", TS: 11, V: 2}, 11)
	h.element(wev{Key: "b", TS: 12, V: 3}, 12)
	h.element(wev{Key: "", TS: 13, V: 4}, 13)
	h.watermark(19)
	h.element(wev{Key: "c", TS: 21, V: 5}, 21) // may reuse a freed key's state
	h.watermark(29)
	h.element(wev{Key: "", TS: 31, V: 6}, 31)
	h.element(wev{Key: "", TS: 32, V: 7}, 32)
	h.watermark(39)
	var got []wev
	for _, e := range h.out.take() {
		got = append(got, e.v)
	}
	want := []wev{{"", 1, 1}, {"", 13, 6}, {"b", 12, 3}, {"c", 21, 5}, {"", 32, 13}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
