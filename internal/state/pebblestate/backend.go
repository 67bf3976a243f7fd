package pebblestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// Options configure a Backend. The zero value is the default.
type Options struct {
	// WAL turns on Pebble's write-ahead log. It is off by default: state
	// survives failures through checkpoints, and a restarted subtask
	// restores into a fresh directory, so logging every write buys nothing.
	WAL bool
	// MemTableSize is the size in bytes a memtable grows to before it is
	// flushed to an SST; 0 means 32 MiB.
	MemTableSize uint64
	// CacheSize is the size in bytes of the block cache; 0 means 32 MiB.
	CacheSize int64
	// Native, if set, makes Snapshot take native checkpoints for
	// incremental checkpoints instead of canonical snapshots: it returns a
	// placeholder that Native.Take exchanges for the checkpoint's Files
	// (see native.go). The checkpoints go to new directories under the
	// DB's directory + ".checkpoints", which Dispose deletes.
	Native *NativeSnapshots
}

const (
	defaultMemTableSize = 32 << 20
	defaultCacheSize    = 32 << 20
	// pointDeleteLimit is the largest map DeleteEntries deletes key by key;
	// a larger one is cleared with one range delete. Point deletes keep
	// small maps (the usual window state) from piling up range tombstones,
	// which every later read of the memtable must consult.
	pointDeleteLimit = 16
	// restoreBatchSize is how many bytes Restore buffers per write batch.
	restoreBatchSize = 4 << 20
)

// Backend is the Pebble state backend of one operator instance: a
// state.RawStore over one Pebble DB in its own directory. It is not safe
// for concurrent use.
type Backend struct {
	state.KeyContext
	registry state.Registry
	dir      string
	opts     Options
	db       *pebble.DB

	states map[string]*stateInfo
	byID   []*stateInfo // by state id; byID[0] is nil (ids start at 1)
	last   *stateInfo   // the state of the latest access

	lineage []lineageEntry

	nativeSeq  int             // native checkpoints taken (their directory names)
	lastNative *state.Snapshot // placeholder of the latest native checkpoint

	key    []byte       // scratch Pebble key
	value  []byte       // the value the latest Get returned
	bounds []scanBounds // iterator bounds per nesting level of Scan
	depth  int          // Scan nesting level
	batch  *pebble.Batch
}

// stateInfo is a state that has, or had, entries in the DB.
type stateInfo struct {
	name string
	id   uint64
	kind state.Kind // as persisted in its meta key; 0 until known
}

type scanBounds struct{ lower, upper []byte }

// Open opens the Pebble DB in dir, creating it (and dir) if needed, as the
// state of the key groups r. Entries of key groups outside r are deleted:
// a backend holds only its own key groups. The states a reopened DB holds
// are declared in the Registry with their kinds, as Restore declares them.
func Open(dir string, r keygroup.Range, opts Options) (*Backend, error) {
	return open(dir, r, opts, false)
}

