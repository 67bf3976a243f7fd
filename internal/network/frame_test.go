package network

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	id := testID(3, 4, 5, 6)
	var b []byte
	b = appendOpenFrame(b, 1, id)
	b = appendHeader(b, frameHeader{typ: frameData, kind: 9, stream: 1, length: 3})
	b = append(b, "abc"...)
	b = appendCreditFrame(b, 1, 17)
	b = appendErrorFrame(b, 1, codeStaleAttempt, "too old")
	b = appendCloseFrame(b, 1)
	b = appendErrorFrame(b, 0, codeProtocol, strings.Repeat("é", maxErrorBody)) // truncated on a rune boundary

	r := bufio.NewReader(bytes.NewReader(b))
	var scratch [maxErrorBody]byte
	h, err := readHeader(r, 100)
	if err != nil || h.typ != frameOpen || h.stream != 1 {
		t.Fatalf("OPEN: %+v %v", h, err)
	}
	body, _ := readBody(r, h, scratch[:])
	if got := decodeChannelID(body); got != id {
		t.Fatalf("channel id %v, want %v", got, id)
	}
	h, err = readHeader(r, 100)
	if err != nil || h.typ != frameData || h.kind != 9 || h.length != 3 {
		t.Fatalf("DATA: %+v %v", h, err)
	}
	body, _ = readBody(r, h, scratch[:])
	if string(body) != "abc" {
		t.Fatalf("DATA body %q", body)
	}
	h, _ = readHeader(r, 100)
	body, _ = readBody(r, h, scratch[:])
	if n, err := decodeCredit(body); h.typ != frameCredit || n != 17 || err != nil {
		t.Fatalf("CREDIT: %+v %d %v", h, n, err)
	}
	h, _ = readHeader(r, 100)
	body, _ = readBody(r, h, scratch[:])
	if e := decodeError(body); e.code != codeStaleAttempt || e.msg != "too old" || !errors.Is(e.err(), ErrStaleAttempt) {
		t.Fatalf("ERROR: %+v", e)
	}
	if h, err = readHeader(r, 100); err != nil || h.typ != frameClose {
		t.Fatalf("CLOSE: %+v %v", h, err)
	}
	h, err = readHeader(r, 100)
	if err != nil || h.stream != 0 || h.length > maxErrorBody {
		t.Fatalf("long ERROR: %+v %v", h, err)
	}
	body, _ = readBody(r, h, scratch[:])
	if e := decodeError(body); !strings.HasPrefix(e.msg, "éé") || !errors.Is(e.err(), ErrProtocol) {
		t.Fatalf("long ERROR: %q", e.msg[:10])
	}
	if _, err := readHeader(r, 100); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	b := appendHello(nil, hello{version: ProtocolVersion, role: roleConsumer, maxFrameSize: 1234})
	if len(b) != handshakeSize {
		t.Fatalf("hello is %d bytes, want %d", len(b), handshakeSize)
	}
	h, err := readHello(bytes.NewReader(b), roleConsumer)
	if err != nil || h.maxFrameSize != 1234 {
		t.Fatalf("readHello: %+v %v", h, err)
	}
	if _, err := readHello(bytes.NewReader(b), roleProducer); !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "role") {
		t.Fatalf("wrong role: %v", err)
	}
}

