package source

import (
	"fmt"
	"math"
	"slices"

	"github.com/weirstream/weir/connector"
)

// maxClassPeriod bounds the period of the residue classes an IndexShare
// tracks after rescalings (see IndexShare), and with it the size of its
// state: at most maxClassPeriod/parallelism bounds per subtask.
const maxClassPeriod = 1 << 16

// IndexShare is one subtask's share of a source that emits the indices
// [0, count) split round-robin over its subtasks: subtask i of p emits i,
// i+p, i+2p, … in that order. FromSlice and Generator are built on it, and
// so can be any source whose records are a pure function of an index. Next
// hands out the indices to emit; SnapshotState stores which were emitted,
// and NewIndexShare, given those states in SourceContext.Restored, resumes
// so that every index is emitted exactly once over the job's life, with the
// same parallelism or another.
//
// After a restore with another parallelism the new shares cut across the
// old ones, which had progressed unevenly. What the old subtasks emitted is,
// for every residue class of the indices modulo a period L (p at first),
// the indices of that class below a bound. A new subtask i of q takes the
// classes modulo lcm(L, q) that are congruent to i modulo q, skips in each
// the indices below the inherited bound, and emits the rest in increasing
// order; its state is again one bound per class. Once a subtask is past
// every inherited bound, or the bounds line up so that coarser classes
// describe the same set, the state shrinks back: to one bound, the next
// index, in the common case. So rescaling 2 → 3 → 1 is exact, and so is any
// sequence, unless rescalings in quick succession (each before the subtasks
// passed the previous one's uneven region) would need a period beyond
// 65536; NewIndexShare then fails and says so.
//
// An IndexShare is used by one reader on its subtask's goroutine.
type IndexShare struct {
	op          string
	subtask     int64
	parallelism int64
	count       int64 // math.MaxInt64 when unbounded
	bounded     bool

	// While the share overlaps indices that earlier owners emitted, it is
	// split into the classes subtask + j·parallelism mod period, j <
	// period/parallelism, and index n of class j was emitted before iff
	// n < bounds[j]. bounds is nil (and period == parallelism) once next
	// has passed them all.
	period   int64
	bounds   []int64
	minBound int64
	maxBound int64

	next int64 // the next index to hand out, not emitted yet; >= count at the end
}

