package storage

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
)

// Keyed state file format; see the package documentation.
const (
	// KeyedStateVersion is the keyed state format version this build
	// writes and the newest it reads.
	KeyedStateVersion    = 1
	keyedStateHeaderLen  = 8 + 4 + 4
	keyedStateFooterLen  = 8 + 4 + 4
	minKeyedStateBlock   = 1 + 1 + 1 + 1 + 4 // key group, three counts, CRC
	minKeyedStateEntry   = 1 + 1 + 1 + 1 + 1 + 1
	minKeyedStateTimer   = 1 + 1 + 1
	maxKeyedStateKindVal = 5
)

var (
	keyedStateMagic    = [8]byte{0x89, 'W', 'E', 'I', 'R', 'K', 'S', '\n'}
	keyedStateEndMagic = [4]byte{'W', 'K', 'S', 0x89}
)

// KeyedStateWriter writes a keyed state file: the canonical snapshot
// (state.Snapshot) and timers (state.TimerSnapshot) of one subtask, one
// block per key group, then an index. It writes sequentially (no seeks),
// so it can stream to any Storage; it buffers one block at a time.
type KeyedStateWriter struct {
	w *bufio.Writer
	// mem is the writer when it is a bytes.Buffer: blocks go straight in,
	// not through w, which would copy them once more.
	mem      *bytes.Buffer
	header   [keyedStateHeaderLen]byte
	maxP     int
	off      int64 // bytes written so far
	last     int   // last key group written, -1 before the first
	index    []byte
	blocks   int
	block    []byte
	finished bool
	err      error
}

// NewKeyedStateWriter writes the header of a keyed state file for an
// operator with maxParallelism key groups to w.
func NewKeyedStateWriter(w io.Writer, maxParallelism int) (*KeyedStateWriter, error) {
	if maxParallelism < 1 || maxParallelism > keygroup.UpperBoundMaxParallelism {
		return nil, fmt.Errorf("keyed state: max parallelism %d is outside [1, %d]", maxParallelism, keygroup.UpperBoundMaxParallelism)
	}
	kw := &KeyedStateWriter{maxP: maxParallelism, last: -1}
	if b, ok := w.(*bytes.Buffer); ok {
		kw.mem = b
	} else {
		kw.w = bufio.NewWriterSize(w, 64<<10)
	}
	hdr := kw.header[:]
	copy(hdr, keyedStateMagic[:])
	binary.LittleEndian.PutUint32(hdr[8:], KeyedStateVersion)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(maxParallelism))
	if err := kw.write(hdr); err != nil {
		return nil, err
	}
	return kw, nil
}

func (kw *KeyedStateWriter) write(b []byte) error {
	if kw.err != nil {
		return kw.err
	}
	var n int
	var err error
	if kw.mem != nil {
		n, err = kw.mem.Write(b)
	} else {
		n, err = kw.w.Write(b)
	}
	kw.off += int64(n)
	if err != nil {
		kw.err = fmt.Errorf("writing keyed state: %w", err)
	}
	return kw.err
}

