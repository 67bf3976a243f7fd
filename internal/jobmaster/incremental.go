package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/checkpoint/coordinator"
	"github.com/weirstream/weir/internal/checkpoint/storage"
	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/keygroup"
	pb "github.com/weirstream/weir/internal/pb/checkpointpb"
	"github.com/weirstream/weir/internal/runtime"
	"github.com/weirstream/weir/internal/state/pebblestate"
)

// Incremental checkpoints (execution.checkpointing.incremental with the
// pebble backend and a checkpoint directory).
//
// A keyed operator's backend acknowledges a checkpoint with its local
// native checkpoint (runtime.OperatorSnapshot.Native, *pebblestate.Files)
// instead of canonical state. Persisting it stores, per subtask:
//
//	SSTs the latest completed checkpoint names   → referenced, not uploaded
//	other SSTs                                   → uploaded to <job>/shared/<NewSharedName>
//	MANIFEST, OPTIONS, markers, WEIR-LINEAGE     → uploaded to chk-<n>/<uid>-<subtask>.native/
//
// and records them in SubtaskState.native_keyed_state with their IDs, so
// that the next checkpoint can reuse them. Reuse follows the storage
// package's rule: only files the latest completed checkpoint names, which
// stays retained until a newer one completes. Timers stay canonical, in the
// subtask's keyed state file.
//
// Shared files are reference-counted by storage.Retention: opened when the
// job starts, told of every completed checkpoint (it deletes the
// checkpoints they subsume, and the shared files no retained checkpoint
// names any more) and of every abandoned one (it deletes the shared files
// that checkpoint uploaded). Retention does I/O and is not safe for
// concurrent use, so one goroutine (run) owns it and carries out the
// requests the job master's mailbox goroutine queues.
//
// Restoring turns each native_keyed_state into a *pebblestate.RemoteCheckpoint
// that the subtask's backend downloads (see restoreFrom and
// pebblestate.Backend.RestoreNative).

// incremental is the job master's part of incremental checkpoints. A nil
// *incremental means they are off; its methods then do what the job master
// does without them.
type incremental struct {
	jobID string
	log   func(format string, args ...any)

	retention *storage.Retention // owned by run
	ctx       context.Context    // of the retention requests; canceled by close
	cancel    context.CancelFunc
	wake      chan struct{}  // run has requests to carry out (capacity 1)
	done      chan struct{}  // closed when run returns
	inflight  sync.WaitGroup // persists under way; Add under mu while !closing

	mu struct {
		sync.Mutex
		// queue are the retention requests for run, in order; closed
		// drops later ones (persists may outlive the job master).
		queue []func(ctx context.Context, r *storage.Retention)
		// closing stops persists from starting; closed drops requests.
		closing, closed bool
		// reusable are the shared files the latest completed checkpoint
		// names, by backend file ID.
		reusable map[string]*pb.BackendFile
		latestID int64
		// persisting are the checkpoints being persisted, with whether
		// they were abandoned meanwhile.
		persisting map[int64]bool
		// persisted are the checkpoints persisted but not yet completed or
		// abandoned.
		persisted map[int64]persistedCheckpoint
		// abandoned are checkpoints abandoned before they were persisted:
		// a persist that starts late must not upload for them.
		abandoned map[int64]bool
	}
}

type persistedCheckpoint struct {
	md       *pb.Metadata // nil if persisting failed
	uploaded []string     // storage names of the shared files it uploaded
}

// openIncremental returns the job's incremental-checkpoint state, or nil
// if incremental checkpoints are off: not configured, not the pebble
// backend (minicluster warns about that), or no checkpoint storage. It
// opens the job's checkpoint retention, which deletes what an earlier run
// of the job left unfinished; call it before checkpoints start.
func openIncremental(ctx context.Context, st storage.Storage, jobID string, cfg *config.Config, log func(string, ...any)) (*incremental, error) {
	if st == nil || !cfg.Bool(config.IncrementalCheckpoints) {
		return nil, nil
	}
	if b, err := config.ParseStateBackend(cfg); err != nil || b != config.BackendPebble {
		return nil, err
	}
	r, rep, err := storage.OpenRetention(ctx, st, jobID, cfg.Int(config.CheckpointsNumRetained))
	if err != nil {
		return nil, fmt.Errorf("opening the retention of job %s's checkpoints: %w", jobID, err)
	}
	for _, w := range rep.Warnings {
		log("%s", w)
	}
	inc := &incremental{jobID: jobID, log: log, retention: r, wake: make(chan struct{}, 1), done: make(chan struct{})}
	inc.ctx, inc.cancel = context.WithCancel(context.Background())
	inc.mu.persisting = map[int64]bool{}
	inc.mu.persisted = map[int64]persistedCheckpoint{}
	inc.mu.abandoned = map[int64]bool{}
	go inc.run()
	return inc, nil
}

