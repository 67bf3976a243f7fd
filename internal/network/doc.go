// Package network is the data plane between the worker processes of a job:
// it carries the buffers of channels from producer subtasks to consumer
// subtasks in other processes over TCP, in order per channel, with Flink's
// credit-based flow control, and reports failures promptly.
//
// It owns framing, connections, credits and failure reporting. It does not
// own serialisation or the meaning of a buffer: a buffer is a Kind byte
// (data batch, watermark, barrier, end of partition, … as the runtime
// defines them) and an opaque payload of at most Options.MaxFrameSize bytes.
//
// # Roles
//
// A worker process that consumes channels runs a Server and registers each
// channel it expects with RegisterInput, giving its credit (how many buffers
// it can hold). A process that produces runs one Client, which keeps one TCP
// connection per consumer address, shared by all channels to it, and opens
// an Output per channel. The producer dials; the consumer listens.
//
// # Flow
//
//	producer process                               consumer process
//	────────────────                               ────────────────
//	task ─ Output.Write(kind, payload)             Server reader goroutine
//	  │ wait for a credit (per channel)              │ read frame (bufio)
//	  │ copy frame into the write queue              │ payload → channel's buffer
//	  ▼                                              ▼
//	frameWriter (one per connection)               deliver(kind, payload, release)
//	  │ swap queue, one write per batch              │ runtime enqueues (≤ credits)
//	  ▼                                              ▼
//	TCP ═══ OPEN, DATA, CLOSE ════════════════════▶ task processes the buffer
//	    ◀══ CREDIT, ERROR ══════════════════════     │
//	  ▲                                              ▼ release()
//	Client reader goroutine                        buffer back to the pool,
//	  │ CREDIT(n) → Output's credits += n            credit into the writer's
//	  └─▶ wakes a Write waiting for credit           coalescing slot → frameWriter
//
// A producer has at most credits buffers of a channel in flight, so a slow
// consumer stops only its own producers: the connection's reader never
// blocks on a full channel, and other channels on the connection flow on.
//
// Writers append whole frames to the connection's queue under a mutex; one
// writer goroutine swaps the queue out and writes it in one syscall. Frames
// written while a write is in flight batch into the next one, and nothing
// waits for a timer: the writer flushes as soon as it is idle and the queue
// is not empty. Credits released between two flushes go out as one CREDIT
// frame per channel.
//
// # Frame format
//
// Every connection starts with a 16-byte handshake in each direction; the
// listener sends its own without waiting:
//
//	0   8  magic "WEIRDP\r\n"
//	8   2  protocol version, big endian (ProtocolVersion)
//	10  1  role: 'P' producer (dialer) or 'C' consumer (listener)
//	11  1  reserved, 0
//	12  4  largest DATA payload this end accepts, big endian
//
// A wrong magic (an HTTP server, a stray client), version or role fails the
// connection with an error wrapping ErrHandshake that says what the peer
// sent. Then frames follow, each a 12-byte header and a body:
//
//	0   1  type
//	1   1  kind (DATA only, else 0)
//	2   2  flags, reserved, 0
//	4   4  stream id, big endian: the producer numbers its channels on the
//	       connection 1, 2, 3, …; 0 is the connection itself
//	8   4  body length, big endian
//
//	type        direction   body
//	1 OPEN      P → C       ChannelID, 32 bytes: job[16] attempt edge producer consumer (uint32 BE)
//	2 DATA      P → C       payload (≤ the consumer's maximum)
//	3 CLOSE     P → C       empty: the producer is done with the stream (or acknowledges an ERROR)
//	4 CREDIT    C → P       uint32 BE: this many more buffers may be sent (> 0)
//	5 ERROR     both        uint16 BE code, UTF-8 message (≤ 4094 bytes); on stream 0 the
//	                        sender then closes the connection
//
// ERROR codes: 1 protocol violation, 2 shutting down, 3 registration
// timeout, 4 stale attempt, 5 duplicate channel, 6 unregistered. A malformed
// or unexpected frame (unknown type, bad length, DATA beyond the credit or
// for an unknown stream) is a protocol error: the detecting end sends ERROR
// on stream 0, closes the connection, and every channel on it fails.
//
// # Channel life cycle
//
// The consumer grants the channel's credit when both the registration and
// the producer's OPEN are present, whichever came first. An OPEN that finds
// no registration is held for Options.RegistrationTimeout, then refused with
// ErrRegistrationTimeout. Channels match on the whole ChannelID, so buffers
// of one attempt never reach a registration of another; an OPEN of an older
// attempt than one registered or opened is refused at once with
// ErrStaleAttempt. Unregistering refuses the stream with
// ErrChannelUnregistered; the consumer drops DATA of a refused stream until
// the producer's CLOSE acknowledges it.
//
// # Failures
//
// A broken connection, a peer that closes, a malformed frame or a failed
// handshake fails every channel on the connection: blocked and later Writes
// return an error, and each registered channel's onError runs once. The
// errors wrap the sentinels in errors.go (ErrConnectionLost, ErrProtocol,
// ErrHandshake, …) so the runtime can classify them. Every blocking call
// takes a context. Closing ends connections gracefully: queued frames are
// flushed, an ERROR "shutting down" tells the peer why, the socket is
// half-closed and drained until the peer closes, all bounded by
// Options.CloseTimeout, so that no final frame is lost to a TCP reset.
//
// Detecting a peer that vanishes without closing (power loss, partition) is
// left to the control plane's heartbeats and TCP keepalive; the data plane
// sends no heartbeats of its own.
package network
