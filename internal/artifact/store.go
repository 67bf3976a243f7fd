package artifact

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempPrefix starts the names of files being written into a Store's or a
// Cache's directory; a digest never starts with it.
const tempPrefix = ".partial-"

// Store is the Dispatcher's content-addressed store of job artifacts: each
// artifact is the file <dir>/<digest>, written once, checked to be a Weir job
// binary for this machine and never changed. A Store is safe for concurrent
// use; its directory belongs to it alone.
type Store struct {
	dir string
}

// OpenStore opens the artifact store in dir, creating the directory if need
// be, and removes the partial files of uploads a crash interrupted.
func OpenStore(dir string) (*Store, error) {
	if err := openDir(dir, "artifact store"); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Put reads an artifact from r to its end and stores it, returning its
// digest and size; name names it in errors (the uploaded file's name). The
// bytes are streamed to a temporary file in the store while being hashed,
// checked with CheckFile, and only then renamed to <dir>/<digest>
// (mode 0755), so the store never holds a partial or unchecked artifact.
// Putting an artifact the store already has changes nothing. If the check
// fails, Put stores nothing and returns CheckFile's *Error.
func (s *Store) Put(r io.Reader, name string) (digest string, size int64, err error) {
	f, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return "", 0, fmt.Errorf("storing artifact %s: %w; check that the artifact store %s is writable", showPath(name), err, s.dir)
	}
	tmp, stored := f.Name(), false
	defer func() {
		if !stored {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		if isWriteErr(err, f) {
			return "", 0, fmt.Errorf("storing artifact %s: %w; check that the disk of the artifact store %s has space", showPath(name), err, s.dir)
		}
		return "", 0, fmt.Errorf("receiving artifact %s: %w after %d bytes; upload it again", showPath(name), err, size)
	}
	digest = digestOf(h)
	if s.Has(digest) {
		return digest, size, nil
	}
	if err := CheckFile(f, size, name); err != nil {
		return "", 0, err
	}
	if err := finish(f, tmp, filepath.Join(s.dir, digest)); err != nil {
		return "", 0, fmt.Errorf("storing artifact %s: %w; check that the disk of the artifact store %s has space", showPath(name), err, s.dir)
	}
	stored = true
	return digest, size, nil
}

// Has reports whether the store has the artifact with this digest.
func (s *Store) Has(digest string) bool {
	_, err := s.Path(digest)
	return err == nil
}

// Open opens the artifact with this digest for reading and returns it with
// its size; the caller closes it. It is an error if the digest is not valid
// or the store does not have that artifact.
func (s *Store) Open(digest string) (*os.File, int64, error) {
	p, err := s.Path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("opening artifact %s: %w; check the permissions of the artifact store %s", digest, err, s.dir)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening artifact %s: %w; check the artifact store %s", digest, err, s.dir)
	}
	return f, st.Size(), nil
}

// Path returns the path of the artifact with this digest. It is an error if
// the digest is not valid or the store does not have that artifact.
func (s *Store) Path(digest string) (string, error) {
	if !ValidDigest(digest) {
		return "", badDigest(digest)
	}
	p := filepath.Join(s.dir, digest)
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("artifact %s is not in the artifact store %s; upload the job's binary first", digest, s.dir)
	case err != nil:
		return "", fmt.Errorf("artifact %s: %w; check the permissions of the artifact store %s", digest, err, s.dir)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("artifact %s in the artifact store %s is not a regular file; remove %s and upload the job's binary again", digest, s.dir, p)
	}
	return p, nil
}

// openDir creates dir if need be and removes the partial files that
// interrupted writes left in it; what names the directory in errors.
func openDir(dir, what string) error {
	if dir == "" {
		return fmt.Errorf("no directory given for the %s; give one", what)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the %s: %w; give a directory that can be created and written", what, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading the %s %s: %w; check its permissions", what, dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// finish makes the complete temporary file f, at tmp, executable, flushes it
// to disk, closes it and renames it to path.
func finish(f *os.File, tmp, path string) error {
	err := f.Chmod(0o755)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// isWriteErr reports whether err came from writing f rather than from
// reading the source.
func isWriteErr(err error, f *os.File) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Path == f.Name()
}
