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
// (source positions, pending sink output) is small and inline.
func buildMetadata(ctx context.Context, st storage.Storage, loc storage.Location, jobID string, ops map[string]operatorInfo,
	id int64, kind pb.Kind, triggered time.Time, acks []runtime.TaskAck) (*pb.Metadata, error) {
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
			if snap.Keyed != nil || snap.Timers != nil {
				sub.KeyGroupStart, sub.KeyGroupEnd = int32(r.Start), int32(r.End)
				var buf bytes.Buffer
				if err := storage.WriteKeyedState(&buf, info.maxParallelism, snap.Keyed, snap.Timers); err != nil {
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
			for _, h := range sub.KeyedState {
				f, err := storage.OpenState(ctx, st, loc, h)
				if err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", os.Uid, sub.Subtask, err)
				}
				name := where + "/" + h.GetFile().GetPath()
				keyed, timers, err := storage.ReadKeyedState(f, name, keygroup.Range{Start: int(sub.KeyGroupStart), End: int(sub.KeyGroupEnd)})
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("operator %q subtask %d: %w", os.Uid, sub.Subtask, err)
				}
				snap.Keyed, snap.Timers = keyed, timers
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
	st, err = storage.Open(ctx, path)
	if err != nil {
		return nil, loc, nil, "", err
	}
	md, err = storage.ReadMetadata(ctx, st, storage.SavepointLocation(""))
	if err == nil {
		return st, storage.SavepointLocation(""), md, "", nil
	}
	st.Close()
	first := err
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
