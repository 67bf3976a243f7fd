// Package stream is Weir's DataStream API: a job is an ordinary Go program
// that builds a dataflow from sources through transformations to sinks and
// calls Execute.
//
//	env := stream.NewEnvironment()
//	lines := stream.FromSource(env, "lines", source.TextFile(*input))
//	words := stream.FlatMap(lines, "split", splitWords)
//	counts := stream.KeyBy(words, func(w string) string { return w }).Reduce("count", add)
//	stream.SinkTo(counts, "out", sink.File(*output, format))
//	err := env.Execute("wordcount")
//
// Every operator has a name, which is also its uid: its stable identity in
// plans, state and savepoints. Names must be unique within a job; .UID(...)
// sets a different uid where a name must change but its state must not.
//
// main() must build the same graph every time it runs: the compiled job
// binary is the artifact a cluster runs, and each worker process rebuilds the
// graph to find its operators by uid.
//
// Transformations that introduce a new type parameter are package functions
// (Map, FlatMap, KeyBy, Aggregate, …), because Go methods cannot have type
// parameters; settings of an operator are methods on the returned stream.
package stream
