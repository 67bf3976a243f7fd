package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// payloadFor is the content of buffer seq of channel ch: a header naming
// both, then a pattern, with a length that varies from 16 bytes to ~12 KiB.
func payloadFor(ch, seq int) []byte {
	n := 16 + (seq*7919+ch*104729)%12000
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:8], uint64(ch))
	binary.BigEndian.PutUint64(b[8:16], uint64(seq))
	for i := 16; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(ch)<<40|uint64(seq)<<16|uint64(i))
	}
	return b
}

func TestInOrderDeliveryManyChannelsOneConnection(t *testing.T) {
	const channels, perChannel, credits = 16, 300, 4
	s := startServer(t, Options{})
	c := startClient(t, Options{})
	ctx := testCtx(t)

	recs := make([]*recorder, channels)
	outs := make([]*Output, channels)
	for i := range channels {
		recs[i] = newRecorder(false)
		register(t, s, testID(0, 1, uint32(i), 0), credits, recs[i])
		o, err := c.OpenOutput(ctx, s.Addr(), testID(0, 1, uint32(i), 0))
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = o
	}

	var wg sync.WaitGroup
	errs := make(chan error, channels)
	for i, o := range outs {
		wg.Go(func() {
			for seq := range perChannel {
				// The buffer is reused at once: Write must have copied it.
				p := payloadFor(i, seq)
				if err := o.Write(ctx, uint8(seq%7+1), p); err != nil {
					errs <- err
					return
				}
				clear(p)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, r := range recs {
		eventually(t, fmt.Sprintf("channel %d to receive %d buffers", i, perChannel), func() bool { return r.count() == perChannel })
		for seq, d := range r.deliveries() {
			if want := payloadFor(i, seq); !bytes.Equal(d.payload, want) || d.kind != uint8(seq%7+1) {
				t.Fatalf("channel %d buffer %d: got kind %d, %d bytes starting %x; want kind %d, %d bytes starting %x",
					i, seq, d.kind, len(d.payload), d.payload[:min(16, len(d.payload))], seq%7+1, len(want), want[:16])
			}
		}
	}

	c.mu.Lock()
	clientConns := len(c.mu.conns)
	c.mu.Unlock()
	s.mu.Lock()
	serverConns := len(s.mu.conns)
	s.mu.Unlock()
	if clientConns != 1 || serverConns != 1 {
		t.Fatalf("%d channels used %d client and %d server connections; want one shared connection", channels, clientConns, serverConns)
	}
	for _, r := range recs {
		if r.errorCount() != 0 {
			t.Fatalf("unexpected onError: %v", r.errs)
		}
	}
}

func TestBackPressureStopsOnlyTheBlockedChannel(t *testing.T) {
	const credits = 4
	s := startServer(t, Options{})
	c := startClient(t, Options{})
	ctx := testCtx(t)

	slow, fast := newRecorder(true), newRecorder(false)
	slowID, fastID := testID(0, 1, 0, 0), testID(0, 1, 1, 0)
	register(t, s, slowID, credits, slow)
	register(t, s, fastID, credits, fast)
	slowOut, err := c.OpenOutput(ctx, s.Addr(), slowID)
	if err != nil {
		t.Fatal(err)
	}
	fastOut, err := c.OpenOutput(ctx, s.Addr(), fastID)
	if err != nil {
		t.Fatal(err)
	}

	// The slow channel's producer writes until it blocks.
	var mu sync.Mutex
	written := 0
	blockedCtx, cancelBlocked := context.WithCancel(ctx)
	defer cancelBlocked()
	slowDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := slowOut.Write(blockedCtx, 1, []byte{byte(i)}); err != nil {
				slowDone <- err
				return
			}
			mu.Lock()
			written++
			mu.Unlock()
		}
	}()
	eventually(t, "the slow consumer to hold all its credits", func() bool { return slow.count() == credits })

	// The other channel on the same connection keeps flowing.
	for i := range 1000 {
		if err := fastOut.Write(ctx, 1, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the fast channel to deliver everything", func() bool { return fast.count() == 1000 })

	mu.Lock()
	n := written
	mu.Unlock()
	if n != credits || slow.count() != credits {
		t.Fatalf("slow producer completed %d writes and consumer received %d; want exactly %d (the credits)", n, slow.count(), credits)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("slow producer's Write returned while it had no credit: %v", err)
	default:
	}

	// One release lets exactly one more buffer through.
	slow.deliveries()[0].release()
	eventually(t, "one more buffer after one release", func() bool { return slow.count() == credits+1 })
	mu.Lock()
	n = written
	mu.Unlock()
	if n != credits+1 {
		t.Fatalf("after one release the producer completed %d writes, want %d", n, credits+1)
	}

	// The blocked Write returns on cancellation.
	cancelBlocked()
	select {
	case err := <-slowDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked Write returned %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("blocked Write did not return after its context was cancelled")
	}
}

func TestProducerOpensBeforeRegistration(t *testing.T) {
	s := startServer(t, Options{})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 2, 0, 0)

	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	writeDone := make(chan error, 1)
	go func() {
		for i := range 10 {
			if err := out.Write(ctx, 1, []byte{byte(i)}); err != nil {
				writeDone <- err
				return
			}
		}
		writeDone <- nil
	}()
	eventually(t, "the server to hold the unregistered channel", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.waiting[id.sansAttempt()]) == 1
	})

	r := newRecorder(false)
	register(t, s, id, 2, r)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	eventually(t, "all buffers delivered", func() bool { return r.count() == 10 })
	for i, d := range r.deliveries() {
		if !bytes.Equal(d.payload, []byte{byte(i)}) {
			t.Fatalf("buffer %d = %x", i, d.payload)
		}
	}
}

func TestRegistrationTimeout(t *testing.T) {
	s := startServer(t, Options{RegistrationTimeout: 50 * time.Millisecond})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 3, 0, 0)

	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	err = out.Write(ctx, 1, []byte("x"))
	if !errors.Is(err, ErrRegistrationTimeout) {
		t.Fatalf("Write returned %v, want ErrRegistrationTimeout", err)
	}
	if !strings.Contains(err.Error(), id.String()) || !strings.Contains(err.Error(), "50ms") {
		t.Fatalf("error %q does not name the channel and the timeout", err)
	}
	t.Log(err)

	// The consumer forgot the stream, and a late registration does not
	// resurrect it; the connection still serves other channels.
	eventually(t, "the server to forget the stream", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.waiting) == 0
	})
	r := newRecorder(false)
	register(t, s, id, 2, r)
	other := testID(0, 3, 1, 0)
	r2 := newRecorder(false)
	register(t, s, other, 2, r2)
	o2, err := c.OpenOutput(ctx, s.Addr(), other)
	if err != nil {
		t.Fatal(err)
	}
	if err := o2.Write(ctx, 1, []byte("y")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery on the other channel", func() bool { return r2.count() == 1 })
	if r.count() != 0 {
		t.Fatal("a timed-out stream delivered to a later registration")
	}
}

