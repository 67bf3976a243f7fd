package network

import "errors"

// Errors returned by Output.Write and passed to a registration's onError
// wrap one of these, so that the runtime can classify failures with
// errors.Is. The wrapping error names the channel, the peer and the cause.
var (
	// ErrClosed: the Server, Client or Output was closed by its owner.
	ErrClosed = errors.New("weir network: closed")
	// ErrConnectionLost: the TCP connection carrying the channel broke or the
	// peer closed it (including a peer that shut down).
	ErrConnectionLost = errors.New("weir network: connection lost")
	// ErrHandshake: the peer is not a Weir data-plane endpoint, speaks another
	// protocol version, or did not complete the handshake in time.
	ErrHandshake = errors.New("weir network: handshake failed")
	// ErrProtocol: a malformed or unexpected frame; the connection is closed.
	ErrProtocol = errors.New("weir network: protocol error")
	// ErrFrameTooLarge: a payload larger than the negotiated maximum frame size.
	ErrFrameTooLarge = errors.New("weir network: frame too large")
	// ErrRegistrationTimeout: the consumer did not register the channel within
	// Options.RegistrationTimeout after the producer opened it.
	ErrRegistrationTimeout = errors.New("weir network: consumer did not register channel in time")
	// ErrStaleAttempt: the consumer has registered a newer attempt of the
	// channel; the producer belongs to an attempt that was restarted.
	ErrStaleAttempt = errors.New("weir network: stale attempt")
	// ErrDuplicateChannel: the channel is already registered, opened or consumed.
	ErrDuplicateChannel = errors.New("weir network: duplicate channel")
	// ErrChannelUnregistered: the consumer unregistered the channel.
	ErrChannelUnregistered = errors.New("weir network: consumer unregistered channel")
	// ErrRemote: an error frame with a code this version does not know.
	ErrRemote = errors.New("weir network: remote error")
)
