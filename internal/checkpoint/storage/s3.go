package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3PartSize is the size of the parts of a multipart upload. A file up to
// this size is one PUT; a larger one is uploaded in parts of this size
// (S3 allows 10,000 parts, so files up to 160 GiB), with one part buffered
// in memory per open writer.
const s3PartSize = 16 << 20

// s3Storage is a Storage under a prefix of an S3 bucket. A PUT makes an
// object visible atomically, and so does completing a multipart upload, so
// writers need no temporary names.
type s3Storage struct {
	client    *minio.Client
	core      minio.Core
	transport *http.Transport
	bucket    string
	prefix    string // "" or "a/b", no slashes at the ends
	uri       string
	endpoint  string // for messages
	partSize  int
}

func openS3(ctx context.Context, bucket, prefix string, o S3Options) (Storage, error) {
	uri := "s3://" + bucket
	if prefix != "" {
		uri += "/" + prefix
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	custom := endpoint != ""
	secure := true
	host := "s3.amazonaws.com"
	if custom {
		if strings.Contains(endpoint, "://") {
			u, err := url.Parse(endpoint)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" {
				return nil, errorf(ErrBadURI, err, "checkpoint storage %s: S3 endpoint %q must be http://host[:port] or https://host[:port] without a path; fix s3.endpoint", uri, endpoint)
			}
			secure, host = u.Scheme == "https", u.Host
		} else {
			host = strings.TrimSuffix(endpoint, "/")
		}
	}
	region := o.Region
	if region == "" {
		region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	var creds *credentials.Credentials
	switch {
	case o.AccessKey != "" && o.SecretKey == "", o.AccessKey == "" && o.SecretKey != "":
		return nil, errorf(ErrBadURI, nil, "checkpoint storage %s: set both s3.access-key and s3.secret-key, or neither (to use $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance role)", uri)
	case o.AccessKey != "":
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	default:
		providers := []credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}}
		// Instance roles exist on AWS only; asking the metadata endpoint
		// elsewhere costs a timeout on every request.
		if !custom || firstEnv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE") != "" {
			providers = append(providers, &credentials.IAM{})
		}
		creds = credentials.NewChainCredentials(providers)
	}
	transport, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, errorf(nil, err, "checkpoint storage %s", uri)
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyleAccess {
		lookup = minio.BucketLookupPath
	}
	newClient := func(retries int) (*minio.Client, error) {
		return minio.New(host, &minio.Options{
			Creds: creds, Secure: secure, Region: region, BucketLookup: lookup,
			Transport: transport, MaxRetries: retries,
		})
	}
	retries := o.MaxRetries
	if retries <= 0 {
		retries = minio.MaxRetry
	}
	client, err := newClient(retries)
	if err != nil {
		return nil, errorf(ErrBadURI, err, "checkpoint storage %s: S3 endpoint %q", uri, host)
	}
	scheme := "https://"
	if !secure {
		scheme = "http://"
	}
	s := &s3Storage{
		client: client, core: minio.Core{Client: client}, transport: transport,
		bucket: bucket, prefix: prefix, uri: uri, endpoint: scheme + host, partSize: s3PartSize,
	}
	// Probe with few retries: a wrong endpoint should fail in a second or
	// two, not after the ten backed-off retries that ride out a blip.
	probe, err := newClient(min(retries, 2))
	if err != nil {
		return nil, errorf(ErrBadURI, err, "checkpoint storage %s: S3 endpoint %q", uri, host)
	}
	ok, err := probe.BucketExists(ctx, bucket)
	if err == nil && !ok {
		err = minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: http.StatusNotFound, BucketName: bucket}
	}
	if err != nil {
		transport.CloseIdleConnections()
		return nil, s.wrap(err, "opening", "")
	}
	return s, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (s *s3Storage) URI() string { return s.uri }

func (s *s3Storage) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func (s *s3Storage) key(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "/" + name
}

// dirKey is the key prefix of the objects under dir.
func (s *s3Storage) dirKey(dir string) string {
	switch {
	case dir != "":
		return s.key(dir) + "/"
	case s.prefix != "":
		return s.prefix + "/"
	}
	return ""
}

