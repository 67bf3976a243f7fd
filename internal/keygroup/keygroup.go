// Package keygroup assigns keys to key groups and key groups to operator
// instances, exactly as Flink's KeyGroupRangeAssignment does.
//
// Keyed state is partitioned into maxParallelism key groups, the unit of
// rescaling. A key goes to a key group by its hash; operator instance i of a
// parallelism-p operator owns one contiguous range of key groups. When a job
// is restored with another parallelism (but the same max parallelism), whole
// key groups move between instances, so state never has to be re-hashed:
//
//	key ──Hash64──▶ hash ──ForKeyHash──▶ key group ──OperatorIndex──▶ subtask
//	                                      [0, maxP)                   [0, p)
//
//	maxP = 8, p = 3:   key groups  0 1 2 | 3 4 5 | 6 7
//	                   subtask       0   |   1   |  2
//
// The functions are pure; they allocate nothing.
package keygroup

import (
	"fmt"
	"math/bits"
)

const (
	// DefaultLowerBoundMaxParallelism is the smallest max parallelism that
	// DefaultMaxParallelism chooses.
	DefaultLowerBoundMaxParallelism = 128
	// UpperBoundMaxParallelism is the largest supported max parallelism
	// (and so the largest parallelism of a keyed operator).
	UpperBoundMaxParallelism = 1 << 15
)

// Range is a contiguous range of key groups, inclusive at both ends as in
// Flink. A range with End < Start is empty; Empty() returns the canonical
// empty range {0, -1}.
type Range struct {
	Start, End int
}

// EmptyRange returns the canonical empty range.
func EmptyRange() Range { return Range{Start: 0, End: -1} }

// Contains reports whether key group kg is in r.
func (r Range) Contains(kg int) bool { return kg >= r.Start && kg <= r.End }

// Len returns the number of key groups in r.
func (r Range) Len() int {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start + 1
}

// Empty reports whether r holds no key group.
func (r Range) Empty() bool { return r.End < r.Start }

// Intersect returns the key groups in both r and o (the canonical empty
// range if there are none). Restoring a rescaled operator reads, from each old
// instance's snapshot, the intersection of its range with the new one.
func (r Range) Intersect(o Range) Range {
	s := Range{Start: max(r.Start, o.Start), End: min(r.End, o.End)}
	if s.Empty() {
		return EmptyRange()
	}
	return s
}

// String formats r as "[start, end]", or "[]" when empty.
func (r Range) String() string {
	if r.Empty() {
		return "[]"
	}
	return fmt.Sprintf("[%d, %d]", r.Start, r.End)
}

// DefaultMaxParallelism is the max parallelism chosen for an operator whose
// user set none: the parallelism plus half, rounded up to a power of two, and
// clamped to [DefaultLowerBoundMaxParallelism, UpperBoundMaxParallelism].
// It leaves room to scale up by 50% without changing the key-group layout.
func DefaultMaxParallelism(parallelism int) int {
	return min(max(roundUpToPowerOfTwo(parallelism+parallelism/2), DefaultLowerBoundMaxParallelism), UpperBoundMaxParallelism)
}

// roundUpToPowerOfTwo returns the smallest power of two >= x (1 for x <= 1).
func roundUpToPowerOfTwo(x int) int {
	if x <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(x-1))
}

// ForKeyHash returns the key group of a key whose 64-bit hash is hash.
//
// The hash is mixed (murmur3's 64-bit finaliser) before the modulo, as Flink
// mixes hashCode(), so that a weak hash (or one whose low bits are constant)
// still spreads keys over all key groups. maxParallelism must be positive.
func ForKeyHash(hash uint64, maxParallelism int) int {
	return int(mix64(hash) % uint64(maxParallelism))
}

// mix64 is murmur3's fmix64: every input bit affects every output bit.
func mix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// OperatorIndex returns the index of the operator instance (subtask) that
// owns keyGroup when an operator with maxParallelism key groups runs with
// parallelism instances.
func OperatorIndex(keyGroup, maxParallelism, parallelism int) int {
	return keyGroup * parallelism / maxParallelism
}

// RangeForOperator returns the key groups owned by operator instance
// operatorIndex; it is the inverse of OperatorIndex. The ranges of all
// instances partition [0, maxParallelism). It panics if the arguments fail
// CheckParallelism or operatorIndex is not in [0, parallelism): callers
// validate the parallelism when the job graph is built.
func RangeForOperator(maxParallelism, parallelism, operatorIndex int) Range {
	if err := CheckParallelism(parallelism, maxParallelism); err != nil {
		panic(err)
	}
	if operatorIndex < 0 || operatorIndex >= parallelism {
		panic(fmt.Sprintf("keygroup: operator index %d is outside [0, %d)", operatorIndex, parallelism))
	}
	return Range{
		Start: (operatorIndex*maxParallelism + parallelism - 1) / parallelism,
		End:   ((operatorIndex+1)*maxParallelism - 1) / parallelism,
	}
}

// CheckParallelism returns an error that says what to change unless
// 0 < parallelism <= maxParallelism <= UpperBoundMaxParallelism.
func CheckParallelism(parallelism, maxParallelism int) error {
	switch {
	case maxParallelism <= 0 || maxParallelism > UpperBoundMaxParallelism:
		return fmt.Errorf("max parallelism %d is outside [1, %d]; set a max parallelism in that range", maxParallelism, UpperBoundMaxParallelism)
	case parallelism <= 0:
		return fmt.Errorf("parallelism %d must be at least 1", parallelism)
	case parallelism > maxParallelism:
		return fmt.Errorf("parallelism %d exceeds the max parallelism %d (the number of key groups); lower the parallelism or raise the max parallelism (changing the max parallelism makes existing savepoints unusable)", parallelism, maxParallelism)
	}
	return nil
}
