package jobmaster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/keygroup"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	jgpb "github.com/weirstream/weir/internal/pb/jobgraphpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state/pebblestate"
)

// operatorInfo is where an operator runs in the job graph.
type operatorInfo struct {
	parallelism, maxParallelism int
}

func operators(g *jgpb.JobGraph) map[string]operatorInfo {
	out := map[string]operatorInfo{}
	for _, v := range g.Vertices {
		maxP := int(v.MaxParallelism)
		if maxP <= 0 {
			maxP = keygroup.DefaultMaxParallelism(int(v.Parallelism))
		}
		for _, op := range v.Operators {
			out[op.Uid] = operatorInfo{int(v.Parallelism), maxP}
		}
	}
	return out
}

// buildMetadata writes the state files of a checkpoint's acknowledgements
// into loc and returns its metadata (not yet written). Keyed state goes to
// one file per operator subtask in the canonical format; operator state
// (source positions, pending sink output) is small and inline. Native
// keyed state (a backend taking incremental checkpoints) is converted to
// the canonical format: incremental checkpoints go through
// incremental.persist instead.
func buildMetadata(ctx context.Context, st storage.Storage, loc storage.Location, jobID string, ops map[string]operatorInfo,
	id int64, kind pb.Kind, triggered time.Time, acks []runtime.TaskAck) (*pb.Metadata, error) {
	return buildMetadataWith(ctx, st, loc, jobID, ops, id, kind, triggered, acks, nil)
}

// buildMetadataWith is buildMetadata, storing native keyed state with up
// if it is not nil (incremental checkpoints). The local directories of
// native state are removed when it returns, whatever happened.
func buildMetadataWith(ctx context.Context, st storage.Storage, loc storage.Location, jobID string, ops map[string]operatorInfo,
	id int64, kind pb.Kind, triggered time.Time, acks []runtime.TaskAck, up *uploader) (*pb.Metadata, error) {
	defer releaseNative(acks)
	byUID := map[string]*pb.OperatorState{}
	for _, a := range acks {
		for uid, snap := range a.Operators {
			info, ok := ops[uid]
			if !ok {
				return nil, fmt.Errorf("task %v acknowledged state for unknown operator %q", a.Task, uid)
			}
			os := byUID[uid]
			if os == nil {
				os = &pb.OperatorState{Uid: uid, Parallelism: int32(info.parallelism), MaxParallelism: int32(info.maxParallelism)}
				byUID[uid] = os
			}
			r := keygroup.RangeForOperator(info.maxParallelism, info.parallelism, int(a.Task.Subtask))
			// key_group_end < key_group_start: no keyed state.
			sub := &pb.SubtaskState{Subtask: a.Task.Subtask, KeyGroupStart: 0, KeyGroupEnd: -1}
			// Complete a snapshot that the task left to be built here, off
			// the task goroutine (runtime.OperatorSnapshot.Materialize).
			if snap.Materialize != nil {
				if err := snap.Materialize(); err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", uid, a.Task.Subtask, err)
				}
			}
			keyed := snap.Keyed
			var native *pebblestate.Files
			if snap.Native != nil {
				f, ok := snap.Native.(*pebblestate.Files)
				if !ok {
					return nil, fmt.Errorf("operator %q subtask %d acknowledged keyed state of type %T, which checkpoint storage cannot store", uid, a.Task.Subtask, snap.Native)
				}
				if up != nil && kind == pb.Kind_CHECKPOINT {
					native = f
				} else {
					var err error
					if keyed, err = f.ReadCanonical(r); err != nil {
						return nil, fmt.Errorf("operator %q subtask %d: %w", uid, a.Task.Subtask, err)
					}
				}
			}
			if keyed != nil || snap.Timers != nil || native != nil {
				sub.KeyGroupStart, sub.KeyGroupEnd = int32(r.Start), int32(r.End)
			}
			if keyed != nil || snap.Timers != nil {
				var buf bytes.Buffer
				if err := storage.WriteKeyedState(&buf, info.maxParallelism, keyed, snap.Timers); err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", uid, a.Task.Subtask, err)
				}
				name := fmt.Sprintf("%s-%d.keyed", fileSafe(uid), a.Task.Subtask)
				w, err := storage.PutBytes(ctx, st, storage.Join(loc.Dir, name), buf.Bytes())
				if err != nil {
					return nil, err
				}
				sub.KeyedState = append(sub.KeyedState, &pb.StateHandle{Handle: &pb.StateHandle_File{
					File: storage.FileHandleOf(pb.Scope_EXCLUSIVE, name, w)}})
			}
			if native != nil {
				dir := fmt.Sprintf("%s-%d.native", fileSafe(uid), a.Task.Subtask)
				n, err := up.upload(ctx, st, loc, dir, native)
				if err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", uid, a.Task.Subtask, err)
				}
				sub.NativeKeyedState = n
			}
			if snap.Operator != nil {
				sub.OperatorState = append(sub.OperatorState, &pb.OperatorStateEntry{Name: "operator", Distribution: pb.Distribution_UNION,
					State: &pb.StateHandle{Handle: &pb.StateHandle_Inline{Inline: snap.Operator}}})
			}
			os.Subtasks = append(os.Subtasks, sub)
		}
	}
	md := &pb.Metadata{JobId: jobID, CheckpointId: id, Kind: kind,
		TriggerTimestampMillis: triggered.UnixMilli(), CompletedTimestampMillis: time.Now().UnixMilli()}
	if kind == pb.Kind_SAVEPOINT {
		md.SavepointFormat = pb.SavepointFormat_CANONICAL
	}
	for _, os := range byUID {
		slices.SortFunc(os.Subtasks, func(a, b *pb.SubtaskState) int { return int(a.Subtask - b.Subtask) })
		md.Operators = append(md.Operators, os)
	}
	slices.SortFunc(md.Operators, func(a, b *pb.OperatorState) int { return strings.Compare(a.Uid, b.Uid) })
	return md, nil
}

