package config

// Keys of the distributed runtime: the master (weir cluster start), its
// TaskManagers (weir taskmanager) and the protocols between them, with
// Flink's names where the meaning is the same. Weir's heartbeat defaults
// are far shorter than Flink's 10 s / 50 s: a broken connection is noticed
// at once, and the timeout only has to cover a hung process or a silent
// network.
var (
	JobManagerRPCAddress = Declare(Key{"jobmanager.rpc.address", String, "127.0.0.1",
		"host TaskManagers and workers use to reach the master's RPC endpoint, and where it listens unless jobmanager.bind-host is set"})
	JobManagerBindHost = Declare(Key{"jobmanager.bind-host", String, "",
		"address the master's RPC endpoint listens on; empty means jobmanager.rpc.address. 0.0.0.0 listens on every interface"})
	JobManagerRPCPort = Declare(Key{"jobmanager.rpc.port", Int, "6123",
		"port of the master's RPC endpoint (TaskManagers register there); 0 picks a free port"})
	HeartbeatInterval = Declare(Key{"heartbeat.interval", Duration, "250ms",
		"how often the master asks TaskManagers and workers for a heartbeat"})
	HeartbeatTimeout = Declare(Key{"heartbeat.timeout", Duration, "2s",
		"a TaskManager or worker that has not answered for this long is considered lost (a closed connection is noticed at once)"})
	SlotRequestTimeout = Declare(Key{"slot.request.timeout", Duration, "5min",
		"how long a job waits for the slots it asked for before it fails, saying what it asked for and what the cluster has"})
	EvenlySpreadOutSlots = Declare(Key{"cluster.evenly-spread-out-slots", Bool, "false",
		"spread a job's slots over all TaskManagers instead of filling one TaskManager before the next"})
	FailoverStrategy = Declare(Key{"jobmanager.execution.failover-strategy", String, "region",
		"which tasks restart after a failure: region (the failed task's pipelined region) or full (every task)"})
	ClusterWorkDir = Declare(Key{"cluster.working-dir", String, "",
		"directory of the master's artifact store and of a TaskManager's artifact cache and worker logs; empty means a directory under the system's temporary directory"})

	TaskManagerSlots = Declare(Key{"taskmanager.numberOfTaskSlots", Int, "1",
		"number of equal slots a TaskManager carves from its CPU and memory"})
	TaskManagerCPU = Declare(Key{"taskmanager.cpu.cores", String, "",
		"CPU cores a TaskManager offers, e.g. 2 or 0.5; empty means the machine's cores"})
	TaskManagerMemory = Declare(Key{"taskmanager.memory.process.size", String, "",
		"memory a TaskManager offers to its workers, e.g. 2g or 512m; empty means 1 GiB per slot"})
	TaskManagerHost = Declare(Key{"taskmanager.host", String, "",
		"host the TaskManager's workers accept data connections on, as other hosts reach it; empty means the address the TaskManager uses to reach the master"})
	TaskManagerResourceID = Declare(Key{"taskmanager.resource-id", String, "",
		"the TaskManager's id; empty means a random one. Two TaskManagers with one id cannot both register"})
)

func init() {
	AtLeast(JobManagerRPCPort, 0)
	Validate(JobManagerRPCPort, func(v string) error {
		_, err := parsePort(v)
		return err
	})
	AtLeast(HeartbeatInterval, 1)
	AtLeast(HeartbeatTimeout, 1)
	AtLeast(SlotRequestTimeout, 1)
	AtLeast(TaskManagerSlots, 1)
	OneOf(FailoverStrategy, "region", "full")
}