func open(dir string, r keygroup.Range, opts Options, mustExist bool) (_ *Backend, err error) {
	if !r.Empty() && (r.Start < 0 || r.End >= maxKeyGroups) {
		return nil, fmt.Errorf("pebble state backend: key groups %v are outside [0, %d): use keygroup.RangeForOperator with a max parallelism of at most %d", r, maxKeyGroups, maxKeyGroups)
	}
	// The incarnation this Open starts writes files numbered above all
	// present now (see the package comment).
	lineage, err := planIncarnation(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the Pebble state in %s: %w", dir, err)
	}
	cache := pebble.NewCache(orDefault(opts.CacheSize, defaultCacheSize))
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{
		Cache:              cache,
		MemTableSize:       orDefault(opts.MemTableSize, defaultMemTableSize),
		DisableWAL:         !opts.WAL,
		Merger:             concatenate, // list Append
		Logger:             quietLogger{},
		FormatMajorVersion: pebble.FormatNewest,
		ErrorIfNotExists:   mustExist,
		// The plain OS filesystem: Pebble's default wraps it in a disk
		// health checker, whose only output is events no one listens to,
		// and whose goroutine a failed Open leaks (Pebble v1.1.5).
		FS: vfs.Default,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the Pebble state in %s: %w", dir, err)
	}
	b := &Backend{
		KeyContext: state.NewKeyContext(r),
		dir:        dir,
		opts:       opts,
		db:         db,
		states:     make(map[string]*stateInfo),
		byID:       []*stateInfo{nil},
		lineage:    lineage,
		batch:      db.NewBatch(),
	}
	defer func() {
		if err != nil {
			_ = b.batch.Close()
			_ = db.Close()
		}
	}()
	// Pebble holds the directory's lock now, so no other Backend uses the
	// lineage. Files Pebble wrote while opening (a WAL replay) are
	// numbered above the old ones: they are this incarnation's.
	if err := writeLineage(dir, lineage); err != nil {
		return nil, fmt.Errorf("opening the Pebble state in %s: %w", dir, err)
	}
	if err := b.loadStates(); err != nil {
		return nil, fmt.Errorf("opening the Pebble state in %s: %w", dir, err)
	}
	if err := b.clipKeyGroups(); err != nil {
		return nil, fmt.Errorf("opening the Pebble state in %s: deleting key groups outside %v: %w", dir, r, err)
	}
	return b, nil
}

func orDefault[T int64 | uint64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// quietLogger drops Pebble's informational messages (one per flush and
// compaction); a fatal error panics, failing the task.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// loadStates reads the state meta keys and declares the known kinds.
func (b *Backend) loadStates() error {
	lower := []byte{metaPrefix, metaState}
	it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{metaPrefix, metaState + 1}})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		name := string(it.Key()[len(lower):])
		v := it.Value()
		id, n := binary.Uvarint(v)
		if n <= 0 || len(v) != n+1 || id == 0 {
			_ = it.Close()
			return fmt.Errorf("corrupt metadata of state %q: %x", name, v)
		}
		s := &stateInfo{name: name, id: id, kind: state.Kind(v[n])}
		if s.kind != 0 {
			if err := b.registry.Declare(name, s.kind); err != nil {
				_ = it.Close()
				return err
			}
		}
		for uint64(len(b.byID)) <= id {
			b.byID = append(b.byID, nil)
		}
		if b.byID[id] != nil {
			_ = it.Close()
			return fmt.Errorf("corrupt metadata: states %q and %q have the same id %d", b.byID[id].name, name, id)
		}
		b.byID[id] = s
		b.states[name] = s
	}
	return it.Close()
}

// clipKeyGroups deletes the entries of key groups outside the range.
func (b *Backend) clipKeyGroups() error {
	r := b.KeyGroupRange()
	spans := [][2]int{{0, maxKeyGroups}}
	if !r.Empty() {
		spans = [][2]int{{0, r.Start}, {r.End + 1, maxKeyGroups}}
	}
	for _, sp := range spans {
		if sp[0] >= sp[1] {
			continue
		}
		lower, upper := appendKeyGroup(nil, sp[0]), appendKeyGroup(nil, sp[1])
		it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		found := it.First()
		if err := it.Close(); err != nil {
			return err
		}
		if found {
			if err := b.db.DeleteRange(lower, upper, pebble.NoSync); err != nil {
				return err
			}
		}
	}
	return nil
}

// Dir returns the directory of the DB.
func (b *Backend) Dir() string { return b.dir }

// Close closes the DB, first flushing the memtable if the WAL is off, so
// that Open of the same directory finds every write. The backend cannot be
// used afterwards; closing twice is a no-op.
func (b *Backend) Close() error {
	if b.db == nil {
		return nil
	}
	err := b.persistKinds()
	if err == nil && !b.opts.WAL {
		err = b.db.Flush()
	}
	return errors.Join(err, b.close())
}

