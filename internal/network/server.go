package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the consumer side of a worker process: it listens for producer
// connections and delivers the buffers of the channels registered with
// RegisterInput.
type Server struct {
	opts Options
	ln   net.Listener
	addr string
	wg   sync.WaitGroup // accept loop and every connection's goroutines
	done chan struct{}  // closed by Close

	mu struct {
		sync.Mutex
		closed bool
		// Both maps are keyed by ChannelID.sansAttempt(), so that all
		// attempts of one logical channel are found together.
		inputs  map[ChannelID][]*inputChannel
		waiting map[ChannelID][]*inStream // opened by a producer, not yet registered
		conns   map[*serverConn]struct{}
	}
}

// Input channel states. waiting → active → {finished, failed, unregistered};
// waiting → {failed, unregistered}. Only the transitions into failed call
// onError, so it runs at most once.
const (
	chanWaiting int32 = iota
	chanActive
	chanFinished // the producer closed the channel
	chanFailed
	chanUnregistered
)

// inputChannel is one registration made with RegisterInput.
type inputChannel struct {
	id      ChannelID
	credits int
	deliver func(kind uint8, payload []byte, release func())
	onError func(error)
	state   atomic.Int32
	stream  atomic.Pointer[inStream] // set once, under Server.mu, when bound

	// Receive buffers: at most credits of them exist, because the producer
	// can have at most credits buffers in flight. A buffer returns to free
	// when the runtime releases it, before its credit is sent.
	bufMu sync.Mutex
	free  []*inBuffer
	made  int
}

// inBuffer is one receive buffer of an input channel. release is bound once
// so that delivering a buffer allocates nothing.
type inBuffer struct {
	in      *inputChannel
	data    []byte
	held    atomic.Bool
	release func()
}

// inStream is a stream a producer opened on one connection.
type inStream struct {
	conn   *serverConn
	id     ChannelID
	credit creditSlot // guarded by conn.w.mu

	// Guarded by Server.mu.
	waiting bool
	timer   *time.Timer

	// Written under Server.mu, read without it by the connection's reader.
	input    atomic.Pointer[inputChannel]
	rejected atomic.Bool
}

// serverConn is one accepted producer connection.
type serverConn struct {
	*link
	server  *Server
	maxData uint32
	// streams is touched only by the reader goroutine.
	streams    map[uint32]*inStream
	lastID     uint32
	lastStream *inStream // cache: consecutive DATA frames are usually for one stream
	scratch    [maxErrorBody]byte
}

// Listen starts a data-plane server on addr (for example "127.0.0.1:0").
func Listen(addr string, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("weir network: listening for data-plane connections on %s: %w", addr, err)
	}
	s := &Server{opts: opts, ln: ln, addr: ln.Addr().String(), done: make(chan struct{})}
	s.mu.inputs = make(map[ChannelID][]*inputChannel)
	s.mu.waiting = make(map[ChannelID][]*inStream)
	s.mu.conns = make(map[*serverConn]struct{})
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address producers dial, as host:port.
func (s *Server) Addr() string { return s.addr }

