package network

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"unicode/utf8"
)

// ProtocolVersion is the data-plane protocol version this package speaks.
// Both ends of a connection must speak the same version.
const ProtocolVersion uint16 = 1

// handshakeMagic starts every connection in both directions. It ends in CR LF
// so that an HTTP server reached by mistake answers with a 400 that the
// handshake check recognises, instead of waiting for more request bytes.
var handshakeMagic = [8]byte{'W', 'E', 'I', 'R', 'D', 'P', '\r', '\n'}

const handshakeSize = 16

// Roles in the handshake: the producer dials, the consumer listens.
const (
	roleProducer byte = 'P'
	roleConsumer byte = 'C'
)

// hello is the handshake each end sends first.
type hello struct {
	version      uint16
	role         byte
	maxFrameSize uint32 // largest DATA payload this end accepts
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, handshakeMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, h.version)
	b = append(b, h.role, 0)
	return binary.BigEndian.AppendUint32(b, h.maxFrameSize)
}

// readHello reads and checks the peer's handshake. want is the role the peer
// must have. The errors wrap ErrHandshake and say what the peer sent.
func readHello(r io.Reader, want byte) (hello, error) {
	var b [handshakeSize]byte
	n, err := io.ReadFull(r, b[:])
	if err != nil {
		if n > 0 && !magicPrefix(b[:n]) {
			return hello{}, notWeir(b[:n])
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return hello{}, fmt.Errorf("%w: peer closed the connection after sending %d of %d handshake bytes %q",
				ErrHandshake, n, handshakeSize, b[:n])
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return hello{}, fmt.Errorf("%w: peer sent %d of %d handshake bytes before the connect timeout; check that the address is a worker's data-plane port: %w",
				ErrHandshake, n, handshakeSize, err)
		}
		return hello{}, fmt.Errorf("%w: reading handshake (%d of %d bytes received): %w", ErrHandshake, n, handshakeSize, err)
	}
	if [8]byte(b[:8]) != handshakeMagic {
		return hello{}, notWeir(b[:])
	}
	h := hello{
		version:      binary.BigEndian.Uint16(b[8:10]),
		role:         b[10],
		maxFrameSize: binary.BigEndian.Uint32(b[12:16]),
	}
	if h.version != ProtocolVersion {
		return h, fmt.Errorf("%w: peer speaks Weir data-plane protocol version %d, this process speaks version %d; run the same Weir release on every worker of a job",
			ErrHandshake, h.version, ProtocolVersion)
	}
	if h.role != want {
		return h, fmt.Errorf("%w: peer announced role %q, expected %q (a producer must dial a consumer's data port)",
			ErrHandshake, h.role, want)
	}
	if h.maxFrameSize == 0 {
		return h, fmt.Errorf("%w: peer announced a maximum frame size of 0", ErrHandshake)
	}
	return h, nil
}

// magicPrefix reports whether a partial handshake b is consistent with the
// magic so far.
func magicPrefix(b []byte) bool {
	n := min(len(b), len(handshakeMagic))
	return string(b[:n]) == string(handshakeMagic[:n])
}

func notWeir(got []byte) error {
	hint := ""
	if len(got) >= 4 && string(got[:4]) == "HTTP" {
		hint = ", which looks like an HTTP server"
	}
	return fmt.Errorf("%w: peer is not a Weir data-plane endpoint: it sent %q%s instead of the magic %q; check that the address is a worker's data-plane port",
		ErrHandshake, got, hint, handshakeMagic[:])
}

// Frame types.
const (
	frameOpen   uint8 = 1 // producer → consumer: stream id now names ChannelID (body)
	frameData   uint8 = 2 // producer → consumer: one buffer (kind in header, payload in body)
	frameClose  uint8 = 3 // producer → consumer: the producer is done with the stream
	frameCredit uint8 = 4 // consumer → producer: body is uint32 number of new credits
	frameError  uint8 = 5 // either way: body is uint16 code + message; stream 0 = connection-level
)

const (
	headerSize     = 12
	channelIDSize  = 32
	creditBodySize = 4
	// maxErrorBody bounds ERROR frames; longer messages are truncated by the sender.
	maxErrorBody = 4096
)

