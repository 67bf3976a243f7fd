// Command weir is Weir's single binary: the client (run, info, bench), and
// the built-in jobs. Later versions add the master and TaskManager roles.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/stream"
)

// exitError carries a specific exit code. With a nil err weir prints
// nothing: the job has reported its own failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "weir",
		Short:         "Weir: distributed stateful stream processing in Go",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCommand(), infoCommand(), benchCommand(), configCommand(), versionCommand())
	root.AddCommand(jobsCommands()...)
	root.AddCommand(workerCommand())
	root.AddCommand(clusterCommand())
	root.AddCommand(taskManagerCommand())
	if err := root.Execute(); err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.err == nil {
				os.Exit(code)
			}
		}
		if errors.Is(err, stream.ErrJobCanceled) {
			fmt.Fprintln(os.Stderr, "weir: job canceled")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "weir: %v\n", err)
		os.Exit(code)
	}
}
