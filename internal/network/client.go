package network

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client is the producer side of a worker process: it owns one outbound
// connection per consumer address, shared by every channel to that address.
type Client struct {
	opts   Options
	ctx    context.Context // cancelled by Close; bounds dials and handshakes
	cancel context.CancelFunc
	wg     sync.WaitGroup // every connection's goroutines

	mu struct {
		sync.Mutex
		closed bool
		conns  map[string]*clientConn
	}
}

// clientConn is one connection to a consumer address.
type clientConn struct {
	client *Client
	addr   string
	ready  chan struct{} // closed when the handshake has succeeded or failed

	// Set before ready is closed, then read-only.
	connectErr error
	link       *link
	maxData    int // min(our MaxFrameSize, the consumer's)

	mu struct {
		sync.Mutex
		err     error // why the connection ended; nil while it runs
		nextID  uint32
		streams map[uint32]*Output
		byID    map[ChannelID]*Output
	}
}

// Output is the producer end of one channel. Write and Close may be called
// from any goroutine; buffers written by one goroutine arrive in the order
// written.
type Output struct {
	conn   *clientConn
	id     ChannelID
	stream uint32
	signal chan struct{} // capacity 1: credits arrived
	failed chan struct{} // closed when mu.err is set

	mu struct {
		sync.Mutex
		credits uint64
		err     error
	}
	// closeSent is guarded by conn.link.w.mu: a DATA frame is never queued
	// after this stream's CLOSE frame.
	closeSent bool
}

// NewClient returns a Client; it dials lazily, on the first OpenOutput
// towards each address.
func NewClient(opts Options) *Client {
	c := &Client{opts: opts.withDefaults()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.conns = make(map[string]*clientConn)
	return c
}

// OpenOutput opens channel id towards the consumer process listening at
// addr, dialing a connection or reusing the one already open. It returns
// once the connection is established; the consumer need not have registered
// the channel yet, and the first Write waits for the consumer's credit. If the
// consumer does not register the channel within its RegistrationTimeout,
// Write fails with ErrRegistrationTimeout.
func (c *Client) OpenOutput(ctx context.Context, addr string, id ChannelID) (*Output, error) {
	for retried := false; ; retried = true {
		cc, err := c.connFor(addr)
		if err != nil {
			return nil, fmt.Errorf("weir network: opening channel %v to %s: %w", id, addr, err)
		}
		select {
		case <-cc.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("weir network: opening channel %v to %s: waiting for the connection: %w", id, addr, ctx.Err())
		}
		if cc.connectErr != nil {
			return nil, fmt.Errorf("weir network: opening channel %v to %s: %w", id, addr, cc.connectErr)
		}
		o, ended, err := cc.open(id)
		if ended && !retried {
			// The cached connection had died (say the consumer restarted
			// at the same address): forget it and dial once more.
			c.forget(cc)
			continue
		}
		return o, err
	}
}

// Close closes every connection after flushing what was already written
// (bounded by Options.CloseTimeout), fails every open Output with ErrClosed,
// and waits for the client's goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.mu.closed = true
	conns := make([]*clientConn, 0, len(c.mu.conns))
	for _, cc := range c.mu.conns {
		conns = append(conns, cc)
	}
	c.mu.Unlock()
	c.cancel()
	for _, cc := range conns {
		select {
		case <-cc.ready:
			cc.shutdown()
		default: // still connecting: c.cancel ends it, and run sees closed
		}
	}
	c.wg.Wait()
	return nil
}

func (c *Client) connFor(addr string) (*clientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil, fmt.Errorf("client: %w", ErrClosed)
	}
	if cc := c.mu.conns[addr]; cc != nil {
		return cc, nil
	}
	cc := &clientConn{client: c, addr: addr, ready: make(chan struct{})}
	cc.mu.streams = make(map[uint32]*Output)
	cc.mu.byID = make(map[ChannelID]*Output)
	c.mu.conns[addr] = cc
	c.wg.Add(1)
	go cc.run()
	return cc, nil
}

// forget removes cc so that the next OpenOutput to its address dials anew.
func (c *Client) forget(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.conns[cc.addr] == cc {
		delete(c.mu.conns, cc.addr)
	}
}

// shutdown closes the connection gracefully for Client.Close. Outputs fail
// at once; the flush and the goodbye follow on the writer goroutine.
func (cc *clientConn) shutdown() {
	if cc.connectErr != nil {
		return
	}
	reason := fmt.Errorf("%w: client is shutting down", ErrClosed)
	cc.link.closeGracefully(reason, codeShutdown, "producer is shutting down")
	cc.failOutputs(reason)
}

