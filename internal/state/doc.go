// Package state owns keyed state: the Backend of one operator instance, the
// typed states operators use (value, list, map, reducing, aggregating), the
// keyed timer service, and the canonical snapshot of both.
//
// # Keys, key groups and namespaces
//
// The operator encodes each record's key with the codec, hashes the bytes
// for the key group (keygroup.ForKeyHash) and calls SetCurrentKey; states
// then read and write the entry of that key. Windows also set a namespace
// (the window); the empty namespace is the default and the hot path.
//
//	record ─▶ codec ─▶ key bytes ─▶ Hash64 ─▶ key group
//	                       │                      │
//	               Backend.SetCurrentKey(key, keyGroup)   SetCurrentNamespace(ns)
//	                       │
//	  ValueState / ListState / MapState / … ─▶ entry (state, key group, key, ns)
//
// Every backend stores entries per key group: a key group is the unit that
// moves between subtasks when a job is rescaled from a savepoint.
//
// # Heap backend
//
// Heap keeps Go values in Go maps, never serialising on access. Each state
// holds, per key group, two tables:
//
//	plain:  string(key)                         → V   (empty namespace)
//	spaced: uvarint(len(key)) ‖ key ‖ namespace → V   (non-empty namespace)
//
// The empty-namespace lookup is one m[string(key)] with the backend's copy
// of the key, which Go does without allocating. A namespaced lookup uses a
// composite key that the backend builds once per (key, namespace) change.
// Two tables are needed because no encoding of (key, ns) can be both the
// bare key when ns is empty and unambiguous for every key.
//
// A Go map cannot update the value of an existing string key without
// allocating the key again, so a table is a dense map: map[string]int32 from
// key to position, plus parallel slices of keys and values. Updating an
// existing key is a lookup and a slice store; only inserting a new key
// allocates (its string). Each state also remembers the position it found
// for the current key, so the usual Value-then-Update on one record costs a
// single map lookup.
//
// # Raw backends
//
// A backend that stores bytes (Pebble, or MemRaw for tests) implements
// RawStore; the New*State functions then return adapters that encode values
// with the codec (codec.For). Map state stores one entry per user key, the
// codec encoding of the map key being the entry's user key, so a map can be
// read and written entry by entry and scanned in byte order. List state is
// the concatenation of its encoded elements, so Add is an Append that a
// merge operator can do without reading.
//
// The typed state interfaces return no errors, as in Flink: a raw store's
// I/O error or an undecodable value panics with an *AccessError, which the
// task recovers to fail (and restart) the job.
//
// # Snapshots
//
// Backend.Snapshot returns the canonical, backend-independent form of its
// state: per key group, entries (state, kind, key, namespace, user key,
// value) sorted by state, key, namespace and user key, values encoded with
// the codec exactly as a RawStore holds them. Any backend restores any
// backend's snapshot; Restore keeps only the key groups in its own range, so
// restoring each old subtask's snapshot into each new subtask rescales.
// The heap backend keeps restored entries as bytes until the state is
// registered (only then are its Go types known), and snapshots them as they
// are if it never is. TimerService snapshots its timers the same way.
//
// Nothing here is safe for concurrent use: one task goroutine owns a
// backend, its states and its timer service.
package state
