package pebblestate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// Native snapshots: how a Backend takes part in incremental checkpoints.
//
// The keyed operators call Backend.Snapshot for every checkpoint and put
// the result into their operator snapshot. With Options.Native set,
// Snapshot takes a native checkpoint (Checkpoint) into a new directory
// beside the DB instead of building the canonical snapshot, and returns a
// placeholder; whoever receives the operator's snapshot exchanges the
// placeholder for the checkpoint's Files with NativeSnapshots.Take, and
// then owns the directory (uploads it, then removes it with Files.Remove).
//
//	operator ──Snapshot──▶ placeholder ──(ack)──▶ Take ──▶ *Files ──upload──▶ Remove
//
// The placeholder holds key group -1, which no keyed state file accepts, so
// a placeholder that was never exchanged fails the checkpoint instead of
// silently storing no state.
//
// A restore from native checkpoints goes the other way: the restored
// operator snapshots hold a *RemoteCheckpoint each, and RestoreNative
// downloads them. With the parallelism unchanged the subtask's own
// checkpoint becomes its DB as it is (its SSTs keep their IDs, so the next
// incremental checkpoint uploads none of them again); after a rescale, each
// old checkpoint that overlaps the new key groups is opened on its own and
// its entries of those key groups are copied, with the state ids mapped by
// state name.

// checkpointsSuffix names the directory beside the DB that holds its
// native checkpoints: <dir>.checkpoints/<n>.
const checkpointsSuffix = ".checkpoints"

// NativeSnapshots hands the native checkpoints that backends took in
// Snapshot to whoever receives their placeholders: one per job attempt,
// shared by its backends. It is safe for concurrent use: tasks snapshot on
// their own goroutines.
type NativeSnapshots struct {
	mu struct {
		sync.Mutex
		taken map[*state.Snapshot]*Files
	}
}

// NewNativeSnapshots returns an empty NativeSnapshots.
func NewNativeSnapshots() *NativeSnapshots {
	n := &NativeSnapshots{}
	n.mu.taken = map[*state.Snapshot]*Files{}
	return n
}

// Take returns the native checkpoint a backend took when its Snapshot
// returned the placeholder s, and forgets it; false if s is not one (a
// canonical snapshot) or was taken already. The caller owns the files'
// directory from now on and removes it when done (Files.Remove).
func (n *NativeSnapshots) Take(s *state.Snapshot) (*Files, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := n.mu.taken[s]
	delete(n.mu.taken, s)
	return f, ok
}

func (n *NativeSnapshots) put(s *state.Snapshot, f *Files) {
	n.mu.Lock()
	n.mu.taken[s] = f
	n.mu.Unlock()
}

// Remove deletes the checkpoint directory, once its files are uploaded.
func (f Files) Remove() error { return os.RemoveAll(f.Dir) }

// placeholder is what Snapshot returns in native mode.
func placeholder() *state.Snapshot {
	return &state.Snapshot{KeyGroups: []state.KeyGroupState{{KeyGroup: -1}}}
}

// nativeSnapshot takes a native checkpoint for Snapshot in native mode.
func (b *Backend) nativeSnapshot() (*state.Snapshot, error) {
	// A checkpoint whose placeholder was never taken (the checkpoint was
	// declined before it was acknowledged) is of no use any more.
	if b.lastNative != nil {
		if f, ok := b.opts.Native.Take(b.lastNative); ok {
			_ = f.Remove()
		}
		b.lastNative = nil
	}
	parent := b.dir + checkpointsSuffix
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("snapshotting the Pebble state in %s: %w", b.dir, err)
	}
	b.nativeSeq++
	files, err := b.Checkpoint(filepath.Join(parent, strconv.Itoa(b.nativeSeq)))
	if err != nil {
		return nil, err
	}
	s := placeholder()
	b.opts.Native.put(s, &files)
	b.lastNative = s
	return s, nil
}