// WriteKeyGroup writes the block of key group kg: its entries, sorted by
// state, key, namespace and user key as in state.Snapshot, and its event-
// and processing-time timers. Key groups must come in ascending order; a
// key group with neither entries nor timers is left out.
func (kw *KeyedStateWriter) WriteKeyGroup(kg int, entries []state.Entry, eventTimers, processingTimers []state.Timer) error {
	if kw.err != nil {
		return kw.err
	}
	if kw.finished {
		return fmt.Errorf("keyed state: key group %d written after Finish", kg)
	}
	if kg < 0 || kg >= kw.maxP {
		return fmt.Errorf("keyed state: key group %d is outside [0, %d)", kg, kw.maxP)
	}
	if kg <= kw.last {
		return fmt.Errorf("keyed state: key group %d written after key group %d; write them in ascending order, each once", kg, kw.last)
	}
	if len(entries) == 0 && len(eventTimers) == 0 && len(processingTimers) == 0 {
		return nil
	}
	b := kw.block[:0]
	b = binary.AppendUvarint(b, uint64(kg))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i, e := range entries {
		if e.Kind < 1 || e.Kind > maxKeyedStateKindVal {
			return fmt.Errorf("keyed state: key group %d: state %q has unknown kind %d", kg, e.State, e.Kind)
		}
		if i > 0 {
			if c := compareEntries(entries[i-1], e); c >= 0 {
				return fmt.Errorf("keyed state: key group %d: entries of state %q not sorted or repeated (entry %d)", kg, e.State, i)
			}
		}
		if i > 0 && entries[i-1].State == e.State {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(e.State))+1)
			b = append(b, e.State...)
		}
		b = append(b, byte(e.Kind))
		b = appendBytes(b, e.Key)
		b = appendBytes(b, e.Namespace)
		b = appendBytes(b, e.UserKey)
		b = appendBytes(b, e.Value)
	}
	for _, timers := range [][]state.Timer{eventTimers, processingTimers} {
		b = binary.AppendUvarint(b, uint64(len(timers)))
		for _, t := range timers {
			b = binary.AppendVarint(b, t.Timestamp)
			b = appendBytes(b, t.Key)
			b = appendBytes(b, t.Namespace)
		}
	}
	b = binary.LittleEndian.AppendUint32(b, CRC32C(b))
	kw.block = b
	if err := kw.write(b); err != nil {
		return err
	}
	kw.index = binary.AppendUvarint(kw.index, uint64(kg))
	kw.index = binary.AppendUvarint(kw.index, uint64(len(b)))
	kw.blocks++
	kw.last = kg
	return nil
}

// Finish writes the index and the footer and flushes. It does not close
// the underlying writer.
func (kw *KeyedStateWriter) Finish() error {
	if kw.err != nil {
		return kw.err
	}
	if kw.finished {
		return nil
	}
	kw.finished = true
	indexOff := kw.off
	idx := binary.AppendUvarint(nil, uint64(kw.blocks))
	idx = append(idx, kw.index...)
	var footer [keyedStateFooterLen]byte
	binary.LittleEndian.PutUint64(footer[0:], uint64(indexOff))
	binary.LittleEndian.PutUint32(footer[8:], headerIndexCRC(kw.header[:], idx))
	copy(footer[12:], keyedStateEndMagic[:])
	if err := kw.write(idx); err != nil {
		return err
	}
	if err := kw.write(footer[:]); err != nil {
		return err
	}
	if kw.w != nil {
		if err := kw.w.Flush(); err != nil {
			kw.err = fmt.Errorf("writing keyed state: %w", err)
		}
	}
	return kw.err
}

// WriteKeyedState writes s and t (either may be nil) as one keyed state
// file for an operator with maxParallelism key groups.
func WriteKeyedState(w io.Writer, maxParallelism int, s *state.Snapshot, t *state.TimerSnapshot) error {
	if b, ok := w.(*bytes.Buffer); ok {
		// Grow once rather than by doubling, copying the file each time.
		b.Grow(keyedStateSizeHint(s, t))
	}
	kw, err := NewKeyedStateWriter(w, maxParallelism)
	if err != nil {
		return err
	}
	var groups []state.KeyGroupState
	var timers []state.TimerKeyGroup
	if s != nil {
		groups = s.KeyGroups
	}
	if t != nil {
		timers = t.KeyGroups
	}
	for i, j := 0, 0; i < len(groups) || j < len(timers); {
		var kg int
		switch {
		case j == len(timers) || i < len(groups) && groups[i].KeyGroup < timers[j].KeyGroup:
			kg = groups[i].KeyGroup
		default:
			kg = timers[j].KeyGroup
		}
		var entries []state.Entry
		var event, processing []state.Timer
		if i < len(groups) && groups[i].KeyGroup == kg {
			entries = groups[i].Entries
			i++
		}
		if j < len(timers) && timers[j].KeyGroup == kg {
			event, processing = timers[j].EventTime, timers[j].ProcessingTime
			j++
		}
		if err := kw.WriteKeyGroup(kg, entries, event, processing); err != nil {
			return err
		}
	}
	return kw.Finish()
}

// headerIndexCRC is the footer's checksum: CRC-32C of the header followed
// by the index.
func headerIndexCRC(header, index []byte) uint32 {
	return crc32.Update(CRC32C(header), castagnoli, index)
}

