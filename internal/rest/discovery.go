package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Announcement tells clients on this host where a job's embedded cluster
// serves its REST API. Every job process that serves one writes a file
// DiscoveryDir()/<job-id>.json while it runs, so that `weir list` and
// friends find jobs whose API could not get port 8081.
type Announcement struct {
	Address string `json:"address"` // http://host:port
	PID     int    `json:"pid"`
	JobID   string `json:"job"`
	Name    string `json:"name,omitempty"`
	Started int64  `json:"started"` // Unix milliseconds
}

// DiscoveryDir is the directory of the announcements: per user, under
// $TMPDIR, so that another user cannot plant addresses.
func DiscoveryDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("weir-rest-%d", os.Getuid()))
}

// announce writes a's file and returns its path.
func announce(a Announcement) (string, error) {
	dir := DiscoveryDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, a.JobID+".json")
	if err == nil {
		// Readers never see a half-written file.
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return path, nil
}

// Announced returns the announcements of the job processes still alive,
// newest first. It removes the files of processes that have exited
// without removing their own (SIGKILL).
func Announced() []Announcement {
	dir := DiscoveryDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Announcement
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var a Announcement
		if json.Unmarshal(b, &a) != nil || a.Address == "" || a.PID <= 0 {
			continue
		}
		if !alive(a.PID) {
			os.Remove(path)
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started > out[j].Started })
	return out
}

// alive reports whether process pid exists. Errors other than "no such
// process" (e.g. EPERM) count as alive: a wrong guess costs one refused
// connection, while removing a live job's announcement would hide it.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}
