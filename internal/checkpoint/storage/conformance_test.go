package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// backend is one Storage implementation under test.
type backend struct {
	name string
	// open returns a fresh, empty Storage.
	open func(t *testing.T) Storage
}

// backends are the implementations every conformance test runs against:
// one suite, two backends.
func backends() []backend {
	return []backend{
		{"file", func(t *testing.T) Storage {
			st, err := Open(context.Background(), "file://"+t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			st.(*fileStorage).noSync = true
			return st
		}},
		{"s3", func(t *testing.T) Storage {
			srv := startS3(t, "weir")
			st := openTestS3(t, srv, "weir", "checkpoints")
			// Small parts so that the tests exercise multipart uploads
			// without writing 16 MiB files.
			st.(*s3Storage).partSize = 1 << 10
			return st
		}},
		{"s3-bucket-root", func(t *testing.T) Storage {
			srv := startS3(t, "weir")
			st := openTestS3(t, srv, "weir", "")
			st.(*s3Storage).partSize = 1 << 10
			return st
		}},
	}
}

func forEachBackend(t *testing.T, f func(t *testing.T, st Storage)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

func names(infos []FileInfo) []string {
	out := []string{}
	for _, fi := range infos {
		n := fi.Name
		if fi.IsDir {
			n += "/"
		}
		out = append(out, n)
	}
	return out
}

func TestConformance(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		f    func(t *testing.T, st Storage)
	}{
		{"PutOpenStatRoundTrip", func(t *testing.T, st Storage) {
			for _, size := range []int{0, 1, 1023, 1024, 1025, 5000} {
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(i * 7)
				}
				name := Join("job", "chk-1", "f"+strings.Repeat("x", size%5))
				w, err := PutBytes(ctx, st, name, data)
				if err != nil {
					t.Fatal(err)
				}
				if w.Size != int64(size) || w.CRC32C != CRC32C(data) {
					t.Fatalf("Written = %+v, want size %d crc %08x", w, size, CRC32C(data))
				}
				got, err := ReadAll(ctx, st, name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("size %d: read back %d different bytes", size, len(got))
				}
				fi, err := st.Stat(ctx, name)
				if err != nil || fi.Size != int64(size) || fi.Name != name {
					t.Fatalf("Stat = %+v, %v; want size %d", fi, err, size)
				}
				var buf bytes.Buffer
				if err := Fetch(ctx, st, name, w.Size, w.CRC32C, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
					t.Fatalf("Fetch: %v", err)
				}
			}
		}},
		{"ReadAt", func(t *testing.T, st Storage) {
			data := []byte("0123456789abcdefghij")
			if _, err := PutBytes(ctx, st, "r", data); err != nil {
				t.Fatal(err)
			}
			f, err := st.Open(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Size() != int64(len(data)) {
				t.Fatalf("Size = %d", f.Size())
			}
			p := make([]byte, 5)
			if n, err := f.ReadAt(p, 3); n != 5 || err != nil || string(p) != "34567" {
				t.Fatalf("ReadAt(3) = %d %v %q", n, err, p)
			}
			if n, err := f.ReadAt(p, 17); n != 3 || err != io.EOF || string(p[:n]) != "hij" {
				t.Fatalf("ReadAt(17) = %d %v %q, want 3 EOF", n, err, p[:n])
			}
			if n, err := f.ReadAt(p, 20); n != 0 || err != io.EOF {
				t.Fatalf("ReadAt(20) = %d %v, want 0 EOF", n, err)
			}
			all, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(all, data) {
				t.Fatalf("Read after ReadAt = %q, %v", all, err)
			}
		}},
		{"Overwrite", func(t *testing.T, st Storage) {
			for _, v := range []string{"first version", "second"} {
				if _, err := PutBytes(ctx, st, "a/b", []byte(v)); err != nil {
					t.Fatal(err)
				}
				if got, err := ReadAll(ctx, st, "a/b"); err != nil || string(got) != v {
					t.Fatalf("read %q, %v; want %q", got, err, v)
				}
			}
		}},
		{"AbortLeavesNothing", func(t *testing.T, st Storage) {
			for _, size := range []int{10, 3000} { // one PUT; a multipart upload
				w, err := st.Create(ctx, "x/aborted")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(make([]byte, size)); err != nil {
					t.Fatal(err)
				}
				if err := w.Abort(); err != nil {
					t.Fatal(err)
				}
				if err := w.Abort(); err != nil {
					t.Fatalf("second Abort: %v", err)
				}
				if _, err := st.Stat(ctx, "x/aborted"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("aborted file: Stat err = %v, want ErrNotExist", err)
				}
				if all, err := st.ListAll(ctx, ""); err != nil || len(all) != 0 {
					t.Fatalf("after abort: ListAll = %v, %v", names(all), err)
				}
			}
		}},
		{"NotVisibleBeforeClose", func(t *testing.T, st Storage) {
			w, err := st.Create(ctx, "d/f")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(make([]byte, 2500)); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Stat(ctx, "d/f"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("file visible before Close: %v", err)
			}
			if all, _ := st.ListAll(ctx, ""); len(all) != 0 {
				t.Fatalf("ListAll before Close = %v", names(all))
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, err := st.Stat(ctx, "d/f"); err != nil || fi.Size != 2500 {
				t.Fatalf("after Close: %+v %v", fi, err)
			}
			if err := w.Abort(); err != nil {
				t.Fatalf("Abort after Close: %v", err)
			}
			if _, err := st.Stat(ctx, "d/f"); err != nil {
				t.Fatalf("Abort after Close removed the file: %v", err)
			}
		}},
		{"CancelledContextCommitsNothing", func(t *testing.T, st Storage) {
			cctx, cancel := context.WithCancel(ctx)
			w, err := st.Create(cctx, "c/f")
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("partial"))
			cancel()
			if err := w.Close(); err == nil {
				t.Fatal("Close with a cancelled context succeeded")
			}
			if _, err := st.Stat(ctx, "c/f"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat = %v, want ErrNotExist", err)
			}
		}},
		{"Missing", func(t *testing.T, st Storage) {
			if _, err := st.Open(ctx, "no/such"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Open: %v, want ErrNotExist", err)
			} else if !strings.Contains(err.Error(), st.URI()+"/no/such") {
				t.Fatalf("error %q does not name %s/no/such", err, st.URI())
			}
			if _, err := st.Stat(ctx, "no/such"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat: %v, want ErrNotExist", err)
			}
			if err := st.Delete(ctx, "no/such"); err != nil {
				t.Fatalf("Delete of a missing file: %v", err)
			}
			if err := st.DeleteAll(ctx, "no"); err != nil {
				t.Fatalf("DeleteAll of a missing dir: %v", err)
			}
			if l, err := st.List(ctx, "no"); err != nil || len(l) != 0 {
				t.Fatalf("List of a missing dir = %v, %v", l, err)
			}
		}},
		{"ListAndDelete", func(t *testing.T, st Storage) {
			files := []string{"j/chk-1/_metadata", "j/chk-1/a", "j/chk-1/sub/b", "j/chk-10/_metadata", "j/shared/x", "j/shared/y", "j.x", "k/z"}
			for i, f := range files {
				if _, err := PutBytes(ctx, st, f, make([]byte, i)); err != nil {
					t.Fatal(err)
				}
			}
			all, err := st.ListAll(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Sorted(slices.Values(files))
			if got := names(all); !slices.Equal(got, want) {
				t.Fatalf("ListAll = %v, want %v", got, want)
			}
			for _, fi := range all {
				if fi.Size != int64(slices.Index(files, fi.Name)) {
					t.Fatalf("%s: size %d", fi.Name, fi.Size)
				}
			}
			sub, err := st.ListAll(ctx, "j/chk-1")
			if err != nil || !slices.Equal(names(sub), []string{"j/chk-1/_metadata", "j/chk-1/a", "j/chk-1/sub/b"}) {
				t.Fatalf("ListAll(j/chk-1) = %v, %v", names(sub), err)
			}
			top, err := st.List(ctx, "")
			if err != nil || !slices.Equal(names(top), []string{"j/", "j.x", "k/"}) {
				t.Fatalf("List(root) = %v, %v", names(top), err)
			}
			lj, err := st.List(ctx, "j")
			if err != nil || !slices.Equal(names(lj), []string{"j/chk-1/", "j/chk-10/", "j/shared/"}) {
				t.Fatalf("List(j) = %v, %v", names(lj), err)
			}
			lc, err := st.List(ctx, "j/chk-1")
			if err != nil || !slices.Equal(names(lc), []string{"j/chk-1/_metadata", "j/chk-1/a", "j/chk-1/sub/"}) {
				t.Fatalf("List(j/chk-1) = %v, %v", names(lc), err)
			}
			if err := st.Delete(ctx, "j/shared/x"); err != nil {
				t.Fatal(err)
			}
			// DeleteAll of "j/chk-1" must not touch "j/chk-10".
			if err := st.DeleteAll(ctx, "j/chk-1"); err != nil {
				t.Fatal(err)
			}
			all, _ = st.ListAll(ctx, "")
			if got := names(all); !slices.Equal(got, []string{"j.x", "j/chk-10/_metadata", "j/shared/y", "k/z"}) {
				t.Fatalf("after deletes: %v", got)
			}
			lj, _ = st.List(ctx, "j")
			if got := names(lj); !slices.Equal(got, []string{"j/chk-10/", "j/shared/"}) {
				t.Fatalf("List(j) after DeleteAll = %v (the deleted directory must be gone)", got)
			}
			if err := st.DeleteAll(ctx, ""); err == nil {
				t.Fatal("DeleteAll of the root succeeded")
			}
		}},
		{"BadNames", func(t *testing.T, st Storage) {
			for _, n := range []string{"", "/abs", "a//b", "../x", "a/../../x", "a/./b", "a/", "a\\b"} {
				if _, err := st.Create(ctx, n); !errors.Is(err, ErrBadName) {
					t.Errorf("Create(%q): %v, want ErrBadName", n, err)
				}
				if _, err := st.Open(ctx, n); !errors.Is(err, ErrBadName) {
					t.Errorf("Open(%q): %v, want ErrBadName", n, err)
				}
				if err := st.Delete(ctx, n); !errors.Is(err, ErrBadName) {
					t.Errorf("Delete(%q): %v, want ErrBadName", n, err)
				}
			}
		}},
		{"FetchDetectsCorruption", func(t *testing.T, st Storage) {
			w, err := PutBytes(ctx, st, "f", []byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			if err := Fetch(ctx, st, "f", w.Size, w.CRC32C^1, io.Discard); !errors.Is(err, ErrChecksum) {
				t.Fatalf("wrong CRC: %v", err)
			}
			if err := Fetch(ctx, st, "f", w.Size+1, w.CRC32C, io.Discard); !errors.Is(err, ErrChecksum) {
				t.Fatalf("wrong size: %v", err)
			}
		}},
		{"ConcurrentWriters", func(t *testing.T, st Storage) {
			errs := make(chan error, 8)
			for i := range 8 {
				go func() {
					data := bytes.Repeat([]byte{byte(i)}, 1500+i)
					_, err := PutBytes(ctx, st, Join("p", string(rune('a'+i))), data)
					errs <- err
				}()
			}
			for range 8 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			all, _ := st.ListAll(ctx, "p")
			if len(all) != 8 {
				t.Fatalf("%d files, want 8", len(all))
			}
		}},
		{"RandomOps", func(t *testing.T, st Storage) {
			// A model of the tree, checked against ListAll after each op.
			rng := rand.New(rand.NewPCG(1, 2))
			model := map[string][]byte{}
			pick := func() string {
				return Join([]string{"a", "b"}[rng.IntN(2)], []string{"x", "y", "z/w"}[rng.IntN(3)])
			}
			for range 60 {
				switch n := pick(); rng.IntN(4) {
				case 0, 1:
					data := make([]byte, rng.IntN(3000))
					for i := range data {
						data[i] = byte(rng.Uint32())
					}
					if _, err := PutBytes(ctx, st, n, data); err != nil {
						t.Fatal(err)
					}
					model[n] = data
				case 2:
					if err := st.Delete(ctx, n); err != nil {
						t.Fatal(err)
					}
					delete(model, n)
				case 3:
					dir := []string{"a", "b", "a/z"}[rng.IntN(3)]
					if err := st.DeleteAll(ctx, dir); err != nil {
						t.Fatal(err)
					}
					for k := range model {
						if strings.HasPrefix(k, dir+"/") {
							delete(model, k)
						}
					}
				}
				all, err := st.ListAll(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				want := slices.Sorted(func(yield func(string) bool) {
					for k := range model {
						if !yield(k) {
							return
						}
					}
				})
				if got := names(all); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("ListAll = %v, model %v", got, want)
				}
				for _, fi := range all {
					if fi.Size != int64(len(model[fi.Name])) {
						t.Fatalf("%s: size %d, model %d", fi.Name, fi.Size, len(model[fi.Name]))
					}
				}
			}
			for k, v := range model {
				if got, err := ReadAll(ctx, st, k); err != nil || !bytes.Equal(got, v) {
					t.Fatalf("%s: read %d bytes, %v; want %d", k, len(got), err, len(v))
				}
			}
		}},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.f(t, b.open(t)) })
			}
		})
	}
}

func TestFileStorageLeavesNoTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, dir) // a plain absolute path
	if err != nil {
		t.Fatal(err)
	}
	if st.URI() != "file://"+filepath.ToSlash(dir) {
		t.Fatalf("URI = %s", st.URI())
	}
	w, _ := st.Create(ctx, "a/f")
	w.Write([]byte("x"))
	// While writing, the temp file exists on disk but is not listed.
	ents, _ := os.ReadDir(filepath.Join(dir, "a"))
	if len(ents) != 1 || !strings.Contains(ents[0].Name(), tempMarker) {
		t.Fatalf("while writing: %v", ents)
	}
	if l, _ := st.List(ctx, "a"); len(l) != 0 {
		t.Fatalf("List shows an unfinished file: %v", names(l))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(filepath.Join(dir, "a"))
	if len(ents) != 1 || ents[0].Name() != "f" {
		t.Fatalf("after Close: %v", ents)
	}
}
