// Package pebblestate is the Pebble keyed state backend: a state.RawStore
// that keeps the state of one operator instance (subtask) in its own Pebble
// LSM in a local working directory, so state can outgrow memory, and that
// takes native checkpoints from which incremental checkpoints upload only
// new SST files.
//
// # Key layout
//
// Every entry of the subtask's key groups is one Pebble key:
//
//	entry:  kg (2 bytes, big-endian) ‖ uvarint(state id)
//	        ‖ uvarint(len(key)) ‖ key ‖ uvarint(len(ns)) ‖ ns [‖ user key]
//	meta:   0xff ‖ 's' ‖ state name → uvarint(state id) ‖ kind
//
// The key group comes first, so a key group is one contiguous byte range
// [kg, kg+1): Open clears the key groups outside its range with two range
// deletes, and a future rescale from native checkpoints can cut a DB at key
// group boundaries. Key groups are below 1<<15, so their first byte is at
// most 0x7f and the 0xff metadata keys never fall inside one.
//
// The state id is a small number assigned per state name on its first
// write and persisted in the meta key, so a reopened DB (or one opened from
// a checkpoint) maps names to the same ids; the meta key also records the
// state's kind, which Open declares in the Registry as Restore would.
//
// Key and namespace are length-prefixed, so (key, ns) pairs whose
// concatenations are equal stay apart, and the map entries of one (key, ns)
// share the prefix up to the user key: the user key is the rest of the
// Pebble key. A map scan is one Pebble iterator over that prefix, which
// yields user keys in byte order; clearing a map deletes the prefix's range
// (point deletes for small maps, see DeleteEntries). Value, list, reducing
// and aggregating state store one value under the prefix itself.
//
// List state is the concatenation of its encoded elements, and Append is a
// Pebble merge with a concatenating merge operator, so adding to a list
// never reads it.
//
// # Writes and durability
//
// Writes go straight to the DB with pebble.NoSync, and the write-ahead log
// is off unless Options.WAL is set: a subtask's working directory is not
// what survives a failure, checkpoints are. After a crash the job restores
// from its last checkpoint into a fresh directory; what the memtable held
// is not needed. Close flushes the memtable when the WAL is off, so that a
// cleanly closed directory reopens with all its state.
//
// # Snapshots and checkpoints
//
// Snapshot returns the canonical, backend-independent state.Snapshot (the
// savepoint format): it scans the subtask's key groups and sorts each key
// group's entries by state name, key, namespace and user key, which the key
// layout (state id and length prefixes first) does not. Restore accepts any
// backend's snapshot and keeps only the key groups in range.
//
// Checkpoint is the native, incremental form: it flushes the memtable and
// calls Pebble's DB.Checkpoint, which hard-links the live SST files and
// copies the MANIFEST and OPTIONS into a new directory. SST files never
// change once written, so a checkpoint store uploads only the SSTs it has
// not stored before and the small other files every time. OpenFromCheckpoint
// opens a backend from such a directory in a new working directory; it
// hard-links the SSTs, so a restore copies no state data.
//
//	working dir ──Flush + DB.Checkpoint──▶ ckpt-N/  000012.sst  (ID a1…/000012.sst, stored at N-1)
//	                                                000015.sst  (new: upload)
//	                                                MANIFEST-…, OPTIONS-…, markers, WEIR-LINEAGE (always upload)
//
// Pebble names an SST by a file number that is unique within one DB, but a
// DB opened from a checkpoint continues the checkpoint's numbering, and so
// does every other DB opened from it: two restores of the same checkpoint,
// or a restore while the original still runs, create different files with
// the same name. Each File therefore carries an ID, the name qualified by
// the random id of the incarnation (one Open of a directory) that wrote it.
// The directory's LineageFile lists, per incarnation, the first file number
// it may write, which is above every file present when it opened; Open
// writes it (synced) before the incarnation writes anything, and Checkpoint
// writes it into the checkpoint. So a file's number says which incarnation
// wrote it, and files inherited from a checkpoint keep the IDs they were
// uploaded under.
//
// In a job (see native.go), Options.Native makes Snapshot take such a
// checkpoint instead of the canonical snapshot, for the job master to
// upload incrementally; RestoreNative restores from the uploaded files,
// as the DB itself when the key groups are unchanged (the SSTs keep their
// IDs, so the next checkpoint uploads none of them again) and by copying
// key groups out of each old checkpoint after a rescale. Dispose deletes
// the DB when its task ends; state lives on in checkpoints.
//
// A Backend is not safe for concurrent use: one task goroutine owns it. The
// files of a checkpoint directory are immutable once Checkpoint returns and
// may be uploaded by another goroutine while the task goes on.
package pebblestate
