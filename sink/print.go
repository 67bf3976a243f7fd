package sink

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/weirstream/weir/connector"
)

// Print writes every record to standard output as "prefix> value", formatted
// with fmt's %v, like Flink's print(). When the sink runs in parallel each
// line also names its subtask, counting from 1: "prefix:2> value". With an
// empty prefix the lines read "value" and "2> value".
//
// Lines go out as they come, unbuffered, each in one write, so lines of
// different subtasks never interleave; it is meant for examples and
// debugging, not for volume.
func Print[T any](prefix string) connector.Sink[T] {
	return &printSink[T]{prefix: prefix, w: os.Stdout}
}

type printSink[T any] struct {
	prefix string
	mu     sync.Mutex // serializes the subtasks' writes to w
	w      io.Writer
}

func (s *printSink[T]) Open(ctx connector.SinkContext) (connector.SinkWriter[T], error) {
	lead := s.prefix
	if ctx.Parallelism > 1 {
		if lead != "" {
			lead += ":"
		}
		lead += strconv.Itoa(ctx.Subtask + 1)
	}
	if lead != "" {
		lead += "> "
	}
	return &printWriter[T]{sink: s, lead: lead}, nil
}

type printWriter[T any] struct {
	sink *printSink[T]
	lead string
	line []byte // reused
}

func (w *printWriter[T]) Write(v T, _ int64) error {
	w.line = append(w.line[:0], w.lead...)
	w.line = fmt.Append(w.line, v)
	w.line = append(w.line, '\n')
	w.sink.mu.Lock()
	_, err := w.sink.w.Write(w.line)
	w.sink.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sink: printing to standard output: %w", err)
	}
	return nil
}

func (w *printWriter[T]) Finish() error { return nil }
func (w *printWriter[T]) Close() error  { return nil }
