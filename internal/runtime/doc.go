// Package runtime executes a job's tasks: chains of operators, one goroutine
// per parallel subtask, connected by exchanges that move records in batches
// with credit-based back-pressure.
//
//	source task                         consumer task
//	┌───────────────────────────┐       ┌─────────────────────────────┐
//	│ reader → op → op → writer │─ch───▶│ gate → valve → op → op → …  │
//	└───────────────────────────┘  ▲    └─────────────────────────────┘
//	          batches fill from a per-channel pool of credits; the
//	          consumer returns a batch to the pool once processed
//
// Within a process an exchange passes batches of Go values; across processes
// it serialises batches with the codec package and sends them through the
// network package. Everything a task does happens on its goroutine: records,
// watermarks, timers and (later) checkpoint barriers, like Flink's mailbox.
//
// The runtime knows operators only through the type-erased Operator interface
// and the typed ports (Input[T], Output[T]) that a Factory returns as values of
// type any; a TypeInfo, created where the record type is known, builds the
// typed plumbing (fan-outs, exchanges, input readers) between them.
package runtime
