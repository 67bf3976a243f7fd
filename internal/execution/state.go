// Package execution owns the execution and job state machines, modelled on
// Flink's ExecutionState and JobStatus, and Graph, which tracks the state of
// every execution (subtask attempt) of a job's current attempt.
//
// Each machine has exactly one transition function — Transition for
// executions, JobTransition for jobs — and an illegal transition is refused
// with an error rather than applied. Execution states move like this:
//
//	CREATED ─► SCHEDULED ─► DEPLOYING ─► INITIALIZING ─► RUNNING ─► FINISHED
//	   │           │            │             │             │
//	   │           │            └─────────────┴──────┬──────┘
//	   │           │                                 ▼
//	   │           │            (any non-terminal) CANCELING ─► CANCELED
//	   └───────────┴──────────────────────────────────────────► CANCELED
//	(any non-terminal, CANCELING included) ─────────────────────► FAILED
//
// Everything here is pure: no goroutines, no locks, no clock. The JobMaster's
// scheduler owns a Graph on its main goroutine and passes in `now`.
package execution

import "fmt"

// State is the state of one execution: one attempt of one subtask.
type State int

// Execution states, in Flink's order.
const (
	Created State = iota
	Scheduled
	Deploying
	Initializing
	Running
	Finished
	Canceling
	Canceled
	Failed
	numStates = iota
)

var stateNames = [numStates]string{
	Created:      "CREATED",
	Scheduled:    "SCHEDULED",
	Deploying:    "DEPLOYING",
	Initializing: "INITIALIZING",
	Running:      "RUNNING",
	Finished:     "FINISHED",
	Canceling:    "CANCELING",
	Canceled:     "CANCELED",
	Failed:       "FAILED",
}

// States returns every execution state in order, for callers that iterate
// over them (tables, REST counts).
func States() []State {
	s := make([]State, numStates)
	for i := range s {
		s[i] = State(i)
	}
	return s
}

