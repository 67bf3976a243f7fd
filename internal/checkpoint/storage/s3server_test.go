package storage

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The S3 tests run against gofakes3, an S3 server that speaks the S3 HTTP
// protocol (XML responses, multipart uploads, ranged and conditional GETs,
// multi-object delete), started by each test on 127.0.0.1: the real
// protocol over real TCP, in process. Debian packages no standalone S3
// server (MinIO and moto are not packaged; radosgw needs a Ceph cluster),
// and MinIO as a Go module is far too large to build for a test.
// gofakes3 checks no signatures, so startS3 adds the one check the tests
// need: requests signed with another access key are refused.

const (
	testAccessKey = "weir-test-access"
	testSecretKey = "weir-test-secret-key"
)

// s3Server is a loopback S3 server for tests.
type s3Server struct {
	URL     string // http://127.0.0.1:port
	backend *s3mem.Backend
}

// startS3 starts an S3 server on loopback with the given buckets. It
// rejects (403 InvalidAccessKeyId, as S3 does) requests signed with an
// access key other than testAccessKey; gofakes3 itself checks no
// credentials.
func startS3(t testing.TB, buckets ...string) *s3Server {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	handler := faker.Server()
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key := accessKeyOf(r); key != testAccessKey {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>%s</AWSAccessKeyId></Error>`, key)
			}
			return
		}
		handler.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(auth)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return &s3Server{URL: srv.URL, backend: backend}
}

// accessKeyOf returns the access key of a SigV4 request ("" if unsigned).
func accessKeyOf(r *http.Request) string {
	a := r.Header.Get("Authorization")
	_, cred, ok := strings.Cut(a, "Credential=")
	if !ok {
		return r.URL.Query().Get("X-Amz-Credential")
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// openTestS3 opens s3://bucket/prefix on srv with the test credentials.
func openTestS3(t testing.TB, srv *s3Server, bucket, prefix string) Storage {
	t.Helper()
	st, err := OpenWith(context.Background(), "s3://"+bucket+"/"+prefix, Options{S3: S3Options{
		Endpoint: srv.URL, Region: "us-east-1", AccessKey: testAccessKey, SecretKey: testSecretKey,
		PathStyleAccess: true, MaxRetries: 2,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
