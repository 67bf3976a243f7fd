package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"
	"time"
)

// Storage is a tree of files under one root: a local directory or an S3
// bucket prefix. Names are slash-separated paths relative to the root (see
// CheckName); directories exist only as prefixes of file names (on the
// local filesystem they are created and removed as needed).
//
// Every method is safe for concurrent use. Deleting a file that does not
// exist is not an error, so deletions can be retried after a crash.
type Storage interface {
	// URI is the root, e.g. "file:///var/lib/weir/checkpoints" or
	// "s3://bucket/checkpoints"; error messages name files as URI + "/" +
	// name.
	URI() string
	// Create starts writing the file name. Nothing is visible under name
	// until Close returns nil, and then the complete file is (it replaces a
	// file of that name atomically); Abort, or a failed Close, leaves
	// nothing behind. The context governs the whole write.
	Create(ctx context.Context, name string) (Writer, error)
	// Open opens the file name for reading. A missing file is an error for
	// which errors.Is(err, fs.ErrNotExist) holds. On S3 the context also
	// bounds the reads of the returned File (each is a GET).
	Open(ctx context.Context, name string) (File, error)
	// Stat returns the size of the file name; a missing file is an
	// fs.ErrNotExist error.
	Stat(ctx context.Context, name string) (FileInfo, error)
	// Delete deletes the file name; a missing file is not an error.
	Delete(ctx context.Context, name string) error
	// List returns the immediate children of the directory dir ("" for the
	// root), sorted by name: files with their sizes, and subdirectories
	// (IsDir). A missing directory has no children.
	List(ctx context.Context, dir string) ([]FileInfo, error)
	// ListAll returns every file under the directory dir ("" for the root),
	// at any depth, sorted by name.
	ListAll(ctx context.Context, dir string) ([]FileInfo, error)
	// DeleteAll deletes every file under the directory dir and the
	// directory itself; a missing directory is not an error. The order in
	// which files disappear is unspecified.
	DeleteAll(ctx context.Context, dir string) error
	// Close releases the storage's resources (idle connections).
	Close() error
}

// Writer writes one file of a Storage; see Storage.Create.
type Writer interface {
	io.Writer
	// Close finishes the file and makes it visible under its name. After
	// an error nothing is visible.
	Close() error
	// Abort discards the file. It may be called after Close (it then does
	// nothing) and more than once.
	Abort() error
}

// File is an open file of a Storage. Read reads from the start; ReadAt
// reads any range (on S3, one ranged GET per call).
type File interface {
	io.Reader
	io.ReaderAt
	io.Closer
	// Size is the file's size when it was opened.
	Size() int64
}

// FileInfo describes a file or, from List, a directory.
type FileInfo struct {
	// Name relative to the storage root (for List, dir + "/" + base name).
	Name    string
	Size    int64     // bytes; 0 for a directory
	ModTime time.Time // zero for a directory
	IsDir   bool
}

// Errors that Storage implementations wrap, so that callers can tell them
// apart with errors.Is; the messages say which URI and what to do.
// Missing files wrap fs.ErrNotExist, and refused access fs.ErrPermission.
var (
	// ErrBadURI: the storage URI cannot be used (unknown scheme, relative
	// path, missing bucket name, ...).
	ErrBadURI = errors.New("bad checkpoint storage URI")
	// ErrUnreachable: the storage endpoint could not be reached.
	ErrUnreachable = errors.New("checkpoint storage unreachable")
	// ErrNoBucket: the S3 bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrBadName: a file name is not a clean relative path (see CheckName).
	ErrBadName = errors.New("bad file name")
)

// CheckName reports whether name is a valid file or directory name
// relative to a storage root: non-empty, slash-separated, no empty, "." or
// ".." elements, no leading or trailing slash, no backslash or NUL. Storage
// implementations reject other names, so a name read from a (corrupt or
// hostile) metadata file can never reach outside the root.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrBadName)
	}
	if strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("%w %q: contains a backslash or NUL", ErrBadName, name)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w %q: must be a clean relative slash-separated path (no empty, \".\" or \"..\" elements)", ErrBadName, name)
		}
	}
	return nil
}

