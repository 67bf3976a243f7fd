// Package sink holds Weir's built-in sinks: files, stdout, an in-memory
// collector for tests, and a blackhole for benchmarks.
//
//	stream.SinkTo(counts, "out", sink.File(*output, func(c WordCount) string {
//		return c.Word + "\t" + strconv.FormatInt(c.Count, 10)
//	}))
//	stream.SinkTo(lines, "copy", sink.Lines("out.txt")).SetParallelism(1)
//	stream.SinkTo(events, "debug", sink.Print[Event]("events"))
//	stream.SinkTo(events, "bench", sink.Blackhole[Event]())
//
//	got := sink.Collect[int]()
//	stream.SinkTo(nums, "got", got)
//	err := env.Execute("test") // then got.Values() holds every record
//
// # Files
//
// File writes one line per record. With parallelism 1 it writes the file at
// its path; with parallelism p > 1 (or when the path is a directory) the path
// is a directory of part files, named as Flink names them. A reader never
// sees output that is not committed: a subtask writes hidden files (names
// starting with "."), and publishes them whole. TextFile in package source
// skips hidden files when it reads a directory, so one job's output directory
// is the next one's input.
//
// Without checkpoints a subtask writes one hidden in-progress file
// (".part-0.inprogress", or ".counts.txt.inprogress" next to counts.txt) and
// publishes it when its input has ended: flush, fsync, rename to "part-0" (or
// counts.txt). A subtask that is canceled or fails removes its in-progress
// file, so a failed job leaves the earlier output as it was; a restarted job
// writes its files again from the start.
//
// # Checkpoints: exactly-once files
//
// When the job takes checkpoints, File commits with them in two phases
// (connector.TwoPhaseCommitWriter; the sink operator drives it):
//
//	records ──▶ hidden chunk ──barrier c──▶ sealed, fsynced, described in checkpoint c
//	                                        │ checkpoint c complete
//	                                        ▼
//	              part-<subtask>-<n> (rename)  or  appended to the single file
//
// After a failure the job restores the last completed checkpoint, commits the
// chunks that checkpoint had pending (committing is idempotent, so a chunk
// committed before the failure, in full or in part, ends up there exactly
// once), removes the hidden files of the failed attempt, and replays the
// input after the checkpoint. The visible output is then exactly that of a
// run without failures: in a directory, the parts of each subtask read in
// the order of n; a single file, byte for byte. Output becomes visible only
// when a checkpoint completes, so it lags by up to a checkpoint interval, and
// the end of the input is committed by the checkpoint that follows it. A job
// restored with another parallelism commits every old subtask's pending
// chunks once (subtask 0 does) and goes on with new part numbers.
//
// Print, Collect and Blackhole are not transactional: a job that fails and
// restarts from a checkpoint writes again what it wrote after that
// checkpoint (Print), collects those records twice (Collect), or counts them
// twice (Blackhole).
package sink
