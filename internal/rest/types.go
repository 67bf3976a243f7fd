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
	// Session is set by a session cluster's API, which takes submissions;
	// a job's embedded API leaves it out.
	Session bool `json:"weir-session,omitempty"`
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

// JobVertex is one vertex of JobDetails (Flink's JobVertexDetailsInfo,
// without metrics). ID is the JobGraph's vertex id as 32 hex digits, the
// form of Flink's JobVertexID. Weir does not track when a vertex started
// or ended: StartTime, EndTime and Duration are -1.
type JobVertex struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	MaxParallelism int    `json:"maxParallelism"`
	Parallelism    int    `json:"parallelism"`
	Status         string `json:"status"`
	StartTime      int64  `json:"start-time"`
	EndTime        int64  `json:"end-time"`
	Duration       int64  `json:"duration"`
	// Tasks counts the vertex's subtasks per execution state, every state
	// present.
	Tasks map[string]int `json:"tasks"`
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

// SubmitResponse answers POST /jobs (Flink's JobSubmitResponseBody, plus
// the id).
type SubmitResponse struct {
	JobID  string `json:"jobid"`
	JobURL string `json:"jobUrl"`
}

// ArtifactInfo answers GET /artifacts/:digest when the Dispatcher has the
// artifact.
type ArtifactInfo struct {
	Digest string `json:"digest"`
}

// TaskManagersInfo is the body of GET /taskmanagers.
type TaskManagersInfo struct {
	TaskManagers []TaskManagerInfo `json:"taskmanagers"`
}

// TaskManagerInfo describes one registered TaskManager, in the shape of
// Flink's TaskManagerInfo (GET /taskmanagers) and TaskManagerDetailsInfo
// (GET /taskmanagers/:taskmanagerid, which adds AllocatedSlots), with
// Weir's own fields after Flink's.
type TaskManagerInfo struct {
	// ID is the TaskManager's resource id.
	ID string `json:"id"`
	// Path is the address of its RPC endpoint (Flink: an Akka/Pekko path).
	Path     string `json:"path"`
	DataPort int    `json:"dataPort"`
	// JMXPort is always -1: there is no JMX.
	JMXPort int `json:"jmxPort"`
	// TimeSinceLastHeartbeat is, despite its name and as in Flink, the time
	// of the last heartbeat in milliseconds since the Unix epoch.
	TimeSinceLastHeartbeat int64               `json:"timeSinceLastHeartbeat"`
	SlotsNumber            int                 `json:"slotsNumber"`
	FreeSlots              int                 `json:"freeSlots"`
	TotalResource          ResourceProfileInfo `json:"totalResource"`
	FreeResource           ResourceProfileInfo `json:"freeResource"`
	Hardware               HardwareDescription `json:"hardware"`
	Blocked                bool                `json:"blocked"`
	// AllocatedSlots are the slots jobs hold; only GET
	// /taskmanagers/:taskmanagerid shows them, as in Flink.
	AllocatedSlots []SlotInfo `json:"allocatedSlots,omitempty"`

	// Weir's own.

	// Version is the TaskManager's Weir version; PID its process id on its
	// host; Host the host name it reports.
	Version string `json:"weirVersion,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Host    string `json:"host,omitempty"`
	// Workers are the worker processes it runs, one per job.
	Workers []WorkerInfo `json:"workers,omitempty"`
}

// TaskManagerDetails is the body of GET /taskmanagers/:taskmanagerid:
// allocatedSlots is always there, as in Flink's TaskManagerDetailsInfo.
type TaskManagerDetails struct {
	TaskManagerInfo
	AllocatedSlots []SlotInfo `json:"allocatedSlots"`
}

// ResourceProfileInfo is a resource profile as Flink shows it: CPU in
// cores, memory in MiB, extended resources (e.g. gpu) by name.
type ResourceProfileInfo struct {
	CPUCores          float64            `json:"cpuCores"`
	TaskHeapMemory    int64              `json:"taskHeapMemory"`
	TaskOffHeapMemory int64              `json:"taskOffHeapMemory"`
	ManagedMemory     int64              `json:"managedMemory"`
	NetworkMemory     int64              `json:"networkMemory"`
	ExtendedResources map[string]float64 `json:"extendedResources"`
}

// HardwareDescription is the TaskManager's machine (or container): cores
// and memory in bytes, as in Flink.
type HardwareDescription struct {
	CPUCores       int   `json:"cpuCores"`
	PhysicalMemory int64 `json:"physicalMemory"`
	FreeMemory     int64 `json:"freeMemory"`
	ManagedMemory  int64 `json:"managedMemory"`
}

// SlotInfo is one allocated slot: the job that holds it and its profile.
type SlotInfo struct {
	JobID    string              `json:"jobId"`
	Resource ResourceProfileInfo `json:"resource"`
}

// WorkerInfo is one job's worker process on a TaskManager.
type WorkerInfo struct {
	JobID string `json:"jobId"`
	PID   int    `json:"pid,omitempty"`
	// Slots is how many of the TaskManager's slots the job has there.
	Slots int `json:"slots"`
	// State is the worker's state as the TaskManager reports it, e.g.
	// RUNNING.
	State string `json:"state,omitempty"`
}
