package storage

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/config"
)

func TestOpenBadURIs(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ uri, want string }{
		{"", "set state.checkpoints.dir"},
		{"relative/dir", "not an absolute path or URI"},
		{"file://host/x", "take no host"},
		{"file://relative", "take no host"},
		{"ftp://example.com/x", `unsupported scheme "ftp"`},
		{"s3://", "no bucket"},
		{"s3:///prefix", "no bucket"},
		{"s3://bucket/a/../b", "bad prefix"},
		{"file://" + file, "is a file, not a directory"},
	} {
		_, err := Open(ctx, tc.uri)
		if !errors.Is(err, ErrBadURI) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v; want ErrBadURI saying %q", tc.uri, err, tc.want)
		}
	}
	_, err := OpenWith(ctx, "s3://b/p", Options{S3: S3Options{Endpoint: "http://127.0.0.1:1/path"}})
	if !errors.Is(err, ErrBadURI) || !strings.Contains(err.Error(), "without a path") {
		t.Errorf("endpoint with a path: %v", err)
	}
	_, err = OpenWith(ctx, "s3://b/p", Options{S3: S3Options{Endpoint: "http://127.0.0.1:1", AccessKey: "k"}})
	if !errors.Is(err, ErrBadURI) || !strings.Contains(err.Error(), "set both s3.access-key and s3.secret-key") {
		t.Errorf("access key without secret: %v", err)
	}
}

func TestOpenFileForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, uri := range []string{dir, "file://" + dir, "file://localhost" + dir, dir + "/new/sub"} {
		st, err := Open(ctx, uri)
		if err != nil {
			t.Fatalf("Open(%q): %v", uri, err)
		}
		if !strings.HasPrefix(st.URI(), "file:///") {
			t.Errorf("Open(%q).URI() = %q", uri, st.URI())
		}
	}
	if fi, err := os.Stat(dir + "/new/sub"); err != nil || !fi.IsDir() {
		t.Fatalf("Open did not create the directory: %v", err)
	}
}

func TestOpenFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permissions are not enforced")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	_, err := Open(context.Background(), filepath.Join(dir, "sub"))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "give the user running Weir write access") {
		t.Fatalf("Open in a read-only directory: %v", err)
	}
}

func TestOpenS3Errors(t *testing.T) {
	ctx := context.Background()
	srv := startS3(t, "weir")
	opts := S3Options{Endpoint: srv.URL, Region: "us-east-1", AccessKey: testAccessKey, SecretKey: testSecretKey, PathStyleAccess: true, MaxRetries: 1}

	_, err := OpenWith(ctx, "s3://missing/prefix", Options{S3: opts})
	if !errors.Is(err, ErrNoBucket) || !strings.Contains(err.Error(), "s3://missing/prefix") || !strings.Contains(err.Error(), `bucket "missing" does not exist`) {
		t.Errorf("missing bucket: %v", err)
	}

	bad := opts
	bad.AccessKey = "wrong"
	_, err = OpenWith(ctx, "s3://weir/prefix", Options{S3: bad})
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "access denied") || !strings.Contains(err.Error(), "s3.access-key") {
		t.Errorf("wrong credentials: %v", err)
	}

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	down := opts
	down.Endpoint = dead
	start := time.Now()
	_, err = OpenWith(ctx, "s3://weir/prefix", Options{S3: down})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "cannot reach the S3 endpoint "+dead) || !strings.Contains(err.Error(), "s3.endpoint") {
		t.Errorf("unreachable endpoint: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("reporting an unreachable endpoint took %v", d)
	}

	// The environment's credentials are used when the config has none.
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	st, err := OpenWith(ctx, "s3://weir/env", Options{S3: S3Options{PathStyleAccess: true}})
	if err != nil {
		t.Fatalf("credentials from the environment: %v", err)
	}
	st.Close()
}

func TestOptionsFromConfig(t *testing.T) {
	c, err := config.FromMap(map[string]string{
		"s3.endpoint": "http://minio:9000", "s3.region": "eu-west-1", "s3.access-key": "a", "s3.secret-key": "s", "s3.path-style-access": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := OptionsFromConfig(c).S3
	want := S3Options{Endpoint: "http://minio:9000", Region: "eu-west-1", AccessKey: "a", SecretKey: "s", PathStyleAccess: true}
	if got != want {
		t.Fatalf("OptionsFromConfig = %+v, want %+v", got, want)
	}
}
