package source

import (
	"math"
	"testing"

	"github.com/weirstream/weir/connector"
)

const noTimestamp = math.MinInt64

type record[T any] struct {
	v  T
	ts int64
}

// recorder is a SourceOutput that keeps what it is given.
type recorder[T any] struct{ got []record[T] }

func (r *recorder[T]) Collect(v T) { r.got = append(r.got, record[T]{v, noTimestamp}) }
func (r *recorder[T]) CollectWithTimestamp(v T, ts int64) {
	r.got = append(r.got, record[T]{v, ts})
}

func (r *recorder[T]) values() []T {
	out := make([]T, len(r.got))
	for i, g := range r.got {
		out[i] = g.v
	}
	return out
}

// readAll opens subtask sub of p and reads it to the end of input, failing
// the test if a Read returns NothingAvailable or the source never ends.
func readAll[T any](t *testing.T, src connector.Source[T], sub, p int) []T {
	t.Helper()
	r, err := src.Open(connector.SourceContext{OperatorName: "test", Subtask: sub, Parallelism: p})
	if err != nil {
		t.Fatalf("Open(subtask %d/%d): %v", sub, p, err)
	}
	defer r.Close()
	var out recorder[T]
	for reads := 0; ; reads++ {
		if reads > 1_000_000 {
			t.Fatalf("subtask %d/%d: no end of input after %d reads", sub, p, reads)
		}
		before := len(out.got)
		status, err := r.Read(&out)
		if err != nil {
			t.Fatalf("Read(subtask %d/%d): %v", sub, p, err)
		}
		if n := len(out.got) - before; n > batchSize {
			t.Fatalf("subtask %d/%d: one Read emitted %d records, more than the batch of %d", sub, p, n, batchSize)
		}
		switch status {
		case connector.EndOfInput:
			return out.values()
		case connector.NothingAvailable:
			t.Fatalf("subtask %d/%d: bounded source returned NothingAvailable", sub, p)
		}
	}
}

// readSubtasks reads every subtask of p and returns their records laid end
// to end in subtask order.
func readSubtasks[T any](t *testing.T, src connector.Source[T], p int) (all []T, perSubtask [][]T) {
	t.Helper()
	for i := range p {
		got := readAll(t, src, i, p)
		perSubtask = append(perSubtask, got)
		all = append(all, got...)
	}
	return all, perSubtask
}
