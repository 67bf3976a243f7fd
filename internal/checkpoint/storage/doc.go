// Package storage owns where checkpoints and savepoints live and in what
// format: the Storage abstraction (a local directory or an S3 bucket), the
// directory layout, the _metadata file, the canonical keyed state file, and
// retention (which checkpoints and files to delete, and when).
//
// # Storage
//
// Open("file:///var/lib/weir/checkpoints") or Open("s3://bucket/prefix")
// returns a Storage: a tree of files named by slash-separated relative
// paths. Writes are atomic (a local file is written under a temporary name,
// synced and renamed; an S3 object appears when its PUT or multipart upload
// completes), so a reader sees a whole file or none. Deleting a missing
// file is not an error. S3 settings come from the s3.* configuration keys
// (Flink's names: s3.endpoint, s3.region, s3.access-key, s3.secret-key,
// s3.path-style-access), each falling back to the AWS environment
// variables. Errors wrap ErrBadURI, ErrUnreachable, ErrNoBucket,
// fs.ErrPermission or fs.ErrNotExist and say what to fix.
//
// # Layout
//
// As in Flink, under the checkpoint directory (state.checkpoints.dir):
//
//	<job-id>/
//	    chk-<n>/              checkpoint n's exclusive files
//	        _metadata         written last: its presence marks n complete
//	        <state files>     named by the metadata, relative to chk-<n>/
//	    shared/               files incremental checkpoints share (Pebble
//	                          SSTs), named by the metadata relative to
//	                          shared/; each upload gets a unique name
//	                          (NewSharedName)
//	    taskowned/            files owned by tasks; never deleted here
//
// and under the savepoint directory (state.savepoints.dir):
//
//	savepoint-<first 6 of job id>-<12 random hex>/
//	    _metadata
//	    <state files>         every file, named relative to this directory,
//	                          so the directory can be moved or copied
//
// A Location resolves a FileHandle (scope + relative path) to a storage
// name.
//
// # Metadata file
//
// The _metadata file is a checkpointpb.Metadata (proto/weir/checkpoint/v1)
// in an envelope:
//
//	offset  size  field
//	0       8     magic 89 'W' 'E' 'I' 'R' 'C' 'P' 0a
//	8       4     format version, uint32 little-endian (MetadataVersion = 1)
//	12      8     body length n, uint64 little-endian
//	20      4     CRC-32C (Castagnoli) of the body, uint32 little-endian
//	24      n     body: the Metadata message, protobuf binary (deterministic)
//
// The file must end exactly after the body. DecodeMetadata rejects a wrong
// magic, a truncated or over-long file, a checksum mismatch, an undecodable
// body or contents that fail ValidateMetadata with an ErrCorrupt error, and
// a newer format version with ErrNewerVersion, each naming the file.
//
// # Keyed state file
//
// The canonical keyed state of one subtask (state.Snapshot entries and
// state.TimerSnapshot timers), written as a stream by KeyedStateWriter:
//
//	header    magic 89 'W' 'E' 'I' 'R' 'K' 'S' 0a, version uint32 LE (1),
//	          max parallelism uint32 LE
//	blocks    one per key group with state, ascending key group:
//	            uvarint key group
//	            uvarint entry count, then per entry:
//	              uvarint s: 0 = the previous entry's state name, else
//	                         s-1 = length of the state name, then the name
//	              byte kind (state.Kind)
//	              key, namespace, user key, value: each uvarint length + bytes
//	            uvarint event-time timer count, then per timer:
//	              varint (zigzag) timestamp, key, namespace (length + bytes)
//	            uvarint processing-time timer count, then the timers
//	            CRC-32C of the block so far, uint32 LE
//	index     uvarint block count, then per block: uvarint key group,
//	          uvarint block length (the blocks are contiguous from offset 16)
//	footer    index offset uint64 LE, CRC-32C of the header followed by
//	          the index uint32 LE, end magic 'W' 'K' 'S' 89
//
// Entries are sorted by state, key, namespace and user key (as in
// state.Snapshot); empty byte fields decode as nil. KeyedStateReader reads
// the footer and index first, then only the blocks of the key groups a
// (rescaled) subtask needs, in one read per run of adjacent blocks — one
// ranged GET on S3. Every length and count is checked against the bytes
// that remain, so corruption is an ErrCorrupt error, never a panic or a
// huge allocation.
//
// # Retention and deletion rules
//
// Retainer (a pure core) keeps the newest state.checkpoints.num-retained
// completed checkpoints and counts, per shared file, the retained
// checkpoints that name it. Retention carries its decisions out:
//
//   - A checkpoint is complete when its _metadata exists and is readable;
//     the coordinator writes it after every file it names. A directory
//     without one is incomplete.
//   - When a checkpoint completes, the oldest retained ones beyond the
//     limit are subsumed. Each is deleted _metadata first (so it is never
//     mistaken for a complete checkpoint again), then the shared files
//     whose count dropped to zero, then the rest of its directory.
//   - A shared file is deleted exactly when no retained checkpoint names
//     it; a file a retained checkpoint names is never deleted.
//   - An incremental checkpoint may reuse an already uploaded shared file
//     only if the latest completed checkpoint names it (that checkpoint is
//     retained until a newer one completes). Reuse maps the backend's file
//     id to the handle in that checkpoint's metadata.
//   - An abandoned (aborted) checkpoint's directory is deleted, and of the
//     shared files it uploaded itself those no retained checkpoint names.
//   - OpenRetention rebuilds the counts after a restart from the _metadata
//     of every chk-<n> directory, then deletes what nothing retained needs:
//     subsumed, incomplete (a crash while writing or deleting) and corrupt
//     checkpoints, and unnamed files in shared/ and in retained
//     directories. It must run before new checkpoints start, and it deletes
//     nothing unless it could read (or positively found corrupt) every
//     _metadata.
//   - Savepoints and taskowned/ are never deleted.
//
// Latest finds the newest complete checkpoint; corrupt or incomplete newer
// ones are skipped with a warning the caller logs.
package storage