// failOutputs fails every open Output of the connection with reason and
// refuses new ones.
func (cc *clientConn) failOutputs(reason error) {
	cc.mu.Lock()
	if cc.mu.err == nil {
		cc.mu.err = reason
	}
	outs := make([]*Output, 0, len(cc.mu.streams))
	for _, o := range cc.mu.streams {
		outs = append(outs, o)
	}
	clear(cc.mu.streams)
	clear(cc.mu.byID)
	cc.mu.Unlock()
	for _, o := range outs {
		o.fail(fmt.Errorf("weir network: channel %v to consumer %s: %w", o.id, cc.addr, reason))
	}
}

// run is the connection's reader goroutine: connect, then frames until the
// connection ends, then teardown.
func (cc *clientConn) run() {
	c := cc.client
	defer c.wg.Done()
	if err := cc.connect(); err != nil {
		cc.connectErr = err
		c.forget(cc)
		close(cc.ready)
		return
	}
	c.mu.Lock()
	closed := c.mu.closed
	close(cc.ready)
	c.mu.Unlock()
	if closed { // Close ran while we connected and did not see us ready
		cc.shutdown()
	}

	err := cc.readLoop()
	if isLocalProtocolError(err) {
		cc.link.closeGracefully(err, codeProtocol, protocolDetail(err))
	}
	reason := cc.link.finish(err)
	c.forget(cc)
	cc.failOutputs(reason)
	cc.link.linger()
}

// connect dials and performs the handshake. On success the link's writer
// goroutine is running.
func (cc *clientConn) connect() error {
	c := cc.client
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cc.addr)
	if err != nil {
		if c.ctx.Err() != nil {
			return fmt.Errorf("client: %w", ErrClosed)
		}
		return fmt.Errorf("%w: dialing consumer %s: %w", ErrConnectionLost, cc.addr, err)
	}
	l := newLink(nc, c.opts)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		l.w.run()
	}()
	_ = l.w.appendControl(func(b []byte) []byte {
		return appendHello(b, hello{version: ProtocolVersion, role: roleProducer, maxFrameSize: uint32(c.opts.MaxFrameSize)})
	})
	deadline, _ := ctx.Deadline()
	_ = nc.SetReadDeadline(deadline)
	// Client.Close cancels c.ctx; that must not wait for the deadline.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
	h, err := readHello(l.br, roleConsumer)
	stop()
	if err == nil {
		err = nc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if c.ctx.Err() != nil {
			err = fmt.Errorf("client: %w", ErrClosed)
		} else {
			err = fmt.Errorf("handshake with consumer %s: %w", cc.addr, err)
		}
		l.abort(err)
		l.finish(err)
		l.linger()
		return err
	}
	cc.link = l
	cc.maxData = min(c.opts.MaxFrameSize, int(h.maxFrameSize))
	return nil
}

// open opens a stream for id. ended reports that the connection had already
// ended, so the caller may retry on a new one.
func (cc *clientConn) open(id ChannelID) (o *Output, ended bool, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if err := cc.mu.err; err != nil {
		return nil, true, fmt.Errorf("weir network: opening channel %v to %s: %w", id, cc.addr, err)
	}
	if _, dup := cc.mu.byID[id]; dup {
		return nil, false, fmt.Errorf("weir network: channel %v to %s is already open in this process: %w", id, cc.addr, ErrDuplicateChannel)
	}
	if cc.mu.nextID == ^uint32(0) {
		return nil, false, fmt.Errorf("weir network: opening channel %v to %s: the connection has used all stream ids; %w", id, cc.addr, ErrConnectionLost)
	}
	cc.mu.nextID++
	o = &Output{
		conn:   cc,
		id:     id,
		stream: cc.mu.nextID,
		signal: make(chan struct{}, 1),
		failed: make(chan struct{}),
	}
	// Queued under cc.mu, so OPEN frames leave in stream-id order.
	if err := cc.link.w.appendControl(func(b []byte) []byte { return appendOpenFrame(b, o.stream, id) }); err != nil {
		return nil, true, fmt.Errorf("weir network: opening channel %v to %s: %w", id, cc.addr, err)
	}
	cc.mu.streams[o.stream] = o
	cc.mu.byID[id] = o
	return o, false, nil
}