// Dispose implements state.Disposer: it closes the DB without flushing
// and deletes its directory, and the native checkpoint nobody took. Taken
// checkpoints belong to their takers, which may still be uploading them
// (finished tasks acknowledge checkpoints until they exit) and remove them
// when done; the directory that held them is left if it is not empty then
// (the cluster removes the job's local directory at the end).
func (b *Backend) Dispose() error {
	err := b.Destroy()
	if b.lastNative != nil {
		if f, ok := b.opts.Native.Take(b.lastNative); ok {
			err = errors.Join(err, f.Remove())
		}
		b.lastNative = nil
	}
	_ = os.Remove(b.dir + checkpointsSuffix) // fails if not empty
	return err
}

// RemoteCheckpoint is a native checkpoint in a checkpoint store: the
// runtime.OperatorSnapshot.Native of restored state, which RestoreNative
// downloads.
type RemoteCheckpoint struct {
	// KeyGroups are the key groups of the subtask that took it.
	KeyGroups keygroup.Range
	// Files are the files of the checkpoint directory.
	Files []File
	// Download writes the files into dir, which exists and is empty, under
	// their names, checking their contents against the checkpoint metadata.
	Download func(ctx context.Context, dir string) error
}

// BackendName implements state.NativeState.
func (*RemoteCheckpoint) BackendName() string { return "pebble" }

// ReadCanonical implements state.NativeState: it downloads the checkpoint
// into a temporary directory, opens it and snapshots the key groups r, for
// a backend of another type (the heap) to restore.
func (c *RemoteCheckpoint) ReadCanonical(ctx context.Context, r keygroup.Range) (*state.Snapshot, error) {
	part := c.KeyGroups.Intersect(r)
	if part.Empty() {
		return &state.Snapshot{}, nil
	}
	dir, err := os.MkdirTemp("", "weir-pebble-read-")
	if err != nil {
		return nil, fmt.Errorf("reading a Pebble checkpoint: %w", err)
	}
	defer os.RemoveAll(dir)
	src, err := c.open(ctx, dir, part)
	if err != nil {
		return nil, err
	}
	s, err := src.Snapshot()
	return s, errors.Join(err, src.Destroy())
}

// open downloads the checkpoint into dir and opens it for the key groups r.
func (c *RemoteCheckpoint) open(ctx context.Context, dir string, r keygroup.Range) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("restoring Pebble state: %w", err)
	}
	if err := c.Download(ctx, dir); err != nil {
		return nil, fmt.Errorf("restoring Pebble state: downloading the checkpoint of key groups %v: %w", c.KeyGroups, err)
	}
	// A small cache: the DB is read once, front to back.
	b, err := open(dir, r, Options{CacheSize: 4 << 20, MemTableSize: 4 << 20}, true)
	if err != nil {
		return nil, fmt.Errorf("restoring Pebble state from the checkpoint of key groups %v: %w", c.KeyGroups, err)
	}
	return b, nil
}

// RestoreNative implements state.NativeRestorer. natives are the old
// subtasks' native checkpoints (*RemoteCheckpoint; another backend's
// state.NativeState is restored through its canonical form); those that
// hold none of this backend's key groups are skipped.
func (b *Backend) RestoreNative(ctx context.Context, natives []any) error {
	r := b.KeyGroupRange()
	var overlap []*RemoteCheckpoint
	for _, n := range natives {
		switch x := n.(type) {
		case nil:
		case *RemoteCheckpoint:
			if !x.KeyGroups.Intersect(r).Empty() {
				overlap = append(overlap, x)
			}
		case state.NativeState:
			s, err := x.ReadCanonical(ctx, r)
			if err != nil {
				return err
			}
			if err := b.Restore(s); err != nil {
				return err
			}
		default:
			return fmt.Errorf("restoring Pebble state: native state of type %T is not a Pebble checkpoint", n)
		}
	}
	if len(overlap) == 1 && overlap[0].KeyGroups == r && b.fresh() {
		return b.reopenFrom(ctx, overlap[0])
	}
	for i, c := range overlap {
		if err := b.copyKeyGroups(ctx, c, i); err != nil {
			return err
		}
	}
	return nil
}

// fresh reports whether nothing was written to or registered in b.
func (b *Backend) fresh() bool {
	return len(b.byID) == 1 && len(b.registry.Names()) == 0
}

