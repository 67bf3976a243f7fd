package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// entries lists the names of the files in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestStorePut(t *testing.T) {
	needBins(t)
	job, err := os.ReadFile(bins.weir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store") // OpenStore creates it
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := sha(job)
	if s.Has(want) {
		t.Fatal("Has before Put")
	}
	digest, size, err := s.Put(bytes.NewReader(job), "wordcount")
	if err != nil {
		t.Fatal(err)
	}
	if digest != want || size != int64(len(job)) || !ValidDigest(digest) {
		t.Fatalf("Put = %s, %d; want %s, %d", digest, size, want, len(job))
	}
	if !s.Has(digest) {
		t.Error("Has after Put = false")
	}

	f, n, err := s.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || n != size || !bytes.Equal(got, job) {
		t.Errorf("Open: %d bytes (size %d, err %v), want the %d bytes put", len(got), n, err, len(job))
	}

	p, err := s.Path(digest)
	if err != nil || p != filepath.Join(dir, digest) {
		t.Fatalf("Path = %q, %v", p, err)
	}
	if st, err := os.Stat(p); err != nil || runtime.GOOS != "windows" && st.Mode().Perm() != 0o755 {
		t.Errorf("stored file: %v, %v; want mode 0755", st.Mode(), err)
	}
	if err := Check(p); err != nil {
		t.Errorf("Check of the stored artifact: %v", err)
	}

	// The same content again changes nothing.
	before, _ := os.Stat(p)
	d2, n2, err := s.Put(bytes.NewReader(job), "again")
	if err != nil || d2 != digest || n2 != size {
		t.Fatalf("second Put = %s, %d, %v", d2, n2, err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Error("second Put replaced the stored file")
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != digest {
		t.Errorf("store holds %v, want only %s", names, digest)
	}

	// A reopened store has it.
	s2, err := OpenStore(dir)
	if err != nil || !s2.Has(digest) {
		t.Errorf("reopened store: Has = false (%v)", err)
	}
}

func TestStoreRejects(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	notWeir, err := os.ReadFile(bins.notWeir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Put(bytes.NewReader(notWeir), "notweir")
	var e *Error
	if !errors.As(err, &e) || e.Path != "notweir" || !strings.Contains(e.Problem, "not a Weir job") {
		t.Errorf("Put of a non-Weir program = %v, want Check's *Error", err)
	}
	if s.Has(sha(notWeir)) {
		t.Error("the rejected program is stored")
	}
	_, _, err = s.Put(strings.NewReader("#!/bin/sh\necho hi\n"), "x.sh")
	if !errors.As(err, &e) || !strings.Contains(e.Problem, "is a script") {
		t.Errorf("Put of a script = %v", err)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("store holds %v after rejected Puts, want nothing", names)
	}
}

// failingReader returns some bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		k := min(r.n, len(p))
		r.n -= k
		return k, nil
	}
	return 0, errors.New("connection reset")
}

func TestStorePutReadError(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Put(&failingReader{n: 100000}, "job")
	if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "upload it again") {
		t.Errorf("Put from a failing reader = %v", err)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("store holds %v after a failed Put, want nothing", names)
	}
}

func TestStoreUnknown(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	unknown := sha([]byte("nothing"))
	if s.Has(unknown) {
		t.Error("Has of an unknown digest")
	}
	if _, _, err := s.Open(unknown); err == nil || !strings.Contains(err.Error(), "is not in the artifact store") {
		t.Errorf("Open of an unknown digest = %v", err)
	}
	if _, err := s.Path(unknown); err == nil || !strings.Contains(err.Error(), unknown) {
		t.Errorf("Path of an unknown digest = %v", err)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.ToUpper(unknown)} {
		if _, _, err := s.Open(bad); err == nil || !strings.Contains(err.Error(), "is not valid") {
			t.Errorf("Open(%q) = %v, want an invalid digest error", bad, err)
		}
		if s.Has(bad) {
			t.Errorf("Has(%q) = true", bad)
		}
	}
}

func TestOpenStoreRemovesPartials(t *testing.T) {
	dir := t.TempDir()
	partial := filepath.Join(dir, tempPrefix+"123")
	kept := filepath.Join(dir, sha([]byte("x")))
	os.WriteFile(partial, []byte("half"), 0o600)
	os.WriteFile(kept, []byte("x"), 0o755)
	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != filepath.Base(kept) {
		t.Errorf("after OpenStore the directory holds %v, want only %s", names, filepath.Base(kept))
	}
}

func TestOpenStoreError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := OpenStore(filepath.Join(file, "store")); err == nil || !strings.Contains(err.Error(), "creating the artifact store") {
		t.Errorf("OpenStore under a file = %v", err)
	}
	if _, err := OpenCache(""); err == nil {
		t.Error("OpenCache(\"\") succeeded")
	}
}
