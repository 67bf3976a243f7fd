package taskmanager

import (
	"os"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/resource"
)

func TestSlotTableTransitions(t *testing.T) {
	tab := newSlotTable(slotProfiles(resource.Profile{CPU: 3000}, 3))
	if tab.profiles[2].CPU != 1000 {
		t.Fatalf("slot profile %v", tab.profiles[2])
	}
	steps := []struct {
		op           string // reserve or free
		index        int
		alloc, job   string
		wantErr      string // reserve: substring of the error, "" for success
		wantFreed    bool   // free
		wantJobSlots int    // slots of job afterwards
		wantUsed     int
	}{
		{"reserve", 0, "a1", "j1", "", false, 1, 1},
		{"reserve", 0, "a1", "j1", "", false, 1, 1}, // repeated: idempotent
		{"reserve", 0, "a2", "j2", "slot 0 is taken by allocation a1 of job j1", false, 0, 1},
		{"reserve", 0, "a1", "j2", "allocation a1 holds slot 0 for job j1, not job j2", false, 0, 1},
		{"reserve", 1, "a1", "j1", "allocation a1 already holds slot 0", false, 1, 1},
		{"reserve", 3, "a3", "j1", "slot 3 does not exist: this TaskManager has 3 slots (0 to 2)", false, 1, 1},
		{"reserve", -1, "a3", "j1", "slot -1 does not exist", false, 1, 1},
		{"reserve", 1, "", "j1", "without an allocation id", false, 1, 1},
		{"reserve", 2, "a3", "j1", "", false, 2, 2},
		{"free", 0, "a3", "j2", "", false, 0, 2}, // wrong job: not freed
		{"free", 0, "a9", "j1", "", false, 2, 2}, // unknown allocation
		{"free", 0, "a1", "j1", "", true, 1, 1},
		{"free", 0, "a1", "j1", "", false, 1, 1}, // twice
		{"reserve", 0, "a2", "j2", "", false, 1, 2},
	}
	for i, s := range steps {
		switch s.op {
		case "reserve":
			err := tab.reserve(s.index, s.alloc, s.job, "jm")
			if (err == nil) != (s.wantErr == "") || (err != nil && !strings.Contains(err.Error(), s.wantErr)) {
				t.Errorf("step %d: reserve(%d, %s, %s) = %v, want error %q", i, s.index, s.alloc, s.job, err, s.wantErr)
			}
		case "free":
			if _, ok := tab.free(s.alloc, s.job); ok != s.wantFreed {
				t.Errorf("step %d: free(%s, %s) = %v, want %v", i, s.alloc, s.job, ok, s.wantFreed)
			}
		}
		if n := tab.jobSlots(s.job); n != s.wantJobSlots {
			t.Errorf("step %d: job %s holds %d slots, want %d", i, s.job, n, s.wantJobSlots)
		}
		if n := tab.used(); n != s.wantUsed {
			t.Errorf("step %d: %d slots used, want %d", i, n, s.wantUsed)
		}
	}
	if p := tab.jobProfile("j1"); p.CPU != 1000 {
		t.Errorf("j1's slots sum to %v, want cpu=1", p)
	}
	tab.clear()
	if tab.used() != 0 {
		t.Error("clear left slots held")
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 5000 {
		b.WriteString(strings.Repeat("x", i%7) + "line\n")
	}
	path := dir + "/log"
	writeFile(t, path, b.String())
	got := strings.Split(logTail(path, 20), "\n")
	if len(got) != 20 || got[19] != strings.Repeat("x", 4999%7)+"line" {
		t.Errorf("tail %q", got)
	}
	writeFile(t, path, "one\ntwo")
	if got := logTail(path, 20); got != "one\ntwo" {
		t.Errorf("short tail %q", got)
	}
	if got := logTail(dir+"/missing", 20); got != "" {
		t.Errorf("missing file tail %q", got)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
