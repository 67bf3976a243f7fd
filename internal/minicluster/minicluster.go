// Package minicluster runs a job in one process: the embedded local cluster
// that `weir run` uses when no cluster address is given and that a job binary
// uses when run directly.
package minicluster

import (
	"context"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/jobmaster"
	"github.com/weirstream/weir/internal/runtime"
)

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
	base := Options(cfg)
	return jobmaster.Run(ctx, job, jobmaster.Options{
		JobID: o.JobID, Config: cfg, FromSavepoint: o.FromSavepoint, AllowNonRestoredState: o.AllowNonRestoredState, Log: o.Log,
		Name: o.Name, OnControl: o.OnControl,
		Deploy: func(ctx context.Context, hooks runtime.CheckpointHooks, restore map[string]*runtime.RestoredState) (jobmaster.Execution, error) {
			opts := base
			opts.Checkpoints, opts.Restore = hooks, restore
			return runtime.Start(ctx, job, opts)
		},
	})
}

// Options translates the configuration into executor options.
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
