// Package builtin is the registry of jobs compiled into the weir binary, run
// as `weir run builtin:NAME [job flags]` with no Go toolchain needed.
package builtin

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Job is a built-in job: its main(), taking the arguments after the job name.
type Job struct {
	Name    string
	Summary string
	Main    func(args []string) error
}

var jobs = map[string]Job{}

// Register adds a built-in job; called from init.
func Register(j Job) {
	if _, dup := jobs[j.Name]; dup {
		panic("builtin: job registered twice: " + j.Name)
	}
	jobs[j.Name] = j
}

// Lookup returns the built-in job of that name, or an error listing the
// available ones.
func Lookup(name string) (Job, error) {
	if j, ok := jobs[name]; ok {
		return j, nil
	}
	return Job{}, fmt.Errorf("unknown built-in job %q; available: %s", name, strings.Join(Names(), ", "))
}

// Names lists the built-in jobs, sorted.
func Names() []string {
	var out []string
	for n := range jobs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// All returns every built-in job, sorted by name.
func All() []Job {
	var out []Job
	for _, n := range Names() {
		out = append(out, jobs[n])
	}
	return out
}

// ErrHelp is returned by a job that printed its usage for --help.
var ErrHelp = errors.New("help requested")
