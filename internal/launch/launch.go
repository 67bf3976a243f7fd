// Package launch carries how a job's main() was started — by `weir run` in
// this process (built-in jobs), or directly — so that stream.NewEnvironment
// and Execute pick up the CLI's options (-p, -D, plan mode) without the job
// passing them along.
package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
)

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
	Quiet    bool   `json:"quiet,omitempty"`
}

// Encode returns the EnvVar value for settings of a child job process.
func Encode(mode Mode, parallelism int, cfg map[string]string, planFile string, quiet bool) (string, error) {
	b, err := json.Marshal(wire{Mode: mode, Parallelism: parallelism, Config: cfg, PlanFile: planFile, Quiet: quiet})
	return string(b), err
}

func init() {
	v := os.Getenv(EnvVar)
	if v == "" {
		return
	}
	var w wire
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		fmt.Fprintf(os.Stderr, "weir: ignoring malformed %s: %v\n", EnvVar, err)
		return
	}
	s := &Settings{Mode: w.Mode, Parallelism: w.Parallelism, Config: w.Config, Quiet: w.Quiet}
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
	current = s
}