// waitErr waits for an error on ch, failing the test after a second: a
// broken connection must be reported promptly.
func waitErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Second):
		t.Fatalf("%s: no error within a second", what)
		return nil
	}
}

func TestServerCloseFailsWritesAndChannels(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 4, 0, 0)
	r := newRecorder(true)
	register(t, s, id, 2, r)
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() {
		for {
			if err := out.Write(ctx, 1, []byte("x")); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	eventually(t, "the consumer to hold both credits", func() bool { return r.count() == 2 })

	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = waitErr(t, "blocked Write after server Close", writeErr)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Write returned %v, want ErrConnectionLost", err)
	}
	t.Logf("producer: %v (after %v)", err, time.Since(start))
	err = waitErr(t, "onError after server Close", r.errCh)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("onError got %v, want ErrClosed", err)
	}
	// Releasing after the end is harmless.
	for _, d := range r.deliveries() {
		d.release()
	}
	if _, err := c.OpenOutput(ctx, s.Addr(), testID(0, 4, 1, 0)); err == nil {
		t.Fatal("OpenOutput to a closed server succeeded")
	}
}

func TestRawConsumerClosesConnection(t *testing.T) {
	// A consumer that grants two credits, reads two buffers and hangs up.
	ln := startRawListener(t, func(nc net.Conn) {
		p := newRawPeer(t, nc)
		p.send(appendHello(nil, hello{version: ProtocolVersion, role: roleConsumer, maxFrameSize: defaultMaxFrameSize}))
		if _, err := readHello(p.br, roleProducer); err != nil {
			return
		}
		h, _ := p.readFrame()
		p.send(appendCreditFrame(nil, h.stream, 2))
		p.readFrame()
		p.readFrame()
	})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	out, err := c.OpenOutput(ctx, ln.addr(), testID(0, 5, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() {
		for {
			if err := out.Write(ctx, 1, []byte("x")); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	err = waitErr(t, "Write after the consumer hung up", writeErr)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Write returned %v, want ErrConnectionLost", err)
	}
	t.Log(err)
}

func TestRawProducerClosesConnection(t *testing.T) {
	s := startServer(t, Options{})
	id := testID(0, 6, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 4, r)
	p := dialRawProducer(t, s.Addr())
	p.send(appendOpenFrame(nil, 1, id))
	if h, body := p.readFrame(); h.typ != frameCredit || binary.BigEndian.Uint32(body) != 4 {
		t.Fatalf("got frame %+v %x, want CREDIT 4", h, body)
	}
	p.send(appendHeader(nil, frameHeader{typ: frameData, kind: 3, stream: 1, length: 2}))
	p.send([]byte("hi"))
	eventually(t, "one delivery", func() bool { return r.count() == 1 })
	_ = p.nc.Close()
	err := waitErr(t, "onError after the producer hung up", r.errCh)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("onError got %v, want ErrConnectionLost", err)
	}
	t.Log(err)
}

func TestProducerCloseIsNotAnError(t *testing.T) {
	s := startServer(t, Options{})
	c := NewClient(Options{})
	ctx := testCtx(t)
	id := testID(0, 7, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 4, r)
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := out.Write(ctx, 1, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close returned %v, want ErrClosed", err)
	}
	// Client.Close flushes what was written before it closes.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "all buffers delivered", func() bool { return r.count() == 100 })
	s.mu.Lock()
	conns := len(s.mu.conns)
	s.mu.Unlock()
	if conns != 0 {
		// The server saw the goodbye; wait for it to drop the connection.
		eventually(t, "the server to drop the connection", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.mu.conns) == 0
		})
	}
	if n := r.errorCount(); n != 0 {
		t.Fatalf("onError called for a channel the producer closed: %v", r.errs)
	}
}

