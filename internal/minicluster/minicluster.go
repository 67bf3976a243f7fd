// Package minicluster runs a job in one process: the embedded local cluster
// that `weir run` uses when no cluster address is given and that a job binary
// uses when run directly.
//
// # Keyed state backends
//
// state.backend.type picks the backend of every keyed operator subtask:
// hashmap (heap, the default) keeps state in Go maps; pebble gives each
// subtask its own Pebble DB in a directory under the job's local directory,
// state.backend.pebble.localdir/weir-<job-id> (os.TempDir() by default, as
// Flink's state.backend.rocksdb.localdir). A subtask's directory is deleted
// when the subtask ends, however it ends, and the job's when the job does:
// state survives in checkpoints, never in local directories. Both backends
// checkpoint the canonical format, so a checkpoint or savepoint taken on
// one restores on the other.
//
// With execution.checkpointing.incremental=true and the pebble backend,
// checkpoints are incremental: each backend acknowledges a native Pebble
// checkpoint, and the job master uploads only the SSTs the latest completed
// checkpoint does not name (see the jobmaster package). Savepoints stay
// canonical. Incremental checkpoints need a checkpoint directory
// (state.checkpoints.dir); without one, or with the hashmap backend, which
// has no files to share between checkpoints, the setting has no effect and
// the run logs a warning (as in Flink, where the option is a RocksDB one).
package minicluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/pebblestate"
)

// PebbleLocalDir is where pebble backends keep their working directories.
var PebbleLocalDir = config.Declare(config.Key{Name: "state.backend.pebble.localdir", Kind: config.String, Default: "",
	Doc: "directory under which the pebble state backend keeps each job's local state (weir-<job-id>/); " +
		"empty means the system's temporary directory. Flink's state.backend.rocksdb.localdir"})

// RunOptions are the options of one run besides the configuration.
type RunOptions struct {
	JobID                 string
	FromSavepoint         string
	AllowNonRestoredState bool
	// Log receives progress lines (restores, restarts).
	Log func(format string, args ...any)
	// Name is the job's name; OnControl receives the job's Control (for
	// the REST API) before its tasks start.
	Name      string
	OnControl func(jobmaster.Control)
}

// Run executes job to its end on this process: a job master drives
// checkpoints and restarts, and the tasks run in this process.
func Run(ctx context.Context, job *runtime.Job, cfg *config.Config, o RunOptions) error {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	base := Options(cfg)
	backends, err := NewBackends(cfg, o.JobID, o.Log)
	if err != nil {
		return err
	}
	defer backends.RemoveAll()
	return jobmaster.Run(ctx, job, jobmaster.Options{
		JobID: o.JobID, Config: cfg, FromSavepoint: o.FromSavepoint, AllowNonRestoredState: o.AllowNonRestoredState, Log: o.Log,
		Name: o.Name, OnControl: o.OnControl,
		Deploy: func(ctx context.Context, hooks runtime.CheckpointHooks, restore map[string]*runtime.RestoredState) (jobmaster.Execution, error) {
			opts := base
			opts.Checkpoints, opts.Restore = hooks, restore
			backends.Configure(&opts)
			return runtime.Start(ctx, job, opts)
		},
	})
}

// Options translates the configuration into executor options. The keyed
// state backend is Run's business (it needs the job's local directory):
// these options give the runtime's default, the heap.
func Options(cfg *config.Config) runtime.Options {
	o := runtime.Options{
		Credits:       cfg.Int(config.BuffersPerChannel),
		BatchSize:     cfg.Int(config.BatchRecords),
		BufferTimeout: cfg.Duration(config.BufferTimeout),
	}
	switch {
	case o.BufferTimeout == 0:
		// Every record is sent as soon as it is produced.
		o.BatchSize = 1
	case o.BufferTimeout < 0:
		// Only full batches, and partial ones when a task has nothing to do.
		o.BufferTimeout = 0
	}
	return o
}