func appendBytes(b, v []byte) []byte {
	if len(v) < 0x80 {
		// The one-byte uvarint of every key, namespace and small value.
		b = append(b, byte(len(v)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(v)))
	}
	return append(b, v...)
}

// compareEntries orders entries as state.Snapshot documents: by state,
// key, namespace and user key, bytewise. Adjacent entries nearly always
// have the same state name (often the same string), so that is tested for
// equality first, which is cheaper than ordering.
func compareEntries(a, b state.Entry) int {
	if a.State != b.State {
		return strings.Compare(a.State, b.State)
	}
	if c := bytes.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Or(bytes.Compare(a.Namespace, b.Namespace), bytes.Compare(a.UserKey, b.UserKey))
}

// keyedStateSizeHint estimates the size of the keyed state file of s and
// t, so that a writer into memory can allocate it once.
func keyedStateSizeHint(s *state.Snapshot, t *state.TimerSnapshot) int {
	n := keyedStateHeaderLen + keyedStateFooterLen
	if s != nil {
		for _, g := range s.KeyGroups {
			n += 16 + 8*len(g.Entries)
			for i := range g.Entries {
				e := &g.Entries[i]
				n += len(e.Key) + len(e.Namespace) + len(e.UserKey) + len(e.Value)
			}
		}
	}
	if t != nil {
		for _, g := range t.KeyGroups {
			for _, ts := range [][]state.Timer{g.EventTime, g.ProcessingTime} {
				n += 8 * len(ts)
				for i := range ts {
					n += len(ts[i].Key) + len(ts[i].Namespace)
				}
			}
		}
	}
	return n
}

// KeyedStateReader reads a keyed state file. It reads the header and the
// index when it is made; Read then reads only the blocks of the key groups
// asked for, in one ReadAt per run of adjacent blocks.
type KeyedStateReader struct {
	r      io.ReaderAt
	name   string
	maxP   int
	blocks []keyedBlock
}

type keyedBlock struct {
	keyGroup int
	off, len int64
}

// NewKeyedStateReader reads the header and index of the keyed state file
// of the given size that r reads; name (the file's URI) appears in errors.
// A damaged file gives an ErrCorrupt error, a newer format an
// ErrNewerVersion error.
func NewKeyedStateReader(r io.ReaderAt, size int64, name string) (*KeyedStateReader, error) {
	kr := &KeyedStateReader{r: r, name: name}
	if size < keyedStateHeaderLen+keyedStateFooterLen+1 {
		return nil, kr.corrupt("truncated: %d bytes, too short for a keyed state file", size)
	}
	var hdr [keyedStateHeaderLen]byte
	if err := kr.readAt(hdr[:], 0); err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr[:8], keyedStateMagic[:]) {
		return nil, kr.corrupt("not a Weir keyed state file (wrong magic number %q)", hdr[:8])
	}
	switch v := binary.LittleEndian.Uint32(hdr[8:]); {
	case v == 0:
		return nil, kr.corrupt("format version 0")
	case v > KeyedStateVersion:
		return nil, fmt.Errorf("keyed state %s: %w: written in format version %d by a newer Weir; this build reads up to version %d, upgrade Weir to restore it", name, ErrNewerVersion, v, KeyedStateVersion)
	}
	maxP := binary.LittleEndian.Uint32(hdr[12:])
	if maxP < 1 || maxP > keygroup.UpperBoundMaxParallelism {
		return nil, kr.corrupt("max parallelism %d is outside [1, %d]", maxP, keygroup.UpperBoundMaxParallelism)
	}
	kr.maxP = int(maxP)
	var footer [keyedStateFooterLen]byte
	if err := kr.readAt(footer[:], size-keyedStateFooterLen); err != nil {
		return nil, err
	}
	if !bytes.Equal(footer[12:], keyedStateEndMagic[:]) {
		return nil, kr.corrupt("truncated or damaged: no end marker (the file must end with %q)", keyedStateEndMagic[:])
	}
	indexOff := binary.LittleEndian.Uint64(footer[0:])
	if indexOff < keyedStateHeaderLen || indexOff >= uint64(size-keyedStateFooterLen) {
		return nil, kr.corrupt("index offset %d is outside the file's %d bytes", indexOff, size)
	}
	idx := make([]byte, uint64(size-keyedStateFooterLen)-indexOff)
	if err := kr.readAt(idx, int64(indexOff)); err != nil {
		return nil, err
	}
	if got, want := headerIndexCRC(hdr[:], idx), binary.LittleEndian.Uint32(footer[8:]); got != want {
		return nil, kr.corrupt("header or index checksum mismatch (CRC-32C %08x, footer says %08x)", got, want)
	}
	d := decoder{b: idx}
	n := d.uvarint()
	if d.err == nil && n > uint64(kr.maxP) {
		return nil, kr.corrupt("index lists %d key groups, more than the max parallelism %d", n, kr.maxP)
	}
	off := int64(keyedStateHeaderLen)
	kr.blocks = make([]keyedBlock, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		kg, l := d.uvarint(), d.uvarint()
		if d.err != nil {
			break
		}
		if kg >= uint64(kr.maxP) {
			return nil, kr.corrupt("index: key group %d is outside [0, %d)", kg, kr.maxP)
		}
		if len(kr.blocks) > 0 && int(kg) <= kr.blocks[len(kr.blocks)-1].keyGroup {
			return nil, kr.corrupt("index: key groups not in ascending order (%d after %d)", kg, kr.blocks[len(kr.blocks)-1].keyGroup)
		}
		if l < minKeyedStateBlock || l > indexOff-uint64(off) {
			return nil, kr.corrupt("index: block of key group %d has impossible length %d", kg, l)
		}
		kr.blocks = append(kr.blocks, keyedBlock{keyGroup: int(kg), off: off, len: int64(l)})
		off += int64(l)
	}
	if d.err != nil {
		return nil, kr.corrupt("index: %v", d.err)
	}
	if len(d.b) != 0 {
		return nil, kr.corrupt("index: %d unexpected bytes after the last entry", len(d.b))
	}
	if uint64(off) != indexOff {
		return nil, kr.corrupt("index: the blocks end at offset %d but the index starts at %d", off, indexOff)
	}
	return kr, nil
}