// releaseNative removes the local directories of the native keyed state in
// acks (runtime.TaskAck values): what a checkpoint that is persisted, or
// will never be, no longer needs.
func releaseNative[A any](acks []A) {
	for _, a := range acks {
		ack, ok := any(a).(runtime.TaskAck)
		if !ok {
			continue
		}
		for _, snap := range ack.Operators {
			if f, ok := snap.Native.(*pebblestate.Files); ok {
				_ = f.Remove()
			}
		}
	}
}

// fileSafe turns a uid into a file name part.
func fileSafe(uid string) string {
	return url.PathEscape(strings.ReplaceAll(uid, "/", "_"))
}

// restoreFrom reads a checkpoint or savepoint and returns the state of
// each of the job's operators. State of an operator the job does not have
// is an error unless allowNonRestored; operators without state in the
// snapshot start empty. A changed max parallelism cannot be restored: key
// groups would move.
func restoreFrom(ctx context.Context, st storage.Storage, loc storage.Location, md *pb.Metadata,
	ops map[string]operatorInfo, allowNonRestored bool) (map[string]*runtime.RestoredState, error) {
	where := st.URI()
	if loc.Dir != "" {
		where += "/" + loc.Dir
	}
	out := map[string]*runtime.RestoredState{}
	for _, os := range md.Operators {
		info, ok := ops[os.Uid]
		if !ok {
			if allowNonRestored {
				continue
			}
			return nil, fmt.Errorf("%s holds state of operator uid %q, which this job does not have; "+
				"give the operator that uid again (.UID(%q)), or pass --allow-non-restored-state to drop that state", where, os.Uid, os.Uid)
		}
		if len(os.Subtasks) > 0 && int(os.MaxParallelism) != info.maxParallelism {
			return nil, fmt.Errorf("%s: operator %q had max parallelism %d, the job now has %d; keyed state cannot move between "+
				"different numbers of key groups; set its max parallelism back to %d", where, os.Uid, os.MaxParallelism, info.maxParallelism, os.MaxParallelism)
		}
		rs := &runtime.RestoredState{Checkpoint: md.CheckpointId, Snapshots: make([]*runtime.OperatorSnapshot, os.Parallelism)}
		for _, sub := range os.Subtasks {
			snap := &runtime.OperatorSnapshot{}
			kgs := keygroup.Range{Start: int(sub.KeyGroupStart), End: int(sub.KeyGroupEnd)}
			for _, h := range sub.KeyedState {
				f, err := storage.OpenState(ctx, st, loc, h)
				if err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", os.Uid, sub.Subtask, err)
				}
				name := where + "/" + h.GetFile().GetPath()
				keyed, timers, err := storage.ReadKeyedState(f, name, kgs)
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", os.Uid, sub.Subtask, err)
				}
				snap.Keyed, snap.Timers = keyed, timers
			}
			if n := sub.NativeKeyedState; n != nil {
				rc, err := remoteCheckpoint(st, loc, kgs, n)
				if err != nil {
					return nil, fmt.Errorf("%s: operator %q subtask %d: %w", where, os.Uid, sub.Subtask, err)
				}
				if snap.Keyed != nil && snap.Keyed.Len() > 0 {
					return nil, fmt.Errorf("%s: operator %q subtask %d has keyed state in both the canonical and the native format", where, os.Uid, sub.Subtask)
				}
				snap.Keyed, snap.Native = nil, rc
			}
			for _, e := range sub.OperatorState {
				snap.Operator = e.GetState().GetInline()
			}
			rs.Snapshots[sub.Subtask] = snap
		}
		out[os.Uid] = rs
	}
	return out, nil
}