// Error codes carried by ERROR frames.
const (
	codeProtocol            uint16 = 1 // malformed or unexpected frame; connection closes
	codeShutdown            uint16 = 2 // the sender is closing the connection
	codeRegistrationTimeout uint16 = 3 // consumer did not register the channel in time
	codeStaleAttempt        uint16 = 4 // consumer registered a newer attempt of the channel
	codeDuplicate           uint16 = 5 // channel already opened by another stream
	codeUnregistered        uint16 = 6 // consumer unregistered or abandoned the channel
)

// frameHeader is the fixed 12-byte header of every frame after the handshake:
//
//	0  type    uint8
//	1  kind    uint8   (DATA only; 0 otherwise)
//	2  flags   uint16  (reserved, 0)
//	4  stream  uint32  big endian
//	8  length  uint32  big endian, body bytes that follow
type frameHeader struct {
	typ    uint8
	kind   uint8
	stream uint32
	length uint32
}

func appendHeader(b []byte, h frameHeader) []byte {
	return append(b, h.typ, h.kind, 0, 0,
		byte(h.stream>>24), byte(h.stream>>16), byte(h.stream>>8), byte(h.stream),
		byte(h.length>>24), byte(h.length>>16), byte(h.length>>8), byte(h.length))
}

// readHeader reads one frame header and checks it against the frame-type
// rules. maxData is the largest DATA body accepted.
func readHeader(r *bufio.Reader, maxData uint32) (frameHeader, error) {
	b, err := r.Peek(headerSize)
	if err != nil {
		if len(b) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frameHeader{}, err
	}
	h := frameHeader{
		typ:    b[0],
		kind:   b[1],
		stream: binary.BigEndian.Uint32(b[4:8]),
		length: binary.BigEndian.Uint32(b[8:12]),
	}
	flags := binary.BigEndian.Uint16(b[2:4])
	_, _ = r.Discard(headerSize)
	if err := checkHeader(h, flags, maxData); err != nil {
		return h, err
	}
	return h, nil
}

func checkHeader(h frameHeader, flags uint16, maxData uint32) error {
	if flags != 0 {
		return protocolErrorf("frame type %d has reserved flags %#x set", h.typ, flags)
	}
	if h.kind != 0 && h.typ != frameData {
		return protocolErrorf("frame type %d has kind %d; only DATA frames carry a kind", h.typ, h.kind)
	}
	switch h.typ {
	case frameOpen:
		if h.length != channelIDSize {
			return protocolErrorf("OPEN frame has a %d-byte body, want %d", h.length, channelIDSize)
		}
	case frameData:
		if h.length > maxData {
			return protocolErrorf("DATA frame of %d bytes exceeds the maximum frame size %d", h.length, maxData)
		}
	case frameClose:
		if h.length != 0 {
			return protocolErrorf("CLOSE frame has a %d-byte body, want 0", h.length)
		}
	case frameCredit:
		if h.length != creditBodySize {
			return protocolErrorf("CREDIT frame has a %d-byte body, want %d", h.length, creditBodySize)
		}
	case frameError:
		if h.length < 2 || h.length > maxErrorBody {
			return protocolErrorf("ERROR frame has a %d-byte body, want 2..%d", h.length, maxErrorBody)
		}
	default:
		return protocolErrorf("unknown frame type %d", h.typ)
	}
	if h.stream == 0 && h.typ != frameError {
		return protocolErrorf("frame type %d on stream 0, which is reserved for connection-level errors", h.typ)
	}
	return nil
}

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

func appendChannelID(b []byte, id ChannelID) []byte {
	b = append(b, id.Job[:]...)
	b = binary.BigEndian.AppendUint32(b, id.Attempt)
	b = binary.BigEndian.AppendUint32(b, id.Edge)
	b = binary.BigEndian.AppendUint32(b, id.Producer)
	return binary.BigEndian.AppendUint32(b, id.Consumer)
}