// wrap turns a minio error into one that names the URI, says what kind it
// is (errors.Is: fs.ErrNotExist, fs.ErrPermission, ErrNoBucket,
// ErrUnreachable) and what to do.
func (s *s3Storage) wrap(err error, doing, name string) error {
	if err == nil {
		return nil
	}
	where := joinURI(s.uri, name)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !isNetworkError(err) {
		return fmt.Errorf("checkpoint storage %s: %s: %w", where, doing, err)
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchBucket":
		return errorf(ErrNoBucket, err, "checkpoint storage %s: %s: bucket %q does not exist at %s; create it (e.g. aws s3 mb s3://%s) or fix the bucket in the URI", where, doing, s.bucket, s.endpoint, s.bucket)
	case resp.Code == "NoSuchKey" || resp.Code == "NotFound" && name != "":
		return errorf(fs.ErrNotExist, nil, "checkpoint storage %s: no such file", where)
	case resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" ||
		resp.Code == "InvalidToken" || resp.Code == "ExpiredToken" || resp.StatusCode == http.StatusForbidden:
		return errorf(fs.ErrPermission, err, "checkpoint storage %s: %s: access denied by %s; check s3.access-key and s3.secret-key (or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY) and that they may read, write, list and delete objects under %s", where, doing, s.endpoint, s.uri)
	case resp.Code == "" && isNetworkError(err):
		return errorf(ErrUnreachable, err, "checkpoint storage %s: %s: cannot reach the S3 endpoint %s; check s3.endpoint (or $AWS_ENDPOINT_URL) and that the server is running and reachable from this host", where, doing, s.endpoint)
	}
	return errorf(nil, err, "checkpoint storage %s: %s", where, doing)
}

func isNetworkError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || strings.Contains(err.Error(), "connection refused")
}

func (s *s3Storage) Create(ctx context.Context, name string) (Writer, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	return &s3Writer{ctx: ctx, s: s, name: name, key: s.key(name)}, nil
}

// s3Writer buffers up to one part. Close PUTs a small file in one request;
// a large one goes up as a multipart upload, which S3 makes visible only
// when it is completed.
type s3Writer struct {
	ctx      context.Context
	s        *s3Storage
	name     string
	key      string
	buf      []byte
	uploadID string
	parts    []minio.CompletePart
	mu       sync.Mutex // guards done against Close racing Abort
	done     bool
	err      error // sticky write error
}

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("checkpoint storage %s: write after close", joinURI(w.s.uri, w.name))
	}
	n := len(p)
	for len(p) > 0 {
		room := w.s.partSize - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == w.s.partSize {
			if err := w.uploadPart(); err != nil {
				w.err = err
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *s3Writer) uploadPart() error {
	if w.uploadID == "" {
		id, err := w.s.core.NewMultipartUpload(w.ctx, w.s.bucket, w.key, minio.PutObjectOptions{})
		if err != nil {
			return w.s.wrap(err, "starting a multipart upload", w.name)
		}
		w.uploadID = id
	}
	md5sum, sha := payloadSums(w.buf)
	part, err := w.s.core.PutObjectPart(w.ctx, w.s.bucket, w.key, w.uploadID, len(w.parts)+1,
		bytes.NewReader(w.buf), int64(len(w.buf)), minio.PutObjectPartOptions{Md5Base64: md5sum, Sha256Hex: sha, DisableContentSha256: true})
	if err != nil {
		return w.s.wrap(err, fmt.Sprintf("uploading part %d", len(w.parts)+1), w.name)
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: part.PartNumber, ETag: part.ETag})
	w.buf = w.buf[:0]
	return nil
}

// payloadSums returns the Content-MD5 and the SHA-256 of a request body.
// The request signature covers the SHA-256 and the server checks both, so
// a body damaged in transit is refused. (Signing the payload up front,
// rather than with minio's streaming "aws-chunked" signature, also works
// with every S3-compatible server.)
func payloadSums(b []byte) (md5Base64, sha256Hex string) {
	m := md5.Sum(b)
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

func (w *s3Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("checkpoint storage %s: file already closed or aborted", joinURI(w.s.uri, w.name))
	}
	w.done = true
	err := w.err
	if err == nil {
		err = w.finish()
	}
	if err != nil {
		w.abortUpload()
		return err
	}
	return nil
}

func (w *s3Writer) finish() error {
	if w.uploadID == "" {
		md5sum, sha := payloadSums(w.buf)
		_, err := w.s.core.PutObject(w.ctx, w.s.bucket, w.key, bytes.NewReader(w.buf), int64(len(w.buf)),
			md5sum, sha, minio.PutObjectOptions{DisableContentSha256: true})
		return w.s.wrap(err, "writing", w.name)
	}
	if len(w.buf) > 0 {
		if err := w.uploadPart(); err != nil {
			return err
		}
	}
	_, err := w.s.core.CompleteMultipartUpload(w.ctx, w.s.bucket, w.key, w.uploadID, w.parts, minio.PutObjectOptions{})
	if err != nil {
		return w.s.wrap(err, "completing the multipart upload", w.name)
	}
	w.uploadID = ""
	return nil
}

// abortUpload aborts the multipart upload, if one was started, so that its
// parts stop costing storage. It uses a fresh context: the writer's may be
// the reason for the abort.
func (w *s3Writer) abortUpload() {
	w.buf = nil
	if w.uploadID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 30*time.Second)
	defer cancel()
	_ = w.s.core.AbortMultipartUpload(ctx, w.s.bucket, w.key, w.uploadID)
	w.uploadID = ""
}

func (w *s3Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.abortUpload()
	return nil
}