// RegisterInput declares that this process consumes channel id.
//
// credits is the number of buffers the runtime can hold for the channel; it
// is granted to the producer when the channel is bound and is the most the
// producer can have in flight.
//
// deliver is called once per received buffer, in order, on the goroutine
// that reads the producer's connection; it must not block for long, because
// every channel on that connection waits meanwhile (the runtime enqueues into
// a queue of capacity credits, which never blocks). payload stays valid, and
// must not be modified, until the runtime calls release, which it must do
// exactly once when it has finished with the buffer; release returns the
// buffer to the channel's pool and one credit to the producer. release may be
// called from any goroutine, also after unregister.
//
// onError, if not nil, is called at most once, on a network goroutine or in
// Close, when the channel fails: the producer's connection broke or sent a
// malformed frame, or the server closed. It is not called for a channel the
// producer closed normally, nor after unregister.
//
// unregister removes the registration; a producer still writing gets
// ErrChannelUnregistered. A deliver call already under way may still
// complete after unregister returns. unregister is idempotent.
//
// A producer may open the channel before it is registered; it then waits for
// at most Options.RegistrationTimeout.
func (s *Server) RegisterInput(id ChannelID, credits int, deliver func(kind uint8, payload []byte, release func()), onError func(error)) (unregister func(), err error) {
	if credits < 1 || int64(credits) > 1<<31 {
		return nil, fmt.Errorf("weir network: registering channel %v: credits must be between 1 and 2^31, got %d", id, credits)
	}
	if deliver == nil {
		return nil, fmt.Errorf("weir network: registering channel %v: deliver is nil", id)
	}
	if onError == nil {
		onError = func(error) {}
	}
	in := &inputChannel{id: id, credits: credits, deliver: deliver, onError: onError}
	key := id.sansAttempt()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, fmt.Errorf("weir network: registering channel %v: server %s: %w", id, s.addr, ErrClosed)
	}
	for _, other := range s.mu.inputs[key] {
		if other.id == id {
			return nil, fmt.Errorf("weir network: channel %v is already registered on %s; unregister it first: %w", id, s.addr, ErrDuplicateChannel)
		}
	}
	s.mu.inputs[key] = append(s.mu.inputs[key], in)
	for _, st := range slices.Clone(s.mu.waiting[key]) {
		switch {
		case st.id == id:
			s.bindLocked(st, in)
		case st.id.Attempt < id.Attempt:
			s.rejectLocked(st, codeStaleAttempt, fmt.Sprintf(
				"the consumer registered attempt %d; attempt %d was restarted and its producer must stop", id.Attempt, st.id.Attempt))
		}
	}
	return func() { s.unregister(in) }, nil
}

func (s *Server) unregister(in *inputChannel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := in.id.sansAttempt()
	s.mu.inputs[key] = slices.DeleteFunc(s.mu.inputs[key], func(x *inputChannel) bool { return x == in })
	if len(s.mu.inputs[key]) == 0 {
		delete(s.mu.inputs, key)
	}
	if in.state.Swap(chanUnregistered) == chanActive {
		s.rejectLocked(in.stream.Load(), codeUnregistered, "the consuming task stopped reading it (cancelled, failed or finished)")
	}
}

