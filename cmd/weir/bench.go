package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/builtin/jobs"
	"github.com/weirstream/weir/internal/launch"
	"github.com/weirstream/weir/internal/procstat"
	"github.com/weirstream/weir/stream"
)

// benchResult is one line of `weir bench nexmark --json`.
type benchResult struct {
	Query               string  `json:"query"`
	Events              int64   `json:"events"`
	Parallelism         int     `json:"parallelism"`
	Seconds             float64 `json:"seconds"`
	CPUSeconds          float64 `json:"cpu_seconds"`
	EventsPerSecond     float64 `json:"events_per_second"`
	EventsPerCoreSecond float64 `json:"events_per_core_second"`
}

func benchCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Run benchmarks that print throughput figures"}
	var (
		queries     string
		events      int64
		parallelism int
		asJSON      bool
		profile     string
		defines     []string
	)
	nx := &cobra.Command{
		Use:   "nexmark",
		Short: "Run Nexmark queries on the embedded cluster and print events/s and events/s per core",
		Example: `  weir bench nexmark --queries q0,q1,q2 --events 20000000
  weir bench nexmark --queries gen,q0 --events 20000000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := jobOptions{parallelism: parallelism, defines: defines}
			if o.parallelism == 0 {
				o.parallelism = 2
			}
			var list []string
			for _, q := range strings.Split(queries, ",") {
				if q = strings.TrimSpace(q); q != "" {
					list = append(list, q)
				}
			}
			if len(list) == 0 {
				return fmt.Errorf("--queries: name at least one query (%s)", strings.Join(jobs.NexmarkQueryNames(), ", "))
			}
			for _, q := range list {
				if _, ok := jobs.NexmarkQueries[q]; !ok {
					return fmt.Errorf("--queries: unknown query %q; available: %s", q, strings.Join(jobs.NexmarkQueryNames(), ", "))
				}
			}
			if events <= 0 {
				return fmt.Errorf("--events %d: give a positive number of events", events)
			}
			if !asJSON {
				fmt.Printf("%-6s %12s %4s %9s %9s %14s %16s\n", "query", "events", "p", "seconds", "cpu s", "events/s", "events/core-s")
			}
			for _, q := range list {
				s, err := o.settings(launch.Run)
				if err != nil {
					return err
				}
				r, err := benchNexmark(s, q, events, profile)
				if err != nil {
					return err
				}
				if asJSON {
					b, _ := json.Marshal(r)
					fmt.Println(string(b))
				} else {
					fmt.Printf("%-6s %12d %4d %9.2f %9.2f %14.0f %16.0f\n", r.Query, r.Events, r.Parallelism, r.Seconds, r.CPUSeconds, r.EventsPerSecond, r.EventsPerCoreSecond)
				}
			}
			return nil
		},
	}
	nx.Flags().StringVar(&queries, "queries", "q0,q1,q2", "comma-separated queries to run; gen runs the generator alone")
	nx.Flags().Int64Var(&events, "events", 10_000_000, "events per query")
	nx.Flags().IntVarP(&parallelism, "parallelism", "p", 2, "parallelism of every operator")
	nx.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per query per line")
	nx.Flags().StringArrayVarP(&defines, "define", "D", nil, "configuration key=value, repeatable")
	nx.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of each query to FILE-QUERY.pprof (for go tool pprof)")
	cmd.AddCommand(nx)
	cmd.AddCommand(benchClusterCommand())
	return cmd
}

func benchNexmark(s *launch.Settings, query string, events int64, profile string) (benchResult, error) {
	s.Quiet = true
	s.Context = context.Background()
	launch.Set(s)
	defer launch.Set(nil)
	env := stream.NewEnvironment()
	if err := jobs.BuildNexmark(env, jobs.NexmarkOptions{Query: query, Events: events}); err != nil {
		return benchResult{}, err
	}
	goruntime.GC()
	if profile != "" {
		f, err := os.Create(profile + "-" + query + ".pprof")
		if err != nil {
			return benchResult{}, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return benchResult{}, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := procstat.CPUSeconds()
	t0 := time.Now()
	if err := env.Execute("nexmark-" + query); err != nil {
		return benchResult{}, err
	}
	wall := time.Since(t0).Seconds()
	cpu := procstat.CPUSeconds() - cpu0
	return benchResult{
		Query: query, Events: events, Parallelism: env.Parallelism(), Seconds: wall, CPUSeconds: cpu,
		EventsPerSecond: float64(events) / wall, EventsPerCoreSecond: float64(events) / cpu,
	}, nil
}
