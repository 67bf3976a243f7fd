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
// # Reader state and checkpoints
//
// Sources are not checkpointed yet. The readers keep all their progress in
// plain fields so a later change can snapshot and restore it: the readers of
// TextFile, FromSlice and Generator implement [Positioned], whose Position is
// the one number a restored reader needs to continue where it stopped (given
// the same path, slice or generator and the same parallelism).
package source

// Positioned is implemented by readers whose progress is one resumable
// offset: the byte offset of the next line of a TextFile reader (counted over
// the reader's input files laid end to end, in sorted order), or the next
// index of a FromSlice or Generator reader. A reader restored at that
// position emits exactly the records the original had not emitted yet.
//
// RateLimited readers do not implement it: they may hold records that the
// wrapped reader has produced but the limit has not let out yet.
type Positioned interface {
	Position() int64
}

// batchSize is how many records a reader emits per Read at most: enough to
// amortize the call, small enough that the subtask reacts to checkpoints and
// cancellation promptly.
const batchSize = 1024