// NewIndexShare returns subtask ctx.Subtask's share of the indices
// [0, count), or of all indices from 0 if count < 0. With ctx.Restored set
// it resumes from the states that SnapshotState returned then.
func NewIndexShare(ctx connector.SourceContext, count int64) (*IndexShare, error) {
	p := max(ctx.Parallelism, 1)
	if ctx.Subtask < 0 || ctx.Subtask >= p {
		return nil, fmt.Errorf("source %q: subtask %d is out of range for parallelism %d", ctx.OperatorName, ctx.Subtask, p)
	}
	s := &IndexShare{
		op:          ctx.OperatorName,
		subtask:     int64(ctx.Subtask),
		parallelism: int64(p),
		count:       count,
		bounded:     count >= 0,
		period:      int64(p),
		next:        int64(ctx.Subtask),
	}
	if !s.bounded {
		s.count = math.MaxInt64
	}
	if len(ctx.Restored) > 0 {
		if err := s.restore(ctx.Restored); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Next returns the next index to emit, in increasing order, and false when
// the share has none left. The index counts as emitted once returned: emit
// its record before the reader's Read returns.
func (s *IndexShare) Next() (int64, bool) {
	n := s.next
	if n >= s.count {
		return 0, false
	}
	if n > s.count-s.parallelism {
		s.next = s.count
	} else {
		s.next = n + s.parallelism
	}
	if s.bounds != nil {
		s.skip()
	}
	return n, true
}

// Done reports whether the share has no index left.
func (s *IndexShare) Done() bool { return s.next >= s.count }

// skip moves next past the indices that earlier owners emitted.
func (s *IndexShare) skip() {
	q := s.parallelism
	for steps := s.period / q; s.next < s.count; steps-- {
		if steps == 0 {
			// A whole period without an index to emit: every class's bound
			// lies beyond next, and the nearest one is the next index.
			s.next = s.minBound
			break
		}
		if s.next >= s.bounds[(s.next%s.period-s.subtask)/q] {
			break
		}
		s.next += q // below a bound, so no overflow
	}
	if s.next >= s.maxBound {
		s.bounds, s.period = nil, q
	}
}

// SnapshotState returns which indices of the share were emitted: one bound
// per class, as the type's comment describes.
func (s *IndexShare) SnapshotState() ([]byte, error) {
	period, bounds := s.classBounds()
	e := newStateEncoder(kindIndexShare)
	e.uvarint(uint64(s.parallelism))
	e.uvarint(uint64(s.subtask))
	e.uvarint(uint64(period))
	for _, b := range bounds {
		e.uvarint(uint64(b))
	}
	return e.b, nil
}

// classBounds returns, for each class of the share, the first index not
// emitted yet, in the smallest period that describes them.
func (s *IndexShare) classBounds() (int64, []int64) {
	q, period := s.parallelism, s.period
	b := make([]int64, period/q)
	for j := range b {
		r := s.subtask + int64(j)*q
		v := firstInClass(r, period, s.next) // the share's indices below next are done
		if s.bounds != nil {
			v = max(v, s.bounds[j])
		}
		if s.bounded && v > s.count {
			v = firstInClass(r, period, s.count) // the same set, in a form that merges
		}
		b[j] = v
	}
	return reduceClasses(s.subtask, q, period, b)
}

// reduceClasses merges the classes of subtask k of q modulo period into
// those modulo the smallest multiple d of q dividing period for which the
// set they describe is the same. Class i modulo d is the union of the
// classes j ≡ i (mod d/q) modulo period; its emitted indices are a prefix
// of it iff the largest emitted one, max(bounds)-period at most, lies below
// the smallest that is not, min(bounds).
func reduceClasses(k, q, period int64, bounds []int64) (int64, []int64) {
	m := period / q
	for dm := int64(1); dm < m; dm++ {
		if m%dm != 0 {
			continue
		}
		merged := make([]int64, dm)
		ok := true
		for i := int64(0); i < dm && ok; i++ {
			lo, hi := bounds[i], bounds[i]
			for j := i + dm; j < m; j += dm {
				lo, hi = min(lo, bounds[j]), max(hi, bounds[j])
			}
			merged[i] = lo
			ok = hi-lo < period
		}
		if ok {
			return q * dm, merged
		}
	}
	return period, bounds
}

// setBounds installs the classes of the share and moves next to the first
// index to emit.
func (s *IndexShare) setBounds(period int64, bounds []int64) {
	s.period, s.bounds = period, bounds
	s.minBound, s.maxBound = slices.Min(bounds), slices.Max(bounds)
	s.next = s.subtask
	s.skip()
}

// restore works out the share's classes from the old subtasks' states.
func (s *IndexShare) restore(restored [][]byte) error {
	oldP := len(restored)
	type oldShare struct {
		period int64
		bounds []int64
	}
	olds := make([]oldShare, oldP)
	lcmOld := int64(1)
	for j, b := range restored {
		period, bounds, err := decodeIndexShare(b, j, oldP)
		if err != nil {
			return restoreError(s.op, j, oldP, err)
		}
		olds[j] = oldShare{period, bounds}
		lcmOld = lcm(lcmOld, period)
	}
	period := lcm(lcmOld, s.parallelism)
	if period > maxClassPeriod || period < 0 {
		return fmt.Errorf("source %q: cannot rescale from %d to %d subtasks exactly: the old subtasks had not yet passed the uneven "+
			"region of an earlier rescaling, and splitting it again needs residue classes modulo more than %d; "+
			"restore with parallelism %d, or let the job run a while before rescaling again", s.op, oldP, s.parallelism, maxClassPeriod, oldP)
	}
	q, k := s.parallelism, s.subtask
	bounds := make([]int64, period/q)
	for j := range bounds {
		r := k + int64(j)*q
		o := r % int64(oldP)
		old := olds[o]
		b := old.bounds[(r%old.period-o)/int64(oldP)]
		bounds[j] = firstInClass(r, period, b)
	}
	s.setBounds(reduceClasses(k, q, period, bounds))
	return nil
}

func decodeIndexShare(b []byte, subtask, parallelism int) (int64, []int64, error) {
	d := decodeState(b, kindIndexShare)
	p := d.int63("parallelism")
	k := d.int63("subtask")
	period := d.int63("period")
	if d.err == nil && (p != int64(parallelism) || k != int64(subtask)) {
		d.fail("it was written by subtask %d of %d", k, p)
	}
	if d.err == nil && (period < p || period%p != 0 || period > maxClassPeriod) {
		d.fail("period %d is not a multiple of the parallelism %d up to %d", period, p, maxClassPeriod)
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	bounds := make([]int64, period/p)
	for j := range bounds {
		v := d.int63("a class bound")
		r := k + int64(j)*p
		if d.err == nil && (v < r || (v-r)%period != 0) {
			d.fail("bound %d of class %d modulo %d is not in that class", v, r, period)
		}
		bounds[j] = v
	}
	if err := d.finish(); err != nil {
		return 0, nil, err
	}
	return period, bounds, nil
}

// firstInClass returns the smallest n >= x with n ≡ r (mod period), for
// 0 <= r < period; math.MaxInt64 if that overflows.
func firstInClass(r, period, x int64) int64 {
	if x <= r {
		return r
	}
	d := (r - x%period) % period
	if d < 0 {
		d += period
	}
	if x > math.MaxInt64-d {
		return math.MaxInt64
	}
	return x + d
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// lcm returns the least common multiple of a and b, or -1 beyond
// maxClassPeriod.
func lcm(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	l := a / gcd(a, b) * b
	if l > maxClassPeriod || l/b != a/gcd(a, b) {
		return -1
	}
	return l
}
