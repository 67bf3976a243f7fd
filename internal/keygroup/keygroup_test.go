package keygroup

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDefaultMaxParallelism(t *testing.T) {
	for _, tc := range []struct{ p, want int }{
		{0, 128},
		{1, 128},
		{85, 128},  // 85+42 = 127 → 128
		{86, 256},  // 86+43 = 129 → 256
		{100, 256}, // 150 → 256
		{171, 256}, // 171+85 = 256 → 256
		{172, 512}, // 172+86 = 258 → 512
		{1000, 2048},
		{21845, 32768}, // 21845+10922 = 32767 → 32768
		{30000, 32768}, // 45000 → 65536, clamped
		{40000, 32768},
	} {
		if got := DefaultMaxParallelism(tc.p); got != tc.want {
			t.Errorf("DefaultMaxParallelism(%d) = %d, want %d", tc.p, got, tc.want)
		}
	}
}

func TestForKeyHash(t *testing.T) {
	// Expected values computed by hand with murmur3 fmix64 (see mix64):
	// fmix64(1) = 0xb456bcfc34c2cb2c, fmix64(2) = 0x3abf2a20650683e7,
	// fmix64(42) = 0x810879608e4259cc, fmix64(0xdeadbeef) = 0xd24bd59f862a1dac,
	// fmix64(2^64-1) = 0x64b5720b4b825f21.
	for _, tc := range []struct {
		hash uint64
		maxP int
		want int
	}{
		{0, 128, 0},
		{1, 128, 44},
		{1, 1000, 604},
		{1, 32768, 19244},
		{2, 128, 103},
		{42, 128, 76},
		{42, 1000, 340},
		{0xdeadbeef, 128, 44},
		{0xdeadbeef, 32768, 7596},
		{^uint64(0), 128, 33},
		{^uint64(0), 1000, 289},
		{1 << 63, 128, 19},
		{12345, 1, 0},
	} {
		if got := ForKeyHash(tc.hash, tc.maxP); got != tc.want {
			t.Errorf("ForKeyHash(%#x, %d) = %d, want %d", tc.hash, tc.maxP, got, tc.want)
		}
	}
}

func TestForKeyHashSpreadsWeakHashes(t *testing.T) {
	// Hashes that differ only in high bits must still use all key groups.
	seen := map[int]bool{}
	for i := range uint64(4096) {
		seen[ForKeyHash(i<<40, 128)] = true
	}
	if len(seen) != 128 {
		t.Fatalf("4096 high-bit-only hashes hit %d of 128 key groups", len(seen))
	}
}

func TestRangeForOperator(t *testing.T) {
	for _, tc := range []struct {
		maxP, p, i int
		want       Range
	}{
		{128, 1, 0, Range{0, 127}},
		{128, 3, 0, Range{0, 42}},
		{128, 3, 1, Range{43, 85}},
		{128, 3, 2, Range{86, 127}},
		{10, 4, 0, Range{0, 2}},
		{10, 4, 1, Range{3, 4}},
		{10, 4, 2, Range{5, 7}},
		{10, 4, 3, Range{8, 9}},
		{8, 3, 0, Range{0, 2}},
		{8, 3, 1, Range{3, 5}},
		{8, 3, 2, Range{6, 7}},
		{4, 4, 2, Range{2, 2}},
		{32768, 2, 1, Range{16384, 32767}},
	} {
		if got := RangeForOperator(tc.maxP, tc.p, tc.i); got != tc.want {
			t.Errorf("RangeForOperator(%d, %d, %d) = %v, want %v", tc.maxP, tc.p, tc.i, got, tc.want)
		}
	}
}

func TestOperatorIndex(t *testing.T) {
	for _, tc := range []struct{ kg, maxP, p, want int }{
		{0, 128, 3, 0},
		{42, 128, 3, 0},
		{43, 128, 3, 1},
		{85, 128, 3, 1},
		{86, 128, 3, 2},
		{127, 128, 3, 2},
		{2, 10, 4, 0},
		{3, 10, 4, 1},
		{4, 10, 4, 1},
		{5, 10, 4, 2},
		{7, 10, 4, 2},
		{8, 10, 4, 3},
		{32767, 32768, 32768, 32767},
	} {
		if got := OperatorIndex(tc.kg, tc.maxP, tc.p); got != tc.want {
			t.Errorf("OperatorIndex(%d, %d, %d) = %d, want %d", tc.kg, tc.maxP, tc.p, got, tc.want)
		}
	}
}

