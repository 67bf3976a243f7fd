package source

import (
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/connector"
)

func TestFromSliceSplitsByStride(t *testing.T) {
	vals := make([]int, 5000)
	for i := range vals {
		vals[i] = i
	}
	for _, n := range []int{0, 1, 6, 5000} {
		for p := 1; p <= 7; p++ {
			_, per := readSubtasks(t, FromSlice(vals[:n]), p)
			var all []int
			for i, got := range per {
				for j, v := range got {
					if want := i + j*p; v != want {
						t.Fatalf("n=%d p=%d: subtask %d element %d = %d, want %d", n, p, i, j, v, want)
					}
				}
				all = append(all, got...)
			}
			slices.Sort(all)
			if !slices.Equal(all, vals[:n]) {
				t.Fatalf("n=%d p=%d: union of subtasks is not the slice", n, p)
			}
		}
	}
}

func TestFromSliceCopiesItsInput(t *testing.T) {
	vals := []string{"a", "b"}
	src := FromSlice(vals)
	vals[0] = "changed"
	if got := readAll(t, src, 0, 1); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("got %q, want [a b]", got)
	}
}

func TestFromSliceWithTimestamps(t *testing.T) {
	src := FromSliceWithTimestamps([]int64{10, 20, 30}, func(v int64) int64 { return v * 1000 })
	r, err := src.Open(connector.SourceContext{OperatorName: "s", Subtask: 0, Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	var out recorder[int64]
	if status, err := r.Read(&out); err != nil || status != connector.EndOfInput {
		t.Fatalf("Read: %v, %v; want EndOfInput", status, err)
	}
	want := []record[int64]{{10, 10_000}, {20, 20_000}, {30, 30_000}}
	if !slices.Equal(out.got, want) {
		t.Fatalf("got %v, want %v", out.got, want)
	}
	// Without timestamps the records carry none.
	out = recorder[int64]{}
	r, _ = FromSlice([]int64{1}).Open(connector.SourceContext{Parallelism: 1})
	r.Read(&out)
	if out.got[0].ts != noTimestamp {
		t.Fatalf("FromSlice record has timestamp %d, want none", out.got[0].ts)
	}
}

func TestGeneratorBounded(t *testing.T) {
	for _, count := range []int64{0, 1, 7, 10_000} {
		for p := 1; p <= 7; p++ {
			all, per := readSubtasks(t, Generator(count, func(i int64) int64 { return i * 3 }), p)
			for i, got := range per {
				for j, v := range got {
					if want := int64(i+j*p) * 3; v != want {
						t.Fatalf("count=%d p=%d: subtask %d record %d = %d, want %d", count, p, i, j, v, want)
					}
				}
			}
			if int64(len(all)) != count {
				t.Fatalf("count=%d p=%d: got %d records", count, p, len(all))
			}
			slices.Sort(all)
			for i, v := range all {
				if v != int64(i)*3 {
					t.Fatalf("count=%d p=%d: index %d missing or repeated", count, p, i)
				}
			}
		}
	}
}

func TestGeneratorUnbounded(t *testing.T) {
	r, err := Generator(-1, func(i int64) int64 { return i }).Open(connector.SourceContext{Subtask: 2, Parallelism: 3})
	if err != nil {
		t.Fatal(err)
	}
	var out recorder[int64]
	for range 5 {
		if status, err := r.Read(&out); err != nil || status != connector.MoreAvailable {
			t.Fatalf("Read: %v, %v; want MoreAvailable", status, err)
		}
	}
	if len(out.got) != 5*batchSize {
		t.Fatalf("got %d records, want %d", len(out.got), 5*batchSize)
	}
	for j, g := range out.got {
		if g.v != int64(2+3*j) {
			t.Fatalf("record %d = %d, want %d", j, g.v, 2+3*j)
		}
	}
	// Resumed from its state, it goes on with the next index of its share.
	state, err := r.(connector.CheckpointedReader).SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	restored := make([][]byte, 3)
	for i := range restored {
		restored[i] = indexState(t, int64(i), 3, int64(i+3*5*batchSize))
	}
	restored[2] = state
	r, err = Generator(-1, func(i int64) int64 { return i }).Open(connector.SourceContext{Subtask: 2, Parallelism: 3, Restored: restored})
	if err != nil {
		t.Fatal(err)
	}
	out = recorder[int64]{}
	r.Read(&out)
	if got, want := out.got[0].v, int64(2+3*5*batchSize); got != want {
		t.Fatalf("first record after the restore = %d, want %d", got, want)
	}
}

func TestGeneratorNilFunction(t *testing.T) {
	_, err := Generator[int](10, nil).Open(connector.SourceContext{OperatorName: "gen", Parallelism: 1})
	if err == nil || !strings.Contains(err.Error(), `source "gen"`) {
		t.Fatalf("Open with a nil function: %v, want an error naming the source", err)
	}
}

func TestSubtaskOutOfRange(t *testing.T) {
	path := writeFile(t, t.TempDir(), "in.txt", "a\n")
	for _, src := range []connector.Source[string]{FromSlice([]string{"a"}), Generator(1, func(int64) string { return "" }), TextFile(path)} {
		if _, err := src.Open(connector.SourceContext{OperatorName: "s", Subtask: 3, Parallelism: 3}); err == nil {
			t.Errorf("%T: Open(subtask 3 of 3) succeeded", src)
		}
	}
}
