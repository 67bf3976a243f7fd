package resource

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1073741824", gib},
		{"0", 0},
		{"2g", 2 * gib},
		{"2gb", 2 * gib},
		{"2G", 2 * gib},
		{"2GB", 2 * gib},
		{"2gib", 2 * gib},
		{"2 GiB", 2 * gib},
		{"512m", 512 * mib},
		{"512mb", 512 * mib},
		{"512MiB", 512 * mib},
		{"1024k", 1024 * kib},
		{"1024kb", 1024 * kib},
		{"1t", tib},
		{"1tb", tib},
		{"1.5g", gib + gib/2},
		{".5g", gib / 2},
		{"100b", 100},
		{"100 bytes", 100},
		{"3 mebibytes", 3 * mib},
		{"  64m  ", 64 * mib},
		{"1.3k", 1331}, // 1331.2 rounded down
		{"8388607t", 8388607 * tib},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err != nil {
			t.Errorf("ParseMemory(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseMemoryErrors(t *testing.T) {
	for _, in := range []string{"", "g", "abc", "12x", "-1g", "1..5g", "1.g", "1.5.2m", "2 g b", "1e9", "8388608t", "99999999999999999999"} {
		_, err := ParseMemory(in)
		if err == nil {
			t.Errorf("ParseMemory(%q) succeeded, want error", in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `"`+in+`"`) || !strings.Contains(msg, "512m") {
			t.Errorf("ParseMemory(%q) error %q should name the value and the accepted forms", in, msg)
		}
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1000, "1000 B"},
		{kib, "1 KiB"},
		{512 * mib, "512 MiB"},
		{2 * gib, "2 GiB"},
		{gib + gib/2, "1.5 GiB"},
		{gib + gib/4, "1.25 GiB"},
		{gib + 1, "1073741825 B"},
		{3 * tib, "3 TiB"},
		{1536 * kib, "1.5 MiB"},
		{-2 * gib, "-2 GiB"},
	}
	for _, tt := range tests {
		if got := FormatMemory(tt.in); got != tt.want {
			t.Errorf("FormatMemory(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatMemoryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		var n int64
		switch r.IntN(3) {
		case 0:
			n = r.Int64N(1 << 50)
		case 1:
			n = r.Int64N(1<<20) << r.IntN(30) // multiples of powers of two
		default:
			n = r.Int64()
		}
		s := FormatMemory(n)
		got, err := ParseMemory(s)
		if err != nil || got != n {
			t.Fatalf("ParseMemory(FormatMemory(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"2", 2000},
		{"0.5", 500},
		{".25", 250},
		{"500m", 500},
		{"1m", 1},
		{"0.001", 1},
		{" 4 ", 4000},
		{"1.5", 1500},
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "0", "0m", "0.0", "-1", "abc", "2x", "1.5m", "0.0005", "m", "2 cores", "99999999999999999999"} {
		if got, err := ParseCPU(in); err == nil {
			t.Errorf("ParseCPU(%q) = %d, want error", in, got)
		} else if !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseCPU(%q) error %q should name the value", in, err)
		}
	}
}

func TestFormatCPURoundTrip(t *testing.T) {
	for _, n := range []int64{1, 10, 100, 500, 999, 1000, 1001, 2500, 123456789} {
		s := FormatCPU(n)
		got, err := ParseCPU(s)
		if err != nil || got != n {
			t.Errorf("ParseCPU(FormatCPU(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
	if got := FormatCPU(-1500); got != "-1.5" {
		t.Errorf("FormatCPU(-1500) = %q", got)
	}
	_ = FormatCPU(math.MinInt64) // must not panic
}

func TestProfileArithmetic(t *testing.T) {
	a := Profile{CPU: 2000, TaskMemory: 2 * gib, ManagedMemory: gib, NetworkMemory: 128 * mib, Extended: map[string]int64{"gpu": 2}}
	b := Profile{CPU: 500, TaskMemory: gib, Extended: map[string]int64{"gpu": 2, "fpga": 1}}

	sum := a.Add(b)
	want := Profile{CPU: 2500, TaskMemory: 3 * gib, ManagedMemory: gib, NetworkMemory: 128 * mib, Extended: map[string]int64{"gpu": 4, "fpga": 1}}
	if !sum.Equal(want) {
		t.Errorf("Add = %v, want %v", sum, want)
	}
	diff := a.Sub(b)
	want = Profile{CPU: 1500, TaskMemory: gib, ManagedMemory: gib, NetworkMemory: 128 * mib, Extended: map[string]int64{"fpga": -1}}
	if !diff.Equal(want) {
		t.Errorf("Sub = %v, want %v", diff, want)
	}
	if _, ok := diff.Extended["gpu"]; ok {
		t.Errorf("Sub kept a zero extended resource: %v", diff.Extended)
	}
	if !diff.IsNegative() {
		t.Errorf("%v should be negative", diff)
	}
	if !sum.Sub(b).Equal(a) {
		t.Errorf("(a+b)-b = %v, want %v", sum.Sub(b), a)
	}
	// Neither operand was changed.
	if a.Extended["gpu"] != 2 || len(a.Extended) != 1 || b.Extended["gpu"] != 2 || len(b.Extended) != 2 {
		t.Errorf("operands changed: a=%v b=%v", a.Extended, b.Extended)
	}
	sum.Extended["gpu"] = 99
	if a.Extended["gpu"] != 2 || b.Extended["gpu"] != 2 {
		t.Error("result shares its Extended map with an operand")
	}
}

func TestFits(t *testing.T) {
	slot := Profile{CPU: 1000, TaskMemory: gib, ManagedMemory: gib, NetworkMemory: 64 * mib, Extended: map[string]int64{"gpu": 1}}
	tests := []struct {
		name string
		p    Profile
		want bool
	}{
		{"zero fits anywhere", Profile{}, true},
		{"equal", slot, true},
		{"less", Profile{CPU: 500, TaskMemory: mib}, true},
		{"cpu too big", Profile{CPU: 1001}, false},
		{"task memory too big", Profile{TaskMemory: gib + 1}, false},
		{"managed too big", Profile{ManagedMemory: 2 * gib}, false},
		{"network too big", Profile{NetworkMemory: 65 * mib}, false},
		{"gpu ok", Profile{Extended: map[string]int64{"gpu": 1}}, true},
		{"gpu too many", Profile{Extended: map[string]int64{"gpu": 2}}, false},
		{"resource the slot lacks", Profile{Extended: map[string]int64{"fpga": 1}}, false},
		{"zero of a resource the slot lacks", Profile{Extended: map[string]int64{"fpga": 0}}, true},
	}
	for _, tt := range tests {
		if got := tt.p.Fits(slot); got != tt.want {
			t.Errorf("%s: %v.Fits(%v) = %v, want %v", tt.name, tt.p, slot, got, tt.want)
		}
	}
	if slot.Fits(Profile{}) {
		t.Error("a non-zero profile must not fit in the zero profile")
	}
}

func TestIsZero(t *testing.T) {
	if !(Profile{}).IsZero() || !(Profile{Extended: map[string]int64{"gpu": 0}}).IsZero() {
		t.Error("zero profiles not reported zero")
	}
	for _, p := range []Profile{{CPU: 1}, {TaskMemory: 1}, {ManagedMemory: 1}, {NetworkMemory: 1}, {Extended: map[string]int64{"gpu": 1}}, {CPU: -1}} {
		if p.IsZero() {
			t.Errorf("%v reported zero", p)
		}
	}
}

func TestDivide(t *testing.T) {
	total := Profile{CPU: 4000, TaskMemory: 4*gib + 3, ManagedMemory: 2 * gib, NetworkMemory: 256 * mib, Extended: map[string]int64{"gpu": 3, "fpga": 1}}
	got := total.Divide(4)
	want := Profile{CPU: 1000, TaskMemory: gib, ManagedMemory: gib / 2, NetworkMemory: 64 * mib, Extended: map[string]int64{"gpu": 0}}
	if !got.Equal(want) {
		t.Errorf("Divide(4) = %v, want %v", got, want)
	}
	if _, ok := got.Extended["fpga"]; ok {
		t.Errorf("Divide kept a zero extended resource: %v", got.Extended)
	}
	if !total.Divide(1).Equal(total) {
		t.Errorf("Divide(1) = %v", total.Divide(1))
	}
	if !total.Divide(0).IsZero() || !total.Divide(-3).IsZero() {
		t.Error("Divide(n<=0) should be zero")
	}
	// n slots always fit inside the total.
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		p := Profile{CPU: r.Int64N(100000), TaskMemory: r.Int64N(1 << 40), Extended: map[string]int64{"gpu": r.Int64N(9)}}
		n := 1 + r.IntN(16)
		sum := Profile{}
		for range n {
			sum = sum.Add(p.Divide(n))
		}
		if !sum.Fits(p) {
			t.Fatalf("%d slots of %v (%v) exceed %v", n, p.Divide(n), sum, p)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		p    Profile
		want string
	}{
		{Profile{}, "empty"},
		{Profile{CPU: 2000, TaskMemory: 2 * gib}, "cpu=2, task=2 GiB"},
		{Profile{CPU: 500, TaskMemory: gib, ManagedMemory: 512 * mib, NetworkMemory: 64 * mib,
			Extended: map[string]int64{"gpu": 1, "fpga": 2, "zero": 0}},
			"cpu=0.5, task=1 GiB, managed=512 MiB, network=64 MiB, fpga=2, gpu=1"},
	}
	for _, tt := range tests {
		for range 5 { // map order must not leak into the output
			if got := tt.p.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		}
	}
}
