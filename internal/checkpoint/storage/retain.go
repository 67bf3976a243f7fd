package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

// RetainedCheckpoint is what retention needs to know of a completed
// checkpoint.
type RetainedCheckpoint struct {
	ID int64
	// Dir is the checkpoint's exclusive directory (a storage name).
	Dir string
	// Shared are the storage names of the shared files it names, sorted,
	// without duplicates.
	Shared []string
}

// Discard is a checkpoint to delete: its exclusive directory and the
// shared files that no retained checkpoint names any more.
type Discard struct {
	ID     int64
	Dir    string
	Shared []string
}

// Retainer decides which checkpoints to keep and which files to delete. It
// keeps the newest numRetained completed checkpoints and counts, for each
// shared file, the retained checkpoints that name it; a shared file is to
// be deleted exactly when that count drops to zero.
//
// It is a pure core: it does no I/O and returns Discards that the caller
// carries out (Retention does, on a Storage). Not safe for concurrent use.
//
// Invariants (checkInvariants): retained is sorted by ascending ID and holds
// at most numRetained checkpoints; refs[f] is the number of retained
// checkpoints whose Shared contains f, and no entry is zero.
type Retainer struct {
	numRetained int
	retained    []RetainedCheckpoint
	refs        map[string]int
}

// NewRetainer returns a Retainer that keeps numRetained checkpoints
// (state.checkpoints.num-retained).
func NewRetainer(numRetained int) (*Retainer, error) {
	if numRetained < 1 {
		return nil, fmt.Errorf("%s=%d: at least one completed checkpoint must be retained (the one to restore from); set it to 1 or more", config.CheckpointsNumRetained.Name, numRetained)
	}
	return &Retainer{numRetained: numRetained, refs: map[string]int{}}, nil
}

