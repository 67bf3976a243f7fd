// Package resource owns Weir's resource model (DESIGN.md §5): the Profile of
// a slot or TaskManager, its arithmetic, and the parsing and printing of the
// CPU and memory sizes that users write in configuration.
//
// Profiles are values; every method returns a new Profile and never changes
// its receiver or argument (the Extended map is copied, never shared).
package resource

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// Profile is a slot's or TaskManager's resources. The zero Profile asks for
// nothing, so it fits in any slot.
type Profile struct {
	CPU           int64            // millicores
	TaskMemory    int64            // bytes, for user code and operators
	ManagedMemory int64            // bytes, for the state backend
	NetworkMemory int64            // bytes, for network buffers
	Extended      map[string]int64 // named extended resources, e.g. "gpu": 1
}

// Add returns p + q, dimension by dimension.
func (p Profile) Add(q Profile) Profile {
	return combine(p, q, 1)
}

// Sub returns p - q, dimension by dimension. The result may go negative;
// callers that need a non-negative remainder check q.Fits(p) first.
// Extended resources that come out at zero are dropped.
func (p Profile) Sub(q Profile) Profile {
	return combine(p, q, -1)
}

func combine(p, q Profile, sign int64) Profile {
	r := Profile{
		CPU:           p.CPU + sign*q.CPU,
		TaskMemory:    p.TaskMemory + sign*q.TaskMemory,
		ManagedMemory: p.ManagedMemory + sign*q.ManagedMemory,
		NetworkMemory: p.NetworkMemory + sign*q.NetworkMemory,
	}
	ext := make(map[string]int64, len(p.Extended)+len(q.Extended))
	for k, v := range p.Extended {
		ext[k] += v
	}
	for k, v := range q.Extended {
		ext[k] += sign * v
	}
	for k, v := range ext {
		if v == 0 {
			delete(ext, k)
		}
	}
	if len(ext) > 0 {
		r.Extended = ext
	}
	return r
}

// Fits reports whether p fits within in: every dimension of p, including
// every extended resource, is at most the same dimension of in. An extended
// resource that in does not name counts as zero.
func (p Profile) Fits(in Profile) bool {
	if p.CPU > in.CPU || p.TaskMemory > in.TaskMemory ||
		p.ManagedMemory > in.ManagedMemory || p.NetworkMemory > in.NetworkMemory {
		return false
	}
	for k, v := range p.Extended {
		if v > in.Extended[k] {
			return false
		}
	}
	// A negative extended amount in `in` that p does not name is below p's 0.
	for k, v := range in.Extended {
		if _, named := p.Extended[k]; !named && v < 0 {
			return false
		}
	}
	return true
}

// IsZero reports whether every dimension of p is zero.
func (p Profile) IsZero() bool {
	if p.CPU != 0 || p.TaskMemory != 0 || p.ManagedMemory != 0 || p.NetworkMemory != 0 {
		return false
	}
	for _, v := range p.Extended {
		if v != 0 {
			return false
		}
	}
	return true
}

// IsNegative reports whether any dimension of p is below zero, which no real
// slot or TaskManager can have.
func (p Profile) IsNegative() bool {
	if p.CPU < 0 || p.TaskMemory < 0 || p.ManagedMemory < 0 || p.NetworkMemory < 0 {
		return true
	}
	for _, v := range p.Extended {
		if v < 0 {
			return true
		}
	}
	return false
}

// Equal reports whether p and q have the same amount in every dimension
// (an extended resource that one of them leaves out counts as zero).
func (p Profile) Equal(q Profile) bool {
	return p.Sub(q).IsZero()
}

// Divide returns the profile of one of n equal slots carved from the total
// p: every dimension divided by n, rounded down. n <= 0 yields the zero
// Profile, since there is no slot to carve.
func (p Profile) Divide(n int) Profile {
	if n <= 0 {
		return Profile{}
	}
	d := int64(n)
	r := Profile{
		CPU:           p.CPU / d,
		TaskMemory:    p.TaskMemory / d,
		ManagedMemory: p.ManagedMemory / d,
		NetworkMemory: p.NetworkMemory / d,
	}
	for k, v := range p.Extended {
		if q := v / d; q != 0 {
			if r.Extended == nil {
				r.Extended = make(map[string]int64, len(p.Extended))
			}
			r.Extended[k] = q
		}
	}
	return r
}