func decodeChannelID(b []byte) ChannelID {
	var id ChannelID
	copy(id.Job[:], b[:16])
	id.Attempt = binary.BigEndian.Uint32(b[16:20])
	id.Edge = binary.BigEndian.Uint32(b[20:24])
	id.Producer = binary.BigEndian.Uint32(b[24:28])
	id.Consumer = binary.BigEndian.Uint32(b[28:32])
	return id
}

func appendOpenFrame(b []byte, stream uint32, id ChannelID) []byte {
	b = appendHeader(b, frameHeader{typ: frameOpen, stream: stream, length: channelIDSize})
	return appendChannelID(b, id)
}

func appendCreditFrame(b []byte, stream, credits uint32) []byte {
	b = appendHeader(b, frameHeader{typ: frameCredit, stream: stream, length: creditBodySize})
	return binary.BigEndian.AppendUint32(b, credits)
}

func appendCloseFrame(b []byte, stream uint32) []byte {
	return appendHeader(b, frameHeader{typ: frameClose, stream: stream})
}

func appendErrorFrame(b []byte, stream uint32, code uint16, msg string) []byte {
	if len(msg) > maxErrorBody-2 {
		msg = msg[:maxErrorBody-2]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	b = appendHeader(b, frameHeader{typ: frameError, stream: stream, length: uint32(2 + len(msg))})
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, msg...)
}

func decodeCredit(body []byte) (uint32, error) {
	n := binary.BigEndian.Uint32(body)
	if n == 0 {
		return 0, protocolErrorf("CREDIT frame grants 0 credits")
	}
	return n, nil
}

// remoteError is an ERROR frame received from the peer.
type remoteError struct {
	code uint16
	msg  string
}

func decodeError(body []byte) remoteError {
	return remoteError{code: binary.BigEndian.Uint16(body), msg: string(body[2:])}
}

// err turns the peer's ERROR frame for one stream into an error that wraps
// the sentinel for its code, so that callers can classify it with errors.Is.
func (e remoteError) err() error {
	var sentinel error
	switch e.code {
	case codeProtocol:
		sentinel = ErrProtocol
	case codeShutdown:
		sentinel = ErrConnectionLost
	case codeRegistrationTimeout:
		sentinel = ErrRegistrationTimeout
	case codeStaleAttempt:
		sentinel = ErrStaleAttempt
	case codeDuplicate:
		sentinel = ErrDuplicateChannel
	case codeUnregistered:
		sentinel = ErrChannelUnregistered
	default:
		sentinel = ErrRemote
	}
	return fmt.Errorf("%w: %s", sentinel, e.msg)
}

// goodbye turns the peer's connection-level ERROR frame into the reason the
// connection ended. It always wraps ErrConnectionLost, and also ErrProtocol
// when the peer refused our frames.
func (e remoteError) goodbye(peer string) error {
	var err error
	switch e.code {
	case codeShutdown:
		err = fmt.Errorf("%w: %s", ErrConnectionLost, e.msg)
	case codeProtocol:
		err = fmt.Errorf("%w: %s closed the connection after a %w: %s", ErrConnectionLost, peer, ErrProtocol, e.msg)
	default:
		err = fmt.Errorf("%w: %s closed the connection with error code %d: %s", ErrConnectionLost, peer, e.code, e.msg)
	}
	return &peerGoodbye{err}
}

// peerGoodbye is an error the peer sent before closing the connection; it
// explains the end better than the EOF that follows it.
type peerGoodbye struct{ err error }

func (g *peerGoodbye) Error() string { return g.err.Error() }
func (g *peerGoodbye) Unwrap() error { return g.err }

// isLocalProtocolError reports whether err is a protocol violation this end
// detected, as opposed to one the peer reported.
func isLocalProtocolError(err error) bool {
	var g *peerGoodbye
	return errors.Is(err, ErrProtocol) && !errors.As(err, &g)
}

// protocolDetail is what we tell the peer about its protocol violation.
func protocolDetail(err error) string {
	return strings.TrimPrefix(err.Error(), ErrProtocol.Error()+": ")
}

// readBody reads a control frame's body (at most maxErrorBody bytes) into
// scratch, which must be at least that long.
func readBody(r *bufio.Reader, h frameHeader, scratch []byte) ([]byte, error) {
	b := scratch[:h.length]
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}
