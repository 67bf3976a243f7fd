package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// creditSlot accumulates the credits released for one inbound stream until
// the connection's writer next flushes, so that many releases between two
// flushes travel as one CREDIT frame. Its fields are guarded by the
// frameWriter's mu.
type creditSlot struct {
	stream  uint32
	pending uint32
	queued  bool
}

// frameWriter owns the sending half of one connection. Callers append whole
// frames to a queue under a mutex; one goroutine (run) swaps the queue out
// and writes it with a single syscall while callers fill the other half.
// Small frames therefore batch by themselves whenever a write is in flight,
// and nothing waits for a timer: the writer flushes as soon as the queue is
// non-empty and it is idle.
type frameWriter struct {
	conn  net.Conn
	limit int
	// onFail is called once, on the writer goroutine, when a socket write
	// fails; it aborts the connection.
	onFail func(error)
	wake   chan struct{} // capacity 1; sent to only when mu.idle was true
	done   chan struct{} // closed when run returns

	mu struct {
		sync.Mutex
		buf   []byte // frames queued for the next write
		spare []byte // the other half, while not being written
		// err is set once no more frames are accepted; with graceful set
		// the writer still flushes what is queued before closing.
		err      error
		graceful bool
		idle     bool // run is waiting on wake
		credits  []*creditSlot
		space    chan struct{} // closed at the next swap; nil if nobody waits
	}
}