// Add records a newly completed checkpoint, which must have a higher ID
// than every checkpoint added before, and returns the checkpoints it
// subsumes (oldest first), each with the shared files that no retained
// checkpoint names any more.
func (r *Retainer) Add(c RetainedCheckpoint) ([]Discard, error) {
	if n := len(r.retained); n > 0 && c.ID <= r.retained[n-1].ID {
		return nil, fmt.Errorf("checkpoint %d completed after checkpoint %d; completed checkpoints must have increasing IDs", c.ID, r.retained[n-1].ID)
	}
	c.Shared = slices.Compact(slices.Sorted(slices.Values(c.Shared)))
	for _, f := range c.Shared {
		r.refs[f]++
	}
	r.retained = append(r.retained, c)
	var out []Discard
	for len(r.retained) > r.numRetained {
		old := r.retained[0]
		r.retained = slices.Delete(r.retained, 0, 1)
		d := Discard{ID: old.ID, Dir: old.Dir}
		for _, f := range old.Shared {
			if r.refs[f]--; r.refs[f] == 0 {
				delete(r.refs, f)
				d.Shared = append(d.Shared, f)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// Abandon returns the Discard of a checkpoint that never completed (it was
// aborted): its directory, and of the shared files it uploaded itself
// those that no retained checkpoint names. It is an error to abandon a
// retained checkpoint.
func (r *Retainer) Abandon(id int64, dir string, uploadedShared []string) (Discard, error) {
	for _, c := range r.retained {
		if c.ID == id {
			return Discard{}, fmt.Errorf("checkpoint %d cannot be abandoned: it completed and is retained", id)
		}
	}
	d := Discard{ID: id, Dir: dir}
	for _, f := range slices.Compact(slices.Sorted(slices.Values(uploadedShared))) {
		if r.refs[f] == 0 {
			d.Shared = append(d.Shared, f)
		}
	}
	return d, nil
}

// Retained returns the retained checkpoints, oldest first.
func (r *Retainer) Retained() []RetainedCheckpoint { return slices.Clone(r.retained) }

// RefCount returns the number of retained checkpoints that name the shared
// file name.
func (r *Retainer) RefCount(name string) int { return r.refs[name] }

// checkInvariants returns an error if the Retainer's invariants fail.
func (r *Retainer) checkInvariants() error {
	if len(r.retained) > r.numRetained {
		return fmt.Errorf("%d checkpoints retained, at most %d allowed", len(r.retained), r.numRetained)
	}
	want := map[string]int{}
	for i, c := range r.retained {
		if i > 0 && r.retained[i-1].ID >= c.ID {
			return fmt.Errorf("retained checkpoints out of order: %d before %d", r.retained[i-1].ID, c.ID)
		}
		for _, f := range c.Shared {
			want[f]++
		}
	}
	for f, n := range r.refs {
		if want[f] != n {
			return fmt.Errorf("shared file %s: reference count %d, but %d retained checkpoints name it", f, n, want[f])
		}
	}
	if len(want) != len(r.refs) {
		return fmt.Errorf("%d shared files referenced, %d counted", len(want), len(r.refs))
	}
	return nil
}

// Retention carries out a Retainer's decisions on the checkpoints of one
// job in a Storage opened at the checkpoint directory (state.checkpoints.dir).
// The checkpoint coordinator's runner owns it; it is not safe for
// concurrent use.
//
// Deletions that fail are remembered and retried by the next call that
// deletes; every deletion is idempotent, so retrying after a crash (through
// OpenRetention) is safe too.
type Retention struct {
	st      Storage
	jobID   string
	core    *Retainer
	pending []Discard
}

// RebuildReport says what OpenRetention found and deleted.
type RebuildReport struct {
	// Retained are the IDs of the retained checkpoints, oldest first.
	Retained []int64
	// Warnings describe checkpoint directories that were incomplete or
	// corrupt and were deleted, for the caller to log.
	Warnings []string
	// Deleted counts the directories and files deleted.
	Deleted int
}

// OpenRetention rebuilds retention for jobID from the storage: it reads
// the _metadata of every chk-<n> directory of the job, retains the newest
// numRetained readable checkpoints, and deletes everything else that
// retention owns: older checkpoints, incomplete ones (no _metadata: a crash
// while the checkpoint was written or deleted), corrupt ones, and files in
// shared/ or in a retained checkpoint's directory that no retained
// checkpoint names (uploads of checkpoints that never completed). The
// taskowned/ directory and names that are not Weir's are left alone.
//
// Call it before the job takes checkpoints again: a checkpoint in progress
// would lose its files. It reads every metadata file before it deletes
// anything, and fails without deleting if one cannot be read for any
// reason but corruption (an I/O error, or a newer format).
func OpenRetention(ctx context.Context, st Storage, jobID string, numRetained int) (*Retention, RebuildReport, error) {
	var rep RebuildReport
	core, err := NewRetainer(numRetained)
	if err != nil {
		return nil, rep, err
	}
	if err := CheckName(jobID); err != nil || strings.Contains(jobID, "/") {
		return nil, rep, fmt.Errorf("job ID %q cannot name a directory", jobID)
	}
	r := &Retention{st: st, jobID: jobID, core: core}
	scan, err := scanCheckpoints(ctx, st, jobID)
	if err != nil {
		return nil, rep, err
	}
	var doomed []string // directories of unusable checkpoints
	for _, c := range scan {
		if c.err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("deleting checkpoint %d of job %s: %v", c.id, jobID, c.err))
			doomed = append(doomed, c.loc.Dir)
			continue
		}
		refs, err := ReferencedFiles(c.loc, c.md)
		if err != nil {
			return nil, rep, fmt.Errorf("checkpoint %s: %w", fileURI(st, c.loc.MetadataFile()), err)
		}
		discards, err := core.Add(RetainedCheckpoint{ID: c.id, Dir: c.loc.Dir, Shared: refs.Shared})
		if err != nil {
			return nil, rep, err
		}
		r.pending = append(r.pending, discards...)
	}
	for _, c := range core.retained {
		rep.Retained = append(rep.Retained, c.ID)
	}
	for _, dir := range doomed {
		if err := st.DeleteAll(ctx, dir); err != nil {
			return nil, rep, err
		}
		rep.Deleted++
	}
	n, err := r.runPending(ctx)
	rep.Deleted += n
	if err != nil {
		return nil, rep, err
	}
	n, err = r.sweep(ctx, scan)
	rep.Deleted += n
	if err != nil {
		return nil, rep, err
	}
	return r, rep, nil
}

// sweep deletes the files in shared/ and in the retained checkpoints'
// directories that no retained checkpoint names.
func (r *Retention) sweep(ctx context.Context, scan []scannedCheckpoint) (int, error) {
	keep := map[string]bool{}
	dirs := []string{Join(JobDir(r.jobID), SharedDirName)}
	for _, c := range scan {
		if c.err != nil || !slices.ContainsFunc(r.core.retained, func(rc RetainedCheckpoint) bool { return rc.ID == c.id }) {
			continue
		}
		refs, err := ReferencedFiles(c.loc, c.md)
		if err != nil {
			return 0, err
		}
		for _, f := range slices.Concat(refs.Exclusive, refs.Shared) {
			keep[f] = true
		}
		keep[c.loc.MetadataFile()] = true
		dirs = append(dirs, c.loc.Dir)
	}
	deleted := 0
	for _, dir := range dirs {
		files, err := r.st.ListAll(ctx, dir)
		if err != nil {
			return deleted, err
		}
		for _, f := range files {
			if keep[f.Name] {
				continue
			}
			if err := r.st.Delete(ctx, f.Name); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

// Completed records checkpoint md, whose metadata has been written at
// CheckpointLocation(jobID, id), as retained, and deletes the checkpoints
// it subsumes with the shared files nothing retained names any more.
//
// An incremental checkpoint may name a shared file that an earlier
// checkpoint uploaded only if the latest completed checkpoint names it:
// that checkpoint is retained until this one completes, so the file cannot
// have been deleted in between.
func (r *Retention) Completed(ctx context.Context, md *checkpointpb.Metadata) error {
	if md.GetJobId() != r.jobID {
		return fmt.Errorf("checkpoint %d belongs to job %q, not %q", md.GetCheckpointId(), md.GetJobId(), r.jobID)
	}
	if md.GetKind() != checkpointpb.Kind_CHECKPOINT {
		return fmt.Errorf("checkpoint %d is a %v; only checkpoints are retained (savepoints belong to the user)", md.GetCheckpointId(), md.GetKind())
	}
	loc := CheckpointLocation(r.jobID, md.GetCheckpointId())
	refs, err := ReferencedFiles(loc, md)
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", md.GetCheckpointId(), err)
	}
	discards, err := r.core.Add(RetainedCheckpoint{ID: md.GetCheckpointId(), Dir: loc.Dir, Shared: refs.Shared})
	if err != nil {
		return err
	}
	r.pending = append(r.pending, discards...)
	_, err = r.runPending(ctx)
	return err
}

// Abandoned deletes checkpoint id, which never completed: its directory,
// and of the shared files it uploaded (not those it reused) the ones no
// retained checkpoint names.
func (r *Retention) Abandoned(ctx context.Context, id int64, uploadedShared []string) error {
	d, err := r.core.Abandon(id, CheckpointDir(r.jobID, id), uploadedShared)
	if err != nil {
		return err
	}
	r.pending = append(r.pending, d)
	_, err = r.runPending(ctx)
	return err
}

// Retained returns the retained checkpoints, oldest first.
func (r *Retention) Retained() []RetainedCheckpoint { return r.core.Retained() }

// Pending returns the deletions that failed and will be retried.
func (r *Retention) Pending() []Discard { return slices.Clone(r.pending) }

// runPending carries out the pending discards in order, stopping at the
// first error (the failed discard and those after it stay pending). It
// returns the number of deletions done.
//
// A discard deletes the _metadata file first, so that a checkpoint
// directory with a readable _metadata is always complete (the writer
// writes it last); then the shared files; then the rest of the directory.
// A crash in between leaves an incomplete directory and perhaps unnamed
// shared files, which OpenRetention deletes.
func (r *Retention) runPending(ctx context.Context) (int, error) {
	deleted := 0
	for len(r.pending) > 0 {
		d := r.pending[0]
		if err := r.st.Delete(ctx, Join(d.Dir, MetadataName)); err != nil {
			return deleted, fmt.Errorf("deleting checkpoint %d: %w", d.ID, err)
		}
		for _, f := range d.Shared {
			if r.core.RefCount(f) > 0 {
				continue // named again since (cannot happen under the reuse rule; be safe)
			}
			if err := r.st.Delete(ctx, f); err != nil {
				return deleted, fmt.Errorf("deleting checkpoint %d: %w", d.ID, err)
			}
			deleted++
		}
		if err := r.st.DeleteAll(ctx, d.Dir); err != nil {
			return deleted, fmt.Errorf("deleting checkpoint %d: %w", d.ID, err)
		}
		deleted++
		r.pending = r.pending[1:]
	}
	return deleted, nil
}

// NewSharedName returns a fresh name for a file in a job's shared/
// directory: random hex digits, then "-" and the base name the backend
// gave the file (e.g. "9f86d081884c7d65-000123.sst"). Shared names must be
// unique per upload, so that deleting the upload of an abandoned checkpoint
// never deletes a file another checkpoint uploaded under the same backend
// name.
func NewSharedName(backendName string) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	b := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, backendName)
	if b == "" || b == "." || b == ".." {
		return hex.EncodeToString(rnd[:])
	}
	return hex.EncodeToString(rnd[:]) + "-" + b
}

// scannedCheckpoint is one chk-<n> directory and what reading its metadata
// gave: md, or err (ErrCorrupt or fs.ErrNotExist) if the checkpoint is
// unusable.
type scannedCheckpoint struct {
	id  int64
	loc Location
	md  *checkpointpb.Metadata
	err error
}

// scanCheckpoints reads the metadata of every chk-<n> directory of the
// job, ascending by ID. A missing, corrupt or mismatched _metadata makes
// that checkpoint unusable (err set); any other error fails the scan.
func scanCheckpoints(ctx context.Context, st Storage, jobID string) ([]scannedCheckpoint, error) {
	ents, err := st.List(ctx, JobDir(jobID))
	if err != nil {
		return nil, err
	}
	var out []scannedCheckpoint
	for _, e := range ents {
		if !e.IsDir {
			continue
		}
		id, ok := ParseCheckpointDir(base(e.Name))
		if !ok {
			continue
		}
		c := scannedCheckpoint{id: id, loc: CheckpointLocation(jobID, id)}
		c.md, c.err = ReadMetadata(ctx, st, c.loc)
		switch {
		case c.err == nil:
			switch {
			case c.md.GetJobId() != jobID:
				c.err = fmt.Errorf("%w: %s belongs to job %s", ErrCorrupt, fileURI(st, c.loc.MetadataFile()), c.md.GetJobId())
			case c.md.GetCheckpointId() != id:
				c.err = fmt.Errorf("%w: %s is the metadata of checkpoint %d", ErrCorrupt, fileURI(st, c.loc.MetadataFile()), c.md.GetCheckpointId())
			case c.md.GetKind() != checkpointpb.Kind_CHECKPOINT:
				c.err = fmt.Errorf("%w: %s is the metadata of a %v", ErrCorrupt, fileURI(st, c.loc.MetadataFile()), c.md.GetKind())
			}
			if c.err != nil {
				c.md = nil
			}
		case errors.Is(c.err, fs.ErrNotExist):
			c.err = fmt.Errorf("incomplete: %s does not exist", fileURI(st, c.loc.MetadataFile()))
		case errors.Is(c.err, ErrCorrupt):
		default:
			return nil, c.err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b scannedCheckpoint) int { return compareInt64(a.id, b.id) })
	return out, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ErrNoCheckpoint is wrapped by Latest's error when the job has no
// complete checkpoint.
var ErrNoCheckpoint = errors.New("no complete checkpoint")

// Found is the checkpoint Latest found.
type Found struct {
	Location Location
	Metadata *checkpointpb.Metadata
	// Skipped describes newer checkpoints that could not be used (no
	// _metadata, or a corrupt one), newest first, for the caller to log as
	// warnings.
	Skipped []string
}

// Latest finds the newest complete checkpoint of jobID in st (a Storage
// opened at the checkpoint directory): the one with the highest ID whose
// _metadata is readable. Newer checkpoints without a usable _metadata are
// skipped and listed in Found.Skipped. If there is none, the error wraps
// ErrNoCheckpoint. An error reading a _metadata other than its absence or
// corruption (an I/O error, a newer format) is returned rather than
// falling back to an older checkpoint, which would silently lose progress.
func Latest(ctx context.Context, st Storage, jobID string) (*Found, error) {
	ents, err := st.List(ctx, JobDir(jobID))
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, e := range ents {
		if id, ok := ParseCheckpointDir(base(e.Name)); ok && e.IsDir {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var skipped []string
	for i := len(ids) - 1; i >= 0; i-- {
		loc := CheckpointLocation(jobID, ids[i])
		md, err := ReadMetadata(ctx, st, loc)
		switch {
		case err == nil && md.GetJobId() == jobID && md.GetCheckpointId() == ids[i] && md.GetKind() == checkpointpb.Kind_CHECKPOINT:
			return &Found{Location: loc, Metadata: md, Skipped: skipped}, nil
		case err == nil:
			skipped = append(skipped, fmt.Sprintf("skipping checkpoint %d: %s holds the metadata of job %s, %v %d", ids[i], fileURI(st, loc.MetadataFile()), md.GetJobId(), md.GetKind(), md.GetCheckpointId()))
		case errors.Is(err, fs.ErrNotExist):
			skipped = append(skipped, fmt.Sprintf("skipping checkpoint %d: incomplete (%s does not exist)", ids[i], fileURI(st, loc.MetadataFile())))
		case errors.Is(err, ErrCorrupt):
			skipped = append(skipped, fmt.Sprintf("skipping checkpoint %d: %v", ids[i], err))
		default:
			return nil, err
		}
	}
	msg := fmt.Sprintf("job %s in %s", jobID, joinURI(st.URI(), JobDir(jobID)))
	if len(skipped) > 0 {
		msg += " (" + strings.Join(skipped, "; ") + ")"
	}
	return nil, fmt.Errorf("%w of %s", ErrNoCheckpoint, msg)
}