// Backends creates the keyed state backends of a job's subtasks: those of
// the embedded cluster, or of one worker process's share of the job (whose
// jobID then names the worker too, so that two workers of a job on one
// host keep apart).
type Backends struct {
	backend     string // config.BackendHeap or config.BackendPebble
	dir         string // the job's local directory (pebble)
	incremental bool   // native snapshots for incremental checkpoints
	seq         atomic.Int64
}

// NewBackends reads state.backend.type and its options from cfg and, for
// pebble, creates the job's local directory under
// state.backend.pebble.localdir, named after jobID. log receives warnings
// about settings that have no effect.
func NewBackends(cfg *config.Config, jobID string, log func(string, ...any)) (*Backends, error) {
	backend, err := config.ParseStateBackend(cfg)
	if err != nil {
		return nil, err
	}
	k := &Backends{backend: backend}
	if cfg.Bool(config.IncrementalCheckpoints) {
		switch {
		case backend != config.BackendPebble:
			log("%s=true has no effect with %s=%s, which has no files to share between checkpoints; "+
				"set %s=pebble for incremental checkpoints", config.IncrementalCheckpoints.Name, config.StateBackendType.Name, backend, config.StateBackendType.Name)
		case cfg.String(config.CheckpointsDir) == "":
			log("%s=true has no effect without %s: checkpoints stay in memory; set %s to a directory or s3:// URI",
				config.IncrementalCheckpoints.Name, config.CheckpointsDir.Name, config.CheckpointsDir.Name)
		default:
			k.incremental = true
		}
	}
	if backend != config.BackendPebble {
		return k, nil
	}
	root := cfg.String(PebbleLocalDir)
	if root == "" {
		root = os.TempDir()
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("%s: %w", PebbleLocalDir.Name, err)
	}
	if jobID == "" {
		jobID = "local"
	}
	k.dir = filepath.Join(root, "weir-"+jobID)
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s=%s: cannot create the job's local state directory: %w; "+
			"point %s at a writable directory with space for the job's state", PebbleLocalDir.Name, root, err, PebbleLocalDir.Name)
	}
	return k, nil
}

// Configure sets the backend factory of one attempt of the job in o, whose
// Checkpoints are set. With incremental checkpoints the factory's backends
// take native snapshots, and o.Checkpoints is wrapped to exchange their
// placeholders for the native checkpoints in each acknowledgement.
func (k *Backends) Configure(o *runtime.Options) {
	if k.backend != config.BackendPebble {
		return
	}
	var natives *pebblestate.NativeSnapshots
	if k.incremental && o.Checkpoints != nil {
		natives = pebblestate.NewNativeSnapshots()
		o.Checkpoints = nativeAcks{CheckpointHooks: o.Checkpoints, natives: natives}
	}
	o.NewKeyedBackend = func(r keygroup.Range) state.Backend {
		dir := filepath.Join(k.dir, fmt.Sprintf("kg%d-%d-%d", r.Start, r.End, k.seq.Add(1)))
		b, err := pebblestate.Open(dir, r, pebblestate.Options{Native: natives})
		if err != nil {
			runtime.Fail(fmt.Errorf("%s=pebble: %w", config.StateBackendType.Name, err))
		}
		return b
	}
}

// RemoveAll deletes the job's local directory, with whatever a backend
// that could not be disposed of left there. Call it when no attempt of the
// job runs any more.
func (k *Backends) RemoveAll() {
	if k.dir != "" {
		_ = os.RemoveAll(k.dir)
	}
}

// nativeAcks puts the native checkpoints of the backends in native mode
// into the acknowledgements, in place of their placeholders.
type nativeAcks struct {
	runtime.CheckpointHooks
	natives *pebblestate.NativeSnapshots
}

func (h nativeAcks) Ack(a runtime.TaskAck) {
	for _, s := range a.Operators {
		if s.Keyed == nil {
			continue
		}
		if f, ok := h.natives.Take(s.Keyed); ok {
			s.Keyed, s.Native = nil, f
		}
	}
	h.CheckpointHooks.Ack(a)
}
