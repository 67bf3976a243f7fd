package rest

// The JSON bodies of the API, in Flink's shapes (flink-runtime's
// rest.messages, as served by Flink 1.15 to 1.20), cut down to what Weir
// knows. Times are milliseconds since the Unix epoch; -1 means "not yet".

// ErrorResponse is the body of every error answer, as in Flink.
type ErrorResponse struct {
	Errors []string `json:"errors"`
}

// ClusterOverview is the body of GET /overview.
type ClusterOverview struct {
	TaskManagers   int `json:"taskmanagers"`
	SlotsTotal     int `json:"slots-total"`
	SlotsAvailable int `json:"slots-available"`
	JobsRunning    int `json:"jobs-running"`
	JobsFinished   int `json:"jobs-finished"`
	JobsCancelled  int `json:"jobs-cancelled"`
	JobsFailed     int `json:"jobs-failed"`
	// WeirVersion is Weir's own; Flink sends flink-version instead.
	WeirVersion string `json:"weir-version,omitempty"`
}

// JobIDWithStatus is one entry of GET /jobs.
type JobIDWithStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// JobIDsWithStatus is the body of GET /jobs.
type JobIDsWithStatus struct {
	Jobs []JobIDWithStatus `json:"jobs"`
}

// JobOverview is one entry of GET /jobs/overview (Flink's JobDetails).
type JobOverview struct {
	ID               string `json:"jid"`
	Name             string `json:"name"`
	State            string `json:"state"`
	StartTime        int64  `json:"start-time"`
	EndTime          int64  `json:"end-time"`
	Duration         int64  `json:"duration"`
	LastModification int64  `json:"last-modification"`
}

// MultipleJobsDetails is the body of GET /jobs/overview.
type MultipleJobsDetails struct {
	Jobs []JobOverview `json:"jobs"`
}

// JobDetails is the body of GET /jobs/:jobid (Flink's JobDetailsInfo).
type JobDetails struct {
	ID             string `json:"jid"`
	Name           string `json:"name"`
	IsStoppable    bool   `json:"isStoppable"`
	State          string `json:"state"`
	StartTime      int64  `json:"start-time"`
	EndTime        int64  `json:"end-time"`
	Duration       int64  `json:"duration"`
	MaxParallelism int64  `json:"maxParallelism"`
	Now            int64  `json:"now"`
	// Timestamps holds, for every job state, when the job entered it (0:
	// never), as Flink does.
	Timestamps   map[string]int64 `json:"timestamps"`
	Vertices     []JobVertex      `json:"vertices"`
	StatusCounts map[string]int   `json:"status-counts"`
}

// JobVertex is one vertex of JobDetails.
type JobVertex struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	Status      string `json:"status"`
}

// JobExceptions is the body of GET /jobs/:jobid/exceptions, with Flink's
// legacy fields only.
type JobExceptions struct {
	RootException string `json:"root-exception,omitempty"`
	Timestamp     int64  `json:"timestamp,omitempty"`
	AllExceptions []any  `json:"all-exceptions"`
	Truncated     bool   `json:"truncated"`
}

// CheckpointingStatistics is the body of GET /jobs/:jobid/checkpoints.
type CheckpointingStatistics struct {
	Counts  CheckpointCounts       `json:"counts"`
	Latest  LatestCheckpoints      `json:"latest"`
	History []CheckpointStatistics `json:"history"`
}

// CheckpointCounts counts a job's checkpoints and savepoints.
type CheckpointCounts struct {
	Restored   int64 `json:"restored"`
	Total      int64 `json:"total"`
	InProgress int64 `json:"in_progress"`
	Completed  int64 `json:"completed"`
	Failed     int64 `json:"failed"`
}

// LatestCheckpoints are the newest checkpoint and savepoint of each kind;
// nil when there is none (or Weir does not know it).
type LatestCheckpoints struct {
	Completed *CheckpointStatistics `json:"completed"`
	Savepoint *CheckpointStatistics `json:"savepoint"`
	Failed    *CheckpointStatistics `json:"failed"`
	Restored  *CheckpointStatistics `json:"restored"`
}

// CheckpointStatistics describes one checkpoint. ClassName is Flink's type
// tag: completed, failed or in_progress.
type CheckpointStatistics struct {
	ClassName          string `json:"className"`
	ID                 int64  `json:"id"`
	Status             string `json:"status"`
	IsSavepoint        bool   `json:"is_savepoint"`
	CheckpointType     string `json:"checkpoint_type"`
	TriggerTimestamp   int64  `json:"trigger_timestamp,omitempty"`
	LatestAckTimestamp int64  `json:"latest_ack_timestamp,omitempty"`
	ExternalPath       string `json:"external_path,omitempty"`
	FailureMessage     string `json:"failure_message,omitempty"`
}

// SavepointTriggerRequest is the body of POST /jobs/:jobid/savepoints.
type SavepointTriggerRequest struct {
	TargetDirectory string `json:"target-directory,omitempty"`
	CancelJob       bool   `json:"cancel-job"`
	// TriggerID, if given, makes the request idempotent: a retry with the
	// same id gets the same operation.
	TriggerID string `json:"triggerId,omitempty"`
	// FormatType is CANONICAL (the default) or NATIVE, which Weir refuses.
	FormatType string `json:"formatType,omitempty"`
}

// StopRequest is the body of POST /jobs/:jobid/stop. Note Flink's
// camelCase here, unlike the savepoint trigger's.
type StopRequest struct {
	TargetDirectory string `json:"targetDirectory,omitempty"`
	Drain           bool   `json:"drain"`
	TriggerID       string `json:"triggerId,omitempty"`
	FormatType      string `json:"formatType,omitempty"`
}

// TriggerResponse answers a savepoint or stop trigger.
type TriggerResponse struct {
	RequestID string `json:"request-id"`
}

// Operation states of QueueStatus.
const (
	InProgress = "IN_PROGRESS"
	Completed  = "COMPLETED"
)

// QueueStatus is where an asynchronous operation is.
type QueueStatus struct {
	ID string `json:"id"`
}

// AsynchronousOperationResult is the body of
// GET /jobs/:jobid/savepoints/:triggerid. Operation is nil while the
// operation is in progress.
type AsynchronousOperationResult struct {
	Status    QueueStatus    `json:"status"`
	Operation *SavepointInfo `json:"operation,omitempty"`
}

// SavepointInfo is a finished savepoint: its location, or why it failed.
type SavepointInfo struct {
	Location     string        `json:"location,omitempty"`
	FailureCause *FailureCause `json:"failure-cause,omitempty"`
}

// FailureCause is Flink's SerializedThrowable without the serialized
// Java object: Class names the kind of failure, StackTrace carries the
// message (Go errors have no stack).
type FailureCause struct {
	Class      string `json:"class"`
	StackTrace string `json:"stack-trace"`
}