// Close stops listening, closes every connection (telling producers the
// consumer is shutting down), calls onError with an error wrapping ErrClosed
// for every registered channel that has not ended, and waits for all of the
// server's goroutines, including deliver calls under way.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.mu.closed = true
	close(s.done)
	var failed []*inputChannel
	for _, ins := range s.mu.inputs {
		for _, in := range ins {
			if in.state.CompareAndSwap(chanWaiting, chanFailed) || in.state.CompareAndSwap(chanActive, chanFailed) {
				failed = append(failed, in)
			}
		}
	}
	for _, sts := range s.mu.waiting {
		for _, st := range sts {
			st.waiting = false
			st.timer.Stop()
		}
	}
	clear(s.mu.waiting)
	conns := make([]*serverConn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	err := s.ln.Close()
	reason := fmt.Errorf("%w: data-plane server %s is shutting down", ErrClosed, s.addr)
	for _, c := range conns {
		c.closeGracefully(reason, codeShutdown, fmt.Sprintf("consumer %s is shutting down", s.addr))
	}
	for _, in := range failed {
		in.onError(fmt.Errorf("weir network: input channel %v: %w", in.id, reason))
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Like net/http: out of file descriptors and similar errors pass.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.opts.Logger.Warn("weir network: accepting data-plane connection", "addr", s.addr, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		c := &serverConn{
			link:    newLink(nc, s.opts),
			server:  s,
			maxData: uint32(s.opts.MaxFrameSize),
			streams: make(map[uint32]*inStream),
		}
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.w.run()
		}()
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// serve is the connection's reader goroutine: handshake, then frames until
// the connection ends, then teardown.
func (c *serverConn) serve() {
	err := c.handshake()
	if err == nil {
		err = c.readLoop()
		if isLocalProtocolError(err) {
			c.closeGracefully(err, codeProtocol, protocolDetail(err))
		}
	} else {
		select {
		case <-c.server.done: // closed by Server.Close, not the peer's fault
		default:
			c.server.opts.Logger.Warn("weir network: rejected data-plane connection", "addr", c.server.addr, "peer", c.remote, "err", err)
		}
		// Flush our hello, so that a Weir peer of another version can say
		// which versions differ.
		c.closeGracefully(err, 0, "")
	}
	c.server.dropConn(c, c.finish(err))
	c.linger()
}

func (c *serverConn) handshake() error {
	s := c.server
	if err := c.w.appendControl(func(b []byte) []byte {
		return appendHello(b, hello{version: ProtocolVersion, role: roleConsumer, maxFrameSize: c.maxData})
	}); err != nil {
		return err
	}
	_ = c.setReadDeadline(time.Now().Add(s.opts.ConnectTimeout))
	if _, err := readHello(c.br, roleProducer); err != nil {
		return fmt.Errorf("handshake with producer %s: %w", c.remote, err)
	}
	return c.setReadDeadline(time.Time{})
}

func (c *serverConn) readLoop() error {
	for {
		h, err := readHeader(c.br, c.maxData)
		if err != nil {
			return err
		}
		switch h.typ {
		case frameData:
			if err := c.handleData(h); err != nil {
				return err
			}
		case frameOpen:
			body, err := readBody(c.br, h, c.scratch[:])
			if err != nil {
				return err
			}
			if err := c.handleOpen(h.stream, decodeChannelID(body)); err != nil {
				return err
			}
		case frameClose:
			if err := c.handleClose(h.stream); err != nil {
				return err
			}
		case frameError:
			body, err := readBody(c.br, h, c.scratch[:])
			if err != nil {
				return err
			}
			if h.stream != 0 {
				return protocolErrorf("producer sent an ERROR frame for stream %d; producers send only connection-level errors", h.stream)
			}
			return decodeError(body).goodbye("producer " + c.remote)
		default: // CREDIT
			return protocolErrorf("producer sent frame type %d, which only a consumer sends", h.typ)
		}
	}
}

func (c *serverConn) handleData(h frameHeader) error {
	st := c.lastStream
	if st == nil || st.credit.stream != h.stream {
		st = c.streams[h.stream]
		if st == nil {
			return protocolErrorf("DATA frame for unknown stream %d", h.stream)
		}
		c.lastStream = st
	}
	in := st.input.Load()
	if st.rejected.Load() || (in != nil && in.state.Load() != chanActive) {
		// Sent before the producer learned that the channel was rejected or
		// unregistered: drop it.
		_, err := c.br.Discard(int(h.length))
		return err
	}
	if in == nil {
		return protocolErrorf("DATA frame for channel %v before the consumer granted any credit", st.id)
	}
	b := in.takeBuffer()
	if b == nil {
		return protocolErrorf("producer sent more than the %d credited buffers on channel %v", in.credits, in.id)
	}
	n := int(h.length)
	if cap(b.data) < n {
		b.data = make([]byte, n)
	}
	payload := b.data[:n:n]
	if _, err := io.ReadFull(c.br, payload); err != nil {
		in.putBuffer(b)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	b.held.Store(true)
	in.deliver(h.kind, payload, b.release)
	return nil
}

func (c *serverConn) handleOpen(stream uint32, id ChannelID) error {
	if stream <= c.lastID {
		return protocolErrorf("OPEN frame reuses stream id %d (last was %d)", stream, c.lastID)
	}
	c.lastID = stream
	st := &inStream{conn: c, id: id, credit: creditSlot{stream: stream}}
	c.streams[stream] = st
	c.server.openStream(st)
	return nil
}

func (c *serverConn) handleClose(stream uint32) error {
	st := c.streams[stream]
	if st == nil {
		return protocolErrorf("CLOSE frame for unknown stream %d", stream)
	}
	delete(c.streams, stream)
	if c.lastStream == st {
		c.lastStream = nil
	}
	s := c.server
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unwaitLocked(st)
	if in := st.input.Load(); in != nil {
		in.state.CompareAndSwap(chanActive, chanFinished)
	}
	return nil
}

// openStream matches a stream a producer just opened with a registration:
// binds it, rejects it, or holds it until registration or timeout.
func (s *Server) openStream(st *inStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return // the connection is being closed
	}
	key := st.id.sansAttempt()
	for _, in := range s.mu.inputs[key] {
		if in.id != st.id {
			continue
		}
		if in.state.Load() == chanWaiting {
			s.bindLocked(st, in)
		} else {
			s.rejectLocked(st, codeDuplicate,
				"another producer connection already opened the channel (it is in use or has ended); a channel is opened once per attempt")
		}
		return
	}
	for _, in := range s.mu.inputs[key] {
		if in.id.Attempt > st.id.Attempt {
			s.rejectLocked(st, codeStaleAttempt, fmt.Sprintf(
				"the consumer registered attempt %d; attempt %d was restarted and its producer must stop", in.id.Attempt, st.id.Attempt))
			return
		}
	}
	for _, other := range s.mu.waiting[key] {
		if other.id == st.id {
			s.rejectLocked(st, codeDuplicate, fmt.Sprintf(
				"producer connection %s already opened the channel; a channel is opened once per attempt", other.conn.remote))
			return
		}
		if other.id.Attempt > st.id.Attempt {
			s.rejectLocked(st, codeStaleAttempt, fmt.Sprintf(
				"a producer of attempt %d opened the channel; attempt %d was restarted and its producer must stop", other.id.Attempt, st.id.Attempt))
			return
		}
	}
	for _, other := range slices.Clone(s.mu.waiting[key]) {
		// A newer attempt supersedes older producers that are still waiting.
		s.rejectLocked(other, codeStaleAttempt, fmt.Sprintf(
			"a producer of attempt %d opened the channel; attempt %d was restarted and its producer must stop", st.id.Attempt, other.id.Attempt))
	}
	st.waiting = true
	st.timer = time.AfterFunc(s.opts.RegistrationTimeout, func() { s.expire(st) })
	s.mu.waiting[key] = append(s.mu.waiting[key], st)
}

func (s *Server) expire(st *inStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.waiting {
		return
	}
	s.rejectLocked(st, codeRegistrationTimeout, fmt.Sprintf(
		"not registered within %v of the producer opening it; check that the consuming task was deployed to that worker, or raise the registration timeout",
		s.opts.RegistrationTimeout))
}

// unwaitLocked removes st from the waiting set, if it is there.
func (s *Server) unwaitLocked(st *inStream) {
	if !st.waiting {
		return
	}
	st.waiting = false
	st.timer.Stop()
	key := st.id.sansAttempt()
	s.mu.waiting[key] = slices.DeleteFunc(s.mu.waiting[key], func(x *inStream) bool { return x == st })
	if len(s.mu.waiting[key]) == 0 {
		delete(s.mu.waiting, key)
	}
}

func (s *Server) bindLocked(st *inStream, in *inputChannel) {
	s.unwaitLocked(st)
	in.stream.Store(st)
	st.input.Store(in)
	in.state.Store(chanActive)
	st.conn.w.addCredit(&st.credit, uint32(in.credits))
}

// rejectLocked tells the producer of st that its channel is refused or
// ended; frames it sent meanwhile are dropped until it acknowledges with
// CLOSE.
func (s *Server) rejectLocked(st *inStream, code uint16, msg string) {
	s.unwaitLocked(st)
	st.rejected.Store(true)
	// The connection may be closing; then the producer learns from that.
	_ = st.conn.w.appendControl(func(b []byte) []byte {
		return appendErrorFrame(b, st.credit.stream, code, msg)
	})
}

// dropConn is the end of a connection: every channel it carried fails.
func (s *Server) dropConn(c *serverConn, reason error) {
	var failed []*inputChannel
	s.mu.Lock()
	delete(s.mu.conns, c)
	for _, st := range c.streams {
		s.unwaitLocked(st)
		if in := st.input.Load(); in != nil && in.state.CompareAndSwap(chanActive, chanFailed) {
			failed = append(failed, in)
		}
	}
	s.mu.Unlock()
	for _, in := range failed {
		in.onError(fmt.Errorf("weir network: input channel %v from producer %s: %w", in.id, c.remote, reason))
	}
}

func (in *inputChannel) takeBuffer() *inBuffer {
	in.bufMu.Lock()
	defer in.bufMu.Unlock()
	if n := len(in.free); n > 0 {
		b := in.free[n-1]
		in.free = in.free[:n-1]
		return b
	}
	if in.made == in.credits {
		return nil
	}
	in.made++
	b := &inBuffer{in: in}
	b.release = b.releaseOnce
	return b
}

func (in *inputChannel) putBuffer(b *inBuffer) {
	in.bufMu.Lock()
	in.free = append(in.free, b)
	in.bufMu.Unlock()
}

func (b *inBuffer) releaseOnce() {
	if !b.held.CompareAndSwap(true, false) {
		return // a second release of the same delivery
	}
	in := b.in
	in.putBuffer(b)
	if in.state.Load() == chanActive {
		st := in.stream.Load()
		st.conn.w.addCredit(&st.credit, 1)
	}
}
