package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/master"
	weirversion "github.com/weirstream/weir/internal/version"
)

// clusterCommand is `weir cluster start`: a session cluster's master in
// the foreground, as containers and process supervisors expect.
func clusterCommand() *cobra.Command {
	cluster := &cobra.Command{Use: "cluster", Short: "Run a session cluster's master"}
	var defines []string
	var provider string
	start := &cobra.Command{
		Use:   "start [-D key=value]…",
		Short: "Run the master (Dispatcher, ResourceManager, REST API) in the foreground",
		Long: "Runs the master of a session cluster in the foreground until SIGINT or SIGTERM: the REST API on " +
			"rest.port (8081), where `weir run --jobmanager HOST:8081` submits jobs, and the RPC endpoint on " +
			"jobmanager.rpc.port (6123), where TaskManagers register (`weir taskmanager --jobmanager HOST:6123`).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configFromDefines(defines)
			if err != nil {
				return err
			}
			if provider != "standalone" {
				return fmt.Errorf("--provider %s: this build of weir has the standalone provider only: start TaskManagers yourself with `weir taskmanager --jobmanager HOST:PORT`", provider)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
			return master.Run(ctx, master.Options{Config: cfg, Version: weirversion.Version,
				Log: func(format string, args ...any) { logger.Printf(format, args...) }})
		},
	}
	start.Flags().StringArrayVarP(&defines, "define", "D", nil, "configuration key=value (Flink key names), repeatable")
	start.Flags().StringVar(&provider, "provider", "standalone", "who starts TaskManagers: standalone (you do)")
	cluster.AddCommand(start)
	return cluster
}

// configFromDefines validates -D key=value settings into a configuration.
func configFromDefines(defines []string) (*config.Config, error) {
	m := map[string]string{}
	for _, d := range defines {
		k, v, err := config.ParseAssignment(d)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return config.FromMap(m)
}
