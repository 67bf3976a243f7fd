package artifact

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Cache is a TaskManager's local cache of the artifacts it fetched from the
// Dispatcher: each is the executable file <dir>/<digest>, fetched once and
// kept, so that every worker process of a job runs the same binary and a job
// restarted on this TaskManager does not fetch it again. A Cache is safe for
// concurrent use; its directory belongs to it alone.
type Cache struct {
	dir   string
	mu    sync.Mutex
	calls map[string]*fetchCall // fetches under way, by digest
}

// fetchCall is one fetch of an artifact and the Gets waiting for it.
type fetchCall struct {
	done    chan struct{} // closed when path and err are set
	path    string
	err     error
	waiters int                // Gets waiting; guarded by Cache.mu
	cancel  context.CancelFunc // cancels the fetch
}

// OpenCache opens the artifact cache in dir, creating the directory if need
// be, and removes the partial files of fetches a crash interrupted.
func OpenCache(dir string) (*Cache, error) {
	if err := openDir(dir, "artifact cache"); err != nil {
		return nil, err
	}
	return &Cache{dir: dir, calls: map[string]*fetchCall{}}, nil
}

// Get returns the path of an executable copy of the artifact with this
// digest, calling fetch, which writes the artifact's bytes to w, only if the
// cache does not have it yet.
//
// Concurrent Gets of one digest share one fetch, and all get its result. The
// fetched bytes go to a temporary file and are checked against the digest
// before the file is renamed into place, so the cache never holds a partial
// or corrupted artifact; a failed fetch caches nothing and the next Get tries
// again. Canceling ctx ends this Get's wait with ctx's error; the fetch goes
// on for the other Gets waiting for it, and is canceled (through the context
// it was given) when none is left.
func (c *Cache) Get(ctx context.Context, digest string, fetch func(ctx context.Context, w io.Writer) error) (string, error) {
	if !ValidDigest(digest) {
		return "", badDigest(digest)
	}
	path := filepath.Join(c.dir, digest)
	if c.Has(digest) {
		return path, nil
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("getting artifact %s: %w", digest, context.Cause(ctx))
	}
	c.mu.Lock()
	call := c.calls[digest]
	if call == nil {
		// A fetch may have ended since Has looked.
		if c.Has(digest) {
			c.mu.Unlock()
			return path, nil
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		call = &fetchCall{done: make(chan struct{}), cancel: cancel}
		c.calls[digest] = call
		go c.run(fctx, call, digest, fetch)
	}
	call.waiters++
	c.mu.Unlock()

	select {
	case <-call.done:
		return call.path, call.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	call.waiters--
	if call.waiters == 0 && c.calls[digest] == call {
		// Nobody waits for it any more. A later Get starts a fetch of its own
		// rather than join this canceled one.
		delete(c.calls, digest)
		call.cancel()
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		if call.err == nil {
			return call.path, nil
		}
	default:
	}
	return "", fmt.Errorf("waiting for artifact %s: %w", digest, context.Cause(ctx))
}

// Has reports whether the cache has the artifact with this digest.
func (c *Cache) Has(digest string) bool {
	if !ValidDigest(digest) {
		return false
	}
	st, err := os.Stat(filepath.Join(c.dir, digest))
	return err == nil && st.Mode().IsRegular()
}

// run fetches an artifact for call and hands the result to its waiters.
func (c *Cache) run(ctx context.Context, call *fetchCall, digest string, fetch func(context.Context, io.Writer) error) {
	defer call.cancel()
	path, err := c.fetch(ctx, digest, fetch)
	c.mu.Lock()
	if c.calls[digest] == call {
		delete(c.calls, digest)
	}
	call.path, call.err = path, err
	c.mu.Unlock()
	close(call.done)
}

// fetch fetches an artifact into a temporary file, verifies its digest and
// renames it into place.
func (c *Cache) fetch(ctx context.Context, digest string, fetch func(context.Context, io.Writer) error) (string, error) {
	f, err := os.CreateTemp(c.dir, tempPrefix+digest[:12]+"-*")
	if err != nil {
		return "", fmt.Errorf("caching artifact %s: %w; check that the artifact cache %s is writable", digest, err, c.dir)
	}
	tmp, stored := f.Name(), false
	defer func() {
		if !stored {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	if err := callFetch(ctx, fetch, io.MultiWriter(f, h)); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("fetching artifact %s was canceled: no Get waits for it any more", digest)
		}
		return "", fmt.Errorf("fetching artifact %s from the Dispatcher: %w; check that the Dispatcher is reachable and has it, then try again", digest, err)
	}
	if got := digestOf(h); got != digest {
		return "", fmt.Errorf("artifact %s fetched from the Dispatcher has digest %s: transfer corrupted; nothing was cached, so the next Get fetches it again (if this repeats, check the network and the Dispatcher's copy)", digest, got)
	}
	path := filepath.Join(c.dir, digest)
	if err := finish(f, tmp, path); err != nil {
		return "", fmt.Errorf("caching artifact %s: %w; check that the disk of the artifact cache %s has space", digest, err, c.dir)
	}
	stored = true
	return path, nil
}

// callFetch calls fetch, turning a panic into an error so that a bad fetch
// function fails the Gets waiting rather than the TaskManager.
func callFetch(ctx context.Context, fetch func(context.Context, io.Writer) error, w io.Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fetch panicked: %v", p)
		}
	}()
	if fetch == nil {
		return errors.New("no fetch function given; pass one that writes the artifact's bytes")
	}
	return fetch(ctx, w)
}