func (s *s3Storage) Open(ctx context.Context, name string) (File, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return nil, s.wrap(err, "opening", name)
	}
	return &s3File{ctx: ctx, s: s, name: name, size: info.Size, etag: info.ETag}, nil
}

// s3File reads one version of an object: every request must match the
// ETag seen at Open, so a concurrent overwrite fails the read instead of
// mixing two versions.
type s3File struct {
	ctx  context.Context
	s    *s3Storage
	name string
	size int64
	etag string
	body io.ReadCloser // sequential reader, opened by the first Read
	off  int64         // bytes read through body
}

func (f *s3File) Size() int64 { return f.size }

func (f *s3File) get(off, n int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if f.etag != "" {
		if err := opts.SetMatchETag(f.etag); err != nil {
			return nil, err
		}
	}
	if off > 0 || n < f.size {
		if err := opts.SetRange(off, off+n-1); err != nil {
			return nil, err
		}
	}
	body, _, _, err := f.s.core.GetObject(f.ctx, f.s.bucket, f.s.key(f.name), opts)
	if err != nil {
		return nil, f.s.wrap(err, "reading", f.name)
	}
	return body, nil
}

func (f *s3File) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.body == nil {
		body, err := f.get(f.off, f.size-f.off)
		if err != nil {
			return 0, err
		}
		f.body = body
	}
	if rem := f.size - f.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := f.body.Read(p)
	f.off += int64(n)
	if err == io.EOF && f.off < f.size {
		err = fmt.Errorf("checkpoint storage %s: object ended after %d of %d bytes: %w", joinURI(f.s.uri, f.name), f.off, f.size, io.ErrUnexpectedEOF)
	} else if err != nil && err != io.EOF {
		err = f.s.wrap(err, "reading", f.name)
	}
	return n, err
}

func (f *s3File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("checkpoint storage %s: negative offset %d", joinURI(f.s.uri, f.name), off)
	}
	if off >= f.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := min(int64(len(p)), f.size-off)
	if want == 0 {
		return 0, nil
	}
	body, err := f.get(off, want)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.ReadFull(body, p[:want])
	if err != nil {
		return n, fmt.Errorf("checkpoint storage %s: reading %d bytes at offset %d: %w", joinURI(f.s.uri, f.name), want, off, err)
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (f *s3File) Close() error {
	if f.body != nil {
		err := f.body.Close()
		f.body = nil
		return err
	}
	return nil
}

func (s *s3Storage) Stat(ctx context.Context, name string) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return FileInfo{}, s.wrap(err, "stat", name)
	}
	return FileInfo{Name: name, Size: info.Size, ModTime: info.LastModified}, nil
}

func (s *s3Storage) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil
	}
	return s.wrap(err, "deleting", name)
}

// list lists the objects under dir; recursive lists all depths, otherwise
// the immediate children, with subdirectories as common prefixes.
func (s *s3Storage) list(ctx context.Context, dir string, recursive bool) ([]FileInfo, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	// A child context so that stopping early ends minio's listing goroutine.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pfx := s.dirKey(dir)
	rootLen := len(s.dirKey(""))
	var out []FileInfo
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: pfx, Recursive: recursive}) {
		if obj.Err != nil {
			return nil, s.wrap(obj.Err, "listing", dir)
		}
		name := obj.Key[rootLen:]
		isDir := strings.HasSuffix(name, "/")
		name = strings.TrimSuffix(name, "/")
		if CheckName(name) != nil || (isDir && recursive) {
			continue // a "folder" marker object, or a key no Storage wrote
		}
		if isDir && obj.Size == 0 && obj.ETag == "" {
			out = append(out, FileInfo{Name: name, IsDir: true})
		} else if !isDir {
			out = append(out, FileInfo{Name: name, Size: obj.Size, ModTime: obj.LastModified})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint storage %s: listing: %w", joinURI(s.uri, dir), err)
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (s *s3Storage) List(ctx context.Context, dir string) ([]FileInfo, error) {
	return s.list(ctx, dir, false)
}

func (s *s3Storage) ListAll(ctx context.Context, dir string) ([]FileInfo, error) {
	return s.list(ctx, dir, true)
}

func (s *s3Storage) DeleteAll(ctx context.Context, dir string) error {
	if dir == "" {
		return fmt.Errorf("checkpoint storage %s: refusing to delete the whole storage root", s.uri)
	}
	if err := CheckName(dir); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var keys []minio.ObjectInfo
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.dirKey(dir), Recursive: true}) {
		if obj.Err != nil {
			return s.wrap(obj.Err, "listing", dir)
		}
		keys = append(keys, minio.ObjectInfo{Key: obj.Key})
	}
	if len(keys) == 0 {
		return nil
	}
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	var errs []error
	for e := range s.client.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && minio.ToErrorResponse(e.Err).Code != "NoSuchKey" {
			errs = append(errs, s.wrap(e.Err, "deleting", strings.TrimPrefix(e.ObjectName, s.dirKey(""))))
		}
	}
	return errors.Join(errs...)
}