func TestClientCloseFlushesAndFailsOpenChannels(t *testing.T) {
	s := startServer(t, Options{})
	c := NewClient(Options{})
	ctx := testCtx(t)
	id := testID(0, 8, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 64, r)
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if err := out.Write(ctx, 1, bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Client.Close returned %v, want ErrClosed", err)
	}
	eventually(t, "all buffers delivered", func() bool { return r.count() == 64 })
	// The channel was open when the producer left: the consumer hears of it.
	err = waitErr(t, "onError after Client.Close", r.errCh)
	if !errors.Is(err, ErrConnectionLost) || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("onError got %v, want ErrConnectionLost saying the producer is shutting down", err)
	}
}

func TestNonWeirPeer(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer web.Close()
	// The raw peers read the client's hello first, so that closing does not
	// reset the connection and lose what they wrote.
	readHelloBytes := func(nc net.Conn) { _, _ = io.ReadFull(nc, make([]byte, handshakeSize)) }
	garbage := startRawListener(t, func(nc net.Conn) {
		readHelloBytes(nc)
		_, _ = nc.Write([]byte("\x00\x01garbage garbage garbage"))
	})
	silent := startRawListener(t, func(nc net.Conn) {
		_, _ = io.Copy(io.Discard, nc)
	})
	newer := startRawListener(t, func(nc net.Conn) {
		b := appendHello(nil, hello{version: ProtocolVersion + 98, role: roleConsumer, maxFrameSize: 1 << 20})
		_, _ = nc.Write(b)
		_, _ = io.Copy(io.Discard, nc)
	})
	shortThenClose := startRawListener(t, func(nc net.Conn) {
		readHelloBytes(nc)
		_, _ = nc.Write(handshakeMagic[:5])
	})

	for _, tc := range []struct {
		name, addr string
		timeout    time.Duration
		want       []string
	}{
		{"http server", strings.TrimPrefix(web.URL, "http://"), 0, []string{"not a Weir data-plane endpoint", "HTTP server"}},
		{"garbage", garbage.addr(), 0, []string{"not a Weir data-plane endpoint", "garbage"}},
		{"version mismatch", newer.addr(), 0, []string{"version 99", "version 1"}},
		{"closes mid-handshake", shortThenClose.addr(), 0, []string{"closed the connection after sending 5 of 16 handshake bytes"}},
		{"silent", silent.addr(), 100 * time.Millisecond, []string{"i/o timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(Options{ConnectTimeout: tc.timeout})
			defer c.Close()
			_, err := c.OpenOutput(testCtx(t), tc.addr, testID(0, 9, 0, 0))
			if !errors.Is(err, ErrHandshake) {
				t.Fatalf("OpenOutput returned %v, want ErrHandshake", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

func TestServerRejectsNonWeirClientAndKeepsServing(t *testing.T) {
	s := startServer(t, Options{})
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testTimeout))
	if _, err := nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The server answers with its hello, then closes.
	got, _ := io.ReadAll(nc)
	if !bytes.HasPrefix(got, handshakeMagic[:]) {
		t.Fatalf("server sent %q", got)
	}

	c := startClient(t, Options{})
	id := testID(0, 10, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 1, r)
	out, err := c.OpenOutput(testCtx(t), s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Write(testCtx(t), 1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool { return r.count() == 1 })
}

func TestMalformedFrameFailsChannel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"unknown type", appendHeader(nil, frameHeader{typ: 99, stream: 1}), "unknown frame type 99"},
		{"oversized data", appendHeader(nil, frameHeader{typ: frameData, stream: 1, length: defaultMaxFrameSize + 1}), "exceeds the maximum frame size"},
		{"credit from producer", appendCreditFrame(nil, 1, 1), "which only a consumer sends"},
		{"data on unknown stream", appendHeader(nil, frameHeader{typ: frameData, stream: 7}), "unknown stream 7"},
		{"reused stream id", appendOpenFrame(nil, 1, testID(0, 11, 9, 9)), "reuses stream id 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{})
			id := testID(0, 11, 0, 0)
			r := newRecorder(false)
			register(t, s, id, 4, r)
			p := dialRawProducer(t, s.Addr())
			p.send(appendOpenFrame(nil, 1, id))
			if h, _ := p.readFrame(); h.typ != frameCredit {
				t.Fatalf("got frame %+v, want CREDIT", h)
			}
			p.send(tc.frame)
			err := waitErr(t, "onError after a malformed frame", r.errCh)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("onError got %v, want ErrProtocol containing %q", err, tc.want)
			}
			// The producer is told why before the connection closes.
			h, body := p.readFrame()
			if h.typ != frameError || h.stream != 0 || decodeError(body).code != codeProtocol {
				t.Fatalf("got frame %+v %q, want connection-level protocol ERROR", h, body)
			}
			if _, err := p.br.ReadByte(); err != io.EOF {
				t.Fatalf("after the ERROR frame: %v, want EOF", err)
			}
		})
	}
}