// run carries out the queued retention requests, in order, until close;
// then it carries out those still queued and returns.
func (inc *incremental) run() {
	defer close(inc.done)
	for {
		<-inc.wake
		inc.mu.Lock()
		queue, closed := inc.mu.queue, inc.mu.closed
		inc.mu.queue = nil
		inc.mu.Unlock()
		for _, f := range queue {
			f(inc.ctx, inc.retention)
		}
		if closed {
			return
		}
	}
}

// close waits for the checkpoints being persisted (their attempts have
// ended, so they fail fast, or finish writing a checkpoint taken after the
// job's last), abandons those whose persisting failed, finishes the queued
// retention requests and stops run. A checkpoint persisted but never
// completed stays: its _metadata marks it complete on storage, and it is
// consistent (retention deletes nothing any more that it names). Deletions
// that fail are left to the next OpenRetention of the job's checkpoints.
func (inc *incremental) close() {
	if inc == nil {
		return
	}
	inc.mu.Lock()
	inc.mu.closing = true // persist starts no more
	inc.mu.Unlock()
	inc.inflight.Wait()
	inc.mu.Lock()
	leftovers := inc.mu.persisted
	inc.mu.persisted = map[int64]persistedCheckpoint{}
	inc.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(leftovers)) {
		if leftovers[id].md == nil {
			inc.abandon(id, leftovers[id].uploaded)
		}
	}
	inc.mu.Lock()
	inc.mu.closed = true
	inc.mu.Unlock()
	inc.signal()
	<-inc.done
	inc.cancel()
}

func (inc *incremental) enqueue(f func(context.Context, *storage.Retention)) {
	inc.mu.Lock()
	if inc.mu.closed {
		inc.mu.Unlock()
		return
	}
	inc.mu.queue = append(inc.mu.queue, f)
	inc.mu.Unlock()
	inc.signal()
}

func (inc *incremental) signal() {
	select {
	case inc.wake <- struct{}{}:
	default:
	}
}

// persist writes checkpoint id of this job: its state files, storing
// native keyed state incrementally, and then its metadata.
func (inc *incremental) persist(ctx context.Context, st storage.Storage, loc storage.Location, jobID string, ops map[string]operatorInfo,
	id int64, triggered time.Time, acks []runtime.TaskAck) error {
	if inc == nil {
		md, err := buildMetadata(ctx, st, loc, jobID, ops, id, pb.Kind_CHECKPOINT, triggered, acks)
		if err == nil {
			_, err = storage.WriteMetadata(ctx, st, loc, md)
		}
		return err
	}
	inc.mu.Lock()
	if inc.mu.abandoned[id] || inc.mu.closing {
		inc.mu.Unlock()
		releaseNative(acks)
		return fmt.Errorf("checkpoint %d was aborted before it was persisted", id)
	}
	inc.mu.persisting[id] = false
	inc.inflight.Add(1)
	up := &uploader{reusable: inc.mu.reusable} // replaced, never changed
	inc.mu.Unlock()
	defer inc.inflight.Done()

	md, err := buildMetadataWith(ctx, st, loc, jobID, ops, id, pb.Kind_CHECKPOINT, triggered, acks, up)
	if err == nil {
		_, err = storage.WriteMetadata(ctx, st, loc, md)
	}

	inc.mu.Lock()
	abandoned := inc.mu.persisting[id]
	delete(inc.mu.persisting, id)
	pc := persistedCheckpoint{md: md, uploaded: up.uploaded}
	if err != nil {
		pc.md = nil
	}
	if !abandoned {
		inc.mu.persisted[id] = pc
	}
	inc.mu.Unlock()
	if abandoned {
		inc.abandon(id, pc.uploaded)
	}
	return err
}

