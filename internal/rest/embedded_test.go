package rest

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/config"
)

func restConfig(t *testing.T, kv ...string) *config.Config {
	t.Helper()
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	c, err := config.FromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// busyPort holds a loopback port for the test.
func busyPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestEmbeddedServesAndAnnounces(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	e, err := StartEmbedded(restConfig(t, "rest.port", "0"), jobA, "datagen", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL, "http://127.0.0.1:") || len(e.Busy) != 0 || e.Describe() != "REST API at "+e.URL {
		t.Errorf("URL %s, busy %v, %q", e.URL, e.Busy, e.Describe())
	}
	// The job master does not know the name: the API fills it in.
	f := newFake(jobA, "", "RUNNING")
	e.Register(f)

	c, err := NewClient(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].ID != jobA || jobs[0].Name != "datagen" {
		t.Fatalf("jobs %+v, %v", jobs, err)
	}

	ann := Announced()
	if len(ann) != 1 || ann[0].Address != e.URL || ann[0].JobID != jobA || ann[0].PID != os.Getpid() || ann[0].Name != "datagen" {
		t.Errorf("announcements %+v", ann)
	}
	file := filepath.Join(DiscoveryDir(), jobA+".json")
	if st, err := os.Stat(filepath.Dir(file)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("discovery directory: %v, %v; want mode 0700", st, err)
	}

	e.Close()
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the announcement outlived the API: %v", err)
	}
	if _, err := c.Jobs(context.Background()); !isUnreachable(err) {
		t.Errorf("after Close: %v, want unreachable", err)
	}
	var nilAPI *Embedded
	nilAPI.Register(f)
	nilAPI.Close()
}

func isUnreachable(err error) bool {
	_, ok := err.(*UnreachableError)
	return ok
}

func TestEmbeddedFallsBackToAFreePort(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	p := busyPort(t)
	e, err := StartEmbedded(restConfig(t, "rest.port", strconv.Itoa(p)), jobA, "datagen", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(e.Busy) != 1 || e.Busy[0] != p || strings.HasSuffix(e.URL, ":"+strconv.Itoa(p)) ||
		!strings.Contains(e.Describe(), "port "+strconv.Itoa(p)+" is in use") {
		t.Errorf("with port %d taken: URL %s, busy %v, %q", p, e.URL, e.Busy, e.Describe())
	}

	// rest.bind-port tries a list in order.
	q := busyPort(t)
	e2, err := StartEmbedded(restConfig(t, "rest.bind-port", strconv.Itoa(p)+","+strconv.Itoa(q)), jobB, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if len(e2.Busy) != 2 || !strings.Contains(e2.Describe(), "are in use") {
		t.Errorf("with ports %d,%d taken: %v, %q", p, q, e2.Busy, e2.Describe())
	}
}

func TestEmbeddedBadAddress(t *testing.T) {
	_, err := StartEmbedded(restConfig(t, "rest.address", "256.1.1.1", "rest.port", "0"), jobA, "x", "")
	if err == nil || !strings.Contains(err.Error(), "rest.address") {
		t.Errorf("bad address: %v, want an error naming rest.address", err)
	}
}

func TestAnnouncedForgetsDeadProcesses(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	// No process has a pid above Linux's pid_max (2^22).
	dead := Announcement{Address: "http://127.0.0.1:1", PID: 1 << 30, JobID: jobB}
	if _, err := announce(dead); err != nil {
		t.Fatal(err)
	}
	live := Announcement{Address: "http://127.0.0.1:2", PID: os.Getpid(), JobID: jobA}
	if _, err := announce(live); err != nil {
		t.Fatal(err)
	}
	// Garbage in the directory is skipped.
	os.WriteFile(filepath.Join(DiscoveryDir(), "junk.json"), []byte("{"), 0o600)
	got := Announced()
	if len(got) != 1 || got[0] != live {
		t.Errorf("Announced() = %+v, want only %+v", got, live)
	}
	if _, err := os.Stat(filepath.Join(DiscoveryDir(), jobB+".json")); !os.IsNotExist(err) {
		t.Errorf("a dead process's announcement is still there: %v", err)
	}
	b, _ := json.Marshal(live)
	if !strings.Contains(string(b), `"address"`) {
		t.Errorf("announcement JSON %s", b)
	}
}