// String returns Flink's spelling of s, e.g. "RUNNING".
func (s State) String() string {
	if s < 0 || s >= numStates {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// Terminal reports whether s is final: FINISHED, CANCELED or FAILED. A
// terminal execution never changes state again; a new attempt is a new
// execution.
func (s State) Terminal() bool {
	return s == Finished || s == Canceled || s == Failed
}

// legalEdges lists, for every execution state, the states it may move to.
var legalEdges = [numStates][]State{
	Created:      {Scheduled, Canceling, Canceled, Failed},
	Scheduled:    {Deploying, Canceling, Canceled, Failed},
	Deploying:    {Initializing, Canceling, Failed},
	Initializing: {Running, Canceling, Failed},
	Running:      {Finished, Canceling, Failed},
	Canceling:    {Canceled, Failed},
}

// TransitionError is the error for an illegal execution state transition.
type TransitionError struct {
	From, To State
}

// Error returns e.g. "illegal execution state transition RUNNING -> SCHEDULED".
func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal execution state transition %v -> %v", e.From, e.To)
}

// JobTransitionError is the error for an illegal job status transition.
type JobTransitionError struct {
	From, To JobStatus
}

// Error returns e.g. "illegal job status transition RUNNING -> CREATED".
func (e *JobTransitionError) Error() string {
	return fmt.Sprintf("illegal job status transition %v -> %v", e.From, e.To)
}

// Transition returns nil if an execution may move from `from` to `to`, and a
// *TransitionError otherwise. It is the one place the legal edges are
// decided; they are Flink's ExecutionState edges: the happy path CREATED ->
// SCHEDULED -> DEPLOYING -> INITIALIZING -> RUNNING -> FINISHED (no step may
// be skipped), any non-terminal state -> CANCELING or FAILED, CANCELING ->
// CANCELED, and CREATED or SCHEDULED -> CANCELED directly since nothing was
// deployed. A state never transitions to itself, and terminal states never
// move.
func Transition(from, to State) error {
	if from >= 0 && from < numStates {
		for _, s := range legalEdges[from] {
			if s == to {
				return nil
			}
		}
	}
	return &TransitionError{From: from, To: to}
}

// JobStatus is the status of a whole job, as Flink's JobStatus.
type JobStatus int

// Job statuses, in Flink's order.
const (
	JobInitializing JobStatus = iota
	JobCreated
	JobRunning
	JobFailing
	JobFailed
	JobCancelling
	JobCanceled
	JobFinished
	JobRestarting
	JobSuspended
	numJobStatuses = iota
)

var jobStatusNames = [numJobStatuses]string{
	JobInitializing: "INITIALIZING",
	JobCreated:      "CREATED",
	JobRunning:      "RUNNING",
	JobFailing:      "FAILING",
	JobFailed:       "FAILED",
	JobCancelling:   "CANCELLING",
	JobCanceled:     "CANCELED",
	JobFinished:     "FINISHED",
	JobRestarting:   "RESTARTING",
	JobSuspended:    "SUSPENDED",
}

// JobStatuses returns every job status in order.
func JobStatuses() []JobStatus {
	s := make([]JobStatus, numJobStatuses)
	for i := range s {
		s[i] = JobStatus(i)
	}
	return s
}

// String returns Flink's spelling of s, e.g. "CANCELLING".
func (s JobStatus) String() string {
	if s < 0 || s >= numJobStatuses {
		return fmt.Sprintf("JobStatus(%d)", int(s))
	}
	return jobStatusNames[s]
}

// Terminal reports whether s is globally terminal: FINISHED, FAILED or
// CANCELED. The job is over for the whole cluster and will not be recovered.
// SUSPENDED is only locally terminal; see LocallyTerminal.
func (s JobStatus) Terminal() bool {
	return s == JobFinished || s == JobFailed || s == JobCanceled
}

// LocallyTerminal reports whether this JobMaster is done with the job:
// globally terminal, or SUSPENDED (leadership lost or cluster shut down; a
// new leader recovers the job with a fresh state machine at INITIALIZING).
func (s JobStatus) LocallyTerminal() bool {
	return s.Terminal() || s == JobSuspended
}

// legalJobEdges lists, for every job status, the statuses it may move to.
// Every non-terminal status may move to SUSPENDED.
var legalJobEdges = [numJobStatuses][]JobStatus{
	// The Dispatcher holds a job at INITIALIZING until its JobMaster has
	// built the execution graph; creation may fail, or the user may cancel
	// first (nothing is deployed, so it ends CANCELED at once).
	JobInitializing: {JobCreated, JobFailed, JobCanceled, JobSuspended},
	JobCreated:      {JobRunning, JobFailing, JobCancelling, JobSuspended},
	JobRunning:      {JobFinished, JobFailing, JobCancelling, JobRestarting, JobSuspended},
	// A restart goes back to RUNNING; cancelling or a failure that may not
	// be restarted interrupts it.
	JobRestarting: {JobRunning, JobFailing, JobCancelling, JobSuspended},
	JobFailing:    {JobFailed, JobSuspended},
	// Cancelling wins over failures that happen while tasks are cancelled.
	JobCancelling: {JobCanceled, JobSuspended},
}

// JobTransition returns nil if a job may move from `from` to `to`, and a
// *TransitionError otherwise. The edges are those Flink's schedulers take:
//
//	INITIALIZING -> CREATED | FAILED | CANCELED
//	CREATED      -> RUNNING | FAILING | CANCELLING
//	RUNNING      -> FINISHED | FAILING | CANCELLING | RESTARTING
//	RESTARTING   -> RUNNING | FAILING | CANCELLING
//	FAILING      -> FAILED
//	CANCELLING   -> CANCELED
//	any non-terminal (not SUSPENDED) -> SUSPENDED
//
// FINISHED, FAILED, CANCELED and SUSPENDED have no way out, and no status
// transitions to itself.
func JobTransition(from, to JobStatus) error {
	if from >= 0 && from < numJobStatuses {
		for _, s := range legalJobEdges[from] {
			if s == to {
				return nil
			}
		}
	}
	return &JobTransitionError{From: from, To: to}
}
