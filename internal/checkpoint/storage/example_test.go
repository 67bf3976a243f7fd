package storage_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/internal/state"
)

// A checkpoint's life: write a subtask's keyed state, then the metadata
// that names it, let retention delete what the new checkpoint subsumes, and
// restore a rescaled subtask from the newest checkpoint.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "weir-example")
	defer os.RemoveAll(dir)
	st, err := storage.Open(ctx, "file://"+dir) // or "s3://bucket/checkpoints"
	if err != nil {
		panic(err)
	}
	defer st.Close()
	const job = "0123456789abcdef0123456789abcdef"
	ret, _, err := storage.OpenRetention(ctx, st, job, 1) // before checkpoints start
	if err != nil {
		panic(err)
	}

	for id := int64(1); id <= 2; id++ {
		loc := storage.CheckpointLocation(job, id)
		snap := &state.Snapshot{KeyGroups: []state.KeyGroupState{
			{KeyGroup: 3, Entries: []state.Entry{{State: "count", Kind: state.KindValue, Key: []byte("a"), Value: []byte{byte(id)}}}},
			{KeyGroup: 100, Entries: []state.Entry{{State: "count", Kind: state.KindValue, Key: []byte("b"), Value: []byte{7}}}},
		}}
		w, err := storage.Put(ctx, st, storage.Join(loc.Dir, "count-0.keyed"), func(w io.Writer) error {
			return storage.WriteKeyedState(w, 128, snap, nil)
		})
		if err != nil {
			panic(err)
		}
		md := &checkpointpb.Metadata{JobId: job, CheckpointId: id, Kind: checkpointpb.Kind_CHECKPOINT,
			Operators: []*checkpointpb.OperatorState{{Uid: "count", Parallelism: 1, MaxParallelism: 128,
				Subtasks: []*checkpointpb.SubtaskState{{Subtask: 0, KeyGroupStart: 0, KeyGroupEnd: 127,
					KeyedState: []*checkpointpb.StateHandle{{Handle: &checkpointpb.StateHandle_File{
						File: storage.FileHandleOf(checkpointpb.Scope_EXCLUSIVE, "count-0.keyed", w)}}}}}}}}
		if _, err := storage.WriteMetadata(ctx, st, loc, md); err != nil { // last: completes the checkpoint
			panic(err)
		}
		if err := ret.Completed(ctx, md); err != nil { // deletes chk-1 when chk-2 completes
			panic(err)
		}
	}

	found, err := storage.Latest(ctx, st, job)
	if err != nil {
		panic(err)
	}
	// Subtask 0 of 2 owns key groups [0, 63]: it reads only that block.
	f, err := storage.OpenState(ctx, st, found.Location, found.Metadata.Operators[0].Subtasks[0].KeyedState[0])
	if err != nil {
		panic(err)
	}
	defer f.Close()
	snap, _, err := storage.ReadKeyedState(f, "count-0.keyed", keygroup.RangeForOperator(128, 2, 0))
	if err != nil {
		panic(err)
	}
	files, _ := st.ListAll(ctx, job)
	fmt.Println("latest:", found.Metadata.CheckpointId)
	fmt.Println("key groups restored:", len(snap.KeyGroups), "value:", snap.KeyGroups[0].Entries[0].Value)
	for _, fi := range files {
		fmt.Println(fi.Name[len(job)+1:])
	}
	// Output:
	// latest: 2
	// key groups restored: 1 value: [2]
	// chk-2/_metadata
	// chk-2/count-0.keyed
}