// completed records that checkpoint id completed: its shared files become
// the reusable ones, and retention retains it (deleting what it subsumes).
// Call it on the mailbox goroutine at NotifyComplete.
func (inc *incremental) completed(id int64, kind coordinator.Kind) {
	if inc == nil || kind != coordinator.Checkpoint {
		return
	}
	inc.mu.Lock()
	pc, ok := inc.mu.persisted[id]
	delete(inc.mu.persisted, id)
	if ok && pc.md != nil {
		inc.mu.reusable = sharedFiles(pc.md)
		inc.mu.latestID = id
	}
	for a := range inc.mu.abandoned {
		if a < id {
			delete(inc.mu.abandoned, a)
		}
	}
	inc.mu.Unlock()
	if !ok || pc.md == nil {
		return
	}
	inc.enqueue(func(ctx context.Context, r *storage.Retention) {
		if err := r.Completed(ctx, pc.md); err != nil {
			inc.log("checkpoint %d: %v (retried when the next checkpoint completes)", id, err)
		}
	})
}

// abandoned records that checkpoint id will never complete (aborted, or
// its metadata discarded): the local native checkpoints of acks are
// removed, and retention deletes its directory and the shared files it
// uploaded, once its persisting (if under way) has ended. Call it on the
// mailbox goroutine at AbortCheckpoint and DiscardMetadata.
func (inc *incremental) abandoned(id int64, acks map[coordinator.TaskID]any) {
	releaseNative(slices.Collect(maps.Values(acks)))
	if inc == nil {
		return
	}
	inc.mu.Lock()
	if _, ok := inc.mu.persisting[id]; ok {
		inc.mu.persisting[id] = true // persist abandons it when done
		inc.mu.Unlock()
		return
	}
	pc, ok := inc.mu.persisted[id]
	delete(inc.mu.persisted, id)
	if !ok && id > inc.mu.latestID {
		inc.mu.abandoned[id] = true
	}
	inc.mu.Unlock()
	inc.abandon(id, pc.uploaded)
}

func (inc *incremental) abandon(id int64, uploaded []string) {
	inc.enqueue(func(ctx context.Context, r *storage.Retention) {
		if err := r.Abandoned(ctx, id, uploaded); err != nil {
			inc.log("deleting aborted checkpoint %d: %v", id, err)
		}
	})
}

// discardAck removes the local native checkpoints of an acknowledgement
// that no checkpoint will use (coordinator.DiscardAck).
func discardAck(state any) { releaseNative([]any{state}) }

// sharedFiles returns the shared native files md names, by ID.
func sharedFiles(md *pb.Metadata) map[string]*pb.BackendFile {
	out := map[string]*pb.BackendFile{}
	for _, op := range md.GetOperators() {
		for _, sub := range op.GetSubtasks() {
			for _, f := range sub.GetNativeKeyedState().GetSharedFiles() {
				if f.GetId() != "" {
					out[f.GetId()] = f
				}
			}
		}
	}
	return out
}

// uploader stores the native checkpoints of one checkpoint.
type uploader struct {
	reusable map[string]*pb.BackendFile // read only
	mu       sync.Mutex
	uploaded []string // storage names of the shared files uploaded
	stats    uploadStats
}

// uploadStats count what an uploader stored.
type uploadStats struct {
	UploadedShared, UploadedPrivate int64 // bytes
	Reused                          int64 // bytes of SSTs referenced, not uploaded
}