// reopenFrom replaces b's empty DB with the checkpoint c, downloaded into
// b's directory: the DB then is the checkpoint's, SST IDs included. After
// an error b is closed (Dispose still cleans up).
func (b *Backend) reopenFrom(ctx context.Context, c *RemoteCheckpoint) error {
	if err := b.close(); err != nil {
		return err
	}
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("restoring Pebble state: %w", err)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return fmt.Errorf("restoring Pebble state: %w", err)
	}
	if err := c.Download(ctx, b.dir); err != nil {
		return fmt.Errorf("restoring Pebble state: downloading the checkpoint of key groups %v: %w", c.KeyGroups, err)
	}
	nb, err := open(b.dir, b.KeyGroupRange(), b.opts, true)
	if err != nil {
		return fmt.Errorf("restoring Pebble state from the checkpoint of key groups %v: %w", c.KeyGroups, err)
	}
	*b = *nb
	return nil
}

// copyKeyGroups copies the entries of b's key groups from checkpoint c,
// opened in a temporary directory beside b's (the i-th of this restore).
// Each state's entries get b's id of the state's name.
func (b *Backend) copyKeyGroups(ctx context.Context, c *RemoteCheckpoint, i int) (err error) {
	part := c.KeyGroups.Intersect(b.KeyGroupRange())
	dir := fmt.Sprintf("%s.restore-%d", b.dir, i)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("restoring Pebble state: %w", err)
	}
	defer os.RemoveAll(dir)
	src, err := c.open(ctx, dir, part)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, src.Destroy()) }()
	it, err := src.db.NewIter(&pebble.IterOptions{
		LowerBound: appendKeyGroup(nil, part.Start),
		UpperBound: appendKeyGroup(nil, part.End+1),
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	ids := map[uint64]*stateInfo{} // src state id → b's state
	b.batch.Reset()
	defer b.batch.Reset()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		id, n := binary.Uvarint(k[2:])
		if n <= 0 {
			return fmt.Errorf("restoring Pebble state: %w %x: bad state id", errCorruptKey, k)
		}
		dst := ids[id]
		if dst == nil {
			if id >= uint64(len(src.byID)) || src.byID[id] == nil {
				return fmt.Errorf("restoring Pebble state: entry of unknown state id %d in the checkpoint of key groups %v", id, c.KeyGroups)
			}
			s := src.byID[id]
			if s.kind != 0 {
				if err := b.registry.Declare(s.name, s.kind); err != nil {
					return err
				}
			}
			if dst, err = b.create(s.name); err != nil {
				return fmt.Errorf("restoring state %q: %w", s.name, err)
			}
			ids[id] = dst
		}
		b.key = append(b.key[:0], k[:2]...)
		b.key = binary.AppendUvarint(b.key, dst.id)
		b.key = append(b.key, k[2+n:]...)
		if err := b.batch.Set(b.key, it.Value(), nil); err != nil {
			return err
		}
		if b.batch.Len() >= restoreBatchSize {
			if err := b.db.Apply(b.batch, pebble.NoSync); err != nil {
				return fmt.Errorf("restoring Pebble state: %w", err)
			}
			b.batch.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if !b.batch.Empty() {
		if err := b.db.Apply(b.batch, pebble.NoSync); err != nil {
			return fmt.Errorf("restoring Pebble state: %w", err)
		}
	}
	return nil
}

// ReadCanonical returns the canonical snapshot of the key groups r of the
// local checkpoint f (a savepoint, or checkpoint storage that keeps
// canonical state, takes it from a backend in native mode). It opens a
// hard-linked copy beside the checkpoint and leaves the checkpoint as it
// is.
func (f Files) ReadCanonical(r keygroup.Range) (_ *state.Snapshot, err error) {
	b, err := OpenFromCheckpoint(f.Dir, f.Dir+".read", r, Options{CacheSize: 4 << 20, MemTableSize: 4 << 20})
	if err != nil {
		_ = os.RemoveAll(f.Dir + ".read")
		return nil, err
	}
	defer func() { err = errors.Join(err, b.Destroy()) }()
	return b.Snapshot()
}
