package network

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests; they finish far sooner.
const testTimeout = 30 * time.Second

func testID(attempt, edge, producer, consumer uint32) ChannelID {
	return ChannelID{Job: [16]byte{0xde, 0xad, 0xbe, 0xef}, Attempt: attempt, Edge: edge, Producer: producer, Consumer: consumer}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func startClient(t testing.TB, opts Options) *Client {
	t.Helper()
	c := NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually polls cond until it holds or the test deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// delivery is one buffer a recorder received.
type delivery struct {
	kind    uint8
	payload []byte // a copy
	release func()
}

// recorder is a consumer: it records deliveries and errors, and releases
// every buffer at once unless hold is set.
type recorder struct {
	hold bool

	mu     sync.Mutex
	got    []delivery
	errs   []error
	errCh  chan error // receives the first error
	notify chan struct{}
}

func newRecorder(hold bool) *recorder {
	return &recorder{hold: hold, errCh: make(chan error, 1), notify: make(chan struct{}, 1)}
}

func (r *recorder) deliver(kind uint8, payload []byte, release func()) {
	d := delivery{kind: kind, payload: append([]byte(nil), payload...), release: release}
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	if !r.hold {
		release()
	}
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) onError(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	select {
	case r.errCh <- err:
	default:
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *recorder) errorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

func register(t testing.TB, s *Server, id ChannelID, credits int, r *recorder) func() {
	t.Helper()
	unregister, err := s.RegisterInput(id, credits, r.deliver, r.onError)
	if err != nil {
		t.Fatal(err)
	}
	return unregister
}

// rawPeer is a hand-driven end of a data-plane connection, for tests that
// need a peer that misbehaves.
type rawPeer struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func newRawPeer(t testing.TB, nc net.Conn) *rawPeer {
	_ = nc.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { _ = nc.Close() })
	return &rawPeer{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// dialRawProducer connects to s and completes the producer handshake.
func dialRawProducer(t testing.TB, addr string) *rawPeer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := newRawPeer(t, nc)
	p.send(appendHello(nil, hello{version: ProtocolVersion, role: roleProducer, maxFrameSize: defaultMaxFrameSize}))
	if _, err := readHello(p.br, roleConsumer); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// readFrame reads one frame header and body.
func (p *rawPeer) readFrame() (frameHeader, []byte) {
	p.t.Helper()
	h, err := readHeader(p.br, defaultMaxFrameSize)
	if err != nil {
		p.t.Fatal(err)
	}
	body := make([]byte, h.length)
	if _, err := io.ReadFull(p.br, body); err != nil {
		p.t.Fatal(err)
	}
	return h, body
}

// rawListener accepts connections on loopback and hands each to handle on
// its own goroutine; Close waits for them.
type rawListener struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startRawListener(t testing.TB, handle func(net.Conn)) *rawListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &rawListener{ln: ln}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(testTimeout))
				handle(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		l.wg.Wait()
	})
	return l
}

func (l *rawListener) addr() string { return l.ln.Addr().String() }