func TestProducerOverrunningCreditsIsAProtocolError(t *testing.T) {
	s := startServer(t, Options{})
	id := testID(0, 12, 0, 0)
	r := newRecorder(true)
	register(t, s, id, 2, r)
	p := dialRawProducer(t, s.Addr())
	p.send(appendOpenFrame(nil, 1, id))
	p.readFrame()
	for range 3 {
		p.send(appendHeader(nil, frameHeader{typ: frameData, stream: 1, length: 1}))
		p.send([]byte{0})
	}
	err := waitErr(t, "onError after a credit overrun", r.errCh)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "more than the 2 credited") {
		t.Fatalf("onError got %v", err)
	}
	if r.count() != 2 {
		t.Fatalf("delivered %d buffers, want 2", r.count())
	}
}

func TestStaleAttemptIsNotDelivered(t *testing.T) {
	s := startServer(t, Options{})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	old, cur := testID(1, 13, 0, 0), testID(2, 13, 0, 0)
	r := newRecorder(false)
	register(t, s, cur, 4, r)

	// A producer of the old attempt opens after the new registration.
	out, err := c.OpenOutput(ctx, s.Addr(), old)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, []byte("stale")); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("Write for attempt 1 returned %v, want ErrStaleAttempt", err)
	} else {
		t.Log(err)
	}

	// A producer of the old attempt that opened first is refused when the
	// consumer registers the new attempt.
	older := testID(1, 13, 1, 0)
	out2, err := c.OpenOutput(ctx, s.Addr(), older)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server to hold the old attempt's stream", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.waiting[older.sansAttempt()]) == 1
	})
	r2 := newRecorder(false)
	newer := older
	newer.Attempt = 2
	register(t, s, newer, 4, r2)
	if err := out2.Write(ctx, 1, []byte("stale")); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("Write for attempt 1 returned %v, want ErrStaleAttempt", err)
	}

	// The current attempt flows.
	out3, err := c.OpenOutput(ctx, s.Addr(), cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := out3.Write(ctx, 1, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery of the current attempt", func() bool { return r.count() == 1 })
	if got := string(r.deliveries()[0].payload); got != "fresh" {
		t.Fatalf("delivered %q", got)
	}
	if r2.count() != 0 {
		t.Fatal("old attempt delivered to new registration")
	}
}

func TestUnregisterFailsProducer(t *testing.T) {
	s := startServer(t, Options{})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 14, 0, 0)
	r := newRecorder(false)
	unregister := register(t, s, id, 2, r)
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool { return r.count() == 1 })
	unregister()
	unregister()
	var werr error
	for werr == nil {
		werr = out.Write(ctx, 1, []byte("b"))
	}
	if !errors.Is(werr, ErrChannelUnregistered) {
		t.Fatalf("Write returned %v, want ErrChannelUnregistered", werr)
	}
	if r.errorCount() != 0 {
		t.Fatalf("onError called after unregister: %v", r.errs)
	}
	// The connection survives, and the stream is gone on both ends.
	eventually(t, "the consumer to forget the stream", func() bool {
		c.mu.Lock()
		cc := c.mu.conns[s.Addr()]
		c.mu.Unlock()
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.mu.streams) == 0
	})
	// The same id can be registered again and opened again.
	r2 := newRecorder(false)
	register(t, s, id, 2, r2)
	out2, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := out2.Write(ctx, 1, []byte("c")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery after re-registration", func() bool { return r2.count() == 1 })
}

