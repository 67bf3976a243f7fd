package pebblestate

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/weirstream/weir/internal/keygroup"
)

// File is one file of a checkpoint directory.
type File struct {
	Name string // base name in the directory
	Size int64
	// ID names the contents of an SST: two SSTs with the same ID, in any
	// checkpoints of any backends, hold the same bytes, so a checkpoint
	// store keys what it has uploaded by ID. It is the name qualified by
	// the incarnation that wrote the file, "<32 hex digits>/000123.sst".
	// Empty for other files.
	ID string
}

// Files lists a native checkpoint directory.
type Files struct {
	Dir string // the checkpoint directory
	// SSTs are the table files, sorted by name. They never change: a
	// checkpoint store uploads only those whose ID it has not stored yet.
	SSTs []File
	// Other are the remaining files, sorted by name: the MANIFEST, OPTIONS,
	// Pebble's marker files, the WAL if it is on, and LineageFile. They are
	// small and differ between checkpoints; upload all of them.
	Other []File
}

// LineageFile is the file in a DB or checkpoint directory that records the
// DB's incarnations, (first file number, id), one per line after a header:
// the SST with number n was written by the last incarnation whose first
// number is at most n. Open writes it (synced) as soon as Pebble has locked
// the directory.
const LineageFile = "WEIR-LINEAGE"

const lineageHeader = "weir pebble lineage v1"

type lineageEntry struct {
	start uint64 // the first file number the incarnation may have written
	id    string // 32 hex digits, random
}

// Checkpoint writes a native checkpoint of the state to dir, which must not
// exist: it flushes the memtable, so that the checkpoint is all SSTs, and
// calls Pebble's DB.Checkpoint, which hard-links the SSTs (they never
// change) and copies the small files. The directory is a complete Pebble
// DB that OpenFromCheckpoint opens; Checkpoint returns its files.
//
// The synchronous part is a flush of the memtable and hard links, not a
// copy of the state; uploading the returned files is the asynchronous part,
// and may run while the backend is in use.
func (b *Backend) Checkpoint(dir string) (Files, error) {
	if err := b.persistKinds(); err != nil {
		return Files{}, fmt.Errorf("checkpointing the Pebble state in %s: %w", b.dir, err)
	}
	if err := b.db.Flush(); err != nil {
		return Files{}, fmt.Errorf("checkpointing the Pebble state in %s: flushing: %w", b.dir, err)
	}
	if err := b.db.Checkpoint(dir); err != nil {
		return Files{}, fmt.Errorf("checkpointing the Pebble state in %s to %s: %w", b.dir, dir, err)
	}
	if err := writeLineage(dir, b.lineage); err != nil {
		return Files{}, fmt.Errorf("checkpointing the Pebble state to %s: %w", dir, err)
	}
	return listFiles(dir, b.lineage)
}

// OpenFromCheckpoint opens a backend for the key groups r in dir, a new
// working directory (absent or empty), from the checkpoint in checkpointDir:
// a directory Checkpoint wrote, or one a checkpoint store filled with a
// Files listing's files under their names. The SSTs are hard-linked (copied
// if linking fails) and the other files copied, so checkpointDir is left
// unchanged. As Open, it keeps only the key groups of r.
func OpenFromCheckpoint(checkpointDir, dir string, r keygroup.Range, opts Options) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("restoring Pebble state: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, fmt.Errorf("restoring Pebble state: %w", err)
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("restoring Pebble state from %s: working directory %s is not empty; restore into a new directory", checkpointDir, dir)
	}
	ents, err := os.ReadDir(checkpointDir)
	if err != nil {
		return nil, fmt.Errorf("restoring Pebble state: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(checkpointDir, e.Name()), filepath.Join(dir, e.Name())
		if strings.HasSuffix(e.Name(), ".sst") && os.Link(src, dst) == nil {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			return nil, fmt.Errorf("restoring Pebble state from %s: %w", checkpointDir, err)
		}
	}
	b, err := open(dir, r, opts, true)
	if err != nil {
		return nil, fmt.Errorf("restoring Pebble state from %s: %w", checkpointDir, err)
	}
	return b, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}

