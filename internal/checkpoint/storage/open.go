package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

// Configuration keys of S3 checkpoint storage, with the names of Flink's S3
// filesystems; each falls back to the usual AWS environment variable when
// unset. (state.checkpoints.dir, state.savepoints.dir and
// state.checkpoints.num-retained are declared in package config.)
var (
	S3EndpointKey = config.Declare(config.Key{Name: "s3.endpoint", Kind: config.String, Default: "",
		Doc: "S3 endpoint, e.g. http://127.0.0.1:9000 for MinIO; empty means AWS (or $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL)"})
	S3RegionKey = config.Declare(config.Key{Name: "s3.region", Kind: config.String, Default: "",
		Doc: "S3 region; empty means $AWS_REGION, $AWS_DEFAULT_REGION, or the bucket's region as the endpoint reports it"})
	S3AccessKeyKey = config.Declare(config.Key{Name: "s3.access-key", Kind: config.String, Default: "",
		Doc: "S3 access key; empty means $AWS_ACCESS_KEY_ID, then ~/.aws/credentials, then the EC2/ECS instance role"})
	S3SecretKeyKey = config.Declare(config.Key{Name: "s3.secret-key", Kind: config.String, Default: "",
		Doc: "S3 secret key, used with s3.access-key"})
	S3PathStyleAccessKey = config.Declare(config.Key{Name: "s3.path-style-access", Kind: config.Bool, Default: "false",
		Doc: "address buckets as endpoint/bucket instead of bucket.endpoint (needed by MinIO and most self-hosted S3 servers)"})
)

// Options configure Open. The zero value uses the environment only.
type Options struct {
	S3 S3Options
}

// S3Options configure the s3:// storage. Empty fields fall back to the AWS
// environment variables named in the configuration keys' documentation.
type S3Options struct {
	// Endpoint is a URL ("http://127.0.0.1:9000", "https://s3.example.com")
	// or a host[:port], which means HTTPS. Empty means AWS.
	Endpoint        string
	Region          string
	AccessKey       string
	SecretKey       string
	SessionToken    string
	PathStyleAccess bool
	// MaxRetries bounds the attempts per request (default 10); requests
	// back off exponentially between attempts, up to a second.
	MaxRetries int
}

// OptionsFromConfig reads the s3.* keys of c.
func OptionsFromConfig(c *config.Config) Options {
	return Options{S3: S3Options{
		Endpoint:        c.String(S3EndpointKey),
		Region:          c.String(S3RegionKey),
		AccessKey:       c.String(S3AccessKeyKey),
		SecretKey:       c.String(S3SecretKeyKey),
		PathStyleAccess: c.Bool(S3PathStyleAccessKey),
	}}
}

// Open opens the storage at uri with options from the environment only;
// see OpenWith.
func Open(ctx context.Context, uri string) (Storage, error) {
	return OpenWith(ctx, uri, Options{})
}

// OpenWith opens the storage at uri:
//
//	file:///abs/path, /abs/path    a local (or mounted network) directory,
//	                               created if missing
//	s3://bucket[/prefix]           an S3 bucket (also s3a:// and s3p://,
//	                               as Flink accepts them)
//
// It checks that the storage can be used (the directory can be created,
// the bucket exists and the credentials may list it) and returns an error
// that names the URI and the fix if not.
func OpenWith(ctx context.Context, uri string, opts Options) (Storage, error) {
	return open(ctx, uri, opts, true)
}

// open opens uri; create says whether a missing local directory is
// created (for writing) or an error (for restoring).
func open(ctx context.Context, uri string, opts Options, create bool) (Storage, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	switch {
	case uri == "":
		return nil, errorf(ErrBadURI, nil, "checkpoint storage: no directory given; set state.checkpoints.dir to file:///path or s3://bucket/prefix")
	case !ok && filepath.IsAbs(uri):
		return openFile(filepath.Clean(uri), create)
	case !ok:
		return nil, errorf(ErrBadURI, nil, "checkpoint storage %q: not an absolute path or URI; use file:///absolute/path or s3://bucket/prefix", uri)
	}
	switch strings.ToLower(scheme) {
	case "file":
		u, err := url.Parse(uri)
		if err != nil {
			return nil, errorf(ErrBadURI, err, "checkpoint storage %q", uri)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, errorf(ErrBadURI, nil, "checkpoint storage %q: file URIs name a local path and take no host (%q); write file:///path (three slashes)", uri, u.Host)
		}
		if !filepath.IsAbs(u.Path) {
			return nil, errorf(ErrBadURI, nil, "checkpoint storage %q: the path must be absolute; write file:///absolute/path", uri)
		}
		return openFile(filepath.Clean(u.Path), create)
	case "s3", "s3a", "s3p":
		bucket, prefix, _ := strings.Cut(rest, "/")
		prefix = strings.Trim(prefix, "/")
		if bucket == "" {
			return nil, errorf(ErrBadURI, nil, "checkpoint storage %q: no bucket; write s3://bucket/prefix", uri)
		}
		if prefix != "" {
			if err := CheckName(prefix); err != nil {
				return nil, errorf(ErrBadURI, err, "checkpoint storage %q: bad prefix", uri)
			}
		}
		return openS3(ctx, bucket, prefix, opts.S3)
	default:
		return nil, errorf(ErrBadURI, nil, "checkpoint storage %q: unsupported scheme %q; use file:///absolute/path or s3://bucket/prefix", uri, scheme)
	}
}

// RestorePoint is an opened savepoint or retained checkpoint.
type RestorePoint struct {
	// Storage holds its files; the caller closes it.
	Storage Storage
	// Location resolves the metadata's file handles in Storage.
	Location Location
	// Metadata has been read and checked.
	Metadata *checkpointpb.Metadata
}

// OpenRestorePoint opens what "weir run --from-savepoint PATH" names: a
// savepoint directory, a retained checkpoint's directory
// (".../<job-id>/chk-<n>", whose shared files are in "../shared"), or the
// _metadata file of either. Unlike OpenWith it creates nothing; a missing
// path is an fs.ErrNotExist error.
func OpenRestorePoint(ctx context.Context, uri string, opts Options) (*RestorePoint, error) {
	uri = strings.TrimSuffix(strings.TrimSuffix(uri, "/"), "/"+MetadataName)
	// A checkpoint's handles reach into its job directory (../shared), so
	// open the storage there; a savepoint is opened at itself.
	root, loc := uri, Location{}
	if i := strings.LastIndex(uri, "/"); i > 0 {
		if _, ok := ParseCheckpointDir(uri[i+1:]); ok {
			root = uri[:i]
			loc = Location{Dir: uri[i+1:], SharedDir: SharedDirName, TaskOwnedDir: TaskOwnedDirName}
		}
	}
	st, err := open(ctx, root, opts, false)
	if err != nil {
		return nil, fmt.Errorf("opening savepoint %s: %w", uri, err)
	}
	md, err := ReadMetadata(ctx, st, loc)
	if err != nil {
		st.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a savepoint or a complete checkpoint (it has no %s): %w", uri, MetadataName, err)
		}
		return nil, err
	}
	return &RestorePoint{Storage: st, Location: loc, Metadata: md}, nil
}