// Property: for any valid (p, maxP), the operator ranges partition
// [0, maxP) in order, and each key group's range agrees with OperatorIndex.
func TestRangesPartitionKeyGroups(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(maxP, p int) {
		t.Helper()
		owner := make([]int, maxP)
		for i := range owner {
			owner[i] = -1
		}
		next := 0
		for i := range p {
			r := RangeForOperator(maxP, p, i)
			if r.Start != next {
				t.Fatalf("maxP=%d p=%d: range %d = %v starts at %d, want %d (ranges must be contiguous)", maxP, p, i, r, r.Start, next)
			}
			next = r.End + 1
			for kg := r.Start; kg <= r.End; kg++ {
				if owner[kg] != -1 {
					t.Fatalf("maxP=%d p=%d: key group %d owned by %d and %d", maxP, p, kg, owner[kg], i)
				}
				owner[kg] = i
			}
		}
		if next != maxP {
			t.Fatalf("maxP=%d p=%d: ranges end at %d, want %d", maxP, p, next-1, maxP-1)
		}
		for kg, i := range owner {
			if got := OperatorIndex(kg, maxP, p); got != i {
				t.Fatalf("maxP=%d p=%d: OperatorIndex(%d) = %d, but key group is in range of %d", maxP, p, kg, got, i)
			}
		}
	}
	for _, maxP := range []int{1, 2, 3, 7, 128, 1000, UpperBoundMaxParallelism} {
		check(maxP, 1)
		check(maxP, maxP)
	}
	for range 300 {
		maxP := 1 + rng.IntN(4096)
		check(maxP, 1+rng.IntN(maxP))
	}
	for range 5 {
		check(UpperBoundMaxParallelism, 1+rng.IntN(UpperBoundMaxParallelism))
	}
}

func TestCheckParallelism(t *testing.T) {
	for _, tc := range []struct {
		p, maxP int
		want    string // substring of the error; "" for nil
	}{
		{1, 1, ""},
		{128, 128, ""},
		{3, 128, ""},
		{32768, 32768, ""},
		{0, 128, "parallelism 0 must be at least 1"},
		{-1, 128, "parallelism -1"},
		{129, 128, "parallelism 129 exceeds the max parallelism 128"},
		{1, 0, "max parallelism 0 is outside [1, 32768]"},
		{1, 32769, "max parallelism 32769 is outside"},
	} {
		err := CheckParallelism(tc.p, tc.maxP)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckParallelism(%d, %d) = %v, want nil", tc.p, tc.maxP, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckParallelism(%d, %d) = %v, want error containing %q", tc.p, tc.maxP, err, tc.want)
		}
	}
}

func TestRangeForOperatorPanicsOnBadInput(t *testing.T) {
	for _, tc := range []struct{ maxP, p, i int }{{128, 129, 0}, {128, 2, 2}, {128, 2, -1}, {0, 1, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RangeForOperator(%d, %d, %d) did not panic", tc.maxP, tc.p, tc.i)
				}
			}()
			RangeForOperator(tc.maxP, tc.p, tc.i)
		}()
	}
}

func TestRange(t *testing.T) {
	r := Range{3, 5}
	if !r.Contains(3) || !r.Contains(5) || r.Contains(2) || r.Contains(6) {
		t.Errorf("Contains wrong for %v", r)
	}
	if r.Len() != 3 || r.Empty() {
		t.Errorf("%v: Len = %d, Empty = %v", r, r.Len(), r.Empty())
	}
	e := EmptyRange()
	if e.Len() != 0 || !e.Empty() || e.Contains(0) || e.String() != "[]" {
		t.Errorf("empty range %#v: Len %d Empty %v Contains(0) %v String %q", e, e.Len(), e.Empty(), e.Contains(0), e.String())
	}
	for _, tc := range []struct{ a, b, want Range }{
		{Range{0, 9}, Range{5, 14}, Range{5, 9}},
		{Range{0, 4}, Range{5, 9}, EmptyRange()},
		{Range{2, 3}, Range{0, 9}, Range{2, 3}},
		{Range{0, 9}, EmptyRange(), EmptyRange()},
	} {
		if got := tc.a.Intersect(tc.b); got != tc.want {
			t.Errorf("%v ∩ %v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if s := r.String(); s != "[3, 5]" {
		t.Errorf("String = %q", s)
	}
}