func TestDuplicateChannel(t *testing.T) {
	s := startServer(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 15, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 2, r)
	if _, err := s.RegisterInput(id, 2, r.deliver, r.onError); !errors.Is(err, ErrDuplicateChannel) {
		t.Fatalf("second RegisterInput returned %v", err)
	}
	c1, c2 := startClient(t, Options{}), startClient(t, Options{})
	o1, err := c1.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := o1.Write(ctx, 1, nil); err != nil { // bound once this has a credit
		t.Fatal(err)
	}
	if _, err := c1.OpenOutput(ctx, s.Addr(), id); !errors.Is(err, ErrDuplicateChannel) {
		t.Fatalf("second OpenOutput in one client returned %v", err)
	}
	o2, err := c2.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := o2.Write(ctx, 1, nil); !errors.Is(err, ErrDuplicateChannel) {
		t.Fatalf("Write from a second producer process returned %v", err)
	}
}

func TestFrameSizeLimits(t *testing.T) {
	s := startServer(t, Options{MaxFrameSize: 1000})
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(0, 16, 0, 0)
	r := newRecorder(false)
	register(t, s, id, 2, r)
	out, err := c.OpenOutput(ctx, s.Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	if out.MaxPayload() != 1000 {
		t.Fatalf("MaxPayload = %d, want the consumer's 1000", out.MaxPayload())
	}
	if err := out.Write(ctx, 1, make([]byte, 1001)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Write of 1001 bytes returned %v", err)
	}
	if err := out.Write(ctx, 1, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deliveries", func() bool { return r.count() == 2 })
	if d := r.deliveries(); len(d[0].payload) != 1000 || len(d[1].payload) != 0 {
		t.Fatalf("payload sizes %d, %d", len(d[0].payload), len(d[1].payload))
	}
}

func TestOpenOutputHonoursContext(t *testing.T) {
	// A listener that never answers the handshake.
	silent := startRawListener(t, func(nc net.Conn) { _, _ = io.Copy(io.Discard, nc) })
	c := startClient(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.OpenOutput(ctx, silent.addr(), testID(0, 17, 0, 0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenOutput returned %v, want DeadlineExceeded", err)
	}
	// Close does not wait for the connect timeout.
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Client.Close waited for a handshake in progress")
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := startClient(t, Options{})
	if _, err := c.OpenOutput(testCtx(t), addr, testID(0, 18, 0, 0)); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("OpenOutput to a closed port returned %v", err)
	}
	// A later attempt dials again rather than reusing the failure.
	s := startServer(t, Options{})
	if _, err := c.OpenOutput(testCtx(t), s.Addr(), testID(0, 18, 0, 0)); err != nil {
		t.Fatal(err)
	}
}

func TestNoGoroutinesLeftAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := Listen("127.0.0.1:0", Options{RegistrationTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(Options{})
	ctx := testCtx(t)
	r := newRecorder(true)
	if _, err := s.RegisterInput(testID(0, 19, 0, 0), 2, r.deliver, r.onError); err != nil {
		t.Fatal(err)
	}
	out, err := c.OpenOutput(ctx, s.Addr(), testID(0, 19, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	// One channel blocked for credit, one waiting for registration.
	for range 2 {
		if err := out.Write(ctx, 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.OpenOutput(ctx, s.Addr(), testID(0, 19, 1, 0)); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error)
	go func() { blocked <- out.Write(ctx, 1, []byte("x")) }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Write returned %v after Client.Close", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReconnectAfterConsumerRestart(t *testing.T) {
	s1, err := Listen("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := s1.Addr()
	c := startClient(t, Options{})
	ctx := testCtx(t)
	id := testID(1, 20, 0, 0)
	r1 := newRecorder(false)
	register(t, s1, id, 2, r1)
	out, err := c.OpenOutput(ctx, addr, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Write(ctx, 1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	// The consumer process comes back on the same address for attempt 2.
	s2, err := Listen(addr, Options{})
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	defer s2.Close()
	id.Attempt = 2
	r2 := newRecorder(false)
	register(t, s2, id, 2, r2)
	out2, err := c.OpenOutput(ctx, addr, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := out2.Write(ctx, 1, []byte("two")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery to the restarted consumer", func() bool { return r2.count() == 1 })
}

// closeWithin runs close and fails the test if it takes longer than limit:
// a stuck peer must not hang shutdown beyond the close timeout.
func closeWithin(t *testing.T, limit time.Duration, close func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(limit):
		t.Fatalf("Close did not return within %v", limit)
		<-done
	}
}

func TestServerCloseIsBoundedWithStuckProducer(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Options{CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Handshakes, then never reads and never closes.
	p := dialRawProducer(t, s.Addr())
	p.send(appendOpenFrame(nil, 1, testID(0, 21, 0, 0)))
	eventually(t, "the server to hold the stream", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.waiting) == 1
	})
	closeWithin(t, 5*time.Second, s.Close)
}

func TestClientCloseIsBoundedWithStuckConsumer(t *testing.T) {
	stuck := make(chan struct{})
	ln := startRawListener(t, func(nc net.Conn) {
		p := newRawPeer(t, nc)
		p.send(appendHello(nil, hello{version: ProtocolVersion, role: roleConsumer, maxFrameSize: defaultMaxFrameSize}))
		if _, err := readHello(p.br, roleProducer); err != nil {
			return
		}
		h, _ := p.readFrame()
		p.send(appendCreditFrame(nil, h.stream, 1<<30))
		<-stuck // never reads again, never closes until the test ends
	})
	defer close(stuck)
	c := NewClient(Options{CloseTimeout: 50 * time.Millisecond})
	ctx := testCtx(t)
	out, err := c.OpenOutput(ctx, ln.addr(), testID(0, 22, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Write until the socket and the write queue are full and Write blocks.
	writeErr := make(chan error, 1)
	go func() {
		payload := make([]byte, 64<<10)
		for {
			if err := out.Write(ctx, 1, payload); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	w := out.conn.link.w
	eventually(t, "Write to wait for queue space", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.mu.space != nil
	})
	closeWithin(t, 5*time.Second, c.Close)
	if err := <-writeErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Write returned %v, want ErrClosed", err)
	}
}
