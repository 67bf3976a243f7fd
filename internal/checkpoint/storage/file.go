package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// tempMarker is in the name of every file the local storage is still
// writing ("<name>.weir-tmp-<random>"). List and ListAll leave such files
// out, as an S3 listing leaves out uploads in progress; DeleteAll removes
// them with their directory.
const tempMarker = ".weir-tmp-"

// fileStorage is a Storage in a local directory. Writes go to a temporary
// file in the target's directory that Close syncs and renames over the
// target, then syncs the directory, so a crash leaves either the old file
// or the complete new one.
type fileStorage struct {
	root string // absolute, clean
	uri  string
	// noSync skips the fsyncs; tests set it, as crash durability is not
	// what they test and fsync is slow on shared CI disks.
	noSync bool
}

// openFile opens the directory root, creating it if create is set.
func openFile(root string, create bool) (Storage, error) {
	uri := "file://" + filepath.ToSlash(root)
	fi, err := os.Stat(root)
	switch {
	case err == nil && !fi.IsDir():
		return nil, errorf(ErrBadURI, nil, "checkpoint storage %s is a file, not a directory; point state.checkpoints.dir at a directory", uri)
	case err != nil && !create && errors.Is(err, fs.ErrNotExist):
		return nil, errorf(fs.ErrNotExist, nil, "%s does not exist", uri)
	case err != nil && !create:
		return nil, fileError(uri, "opening", err)
	case err == nil || !create:
		return &fileStorage{root: root, uri: uri}, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fileError(uri, "creating the checkpoint directory", err)
	}
	return &fileStorage{root: root, uri: uri}, nil
}

// fileError wraps an os error with the URI and, for the common causes, the
// fix.
func fileError(uri, doing string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return errorf(nil, err, "checkpoint storage %s: %s: permission denied; give the user running Weir write access to it or choose another directory", uri, doing)
	case errors.Is(err, fs.ErrNotExist):
		return errorf(nil, err, "checkpoint storage %s: %s: no such file", uri, doing)
	}
	return errorf(nil, err, "checkpoint storage %s: %s", uri, doing)
}

func (s *fileStorage) URI() string  { return s.uri }
func (s *fileStorage) Close() error { return nil }

func (s *fileStorage) path(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

func (s *fileStorage) Create(ctx context.Context, name string) (Writer, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	target := s.path(name)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, fileError(joinURI(s.uri, name), "creating the file's directory", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := target + tempMarker + hex.EncodeToString(rnd[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fileError(joinURI(s.uri, name), "creating the file", err)
	}
	return &fileWriter{ctx: ctx, f: f, tmp: tmp, target: target, uri: joinURI(s.uri, name), noSync: s.noSync}, nil
}

type fileWriter struct {
	ctx         context.Context
	f           *os.File
	tmp, target string
	uri         string
	noSync      bool
	mu          sync.Mutex // guards done against Close racing Abort
	done        bool
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := w.f.Write(p)
	if err != nil {
		return n, fileError(w.uri, "writing", err)
	}
	return n, nil
}

func (w *fileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("checkpoint storage %s: file already closed or aborted", w.uri)
	}
	w.done = true
	err := w.ctx.Err()
	if err == nil && !w.noSync {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp, w.target)
	}
	if err != nil {
		os.Remove(w.tmp)
		return fileError(w.uri, "finishing the file", err)
	}
	// Make the rename durable: a crash after Close returned must not lose
	// the file (the checkpoint metadata may already name it).
	if w.noSync {
		return nil
	}
	if err := syncDir(filepath.Dir(w.target)); err != nil {
		return fileError(w.uri, "syncing the directory", err)
	}
	return nil
}

func (w *fileWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileError(w.uri, "removing the unfinished file", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

type osFile struct {
	*os.File
	size int64
}

func (f osFile) Size() int64 { return f.size }

func (s *fileStorage) Open(ctx context.Context, name string) (File, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, fileError(joinURI(s.uri, name), "opening", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileError(joinURI(s.uri, name), "opening", err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, errorf(fs.ErrNotExist, nil, "checkpoint storage %s: is a directory, not a file", joinURI(s.uri, name))
	}
	return osFile{File: f, size: fi.Size()}, nil
}

func (s *fileStorage) Stat(ctx context.Context, name string) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return FileInfo{}, err
	}
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return FileInfo{}, fileError(joinURI(s.uri, name), "stat", err)
	}
	if fi.IsDir() {
		return FileInfo{}, errorf(fs.ErrNotExist, nil, "checkpoint storage %s: is a directory, not a file", joinURI(s.uri, name))
	}
	return FileInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *fileStorage) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.path(name)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("checkpoint storage %s: is a directory; use DeleteAll", joinURI(s.uri, name))
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileError(joinURI(s.uri, name), "deleting", err)
	}
	return nil
}

func (s *fileStorage) List(ctx context.Context, dir string) ([]FileInfo, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fileError(joinURI(s.uri, dir), "listing", err)
	}
	var out []FileInfo
	for _, e := range ents {
		if strings.Contains(e.Name(), tempMarker) {
			continue
		}
		fi := FileInfo{Name: Join(dir, e.Name()), IsDir: e.IsDir()}
		if !e.IsDir() {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since ReadDir
			}
			if err != nil {
				return nil, fileError(joinURI(s.uri, fi.Name), "stat", err)
			}
			if !info.Mode().IsRegular() {
				continue
			}
			fi.Size, fi.ModTime = info.Size(), info.ModTime()
		}
		out = append(out, fi)
	}
	return out, nil // os.ReadDir sorts by name
}

func (s *fileStorage) ListAll(ctx context.Context, dir string) ([]FileInfo, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	root := s.path(dir)
	var out []FileInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // root missing, or deleted while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || strings.Contains(d.Name(), tempMarker) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		out = append(out, FileInfo{Name: filepath.ToSlash(rel), Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fileError(joinURI(s.uri, dir), "listing", err)
	}
	// WalkDir visits in lexical order of each directory's entries, which
	// is not the order of the full names ("a/b" vs "a.x"); sort them.
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (s *fileStorage) DeleteAll(ctx context.Context, dir string) error {
	if dir == "" {
		return fmt.Errorf("checkpoint storage %s: refusing to delete the whole storage root", s.uri)
	}
	if err := CheckName(dir); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.RemoveAll(s.path(dir)); err != nil {
		return fileError(joinURI(s.uri, dir), "deleting", err)
	}
	return nil
}