func (b *Backend) close() error {
	err := errors.Join(b.batch.Close(), b.db.Close())
	b.db = nil
	if err != nil {
		return fmt.Errorf("closing the Pebble state in %s: %w", b.dir, err)
	}
	return nil
}

// Destroy closes the DB without flushing and deletes its directory: the
// end of a subtask whose state lives on in checkpoints.
func (b *Backend) Destroy() error {
	var err error
	if b.db != nil {
		err = b.close()
	}
	return errors.Join(err, os.RemoveAll(b.dir))
}

// Registry implements state.RawStore.
func (b *Backend) Registry() *state.Registry { return &b.registry }

func (b *Backend) checkKeyGroup(kg int) error {
	if r := b.KeyGroupRange(); !r.Contains(kg) {
		return fmt.Errorf("key group %d is outside this backend's key groups %v", kg, r)
	}
	return nil
}

// lookup returns the state called name, or nil if it was never written.
func (b *Backend) lookup(name string) *stateInfo {
	if s := b.last; s != nil && s.name == name {
		return s
	}
	s := b.states[name]
	if s != nil {
		b.last = s
	}
	return s
}

// create returns the state called name, assigning and persisting its id on
// first use.
func (b *Backend) create(name string) (*stateInfo, error) {
	if s := b.lookup(name); s != nil {
		if s.kind == 0 {
			// Written before it was registered or restored: record the
			// kind once it is known.
			if k, ok := b.registry.Kind(name); ok {
				s.kind = k
				return s, b.persistState(s)
			}
		}
		return s, nil
	}
	s := &stateInfo{name: name, id: uint64(len(b.byID))}
	s.kind, _ = b.registry.Kind(name)
	if err := b.persistState(s); err != nil {
		return nil, err
	}
	b.byID = append(b.byID, s)
	b.states[name] = s
	b.last = s
	return s, nil
}

func (b *Backend) persistState(s *stateInfo) error {
	v := binary.AppendUvarint(nil, s.id)
	v = append(v, byte(s.kind))
	return b.db.Set(metaStateKey(nil, s.name), v, pebble.NoSync)
}