// checkDir is CheckName for a directory, where "" means the root.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	return CheckName(dir)
}

// Join joins name elements with slashes, skipping empty ones. It does not
// clean or check the result.
func Join(elems ...string) string {
	var b strings.Builder
	for _, e := range elems {
		if e == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(e)
	}
	return b.String()
}

// base returns the last element of name.
func base(name string) string { return path.Base(name) }

// Written describes a file that Put wrote.
type Written struct {
	Name   string
	Size   int64
	CRC32C uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C (Castagnoli) of b, the checksum that file
// handles record.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// checksumWriter counts and checksums what passes through it.
type checksumWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (c *checksumWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// Put writes the file name with write, atomically: it commits the file if
// write returns nil and discards it otherwise. It returns the file's size
// and CRC-32C, which a FileHandle records.
func Put(ctx context.Context, st Storage, name string, write func(w io.Writer) error) (Written, error) {
	w, err := st.Create(ctx, name)
	if err != nil {
		return Written{}, err
	}
	cw := &checksumWriter{w: w}
	if err := write(cw); err != nil {
		return Written{}, errors.Join(err, w.Abort())
	}
	if err := w.Close(); err != nil {
		return Written{}, err
	}
	return Written{Name: name, Size: cw.n, CRC32C: cw.crc}, nil
}

// PutBytes writes data to the file name atomically; see Put.
func PutBytes(ctx context.Context, st Storage, name string, data []byte) (Written, error) {
	return Put(ctx, st, name, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// ReadAll reads the whole file name.
func ReadAll(ctx context.Context, st Storage, name string) ([]byte, error) {
	f, err := st.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, f.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("reading %s: %w", fileURI(st, name), err)
	}
	// A file that grew after Open is not ours to read: writes are atomic
	// replacements, so the size at Open is the file's size.
	return b, nil
}

// ErrChecksum is wrapped by Fetch's error when a file's size or CRC-32C
// differs from what its handle recorded.
var ErrChecksum = errors.New("checksum mismatch")

// Fetch copies the file name to dst, checking that it has the given size
// and CRC-32C (what a FileHandle recorded). A mismatch is an ErrChecksum
// error; dst may then hold part or all of the bad bytes.
func Fetch(ctx context.Context, st Storage, name string, size int64, crc uint32, dst io.Writer) error {
	f, err := st.Open(ctx, name)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Size() != size {
		return fmt.Errorf("%s: %w: the file has %d bytes but the checkpoint metadata says %d; the file was changed or truncated after the checkpoint was taken", fileURI(st, name), ErrChecksum, f.Size(), size)
	}
	cw := &checksumWriter{w: dst}
	if _, err := io.Copy(cw, io.LimitReader(f, size)); err != nil {
		return fmt.Errorf("reading %s: %w", fileURI(st, name), err)
	}
	if cw.n != size {
		return fmt.Errorf("%s: %w: read %d bytes, expected %d", fileURI(st, name), ErrChecksum, cw.n, size)
	}
	if cw.crc != crc {
		return fmt.Errorf("%s: %w: CRC-32C is %08x but the checkpoint metadata says %08x; the file is corrupt", fileURI(st, name), ErrChecksum, cw.crc, crc)
	}
	return nil
}

// fileURI names a file of st in messages.
func fileURI(st Storage, name string) string {
	return joinURI(st.URI(), name)
}

func joinURI(root, name string) string {
	if name == "" {
		return root
	}
	return strings.TrimSuffix(root, "/") + "/" + name
}

// errorf builds an error about uri that wraps kind and cause.
func errorf(kind error, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		return &storageError{msg: msg, kind: kind}
	}
	return &storageError{msg: msg, kind: kind, cause: cause}
}

// storageError is an error with a message that names the URI and the fix,
// wrapping a kind (ErrUnreachable, fs.ErrNotExist, ...) and the cause.
type storageError struct {
	msg   string
	kind  error
	cause error
}

func (e *storageError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *storageError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}