func (kr *KeyedStateReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("keyed state %s: %w: %s", kr.name, ErrCorrupt, fmt.Sprintf(format, args...))
}

func (kr *KeyedStateReader) readAt(p []byte, off int64) error {
	n, err := kr.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF || err == nil {
		return kr.corrupt("truncated: %d bytes at offset %d could not be read", len(p), off)
	}
	return fmt.Errorf("reading keyed state %s: %w", kr.name, err)
}

// MaxParallelism is the number of key groups of the operator that wrote
// the file.
func (kr *KeyedStateReader) MaxParallelism() int { return kr.maxP }

// KeyGroups returns the key groups that have state in the file, ascending.
func (kr *KeyedStateReader) KeyGroups() []int {
	out := make([]int, len(kr.blocks))
	for i, b := range kr.blocks {
		out[i] = b.keyGroup
	}
	return out
}

// Read returns the entries and timers of the key groups in r (all of them
// for a range covering [0, MaxParallelism)), reading only their blocks.
// Each block's checksum and contents are checked.
func (kr *KeyedStateReader) Read(r keygroup.Range) (*state.Snapshot, *state.TimerSnapshot, error) {
	snap, timers := &state.Snapshot{}, &state.TimerSnapshot{}
	lo, hi := len(kr.blocks), len(kr.blocks)
	for i, b := range kr.blocks {
		if r.Contains(b.keyGroup) {
			lo = i
			break
		}
	}
	for i := lo; i < len(kr.blocks); i++ {
		if !r.Contains(kr.blocks[i].keyGroup) {
			hi = i
			break
		}
	}
	if lo >= hi {
		return snap, timers, nil
	}
	// The blocks of a key-group range are adjacent: read them at once,
	// in pieces of at most 64 MiB.
	const maxRead = 64 << 20
	var buf []byte
	for i := lo; i < hi; {
		j, n := i, int64(0)
		for j < hi && (j == i || n+kr.blocks[j].len <= maxRead) {
			n += kr.blocks[j].len
			j++
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err := kr.readAt(buf, kr.blocks[i].off); err != nil {
			return nil, nil, err
		}
		p := buf
		for ; i < j; i++ {
			b := kr.blocks[i]
			if err := kr.decodeBlock(b, p[:b.len], snap, timers); err != nil {
				return nil, nil, err
			}
			p = p[b.len:]
		}
	}
	return snap, timers, nil
}

func (kr *KeyedStateReader) decodeBlock(blk keyedBlock, b []byte, snap *state.Snapshot, timers *state.TimerSnapshot) error {
	body := b[:len(b)-4]
	if got, want := CRC32C(body), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return kr.corrupt("key group %d: block checksum mismatch (CRC-32C %08x, block says %08x)", blk.keyGroup, got, want)
	}
	// Copy the block so the snapshot's byte slices do not pin (or alias)
	// the read buffer, which Read reuses.
	d := decoder{b: bytes.Clone(body)}
	if kg := d.uvarint(); d.err == nil && kg != uint64(blk.keyGroup) {
		return kr.corrupt("block at offset %d holds key group %d, the index says %d", blk.off, kg, blk.keyGroup)
	}
	n := d.count(minKeyedStateEntry)
	var entries []state.Entry
	if d.err == nil && n > 0 {
		entries = make([]state.Entry, 0, n)
	}
	prevState := ""
	for i := 0; i < n && d.err == nil; i++ {
		var e state.Entry
		switch s := d.uvarint(); {
		case d.err != nil:
		case s == 0 && i == 0:
			d.fail("the first entry refers to a previous state name")
		case s == 0:
			e.State = prevState
		default:
			e.State = string(d.bytesN(s - 1))
		}
		e.Kind = state.Kind(d.byte())
		if d.err == nil && (e.Kind < 1 || e.Kind > maxKeyedStateKindVal) {
			d.fail(fmt.Sprintf("entry %d: unknown state kind %d", i, e.Kind))
		}
		e.Key, e.Namespace, e.UserKey, e.Value = d.bytes(), d.bytes(), d.bytes(), d.bytes()
		if d.err == nil && i > 0 && compareEntries(entries[i-1], e) >= 0 {
			d.fail(fmt.Sprintf("entry %d is not after entry %d (entries must be sorted by state, key, namespace, user key, without repeats)", i, i-1))
		}
		prevState = e.State
		entries = append(entries, e)
	}
	var tk state.TimerKeyGroup
	for _, list := range []*[]state.Timer{&tk.EventTime, &tk.ProcessingTime} {
		m := d.count(minKeyedStateTimer)
		for i := 0; i < m && d.err == nil; i++ {
			t := state.Timer{Timestamp: d.varint()}
			t.Key, t.Namespace = d.bytes(), d.bytes()
			*list = append(*list, t)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d unexpected bytes at the end", len(d.b)))
	}
	if d.err != nil {
		return kr.corrupt("key group %d: %v", blk.keyGroup, d.err)
	}
	if len(entries) > 0 {
		snap.KeyGroups = append(snap.KeyGroups, state.KeyGroupState{KeyGroup: blk.keyGroup, Entries: entries})
	}
	if len(tk.EventTime) > 0 || len(tk.ProcessingTime) > 0 {
		tk.KeyGroup = blk.keyGroup
		timers.KeyGroups = append(timers.KeyGroups, tk)
	}
	return nil
}

// ReadKeyedState reads the key groups r of the keyed state file name.
func ReadKeyedState(f File, name string, r keygroup.Range) (*state.Snapshot, *state.TimerSnapshot, error) {
	kr, err := NewKeyedStateReader(f, f.Size(), name)
	if err != nil {
		return nil, nil, err
	}
	return kr.Read(r)
}

// decoder reads the primitives of the keyed state format; the first error
// sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s", msg)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		if n == 0 {
			d.fail("truncated varint")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// count reads an element count and checks that the rest of the input can
// hold that many elements of at least minSize bytes, so a corrupt count
// fails instead of allocating.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail(fmt.Sprintf("count %d exceeds what the remaining %d bytes can hold", n, len(d.b)))
		return 0
	}
	if n > math.MaxInt32 {
		return 0
	}
	return int(n)
}

func (d *decoder) bytesN(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("length %d exceeds the remaining %d bytes", n, len(d.b)))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	return v
}

func (d *decoder) bytes() []byte { return d.bytesN(d.uvarint()) }