// persistKinds records the kinds of states written before they were
// registered (through the RawStore methods directly), so that a reopened
// or restored DB knows them.
func (b *Backend) persistKinds() error {
	for _, s := range b.byID[1:] {
		if s == nil || s.kind != 0 {
			continue
		}
		if k, ok := b.registry.Kind(s.name); ok {
			s.kind = k
			if err := b.persistState(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryKey sets b.key to the key of (state, key, ns) in kg, or returns
// false if the state was never written (so it has no entries).
func (b *Backend) entryKey(name string, key, ns []byte, kg int, create bool) (bool, error) {
	if err := b.checkKeyGroup(kg); err != nil {
		return false, err
	}
	var s *stateInfo
	if create {
		var err error
		if s, err = b.create(name); err != nil {
			return false, err
		}
	} else if s = b.lookup(name); s == nil {
		return false, nil
	}
	b.key = appendEntryPrefix(b.key[:0], kg, s.id, key, ns)
	return true, nil
}

// get reads b.key into b.value.
func (b *Backend) get() ([]byte, bool, error) {
	v, closer, err := b.db.Get(b.key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b.value = append(b.value[:0], v...)
	return b.value, true, closer.Close()
}

// Get implements state.RawStore.
func (b *Backend) Get(name string, key, ns []byte, kg int) ([]byte, bool, error) {
	if ok, err := b.entryKey(name, key, ns, kg, false); !ok {
		return nil, false, err
	}
	return b.get()
}

// Put implements state.RawStore.
func (b *Backend) Put(name string, key, ns []byte, kg int, value []byte) error {
	if _, err := b.entryKey(name, key, ns, kg, true); err != nil {
		return err
	}
	return b.db.Set(b.key, value, pebble.NoSync)
}

// Delete implements state.RawStore.
func (b *Backend) Delete(name string, key, ns []byte, kg int) error {
	if ok, err := b.entryKey(name, key, ns, kg, false); !ok {
		return err
	}
	return b.db.Delete(b.key, pebble.NoSync)
}

// Append implements state.RawStore with a merge: it does not read.
func (b *Backend) Append(name string, key, ns []byte, kg int, value []byte) error {
	if _, err := b.entryKey(name, key, ns, kg, true); err != nil {
		return err
	}
	return b.db.Merge(b.key, value, pebble.NoSync)
}

// GetEntry implements state.RawStore.
func (b *Backend) GetEntry(name string, key, ns []byte, kg int, userKey []byte) ([]byte, bool, error) {
	if ok, err := b.entryKey(name, key, ns, kg, false); !ok {
		return nil, false, err
	}
	b.key = append(b.key, userKey...)
	return b.get()
}

// PutEntry implements state.RawStore.
func (b *Backend) PutEntry(name string, key, ns []byte, kg int, userKey, value []byte) error {
	if _, err := b.entryKey(name, key, ns, kg, true); err != nil {
		return err
	}
	b.key = append(b.key, userKey...)
	return b.db.Set(b.key, value, pebble.NoSync)
}

// DeleteEntry implements state.RawStore.
func (b *Backend) DeleteEntry(name string, key, ns []byte, kg int, userKey []byte) error {
	if ok, err := b.entryKey(name, key, ns, kg, false); !ok {
		return err
	}
	b.key = append(b.key, userKey...)
	return b.db.Delete(b.key, pebble.NoSync)
}

// scanIter returns an iterator over the map entries of (state, key, ns),
// or nil if the state was never written. Its bounds are the buffers of the
// current nesting level, which must not change while it is open.
func (b *Backend) scanIter(name string, key, ns []byte, kg int) (it *pebble.Iterator, prefixLen int, err error) {
	if ok, err := b.entryKey(name, key, ns, kg, false); !ok {
		return nil, 0, err
	}
	if b.depth == len(b.bounds) {
		b.bounds = append(b.bounds, scanBounds{})
	}
	sb := &b.bounds[b.depth]
	sb.lower = append(sb.lower[:0], b.key...)
	sb.upper = appendSuccessor(sb.upper[:0], b.key)
	it, err = b.db.NewIter(&pebble.IterOptions{LowerBound: sb.lower, UpperBound: sb.upper})
	return it, len(sb.lower), err
}

// Scan implements state.RawStore. It iterates over the DB as it was when
// the scan started: fn may write to the store, including to the entries
// being scanned, and does not see its writes. fn may also scan.
func (b *Backend) Scan(name string, key, ns []byte, kg int, fn func(userKey, value []byte) bool) error {
	it, prefixLen, err := b.scanIter(name, key, ns, kg)
	if it == nil || err != nil {
		return err
	}
	b.depth++
	defer func() { b.depth-- }()
	for valid := it.First(); valid; valid = it.Next() {
		if !fn(it.Key()[prefixLen:], it.Value()) {
			break
		}
	}
	return it.Close()
}

// DeleteEntries implements state.RawStore. A map of up to pointDeleteLimit
// entries is deleted key by key, a larger one with a range delete.
func (b *Backend) DeleteEntries(name string, key, ns []byte, kg int) error {
	it, _, err := b.scanIter(name, key, ns, kg)
	if it == nil || err != nil {
		return err
	}
	sb := b.bounds[b.depth]
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n++; n > pointDeleteLimit {
			b.batch.Reset()
			err = b.batch.DeleteRange(sb.lower, sb.upper, nil)
			break
		}
		if err = b.batch.Delete(it.Key(), nil); err != nil {
			break
		}
	}
	err = errors.Join(err, it.Close())
	if err == nil && !b.batch.Empty() {
		err = b.db.Apply(b.batch, pebble.NoSync)
	}
	b.batch.Reset()
	return err
}
