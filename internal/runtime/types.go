package runtime

import (
	"context"
	"fmt"
	"math"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

const (
	// NoTimestamp marks a record without an event timestamp.
	NoTimestamp int64 = math.MinInt64
	// MinWatermark is the watermark before any event time has passed.
	MinWatermark int64 = math.MinInt64
	// MaxWatermark is emitted at the end of a bounded input: all event time has passed.
	MaxWatermark int64 = math.MaxInt64
)

// Output receives what an operator emits.
type Output[T any] interface {
	Collect(v T, ts int64)
	EmitWatermark(wm int64)
}

// Input is one typed input of an operator.
type Input[T any] interface {
	ProcessElement(v T, ts int64)
}

// Operator is the type-erased lifecycle of a stream operator. All methods run
// on the owning task's goroutine.
type Operator interface {
	Open(ctx *OperatorContext) error
	// ProcessWatermark is called when the watermark of input (0 or 1)
	// advances. Operators forward their combined watermark downstream.
	ProcessWatermark(input int, wm int64)
	// EndInput is called once per input when it will deliver nothing more.
	// After the last input ended the operator flushes what it holds.
	EndInput(input int)
	Close() error
}

// Instance is one created operator with its typed ports.
type Instance struct {
	Op Operator
	// Inputs holds one Input[T] per input index, typed by that input's record type.
	Inputs []any
	// SetOutput binds the operator's Output[OUT]; nil for sinks.
	SetOutput func(out any)
}

// Factory creates the operator of one subtask.
type Factory struct {
	New     func() Instance
	OutType TypeInfo // nil for sinks
	// InTypes holds the record type of each input, for checks and plans.
	InTypes []TypeInfo
	// InputKeys gives, for each keyed input, a constructor of its key-group
	// function func(IN) int for a max parallelism; nil for inputs that are not keyed.
	InputKeys []func(maxParallelism int) any
	// Source is set for source operators: they have no inputs and a driver.
	Source bool
}

// ProcessingTimeService schedules callbacks on the task goroutine.
type ProcessingTimeService interface {
	// Now returns the current processing time in unix milliseconds.
	Now() int64
	// Register runs cb on the task goroutine at or after ts (unix ms).
	Register(ts int64, cb func(now int64))
}

// OperatorContext is what an operator learns about where it runs.
type OperatorContext struct {
	JobName        string
	UID            string
	Name           string
	Subtask        int
	Parallelism    int
	MaxParallelism int
	KeyGroups      keygroup.Range
	ProcessingTime ProcessingTimeService
	// Cancel is done when the task must stop.
	Cancel context.Context
	// Config holds the job configuration (Flink key names).
	Config map[string]string
	// NewKeyedBackend creates the keyed state backend for a keyed operator.
	NewKeyedBackend func() state.Backend
	// SetIdle marks the task's outputs idle (no watermarks will come for now)
	// or active again; sources use it for WithIdleness.
	SetIdle func(idle bool)
	// Restored is the operator's state in the checkpoint or savepoint the
	// job starts from; nil for a fresh start or an operator without state.
	Restored *RestoredState
	// Checkpointing is set when the job takes checkpoints: sinks then make
	// output visible only when a checkpoint after it completes.
	Checkpointing bool
}

// Fail aborts the current task with err, attributing it to the operator. It
// unwinds the task goroutine; operators call it from within record handling.
func Fail(err error) {
	panic(failure{err})
}

// failure wraps an error raised through Fail so the task can tell it from a
// user panic.
type failure struct{ err error }

// OperatorError attributes a task failure to the operator that caused it.
type OperatorError struct {
	Operator string
	UID      string
	Subtask  int
	Parallel int
	Panic    bool
	// KeySelector is set when the panic came from the operator's KeyBy
	// function, which runs in the upstream task that routes the record.
	KeySelector bool
	Err         error
	// Stack holds the user-code frames of a panic, innermost first.
	Stack string
}

func (e *OperatorError) Error() string {
	if !e.Panic {
		return fmt.Sprintf("operator %q (subtask %d/%d) failed: %v", e.Operator, e.Subtask+1, e.Parallel, e.Err)
	}
	what, fix := "panicked", fmt.Sprintf("fix the function given to operator %q, or return an error from it to fail the job with a message", e.Operator)
	if e.KeySelector {
		what = "panicked in its KeyBy function"
		fix = fmt.Sprintf("fix the key selector given to KeyBy for operator %q", e.Operator)
	}
	msg := fmt.Sprintf("operator %q (subtask %d/%d) %s: %v", e.Operator, e.Subtask+1, e.Parallel, what, e.Err)
	if e.Stack != "" {
		msg += "\n" + e.Stack
	}
	return msg + "\n  " + fix
}

func (e *OperatorError) Unwrap() error { return e.Err }

// errCanceled unwinds a task that was canceled while blocked.
type canceledPanic struct{}