func newFrameWriter(conn net.Conn, limit int, onFail func(error)) *frameWriter {
	w := &frameWriter{
		conn:   conn,
		limit:  limit,
		onFail: onFail,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	w.mu.buf = make([]byte, 0, 64<<10)
	w.mu.spare = make([]byte, 0, 64<<10)
	return w
}

func (w *frameWriter) kickLocked() {
	if w.mu.idle {
		w.mu.idle = false
		w.wake <- struct{}{}
	}
}

// appendData queues one DATA frame of o, copying payload. It waits while
// the queue is over its limit, which only happens when the kernel cannot take
// bytes as fast as producers write them.
func (w *frameWriter) appendData(ctx context.Context, o *Output, kind uint8, payload []byte) error {
	need := headerSize + len(payload)
	w.mu.Lock()
	for {
		if err := w.mu.err; err != nil {
			w.mu.Unlock()
			return err
		}
		if o.closeSent {
			w.mu.Unlock()
			return ErrClosed
		}
		if len(w.mu.buf) == 0 || len(w.mu.buf)+need <= w.limit {
			break
		}
		if w.mu.space == nil {
			w.mu.space = make(chan struct{})
		}
		space := w.mu.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	w.mu.buf = appendHeader(w.mu.buf, frameHeader{typ: frameData, kind: kind, stream: o.stream, length: uint32(len(payload))})
	w.mu.buf = append(w.mu.buf, payload...)
	w.kickLocked()
	w.mu.Unlock()
	return nil
}

// appendControl queues a small control frame built by appendFrame. Control
// frames ignore the queue limit so that they never block.
func (w *frameWriter) appendControl(appendFrame func([]byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil {
		return w.mu.err
	}
	w.mu.buf = appendFrame(w.mu.buf)
	w.kickLocked()
	return nil
}

// addCredit adds n credits to slot, to be sent at the next flush.
func (w *frameWriter) addCredit(slot *creditSlot, n uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil {
		return
	}
	slot.pending += n
	if !slot.queued {
		slot.queued = true
		w.mu.credits = append(w.mu.credits, slot)
	}
	w.kickLocked()
}

// close stops accepting frames; later appends return err. With graceful set
// the writer first flushes what is queued (the caller bounds that with a
// write deadline), then closes the socket.
func (w *frameWriter) close(err error, graceful bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil {
		return
	}
	w.mu.err = err
	w.mu.graceful = graceful
	w.kickLocked()
}

// run writes queued frames until close, or until a write fails. After a
// graceful close it half-closes the socket, otherwise it closes it.
func (w *frameWriter) run() {
	defer close(w.done)
	halfClose := false
	defer func() {
		if cw, ok := w.conn.(interface{ CloseWrite() error }); ok && halfClose {
			_ = cw.CloseWrite()
		} else {
			_ = w.conn.Close()
		}
	}()
	for {
		w.mu.Lock()
		for len(w.mu.buf) == 0 && len(w.mu.credits) == 0 && w.mu.err == nil {
			w.mu.idle = true
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if w.mu.err != nil && !w.mu.graceful {
			w.exitLocked()
			return
		}
		for _, s := range w.mu.credits {
			w.mu.buf = appendCreditFrame(w.mu.buf, s.stream, s.pending)
			s.pending, s.queued = 0, false
		}
		clear(w.mu.credits)
		w.mu.credits = w.mu.credits[:0]
		if len(w.mu.buf) == 0 { // closing gracefully, all flushed
			halfClose = true
			w.exitLocked()
			return
		}
		out := w.mu.buf
		w.mu.buf, w.mu.spare = w.mu.spare[:0], nil
		if w.mu.space != nil {
			close(w.mu.space)
			w.mu.space = nil
		}
		w.mu.Unlock()

		_, err := w.conn.Write(out)

		w.mu.Lock()
		if cap(out) <= 2*w.limit { // don't keep a huge one-off buffer alive
			w.mu.spare = out[:0]
		} else {
			w.mu.spare = make([]byte, 0, 64<<10)
		}
		if err != nil {
			if w.mu.err == nil {
				w.mu.err = fmt.Errorf("%w: writing: %w", ErrConnectionLost, err)
			}
			w.exitLocked()
			w.onFail(err)
			return
		}
		w.mu.Unlock()
	}
}

// exitLocked wakes anyone waiting for queue space and unlocks; err is set.
func (w *frameWriter) exitLocked() {
	if w.mu.space != nil {
		close(w.mu.space)
		w.mu.space = nil
	}
	w.mu.buf = nil
	w.mu.Unlock()
}

// link is what the two ends of a connection share: the socket, its read
// buffer, its writer and the reason it ended.
type link struct {
	netConn      net.Conn
	remote       string // peer address, for messages
	br           *bufio.Reader
	w            *frameWriter
	closeTimeout time.Duration

	reasonMu sync.Mutex
	reason   error // first reason the connection ended; nil while it runs
	graceful bool  // the end was closeGracefully
}

func newLink(nc net.Conn, opts Options) *link {
	l := &link{
		netConn:      nc,
		remote:       nc.RemoteAddr().String(),
		br:           bufio.NewReaderSize(nc, opts.ReadBufferBytes),
		closeTimeout: opts.CloseTimeout,
	}
	l.w = newFrameWriter(nc, opts.WriteQueueBytes, func(err error) {
		l.abort(fmt.Errorf("%w: writing to %s: %w", ErrConnectionLost, l.remote, err))
	})
	return l
}

// abort ends the connection at once for reason; the first reason wins. The
// reader goroutine then fails and tears down.
func (l *link) abort(reason error) {
	if l.setReason(reason, false) {
		l.w.close(reason, false)
		_ = l.netConn.Close()
	}
}

// closeGracefully ends the connection for reason without losing what is
// queued: the writer flushes, adds a connection-level ERROR frame with code
// and msg if code is not 0, and half-closes; the reader then drains until the
// peer closes too. Closing a socket with unread bytes would make the kernel
// reset the connection and could destroy our last frames in flight. Both
// halves are bounded by closeTimeout.
func (l *link) closeGracefully(reason error, code uint16, msg string) {
	if !l.setReason(reason, true) {
		return
	}
	if code != 0 {
		_ = l.w.appendControl(func(b []byte) []byte { return appendErrorFrame(b, 0, code, msg) })
	}
	l.w.close(reason, true)
}

func (l *link) setReason(reason error, graceful bool) bool {
	l.reasonMu.Lock()
	defer l.reasonMu.Unlock()
	if l.reason != nil {
		return false
	}
	l.reason, l.graceful = reason, graceful
	if graceful {
		deadline := time.Now().Add(l.closeTimeout)
		_ = l.netConn.SetWriteDeadline(deadline)
		_ = l.netConn.SetReadDeadline(deadline)
	}
	return true
}

// setReadDeadline sets the read deadline unless the connection is ending,
// so that it never extends or clears the bound of a graceful close.
func (l *link) setReadDeadline(t time.Time) error {
	l.reasonMu.Lock()
	defer l.reasonMu.Unlock()
	if l.reason != nil {
		return nil
	}
	return l.netConn.SetReadDeadline(t)
}

// finish is called by the reader goroutine when its loop ends with readErr.
// It settles and returns the reason the connection ended and makes sure the
// writer stops. The caller fails the connection's channels, then calls
// linger.
func (l *link) finish(readErr error) error {
	var reason error
	var goodbye *peerGoodbye
	switch {
	case errors.As(readErr, &goodbye), errors.Is(readErr, ErrProtocol):
		reason = readErr
	case errors.Is(readErr, io.EOF):
		reason = fmt.Errorf("%w: %s closed the connection", ErrConnectionLost, l.remote)
	default:
		reason = fmt.Errorf("%w: reading from %s: %w", ErrConnectionLost, l.remote, readErr)
	}
	l.abort(reason) // no-op if a reason was already set
	l.reasonMu.Lock()
	defer l.reasonMu.Unlock()
	return l.reason
}

// linger waits for the writer goroutine; after a graceful close it drains
// what the peer still sends until the peer closes or the read deadline
// passes. Then it closes the socket.
func (l *link) linger() {
	<-l.w.done
	l.reasonMu.Lock()
	graceful := l.graceful
	l.reasonMu.Unlock()
	if graceful {
		_, _ = io.Copy(io.Discard, l.br)
	}
	_ = l.netConn.Close()
}
