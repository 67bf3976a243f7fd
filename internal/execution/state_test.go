package execution

import (
	"errors"
	"testing"
)

// legal is the explicit table of Flink's ExecutionState edges that
// Transition must accept; every other pair must be refused.
var legal = map[[2]State]bool{
	{Created, Scheduled}: true, {Created, Canceling}: true, {Created, Canceled}: true, {Created, Failed}: true,
	{Scheduled, Deploying}: true, {Scheduled, Canceling}: true, {Scheduled, Canceled}: true, {Scheduled, Failed}: true,
	{Deploying, Initializing}: true, {Deploying, Canceling}: true, {Deploying, Failed}: true,
	{Initializing, Running}: true, {Initializing, Canceling}: true, {Initializing, Failed}: true,
	{Running, Finished}: true, {Running, Canceling}: true, {Running, Failed}: true,
	{Canceling, Canceled}: true, {Canceling, Failed}: true,
}

func TestTransitionEveryPair(t *testing.T) {
	all := append(States(), State(-1), State(numStates))
	n := 0
	for _, from := range all {
		for _, to := range all {
			err := Transition(from, to)
			if legal[[2]State{from, to}] {
				n++
				if err != nil {
					t.Errorf("Transition(%v, %v) = %v, want legal", from, to, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("Transition(%v, %v) accepted, want refused", from, to)
				continue
			}
			var te *TransitionError
			if !errors.As(err, &te) || te.From != from || te.To != to {
				t.Errorf("Transition(%v, %v) error %#v is not a *TransitionError naming both states", from, to, err)
			}
		}
	}
	if n != len(legal) {
		t.Fatalf("checked %d legal edges, table has %d", n, len(legal))
	}
	if got, want := Transition(Running, Scheduled).Error(), "illegal execution state transition RUNNING -> SCHEDULED"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestStateStrings(t *testing.T) {
	want := []string{"CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING", "RUNNING", "FINISHED", "CANCELING", "CANCELED", "FAILED"}
	for i, s := range States() {
		if s.String() != want[i] {
			t.Errorf("State(%d).String() = %q, want %q", i, s, want[i])
		}
		terminal := s == Finished || s == Canceled || s == Failed
		if s.Terminal() != terminal {
			t.Errorf("%v.Terminal() = %v", s, s.Terminal())
		}
		// Terminal states have no way out; non-terminal ones can always fail.
		for _, to := range States() {
			if terminal && Transition(s, to) == nil {
				t.Errorf("terminal %v may move to %v", s, to)
			}
		}
		if !terminal && Transition(s, Failed) != nil {
			t.Errorf("non-terminal %v may not fail", s)
		}
	}
	if got := State(42).String(); got != "State(42)" {
		t.Errorf("State(42).String() = %q", got)
	}
}

var legalJob = map[[2]JobStatus]bool{
	{JobInitializing, JobCreated}: true, {JobInitializing, JobFailed}: true, {JobInitializing, JobCanceled}: true, {JobInitializing, JobSuspended}: true,
	{JobCreated, JobRunning}: true, {JobCreated, JobFailing}: true, {JobCreated, JobCancelling}: true, {JobCreated, JobSuspended}: true,
	{JobRunning, JobFinished}: true, {JobRunning, JobFailing}: true, {JobRunning, JobCancelling}: true, {JobRunning, JobRestarting}: true, {JobRunning, JobSuspended}: true,
	{JobRestarting, JobRunning}: true, {JobRestarting, JobFailing}: true, {JobRestarting, JobCancelling}: true, {JobRestarting, JobSuspended}: true,
	{JobFailing, JobFailed}: true, {JobFailing, JobSuspended}: true,
	{JobCancelling, JobCanceled}: true, {JobCancelling, JobSuspended}: true,
}

func TestJobTransitionEveryPair(t *testing.T) {
	all := append(JobStatuses(), JobStatus(-1), JobStatus(numJobStatuses))
	n := 0
	for _, from := range all {
		for _, to := range all {
			err := JobTransition(from, to)
			if legalJob[[2]JobStatus{from, to}] {
				n++
				if err != nil {
					t.Errorf("JobTransition(%v, %v) = %v, want legal", from, to, err)
				}
				continue
			}
			var je *JobTransitionError
			if err == nil {
				t.Errorf("JobTransition(%v, %v) accepted, want refused", from, to)
			} else if !errors.As(err, &je) || je.From != from || je.To != to {
				t.Errorf("JobTransition(%v, %v) error %#v is not a *JobTransitionError naming both", from, to, err)
			}
		}
	}
	if n != len(legalJob) {
		t.Fatalf("checked %d legal edges, table has %d", n, len(legalJob))
	}
	if got, want := JobTransition(JobRunning, JobCreated).Error(), "illegal job status transition RUNNING -> CREATED"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestJobStatusStrings(t *testing.T) {
	want := []string{"INITIALIZING", "CREATED", "RUNNING", "FAILING", "FAILED", "CANCELLING", "CANCELED", "FINISHED", "RESTARTING", "SUSPENDED"}
	for i, s := range JobStatuses() {
		if s.String() != want[i] {
			t.Errorf("JobStatus(%d).String() = %q, want %q", i, s, want[i])
		}
		global := s == JobFinished || s == JobFailed || s == JobCanceled
		if s.Terminal() != global {
			t.Errorf("%v.Terminal() = %v, want %v", s, s.Terminal(), global)
		}
		if s.LocallyTerminal() != (global || s == JobSuspended) {
			t.Errorf("%v.LocallyTerminal() = %v", s, s.LocallyTerminal())
		}
		// Every status that is not locally terminal can be suspended; none
		// that is can move at all.
		for _, to := range JobStatuses() {
			if s.LocallyTerminal() && JobTransition(s, to) == nil {
				t.Errorf("locally terminal %v may move to %v", s, to)
			}
		}
		if !s.LocallyTerminal() && JobTransition(s, JobSuspended) != nil {
			t.Errorf("%v cannot be suspended", s)
		}
	}
}
