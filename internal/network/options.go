package network

import (
	"log/slog"
	"time"
)

// Options configure a Server or a Client. The zero value is usable: every
// zero field takes the default documented beside it.
type Options struct {
	// MaxFrameSize is the largest payload of one buffer, in bytes. A consumer
	// announces its value in the handshake and a producer refuses to write
	// more than the smaller of the two. Default 4 MiB.
	MaxFrameSize int
	// RegistrationTimeout bounds how long a consumer holds a channel that a
	// producer opened before the consumer registered it; the producer's
	// Write then fails with ErrRegistrationTimeout. Default 10 s.
	RegistrationTimeout time.Duration
	// ConnectTimeout bounds dialing plus the handshake, on either side.
	// Default 10 s.
	ConnectTimeout time.Duration
	// CloseTimeout bounds how long Client.Close spends flushing buffers
	// already written, and how long either side spends sending a final error
	// frame before closing a connection. Default 1 s.
	CloseTimeout time.Duration
	// WriteQueueBytes is the soft limit of bytes queued per connection and
	// not yet handed to the kernel; writers wait beyond it (one frame is
	// always admitted). Credits normally keep the queue far below it.
	// Default 1 MiB.
	WriteQueueBytes int
	// ReadBufferBytes is the size of each connection's read buffer.
	// Default 256 KiB.
	ReadBufferBytes int
	// Logger receives events that have no caller to return an error to, such
	// as a non-Weir peer connecting to the data port. Default: discard.
	Logger *slog.Logger
}

const (
	defaultMaxFrameSize        = 4 << 20
	defaultRegistrationTimeout = 10 * time.Second
	defaultConnectTimeout      = 10 * time.Second
	defaultCloseTimeout        = time.Second
	defaultWriteQueueBytes     = 1 << 20
	defaultReadBufferBytes     = 256 << 10
	// maxFrameSizeLimit keeps lengths well inside uint32 and int on 32-bit.
	maxFrameSizeLimit = 1 << 30
)

func (o Options) withDefaults() Options {
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = defaultMaxFrameSize
	}
	o.MaxFrameSize = min(o.MaxFrameSize, maxFrameSizeLimit)
	if o.RegistrationTimeout <= 0 {
		o.RegistrationTimeout = defaultRegistrationTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = defaultCloseTimeout
	}
	if o.WriteQueueBytes <= 0 {
		o.WriteQueueBytes = defaultWriteQueueBytes
	}
	if o.ReadBufferBytes <= 0 {
		o.ReadBufferBytes = defaultReadBufferBytes
	}
	o.ReadBufferBytes = max(o.ReadBufferBytes, maxErrorBody+headerSize)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
