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
// its path; with parallelism p > 1 the path is a directory of part files, one
// per subtask, named as Flink names them:
//
//	out/part-0
//	out/part-1
//	…
//
// A subtask writes to a hidden in-progress file (".part-0.inprogress", or
// ".counts.txt.inprogress" next to counts.txt), and only when its input has
// ended flushes it, fsyncs it and renames it to its final name, so a reader
// never sees a partial file. A subtask that is canceled or fails removes its
// in-progress file. TextFile in package source skips such hidden files when
// it reads a directory, so one job's output directory is the next one's input.
//
// These sinks are not transactional yet: a job that fails and restarts writes
// its files again from the start (File) or sees some records twice (Collect,
// Blackhole's count).
package sink