func (cc *clientConn) readLoop() error {
	var scratch [maxErrorBody]byte
	br := cc.link.br
	for {
		// A consumer sends no DATA, so no DATA size limit applies; such a
		// frame is refused below before its body is read.
		h, err := readHeader(br, ^uint32(0))
		if err != nil {
			return err
		}
		switch h.typ {
		case frameCredit:
			body, err := readBody(br, h, scratch[:])
			if err != nil {
				return err
			}
			n, err := decodeCredit(body)
			if err != nil {
				return err
			}
			cc.mu.Lock()
			o := cc.mu.streams[h.stream]
			cc.mu.Unlock()
			if o != nil { // credits for a closed stream are moot
				o.addCredits(n)
			}
		case frameError:
			body, err := readBody(br, h, scratch[:])
			if err != nil {
				return err
			}
			if h.stream == 0 {
				return decodeError(body).goodbye("consumer " + cc.addr)
			}
			cc.streamRejected(h.stream, decodeError(body).err())
		default:
			return protocolErrorf("consumer sent frame type %d, which only a producer sends", h.typ)
		}
	}
}

// streamRejected handles the consumer's ERROR frame for one stream: the
// Output fails, and a CLOSE acknowledges so the consumer can forget the
// stream.
func (cc *clientConn) streamRejected(stream uint32, err error) {
	cc.mu.Lock()
	o := cc.mu.streams[stream]
	if o != nil {
		delete(cc.mu.streams, stream)
		delete(cc.mu.byID, o.id)
	}
	cc.mu.Unlock()
	if o == nil {
		return // closed meanwhile; our CLOSE is the acknowledgement
	}
	o.fail(fmt.Errorf("weir network: channel %v to consumer %s: %w", o.id, cc.addr, err))
	o.sendClose()
}

// MaxPayload returns the largest payload Write accepts on this channel: the
// smaller of the two processes' MaxFrameSize.
func (o *Output) MaxPayload() int { return o.conn.maxData }

// ID returns the channel's id.
func (o *Output) ID() ChannelID { return o.id }

// Write sends one buffer of the given kind. It blocks until the consumer has
// granted a credit, ctx is done, or the channel fails. Write copies payload
// into the connection's write queue, so the caller may reuse payload as soon
// as Write returns; the copy is what lets the caller fill its next buffer
// while the connection's writer goroutine sends this one.
//
// A nil error means the buffer is queued: it reaches the consumer unless the
// connection fails, which the next Write (or the consumer's onError)
// reports.
func (o *Output) Write(ctx context.Context, kind uint8, payload []byte) error {
	if len(payload) > o.conn.maxData {
		return fmt.Errorf("weir network: channel %v: %w: payload of %d bytes exceeds the maximum of %d; split it or raise MaxFrameSize on both sides",
			o.id, ErrFrameTooLarge, len(payload), o.conn.maxData)
	}
	for {
		o.mu.Lock()
		if err := o.mu.err; err != nil {
			o.mu.Unlock()
			return err
		}
		if o.mu.credits > 0 {
			o.mu.credits--
			o.mu.Unlock()
			break
		}
		o.mu.Unlock()
		select {
		case <-o.signal:
		case <-o.failed:
		case <-ctx.Done():
			return fmt.Errorf("weir network: channel %v: waiting for credit from consumer %s: %w", o.id, o.conn.addr, ctx.Err())
		}
	}
	if err := o.conn.link.w.appendData(ctx, o, kind, payload); err != nil {
		o.mu.Lock()
		ferr := o.mu.err
		o.mu.Unlock()
		if ferr != nil {
			return ferr
		}
		return fmt.Errorf("weir network: channel %v to consumer %s: %w", o.id, o.conn.addr, err)
	}
	return nil
}

// Close ends the channel: buffers already written are still sent, then the
// consumer forgets the channel (end-of-partition is a Kind the runtime sends
// before Close). Later Writes return an error wrapping ErrClosed. Close does
// not block and is idempotent.
func (o *Output) Close() error {
	o.fail(fmt.Errorf("weir network: channel %v: output %w", o.id, ErrClosed))
	cc := o.conn
	cc.mu.Lock()
	if cc.mu.streams[o.stream] == o {
		delete(cc.mu.streams, o.stream)
		delete(cc.mu.byID, o.id)
	}
	cc.mu.Unlock()
	o.sendClose()
	return nil
}

func (o *Output) sendClose() {
	_ = o.conn.link.w.appendControl(func(b []byte) []byte {
		if o.closeSent {
			return b
		}
		o.closeSent = true
		return appendCloseFrame(b, o.stream)
	})
}

func (o *Output) addCredits(n uint32) {
	o.mu.Lock()
	o.mu.credits += uint64(n)
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *Output) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.err == nil {
		o.mu.err = err
		close(o.failed)
	}
}
