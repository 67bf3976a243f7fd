// Package source holds Weir's built-in sources: text files, in-memory slices,
// generated sequences, and a rate limiter that wraps any of them.
//
//	env := stream.NewEnvironment()
//	lines := stream.FromSource(env, "lines", source.TextFile("words.txt"))
//	nums := stream.FromSource(env, "nums", source.FromSlice([]int{1, 2, 3}))
//	gen := source.Generator(-1, func(i int64) Event { return makeEvent(i) }) // unbounded
//	events := stream.FromSource(env, "events", source.RateLimited(gen, 10_000)) // 10k events/s in total
//
// # How sources are split
//
// A source is opened once per parallel subtask; each subtask's reader reads
// a disjoint share, and the shares together cover the input exactly once for
// any parallelism:
//
//	TextFile      subtask i of p reads the lines that start in bytes [i*size/p, (i+1)*size/p)
//	              of every input file (Hadoop's byte-range splits)
//	FromSlice     subtask i of p takes elements i, i+p, i+2p, …
//	Generator     subtask i of p generates indices i, i+p, i+2p, …
//	RateLimited   each subtask gets perSecond/p of the total rate
//
// Every process that runs a job rebuilds its graph by running main(), so the
// values given to these constructors (a path, a slice, a generator function)
// must be the same in every process: a path must name the same file on every
// host, and a slice must be built deterministically.
//
// # Checkpoints
//
// Every reader here implements connector.CheckpointedReader, so a job with
// checkpoints resumes after a failure (or from a savepoint) exactly where
// its sources were: each record is emitted once over the job's life. The
// state is small and self-describing (a version byte, a kind byte, varints)
// and a damaged or foreign state fails Open with an error naming the source
// and the old subtask. A restore may change the parallelism; each new
// subtask then works out, from the states of all old subtasks, what of its
// new share they had not emitted:
//
//	TextFile      the state is the ranges of line starts not read yet; a new subtask
//	              reads what of its new byte ranges is still in them. The input must
//	              be the same files of the same sizes, or Open fails.
//	FromSlice,    the state says which indices of the subtask's residue classes were
//	Generator     emitted (see IndexShare); a new subtask emits the rest of its new
//	              share in increasing order, so 2 → 3 → 1 is exact.
//	RateLimited   the wrapped reader's state: the readers here never emit more than
//	              the limiter lets out (connector.LimitedReader), so nothing is held.
//
// The values given to the constructors must be the same in the restored job
// as in the one that took the checkpoint, as they must be in every process
// of one run.
package source

// batchSize is how many records a reader emits per Read at most: enough to
// amortize the call, small enough that the subtask reacts to checkpoints and
// cancellation promptly.
const batchSize = 1024
