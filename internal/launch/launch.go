// Package launch carries how a job's main() was started — by `weir run` in
// this process (built-in jobs), by `weir run` as a child process (a user's
// job binary, through the WEIR_LAUNCH environment variable), or directly —
// so that stream.NewEnvironment and Execute pick up the CLI's options (-p,
// -D, plan mode) without the job passing them along.
//
//	weir run -p 2 ./myjob --input x
//	  │  WEIR_LAUNCH={"mode":0,"parallelism":2,"resultFile":…}
//	  ▼
//	./myjob --input x ── init() decodes the settings ── Execute runs the job,
//	                     then writes its Result to resultFile for weir to read
package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
)

// Mode says what Execute does.
type Mode int

const (
	// Run executes the job on the embedded local cluster.
	Run Mode = iota
	// Plan builds the JobGraph and hands it to Settings.OnPlan without running.
	Plan
	// Worker serves the subtasks a JobMaster deploys to this process: a
	// TaskManager started it as the job's worker (Settings.Worker).
	Worker
)

// WorkerSettings tell a worker process where its JobMaster is and who it
// is. A TaskManager passes them in EnvVar when it starts the job's binary
// (or, for a built-in job, `weir __worker builtin:NAME ARGS…`).
type WorkerSettings struct {
	// MasterAddress is the master's RPC address (host:port).
	MasterAddress string `json:"masterAddress"`
	JobID         string `json:"jobId"`
	// JobMasterID is the fencing token of the job's JobMaster.
	JobMasterID string `json:"jobMasterId"`
	// WorkerID is presented in the worker's hello; ResourceID is its
	// TaskManager's.
	WorkerID   string `json:"workerId"`
	ResourceID string `json:"resourceId"`
	// DataHost is the host the worker's data server listens on.
	DataHost string `json:"dataHost"`
}

// Settings are the options of one launch.
type Settings struct {
	Mode        Mode
	Parallelism int               // 0: config or number of cores
	Config      map[string]string // -D key=value, already validated
	// Context cancels the job (Ctrl-C); nil means Execute installs its own
	// signal handling.
	Context context.Context
	// OnPlan receives the plan in Plan mode.
	OnPlan func(*pb.JobGraph)
	// OnStart is told the job id and plan when execution begins.
	OnStart func(*pb.JobGraph)
	// Quiet suppresses Execute's progress lines on stderr.
	Quiet bool
	// OnEnd is told how each Execute ended.
	OnEnd func(Result)
	// FromSavepoint is a savepoint or retained checkpoint to start from;
	// AllowNonRestoredState skips its state of operators the job lacks.
	FromSavepoint         string
	AllowNonRestoredState bool
	// Worker is set in Worker mode.
	Worker *WorkerSettings
}

// Result is how a job's Execute ended, as a child job process reports it to
// the weir that started it.
type Result struct {
	State string `json:"state"` // Finished, Failed or Canceled
	Error string `json:"error,omitempty"`
}

// The states of a Result.
const (
	Finished = "FINISHED"
	Failed   = "FAILED"
	Canceled = "CANCELED"
)

// ReadResult reads the result a child job process wrote to file; ok is false
// if it wrote none (it never ran Execute, or it died first).
func ReadResult(file string) (r Result, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil || len(b) == 0 || json.Unmarshal(b, &r) != nil {
		return Result{}, false
	}
	return r, true
}

var (
	mu      sync.Mutex
	current *Settings
)

// Set installs the settings for jobs started in this process; nil clears them.
func Set(s *Settings) {
	mu.Lock()
	current = s
	mu.Unlock()
}

// Get returns the current settings, or defaults.
func Get() *Settings {
	mu.Lock()
	defer mu.Unlock()
	if current == nil {
		return &Settings{}
	}
	return current
}

// ModulePath is the path of Weir's Go module, which every job binary
// depends on.
var ModulePath = strings.TrimSuffix(reflect.TypeFor[Settings]().PkgPath(), "/internal/launch")

// EnvVar carries the launch settings from `weir run` to a job binary it
// starts as a child process, as JSON.
const EnvVar = "WEIR_LAUNCH"

// wire is the JSON form of the settings passed through EnvVar.
type wire struct {
	Mode        Mode              `json:"mode"`
	Parallelism int               `json:"parallelism,omitempty"`
	Config      map[string]string `json:"config,omitempty"`
	// PlanFile receives the plan (protobuf JSON) in Plan mode.
	PlanFile string `json:"planFile,omitempty"`
	// ResultFile receives the Result of Execute (JSON).
	ResultFile string `json:"resultFile,omitempty"`
	Quiet      bool   `json:"quiet,omitempty"`

	FromSavepoint         string `json:"fromSavepoint,omitempty"`
	AllowNonRestoredState bool   `json:"allowNonRestoredState,omitempty"`

	Worker *WorkerSettings `json:"worker,omitempty"`
}

// Encode returns the EnvVar value that passes s to a child job process,
// which writes its plan to planFile (Plan mode) and the Result of its
// Execute to resultFile; either may be empty.
func Encode(s *Settings, planFile, resultFile string) (string, error) {
	b, err := json.Marshal(wire{Mode: s.Mode, Parallelism: s.Parallelism, Config: s.Config,
		PlanFile: planFile, ResultFile: resultFile, Quiet: s.Quiet,
		FromSavepoint: s.FromSavepoint, AllowNonRestoredState: s.AllowNonRestoredState, Worker: s.Worker})
	return string(b), err
}

func init() {
	v := os.Getenv(EnvVar)
	if v == "" {
		return
	}
	// The settings are for this process only, not for programs it starts.
	os.Unsetenv(EnvVar)
	var w wire
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		fmt.Fprintf(os.Stderr, "weir: ignoring malformed %s: %v\n", EnvVar, err)
		return
	}
	s := &Settings{Mode: w.Mode, Parallelism: w.Parallelism, Config: w.Config, Quiet: w.Quiet,
		FromSavepoint: w.FromSavepoint, AllowNonRestoredState: w.AllowNonRestoredState, Worker: w.Worker}
	if w.Mode == Worker && w.Worker == nil {
		fmt.Fprintf(os.Stderr, "weir: %s asks for worker mode without worker settings; this process was not started by a Weir TaskManager\n", EnvVar)
		os.Exit(2)
	}
	if w.Mode == Plan && w.PlanFile != "" {
		file := w.PlanFile
		s.OnPlan = func(jg *pb.JobGraph) {
			b, err := protojson.Marshal(jg)
			if err == nil {
				err = os.WriteFile(file, b, 0o644)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "weir: writing the job plan to %s: %v\n", file, err)
				os.Exit(1)
			}
			// The plan is all the caller wants: do not run the rest of main().
			os.Exit(0)
		}
	}
	if w.ResultFile != "" {
		file := w.ResultFile
		s.OnEnd = func(r Result) {
			b, err := json.Marshal(r)
			if err == nil {
				err = os.WriteFile(file, b, 0o644)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "weir: writing the job result to %s: %v\n", file, err)
			}
		}
	}
	current = s
}