// FuzzReadFrame decodes an arbitrary byte stream the way both ends of a
// connection do. Whatever the bytes, decoding must end in a clean error,
// never a panic or an allocation larger than the frame limit.
func FuzzReadFrame(f *testing.F) {
	id := testID(1, 2, 3, 4)
	var valid []byte
	valid = appendOpenFrame(valid, 1, id)
	valid = appendHeader(valid, frameHeader{typ: frameData, kind: 1, stream: 1, length: 5})
	valid = append(valid, "hello"...)
	valid = appendCreditFrame(valid, 1, 8)
	valid = appendErrorFrame(valid, 1, codeRegistrationTimeout, "late")
	valid = appendCloseFrame(valid, 1)
	f.Add(valid)
	f.Add(appendHello(nil, hello{version: ProtocolVersion, role: roleProducer, maxFrameSize: 1 << 20}))
	f.Add(appendHello(nil, hello{version: 7, role: roleConsumer, maxFrameSize: 0}))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Add(appendHeader(nil, frameHeader{typ: frameData, stream: 1, length: 1 << 31}))
	f.Add(appendHeader(nil, frameHeader{typ: frameError, stream: 0, length: 1}))
	f.Add(appendHeader(nil, frameHeader{typ: frameCredit, stream: 1, length: 4}))
	f.Add(appendCreditFrame(nil, 1, 0))
	f.Add([]byte{0, 0, 0})
	f.Add(valid[:len(valid)-3])

	const maxData = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		// The stream may start with a handshake.
		if _, err := readHello(bytes.NewReader(data), roleProducer); err != nil && !errors.Is(err, ErrHandshake) {
			t.Fatalf("readHello error does not wrap ErrHandshake: %v", err)
		}

		r := bufio.NewReaderSize(bytes.NewReader(data), 4096+headerSize)
		var scratch [maxErrorBody]byte
		for {
			h, err := readHeader(r, maxData)
			if err != nil {
				return
			}
			if h.typ == frameData {
				if h.length > maxData {
					t.Fatalf("DATA of %d bytes passed a %d limit", h.length, maxData)
				}
				payload := make([]byte, h.length)
				if _, err := io.ReadFull(r, payload); err != nil {
					return
				}
				continue
			}
			body, err := readBody(r, h, scratch[:])
			if err != nil {
				return
			}
			switch h.typ {
			case frameOpen:
				id := decodeChannelID(body)
				if !bytes.Equal(appendChannelID(nil, id), body) {
					t.Fatalf("channel id does not round-trip: %x", body)
				}
			case frameCredit:
				if n, err := decodeCredit(body); err == nil && n == 0 {
					t.Fatal("zero credit accepted")
				}
			case frameError:
				if e := decodeError(body).err(); e == nil {
					t.Fatal("nil error from an ERROR frame")
				}
			case frameClose:
				if len(body) != 0 {
					t.Fatal("CLOSE with a body")
				}
			default:
				t.Fatalf("readHeader accepted frame type %d", h.typ)
			}
		}
	})
}

// FuzzServerStream sends a producer's handshake followed by arbitrary bytes
// to a real Server with registered channels. The server must survive: it
// keeps serving a well-behaved producer afterwards, and every onError it
// calls carries a classified error.
func FuzzServerStream(f *testing.F) {
	id := testID(0, 1, 0, 0)
	data := func(stream uint32, payload string) []byte {
		b := appendHeader(nil, frameHeader{typ: frameData, kind: 2, stream: stream, length: uint32(len(payload))})
		return append(b, payload...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(cat(appendOpenFrame(nil, 1, id), data(1, "a"), data(1, "b"), appendCloseFrame(nil, 1)))
	f.Add(cat(appendOpenFrame(nil, 1, id), data(1, "a"), data(1, "b"), data(1, "c"), data(1, "d")))
	f.Add(cat(appendOpenFrame(nil, 1, testID(0, 9, 9, 9)), data(1, "early")))
	f.Add(cat(appendOpenFrame(nil, 2, id), appendOpenFrame(nil, 1, id)))
	f.Add(cat(appendOpenFrame(nil, 1, id), appendErrorFrame(nil, 1, 1, "x")))
	f.Add(cat(appendOpenFrame(nil, 1, id), appendErrorFrame(nil, 0, 2, "bye")))
	f.Add(cat(appendCloseFrame(nil, 5)))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))

	s, err := Listen("127.0.0.1:0", Options{RegistrationTimeout: time.Hour, CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()

	f.Fuzz(func(t *testing.T, stream []byte) {
		errs := make(chan error, 1)
		unregister, err := s.RegisterInput(id, 2, func(kind uint8, payload []byte, release func()) { release() },
			func(err error) { errs <- err })
		if err != nil {
			t.Fatal(err)
		}
		defer unregister()

		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(testTimeout))
		go func() {
			_, _ = nc.Write(appendHello(nil, hello{version: ProtocolVersion, role: roleProducer, maxFrameSize: 1 << 20}))
			_, _ = nc.Write(stream)
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}()
		_, _ = io.Copy(io.Discard, nc) // until the server closes its side
		_ = nc.Close()
		select {
		case err := <-errs:
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrConnectionLost) {
				t.Fatalf("onError with an unclassified error: %v", err)
			}
		default:
		}
	})
}