// listFiles lists a checkpoint directory, naming each SST by the lineage.
func listFiles(dir string, lineage []lineageEntry) (Files, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Files{}, err
	}
	files := Files{Dir: dir}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return Files{}, err
		}
		f := File{Name: e.Name(), Size: info.Size()}
		if num, ok := sstNum(f.Name); ok {
			inc, ok := incarnationOf(lineage, num)
			if !ok {
				return Files{}, fmt.Errorf("SST %s of checkpoint %s predates the DB's lineage", f.Name, dir)
			}
			f.ID = inc + "/" + f.Name
			files.SSTs = append(files.SSTs, f)
		} else {
			files.Other = append(files.Other, f)
		}
	}
	return files, nil // os.ReadDir sorts by name
}

// incarnationOf returns the id of the incarnation that wrote file num.
func incarnationOf(lineage []lineageEntry, num uint64) (string, bool) {
	for i := len(lineage) - 1; i >= 0; i-- {
		if lineage[i].start <= num {
			return lineage[i].id, true
		}
	}
	return "", false
}

// sstNum parses an SST name, "000123.sst".
func sstNum(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".sst")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// fileNum parses the number of any Pebble file that has one: NNNNNN.sst,
// NNNNNN.log, MANIFEST-NNNNNN, OPTIONS-NNNNNN.
func fileNum(name string) (uint64, bool) {
	s := name
	if i := strings.IndexByte(s, '.'); i >= 0 {
		if ext := s[i:]; ext != ".sst" && ext != ".log" {
			return 0, false
		}
		s = s[:i]
	} else if _, rest, ok := strings.Cut(s, "-"); ok && (strings.HasPrefix(s, "MANIFEST-") || strings.HasPrefix(s, "OPTIONS-")) {
		s = rest
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// planIncarnation returns the lineage of the DB in dir with a new
// incarnation: its first file number is above every file there now, before
// Pebble opens the DB, and the incarnations that wrote no SST still there
// are dropped.
func planIncarnation(dir string) ([]lineageEntry, error) {
	lineage, err := readLineage(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var maxNum uint64
	var ssts []uint64
	for _, e := range ents {
		if n, ok := fileNum(e.Name()); ok {
			maxNum = max(maxNum, n)
		}
		if n, ok := sstNum(e.Name()); ok {
			ssts = append(ssts, n)
		}
	}
	slices.Sort(ssts)
	var kept []lineageEntry
	for i, e := range lineage {
		lo, hi := e.start, uint64(1<<64-1)
		if i+1 < len(lineage) {
			hi = lineage[i+1].start
		}
		if slices.ContainsFunc(ssts, func(n uint64) bool { return n >= lo && n < hi }) {
			kept = append(kept, e)
		}
	}
	if len(ssts) > 0 && (len(kept) == 0 || kept[0].start > ssts[0]) {
		// SSTs of unknown origin (a DB not written by this package): give
		// them an incarnation of their own, so their IDs are new.
		kept = slices.Insert(kept, 0, lineageEntry{start: 0, id: newIncarnationID()})
	}
	return append(kept, lineageEntry{start: maxNum + 1, id: newIncarnationID()}), nil
}

func newIncarnationID() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails
	return hex.EncodeToString(id[:])
}

func readLineage(dir string) ([]lineageEntry, error) {
	data, err := os.ReadFile(filepath.Join(dir, LineageFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() || sc.Text() != lineageHeader {
		return nil, fmt.Errorf("%s in %s does not start with %q", LineageFile, dir, lineageHeader)
	}
	var lineage []lineageEntry
	for sc.Scan() {
		startText, id, ok := strings.Cut(sc.Text(), " ")
		start, err := strconv.ParseUint(startText, 10, 64)
		if !ok || err != nil || len(id) != 32 || (len(lineage) > 0 && start <= lineage[len(lineage)-1].start) {
			return nil, fmt.Errorf("%s in %s: corrupt line %q", LineageFile, dir, sc.Text())
		}
		lineage = append(lineage, lineageEntry{start: start, id: id})
	}
	return lineage, nil
}

// writeLineage replaces dir's LineageFile durably: write, sync, rename,
// sync the directory.
func writeLineage(dir string, lineage []lineageEntry) error {
	var buf bytes.Buffer
	buf.WriteString(lineageHeader + "\n")
	for _, e := range lineage {
		fmt.Fprintf(&buf, "%d %s\n", e.start, e.id)
	}
	tmp := filepath.Join(dir, LineageFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, LineageFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
