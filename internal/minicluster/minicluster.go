// Package minicluster runs a job in one process: the embedded local cluster
// that `weir run` uses when no cluster address is given and that a job binary
// uses when run directly.
package minicluster

import (
	"context"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/runtime"
)

// Run executes job to its end on this process.
func Run(ctx context.Context, job *runtime.Job, cfg *config.Config) error {
	return runtime.Execute(ctx, job, Options(cfg))
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
