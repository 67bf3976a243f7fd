package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/resource"
	"github.com/weirstream/weir/internal/taskmanager"
	weirversion "github.com/weirstream/weir/internal/version"
)

// taskManagerFlags are the options of `weir taskmanager`; each overrides
// its configuration key.
type taskManagerFlags struct {
	jobmanager string
	slots      int
	cpu        string
	memory     string
	defines    []string
}

func taskManagerCommand() *cobra.Command {
	var f taskManagerFlags
	cmd := &cobra.Command{
		Use:   "taskmanager [--jobmanager HOST:PORT] [--slots N] [--cpu C] [--memory M] [-D key=value]...",
		Short: "Run a TaskManager: offer this host's CPU and memory to a cluster's master as slots",
		Long: `Run a TaskManager in the foreground until Ctrl-C or SIGTERM.

The TaskManager registers with the master's RPC endpoint (jobmanager.rpc.port, 6123),
carves --slots equal slots from --cpu and --memory, and starts one worker process
per job that gets slots here. It keeps running when a worker crashes, and
reconnects when it loses the master.`,
		Example: `  weir taskmanager --jobmanager master:6123 --slots 4 --cpu 4 --memory 8g
  weir taskmanager -D taskmanager.numberOfTaskSlots=2 -D cluster.working-dir=/var/lib/weir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd)
			defer stop()
			return taskmanager.Run(ctx, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.jobmanager, "jobmanager", "m", "",
		"the master's RPC address HOST:PORT (default: jobmanager.rpc.address:jobmanager.rpc.port)")
	fl.IntVar(&f.slots, "slots", 1, "number of equal slots (taskmanager.numberOfTaskSlots)")
	fl.StringVar(&f.cpu, "cpu", "", "CPU cores to offer, e.g. 2, 0.5 or 500m (taskmanager.cpu.cores; default: the machine's cores)")
	fl.StringVar(&f.memory, "memory", "", "memory to offer, e.g. 2g or 512m (taskmanager.memory.process.size; default: 1g per slot)")
	fl.StringArrayVarP(&f.defines, "define", "D", nil, "configuration key=value (Flink key names), repeatable")
	return cmd
}

// options turns the flags and -D settings into the TaskManager's options;
// changed tells which flags were given.
func (f *taskManagerFlags) options(changed func(flag string) bool) (taskmanager.Options, error) {
	var o taskmanager.Options
	cfg, err := configFromDefines(f.defines)
	if err != nil {
		return o, err
	}

	o.Slots = cfg.Int(config.TaskManagerSlots)
	if changed("slots") {
		if f.slots < 1 {
			return o, fmt.Errorf("--slots %d: a TaskManager needs at least 1 slot", f.slots)
		}
		o.Slots = f.slots
	}

	cpu, cpuFrom := cfg.String(config.TaskManagerCPU), "-D "+config.TaskManagerCPU.Name+"="
	if changed("cpu") {
		cpu, cpuFrom = f.cpu, "--cpu "
	}
	if cpu == "" {
		o.Total.CPU = int64(runtime.NumCPU()) * 1000
	} else if o.Total.CPU, err = resource.ParseCPU(cpu); err != nil {
		return o, fmt.Errorf("%s%s: %v", cpuFrom, cpu, err)
	}

	mem, memFrom := cfg.String(config.TaskManagerMemory), "-D "+config.TaskManagerMemory.Name+"="
	if changed("memory") {
		mem, memFrom = f.memory, "--memory "
	}
	if mem == "" {
		o.Total.TaskMemory = int64(o.Slots) << 30
	} else {
		n, err := resource.ParseMemory(mem)
		if err != nil {
			return o, fmt.Errorf("%s%s: not a memory size; write e.g. 2g or 512m", memFrom, mem)
		}
		if n < 1<<20 {
			return o, fmt.Errorf("%s%s: a TaskManager needs at least 1m of memory; write e.g. 2g or 512m", memFrom, mem)
		}
		// The worker is one Go process: all of its memory is task memory,
		// which its GOMEMLIMIT covers.
		o.Total.TaskMemory = n
	}

	o.MasterAddress, err = masterRPCAddress(f.jobmanager, cfg)
	if err != nil {
		return o, err
	}
	o.ResourceID = cfg.String(config.TaskManagerResourceID)
	o.DataHost = cfg.String(config.TaskManagerHost)
	o.WorkDir = cfg.String(config.ClusterWorkDir)
	o.HeartbeatTimeout = cfg.Duration(config.HeartbeatTimeout)
	o.Version = weirversion.Version
	o.Log = log.New(os.Stderr, "weir taskmanager: ", log.LstdFlags).Printf
	return o, nil
}

// masterRPCAddress is --jobmanager, completed with the configured port if
// it has none, or the configured address.
func masterRPCAddress(flag string, cfg *config.Config) (string, error) {
	port := cfg.Int(config.JobManagerRPCPort)
	if flag == "" {
		if port == 0 {
			return "", fmt.Errorf("jobmanager.rpc.port is 0 (a free port chosen by the master); give the master's address with --jobmanager HOST:PORT")
		}
		return net.JoinHostPort(cfg.String(config.JobManagerRPCAddress), strconv.Itoa(port)), nil
	}
	if strings.Contains(flag, "://") || strings.Contains(flag, "/") {
		return "", fmt.Errorf("--jobmanager %s: give the master's RPC address as HOST:PORT (jobmanager.rpc.port, 6123 by default), not a URL", flag)
	}
	if _, p, err := net.SplitHostPort(flag); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("--jobmanager %s: %q is not a port; write HOST:PORT, e.g. master:6123", flag, p)
		}
		return flag, nil
	}
	if port == 0 {
		port = 6123
	}
	return net.JoinHostPort(strings.Trim(flag, "[]"), strconv.Itoa(port)), nil
}