// openSnapshot opens the checkpoint or savepoint at path: its directory or
// its _metadata file, a local path or a URI. Given a job's checkpoint
// directory (…/<job-id>), or a checkpoint whose _metadata is missing or
// corrupt (the job died while writing it), it takes the newest complete
// checkpoint of that job and says so in note.
func openSnapshot(ctx context.Context, path string) (st storage.Storage, loc storage.Location, md *pb.Metadata, note string, err error) {
	path = strings.TrimSuffix(strings.TrimSuffix(path, "/"+storage.MetadataName), "/")
	if !strings.Contains(path, "://") {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, loc, nil, "", err
		}
		path = abs
	}
	var first error
	if _, ok := storage.ParseCheckpointDir(pathBase(path)); ok {
		// A retained checkpoint: its handles reach into the job's shared/
		// directory beside it, so open the storage at the job directory.
		st, err = storage.Open(ctx, pathDir(path))
		if err != nil {
			return nil, loc, nil, "", err
		}
		loc = storage.Location{Dir: pathBase(path), SharedDir: storage.SharedDirName, TaskOwnedDir: storage.TaskOwnedDirName}
		md, first = storage.ReadMetadata(ctx, st, loc)
		if first == nil {
			return st, loc, md, "", nil
		}
		st.Close()
	} else {
		st, err = storage.Open(ctx, path)
		if err != nil {
			return nil, loc, nil, "", err
		}
		md, first = storage.ReadMetadata(ctx, st, storage.SavepointLocation(""))
		if first == nil {
			return st, storage.SavepointLocation(""), md, "", nil
		}
		st.Close()
	}
	// A job directory, or an incomplete checkpoint in one: fall back to
	// the newest complete checkpoint of the job.
	jobDir := path
	if _, ok := storage.ParseCheckpointDir(pathBase(path)); ok {
		jobDir = pathDir(path)
	}
	root, jobID := pathDir(jobDir), pathBase(jobDir)
	if rst, rerr := storage.Open(ctx, root); rerr == nil {
		found, lerr := storage.Latest(ctx, rst, jobID)
		if lerr == nil {
			note = fmt.Sprintf("%s has no usable %s (%v); using checkpoint %d, the newest complete one of job %s",
				path, storage.MetadataName, shortErr(first), found.Metadata.CheckpointId, jobID)
			if jobDir == path {
				note = fmt.Sprintf("using checkpoint %d, the newest complete one of job %s", found.Metadata.CheckpointId, jobID)
			}
			for _, w := range found.Skipped {
				// A checkpoint with a corrupt _metadata had completed: output
				// its sinks committed may be written again.
				note += "\nweir: warning: " + w
			}
			return rst, found.Location, found.Metadata, note, nil
		}
		rst.Close()
	}
	if errors.Is(first, fs.ErrNotExist) {
		return nil, loc, nil, "", fmt.Errorf("--from-savepoint %s: no %s there, and no complete checkpoint beside it; "+
			"give the directory of a savepoint, of a retained checkpoint (…/<job-id>/chk-<n>) or of the job's checkpoints (…/<job-id>)",
			path, storage.MetadataName)
	}
	return nil, loc, nil, "", fmt.Errorf("--from-savepoint %s: %w", path, first)
}

func shortErr(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}

func pathBase(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

func pathDir(p string) string {
	if i := strings.LastIndex(p, "/"); i > 0 {
		return p[:i]
	}
	return p
}
