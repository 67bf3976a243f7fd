package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waiters returns how many Gets wait for the fetch of digest.
func waiters(c *Cache, digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if call := c.calls[digest]; call != nil {
		return call.waiters
	}
	return 0
}

// waitFor polls until cond holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestCacheSingleFlight(t *testing.T) {
	content := []byte("#!/bin/sh\necho artifact\n") // the cache does not Check
	digest := sha(content)
	dir := filepath.Join(t.TempDir(), "cache")
	c, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Has(digest) {
		t.Fatal("Has before Get")
	}
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context, w io.Writer) error {
		fetches.Add(1)
		<-release
		_, err := w.Write(content)
		return err
	}

	const n = 20
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { paths[i], errs[i] = c.Get(t.Context(), digest, fetch) })
	}
	waitFor(t, "all Gets to wait", func() bool { return waiters(c, digest) == n })
	close(release)
	wg.Wait()

	if got := fetches.Load(); got != 1 {
		t.Errorf("%d concurrent Gets fetched %d times, want once", n, got)
	}
	want := filepath.Join(dir, digest)
	for i := range n {
		if errs[i] != nil || paths[i] != want {
			t.Fatalf("Get %d = %q, %v; want %q", i, paths[i], errs[i], want)
		}
	}
	got, err := os.ReadFile(want)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("cached file = %q, %v", got, err)
	}
	if st, err := os.Stat(want); err != nil || runtime.GOOS != "windows" && st.Mode().Perm() != 0o755 {
		t.Errorf("cached file: %v, %v; want mode 0755", st.Mode(), err)
	}
	if !c.Has(digest) {
		t.Error("Has after Get = false")
	}

	// Cached: no fetch, in this Cache or one reopened on the directory.
	c2, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cache{c, c2} {
		p, err := c.Get(t.Context(), digest, func(context.Context, io.Writer) error {
			t.Error("fetched a cached artifact")
			return nil
		})
		if err != nil || p != want {
			t.Errorf("Get of a cached artifact = %q, %v", p, err)
		}
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("cache holds %v, want only %s", names, digest)
	}
}

func TestCacheDigestMismatch(t *testing.T) {
	content := []byte("the artifact")
	digest := sha(content)
	dir := t.TempDir()
	c, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	corrupted := []byte("the artifacT")
	_, err = c.Get(t.Context(), digest, func(_ context.Context, w io.Writer) error {
		_, err := w.Write(corrupted)
		return err
	})
	want := "artifact " + digest + " fetched from the Dispatcher has digest " + sha(corrupted) + ": transfer corrupted"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Get of corrupted bytes = %v, want %q…", err, want)
	}
	if c.Has(digest) {
		t.Error("corrupted artifact is cached")
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("cache holds %v after a corrupted fetch, want nothing", names)
	}

	// The next Get fetches again.
	p, err := c.Get(t.Context(), digest, func(_ context.Context, w io.Writer) error {
		_, err := w.Write(content)
		return err
	})
	if err != nil || p != filepath.Join(dir, digest) {
		t.Errorf("Get after a corrupted fetch = %q, %v", p, err)
	}
}

func TestCacheFetchError(t *testing.T) {
	digest := sha([]byte("x"))
	dir := t.TempDir()
	c, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("dispatcher unreachable")
	_, err = c.Get(t.Context(), digest, func(_ context.Context, w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "fetching artifact "+digest+" from the Dispatcher") {
		t.Errorf("Get = %v, want the fetch error", err)
	}
	_, err = c.Get(t.Context(), digest, func(context.Context, io.Writer) error { panic("bad fetch") })
	if err == nil || !strings.Contains(err.Error(), "bad fetch") {
		t.Errorf("Get with a panicking fetch = %v", err)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("cache holds %v after failed fetches, want nothing", names)
	}
}

func TestCacheCancel(t *testing.T) {
	digest := sha([]byte("x"))
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fetchCanceled := make(chan struct{})
	fetch := func(ctx context.Context, w io.Writer) error {
		<-ctx.Done() // never delivers
		close(fetchCanceled)
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := c.Get(ctx, digest, fetch)
		done <- err
	}()
	waitFor(t, "the Get to wait", func() bool { return waiters(c, digest) == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for artifact "+digest) {
			t.Errorf("canceled Get = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("canceled Get did not return")
	}
	select {
	case <-fetchCanceled: // nobody waits any more
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch was not canceled when its last waiter left")
	}
	if c.Has(digest) {
		t.Error("Has after a canceled fetch")
	}

	// An already canceled context does not start a fetch.
	_, err = c.Get(ctx, digest, func(context.Context, io.Writer) error {
		t.Error("fetch with a canceled context")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context = %v", err)
	}
}

func TestCacheCancelOneWaiter(t *testing.T) {
	content := []byte("shared")
	digest := sha(content)
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var fetchErr atomic.Value
	fetch := func(ctx context.Context, w io.Writer) error {
		<-release
		if err := ctx.Err(); err != nil {
			fetchErr.Store(err)
			return err
		}
		_, err := w.Write(content)
		return err
	}
	ctxA, cancelA := context.WithCancel(t.Context())
	doneA, doneB := make(chan error), make(chan error)
	go func() { _, err := c.Get(ctxA, digest, fetch); doneA <- err }()
	go func() { _, err := c.Get(t.Context(), digest, fetch); doneB <- err }()
	waitFor(t, "both Gets to wait", func() bool { return waiters(c, digest) == 2 })
	cancelA()
	if err := <-doneA; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Get = %v", err)
	}
	close(release)
	if err := <-doneB; err != nil {
		t.Errorf("the other Get = %v, want the artifact", err)
	}
	if err := fetchErr.Load(); err != nil {
		t.Errorf("the fetch was canceled though a Get still waited: %v", err)
	}
}

func TestCacheBadDigest(t *testing.T) {
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(t.Context(), "../x", func(context.Context, io.Writer) error {
		t.Error("fetched for an invalid digest")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "is not valid") {
		t.Errorf("Get of an invalid digest = %v", err)
	}
}
