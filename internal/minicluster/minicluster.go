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
	return runtime.Execute(ctx, job, runtime.Options{
		Credits:       cfg.Int(config.BuffersPerChannel),
		BatchSize:     cfg.Int(config.BatchRecords),
		BufferTimeout: cfg.Duration(config.BufferTimeout),
	})
}