// upload stores the local native checkpoint f: SSTs that the latest
// completed checkpoint names are referenced, the others uploaded to the
// job's shared directory under new names; the other files go to dir in
// the checkpoint's own directory.
func (u *uploader) upload(ctx context.Context, st storage.Storage, loc storage.Location, dir string, f *pebblestate.Files) (*pb.NativeKeyedState, error) {
	n := &pb.NativeKeyedState{Backend: "pebble"}
	for _, sst := range f.SSTs {
		if old := u.reusable[sst.ID]; old != nil && old.GetName() == sst.Name && old.GetFile().GetSize() == sst.Size {
			n.SharedFiles = append(n.SharedFiles, &pb.BackendFile{Name: sst.Name, File: old.GetFile(), Id: sst.ID})
			u.count(func(s *uploadStats) { s.Reused += sst.Size })
			continue
		}
		path := storage.NewSharedName(sst.Name)
		name := storage.Join(loc.SharedDir, path)
		w, err := putFile(ctx, st, name, filepath.Join(f.Dir, sst.Name))
		u.mu.Lock()
		u.uploaded = append(u.uploaded, name) // even a failed upload may have left it
		u.mu.Unlock()
		if err != nil {
			return nil, err
		}
		n.SharedFiles = append(n.SharedFiles, &pb.BackendFile{Name: sst.Name, File: storage.FileHandleOf(pb.Scope_SHARED, path, w), Id: sst.ID})
		u.count(func(s *uploadStats) { s.UploadedShared += w.Size })
	}
	for _, o := range f.Other {
		path := storage.Join(dir, o.Name)
		w, err := putFile(ctx, st, storage.Join(loc.Dir, path), filepath.Join(f.Dir, o.Name))
		if err != nil {
			return nil, err
		}
		n.PrivateFiles = append(n.PrivateFiles, &pb.BackendFile{Name: o.Name, File: storage.FileHandleOf(pb.Scope_EXCLUSIVE, path, w)})
		u.count(func(s *uploadStats) { s.UploadedPrivate += w.Size })
	}
	return n, nil
}

func (u *uploader) count(f func(*uploadStats)) {
	u.mu.Lock()
	f(&u.stats)
	u.mu.Unlock()
}

// putFile uploads the local file src as name.
func putFile(ctx context.Context, st storage.Storage, name, src string) (storage.Written, error) {
	in, err := os.Open(src)
	if err != nil {
		return storage.Written{}, fmt.Errorf("uploading native keyed state: %w", err)
	}
	defer in.Close()
	return storage.Put(ctx, st, name, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// remoteCheckpoint describes the native keyed state n of a subtask with
// key groups kgs in the checkpoint at loc of st, for the subtask's backend
// to download.
func remoteCheckpoint(st storage.Storage, loc storage.Location, kgs keygroup.Range, n *pb.NativeKeyedState) (*pebblestate.RemoteCheckpoint, error) {
	if n.GetBackend() != "pebble" {
		return nil, fmt.Errorf("native keyed state of state backend %q, which this build cannot restore", n.GetBackend())
	}
	type remoteFile struct {
		local, name string // name in the checkpoint directory, storage name
		size        int64
		crc         uint32
	}
	var files []remoteFile
	rc := &pebblestate.RemoteCheckpoint{KeyGroups: kgs}
	for _, f := range slices.Concat(n.GetSharedFiles(), n.GetPrivateFiles()) {
		name, err := loc.Resolve(f.GetFile())
		if err != nil {
			return nil, err
		}
		files = append(files, remoteFile{f.GetName(), name, f.GetFile().GetSize(), f.GetFile().GetCrc32C()})
		rc.Files = append(rc.Files, pebblestate.File{Name: f.GetName(), Size: f.GetFile().GetSize(), ID: f.GetId()})
	}
	// The storage the checkpoint was read from may be closed by the time
	// the subtask restores: open it again.
	uri := st.URI()
	rc.Download = func(ctx context.Context, dir string) error {
		src, err := storage.Open(ctx, uri)
		if err != nil {
			return err
		}
		defer src.Close()
		for _, f := range files {
			if strings.ContainsAny(f.local, `/\`) {
				return fmt.Errorf("native file name %q is not a base name", f.local)
			}
			if err := fetchFile(ctx, src, f.name, f.size, f.crc, filepath.Join(dir, f.local)); err != nil {
				return err
			}
		}
		return nil
	}
	return rc, nil
}

// fetchFile downloads name into the new local file dst, checking it.
func fetchFile(ctx context.Context, st storage.Storage, name string, size int64, crc uint32, dst string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = storage.Fetch(ctx, st, name, size, crc, out)
	return errors.Join(err, out.Close())
}
