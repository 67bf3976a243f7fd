package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/builtin"
	"github.com/weirstream/weir/internal/launch"
)

// workerCommand is how a TaskManager runs a built-in job's worker: weir
// itself is the job binary. The launch settings (worker mode, where the
// JobMaster is, the job's configuration) come in WEIR_LAUNCH, decoded by
// package launch before main runs; the arguments are the job's main()
// arguments, so that it builds the same graph as the submitted job.
func workerCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "__worker builtin:NAME [job arguments...]",
		Short:              "Serve a built-in job's subtasks (started by a TaskManager)",
		Hidden:             true,
		DisableFlagParsing: true, // everything after the job belongs to the job
		Args:               cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := launch.Get()
			if s.Mode != launch.Worker || s.Worker == nil {
				return errors.New("__worker is started by a TaskManager, not by hand; run a job with weir run")
			}
			name, ok := strings.CutPrefix(args[0], "builtin:")
			if !ok {
				return fmt.Errorf("__worker runs built-in jobs (builtin:NAME); got %q", args[0])
			}
			j, err := builtin.Lookup(name)
			if err != nil {
				return err
			}
			// The TaskManager stops its workers with SIGTERM.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ws := *s
			ws.Context = ctx
			launch.Set(&ws)
			defer launch.Set(s)
			if err := j.Main(args[1:]); err != nil && !errors.Is(err, builtin.ErrHelp) {
				return err
			}
			return nil
		},
	}
}
