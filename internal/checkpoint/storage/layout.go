package storage

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

// Names in a checkpoint directory tree (Flink's layout).
const (
	// MetadataName is the metadata file of a checkpoint or savepoint. It
	// is written last: a checkpoint directory without a readable one is
	// incomplete (or half deleted).
	MetadataName = "_metadata"
	// SharedDirName holds the files that incremental checkpoints of a job
	// share.
	SharedDirName = "shared"
	// TaskOwnedDirName holds files that tasks own; retention never deletes
	// them.
	TaskOwnedDirName = "taskowned"
	// checkpointDirPrefix + ID is a checkpoint's exclusive directory.
	checkpointDirPrefix = "chk-"
	// savepointDirPrefix starts every savepoint directory's name.
	savepointDirPrefix = "savepoint-"
)

// Location says where the files of one checkpoint or savepoint are, as
// names relative to a Storage root, so that FileHandles (whose paths are
// relative to their scope's directory) can be resolved.
type Location struct {
	// Dir is the checkpoint's exclusive directory (chk-<n>, or the
	// savepoint directory); it holds MetadataName. "" is the storage root
	// itself, as when a Storage is opened at a savepoint directory.
	Dir string
	// SharedDir and TaskOwnedDir are the job's shared/ and taskowned/
	// directories; empty for a savepoint, which has neither.
	SharedDir    string
	TaskOwnedDir string
}

// JobDir is the directory of a job's checkpoints: its ID.
func JobDir(jobID string) string { return jobID }

// CheckpointDir is the exclusive directory of checkpoint id of a job,
// "<job-id>/chk-<id>".
func CheckpointDir(jobID string, id int64) string {
	return Join(JobDir(jobID), checkpointDirPrefix+strconv.FormatInt(id, 10))
}

// CheckpointLocation is the location of checkpoint id of a job, in a
// Storage opened at the checkpoint directory (state.checkpoints.dir).
func CheckpointLocation(jobID string, id int64) Location {
	return Location{
		Dir:          CheckpointDir(jobID, id),
		SharedDir:    Join(JobDir(jobID), SharedDirName),
		TaskOwnedDir: Join(JobDir(jobID), TaskOwnedDirName),
	}
}

// SavepointLocation is the location of the savepoint in directory dir
// (relative to the Storage root; "" if the Storage is opened at the
// savepoint itself).
func SavepointLocation(dir string) Location { return Location{Dir: dir} }

// MetadataFile is the name of the location's metadata file.
func (l Location) MetadataFile() string { return Join(l.Dir, MetadataName) }

// ParseCheckpointDir returns the checkpoint ID of a directory named
// "chk-<id>" (the base name only), and false for any other name.
func ParseCheckpointDir(baseName string) (int64, bool) {
	digits, ok := strings.CutPrefix(baseName, checkpointDirPrefix)
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id < 0 {
		return 0, false
	}
	return id, true
}

// NewSavepointDirName returns a fresh savepoint directory name, as Flink
// makes them: "savepoint-<first 6 characters of the job ID>-<12 random hex
// digits>".
func NewSavepointDirName(jobID string) string {
	short := jobID
	if len(short) > 6 {
		short = short[:6]
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return savepointDirPrefix + short + "-" + hex.EncodeToString(rnd[:])
}

// Resolve returns the storage name of the file h names in this location.
// It checks that h's path is a clean relative path and that its scope
// exists here (a savepoint has no shared or task-owned directory).
func (l Location) Resolve(h *checkpointpb.FileHandle) (string, error) {
	if h == nil {
		return "", fmt.Errorf("missing file handle")
	}
	if err := CheckName(h.GetPath()); err != nil {
		return "", fmt.Errorf("file handle: %w", err)
	}
	var dir string
	switch h.GetScope() {
	case checkpointpb.Scope_EXCLUSIVE:
		dir = l.Dir
	case checkpointpb.Scope_SHARED:
		if l.SharedDir == "" {
			return "", fmt.Errorf("file handle %q is in the shared scope, but a savepoint has no shared directory", h.GetPath())
		}
		dir = l.SharedDir
	case checkpointpb.Scope_TASK_OWNED:
		if l.TaskOwnedDir == "" {
			return "", fmt.Errorf("file handle %q is in the task-owned scope, but a savepoint has no task-owned directory", h.GetPath())
		}
		dir = l.TaskOwnedDir
	default:
		return "", fmt.Errorf("file handle %q has unknown scope %v", h.GetPath(), h.GetScope())
	}
	if h.GetScope() == checkpointpb.Scope_EXCLUSIVE && h.GetPath() == MetadataName {
		return "", fmt.Errorf("file handle names the metadata file %q itself", MetadataName)
	}
	return Join(dir, h.GetPath()), nil
}