// String formats p for people, in a stable order with zero dimensions left
// out: "cpu=2, task=1 GiB, managed=512 MiB, network=64 MiB, gpu=1".
// The zero Profile prints as "empty".
func (p Profile) String() string {
	var parts []string
	if p.CPU != 0 {
		parts = append(parts, "cpu="+FormatCPU(p.CPU))
	}
	if p.TaskMemory != 0 {
		parts = append(parts, "task="+FormatMemory(p.TaskMemory))
	}
	if p.ManagedMemory != 0 {
		parts = append(parts, "managed="+FormatMemory(p.ManagedMemory))
	}
	if p.NetworkMemory != 0 {
		parts = append(parts, "network="+FormatMemory(p.NetworkMemory))
	}
	for _, k := range slices.Sorted(maps.Keys(p.Extended)) {
		if v := p.Extended[k]; v != 0 {
			parts = append(parts, k+"="+strconv.FormatInt(v, 10))
		}
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// memoryUnits maps every accepted unit spelling (lower case) to its size in
// bytes. Like Flink's MemorySize, "k"/"kb" mean 1024, not 1000.
var memoryUnits = map[string]int64{
	"": 1, "b": 1, "byte": 1, "bytes": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "kibibyte": 1 << 10, "kibibytes": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "mebibyte": 1 << 20, "mebibytes": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "gibibyte": 1 << 30, "gibibytes": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40, "tebibyte": 1 << 40, "tebibytes": 1 << 40,
}

const memoryForms = `a non-negative number of bytes ("1073741824") or a number with a unit ` +
	`k, m, g or t, optionally followed by b or ib, in any case ("512m", "512mb", "2 GiB", "1.5g"); ` +
	`units are powers of 1024`

// ParseMemory parses a memory size as Flink writes them: a plain number of
// bytes or a number followed by a unit (k, m, g, t, each optionally followed
// by "b" or "ib", or spelled out as "mebibytes" and so on; case-insensitive;
// optional space between number and unit). Units are powers of 1024. A
// fraction ("1.5g") is allowed; a size that is not a whole number of bytes is
// rounded down. FormatMemory's output parses back to the same value.
func ParseMemory(s string) (int64, error) {
	num, unit := splitNumber(s)
	mult, ok := memoryUnits[strings.ToLower(unit)]
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid memory size %q: want %s", s, memoryForms)
	}
	v, err := scaleDecimal(num, mult)
	if err != nil {
		return 0, fmt.Errorf("invalid memory size %q: %v; want %s", s, err, memoryForms)
	}
	return v, nil
}

// splitNumber splits s (trimmed) into its leading unsigned decimal number
// ("12", "1.5", ".5") and the rest (trimmed): the unit.
func splitNumber(s string) (num, unit string) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseDecimal parses an unsigned decimal number ("12", "1.5", ".5")
// exactly.
func parseDecimal(num string) (*big.Rat, error) {
	if num == "" || strings.Count(num, ".") > 1 || num == "." || strings.HasSuffix(num, ".") {
		return nil, fmt.Errorf("%q is not a number", num)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, fmt.Errorf("%q is not a number", num)
	}
	return r, nil
}

// scaleDecimal returns floor(num * mult) for an unsigned decimal num, or an
// error if num is malformed or the result does not fit in an int64.
func scaleDecimal(num string, mult int64) (int64, error) {
	r, err := parseDecimal(num)
	if err != nil {
		return 0, err
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	q := new(big.Int).Quo(r.Num(), r.Denom()) // floor for non-negative values
	if !q.IsInt64() {
		return 0, fmt.Errorf("it is larger than %d bytes", int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

// FormatMemory formats a byte count for people in the largest binary unit
// that shows it exactly with at most three decimals: "2 GiB", "1.5 GiB",
// "512 MiB", "1000 B". The output parses back with ParseMemory.
func FormatMemory(n int64) string {
	if n < 0 {
		if n == math.MinInt64 {
			return strconv.FormatInt(n, 10) + " B"
		}
		return "-" + FormatMemory(-n)
	}
	units := []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n < u.size {
			continue
		}
		whole, rem := n/u.size, n%u.size
		if rem == 0 {
			return strconv.FormatInt(whole, 10) + " " + u.name
		}
		// rem*1000 cannot overflow: rem < 2^40.
		if milli := rem * 1000; milli%u.size == 0 {
			frac := strings.TrimRight(fmt.Sprintf("%03d", milli/u.size), "0")
			return strconv.FormatInt(whole, 10) + "." + frac + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " B"
}

// ParseCPU parses a CPU amount into millicores: a number of cores ("2",
// "0.5") or a number of millicores with the suffix "m" ("500m"), as
// Kubernetes writes them. The amount must be positive and a whole number of
// millicores.
func ParseCPU(s string) (int64, error) {
	const forms = `want a positive number of cores ("2", "0.5") or of millicores ("500m")`
	num, unit := splitNumber(s)
	var mult int64
	switch unit {
	case "":
		mult = 1000
	case "m":
		mult = 1
	default:
		return 0, fmt.Errorf("invalid CPU amount %q: %s", s, forms)
	}
	if num == "" {
		return 0, fmt.Errorf("invalid CPU amount %q: %s", s, forms)
	}
	r, err := parseDecimal(num)
	if err != nil {
		return 0, fmt.Errorf("invalid CPU amount %q: %v; %s", s, err, forms)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	switch {
	case r.Sign() <= 0:
		return 0, fmt.Errorf("invalid CPU amount %q: must be more than zero; %s", s, forms)
	case !r.IsInt():
		return 0, fmt.Errorf("invalid CPU amount %q: finer than one millicore; round it to at most three decimals of a core", s)
	case !r.Num().IsInt64():
		return 0, fmt.Errorf("invalid CPU amount %q: more than %d millicores", s, int64(math.MaxInt64))
	}
	return r.Num().Int64(), nil
}

// FormatCPU formats millicores as cores, without trailing zeros: 2000 ->
// "2", 500 -> "0.5", 1 -> "0.001". The output parses back with ParseCPU.
func FormatCPU(milli int64) string {
	sign := ""
	u := uint64(milli)
	if milli < 0 {
		sign, u = "-", uint64(-milli) // MinInt64 wraps to itself, which is right for uint64
	}
	whole, frac := u/1000, u%1000
	if frac == 0 {
		return sign + strconv.FormatUint(whole, 10)
	}
	return sign + strconv.FormatUint(whole, 10) + "." + strings.TrimRight(fmt.Sprintf("%03d", frac), "0")
}
