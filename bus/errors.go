package bus

import (
	"errors"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// The sentinel errors of package transport, re-exported so that
// applications need not import it. See the transport package for their
// meaning.
var (
	// ErrClosed: the Bus (or its transport) was shut down or closed.
	ErrClosed = transport.ErrClosed
	// ErrUnroutable: a mandatory message reached no queue.
	ErrUnroutable = transport.ErrUnroutable
	// ErrRejected: the broker refused responsibility for a message.
	ErrRejected = transport.ErrRejected
	// ErrNotSupported: the transport lacks a capability the call needs,
	// such as deferred delivery.
	ErrNotSupported = transport.ErrNotSupported
	// ErrInvalidName: a queue name, topic or pattern breaks the broker's
	// rules; nothing was sent.
	ErrInvalidName = transport.ErrInvalidName
	// ErrInvalidMessage: a message cannot be carried (a header of a type
	// AMQP cannot carry, a property over 255 bytes).
	ErrInvalidMessage = transport.ErrInvalidMessage
	// ErrTopologyConflict: a queue exists with other arguments.
	ErrTopologyConflict = transport.ErrTopologyConflict
	// ErrNotFound: a queue the call needs does not exist.
	ErrNotFound = transport.ErrNotFound
	// ErrConnectionLost: the connection went away during the call.
	ErrConnectionLost = transport.ErrConnectionLost
)

// The handling errors of package middleware, re-exported.
var (
	// ErrPermanent marks an error retrying cannot fix: the message goes to
	// the error queue at once. Make one with [Permanent].
	ErrPermanent = middleware.ErrPermanent
	// ErrUndecodable: a message's body could not be decoded into the
	// handler's type, or no codec reads its content type. Permanent.
	ErrUndecodable = middleware.ErrUndecodable
	// ErrUnhandled: no handler takes the message's type. Permanent.
	ErrUnhandled = middleware.ErrUnhandled
)

// Errors of this package.
var (
	// ErrScopeEnded: a handler's or transaction's context was used to send
	// after the handler or transaction returned; the message was not sent.
	ErrScopeEnded = errors.New("busline: handler or transaction already returned")
	// ErrNoReplyAddress: Reply was called for a message that says nowhere
	// to reply to (no ReplyToAddress header, no reply_to property), or
	// outside a handler.
	ErrNoReplyAddress = errors.New("busline: no reply address")
	// ErrSendOnly: the call needs the endpoint's own queue, and the Bus was
	// made without one.
	ErrSendOnly = errors.New("busline: send-only endpoint has no queue")
	// ErrSuspended: [Options.HealthMonitor] says the host is unhealthy, so
	// the Bus consumes nothing until it is healthy again; [Bus.Health]
	// returns it (wrapped) meanwhile. Sends still work.
	ErrSuspended = errors.New("busline: consumption suspended: the host is unhealthy")
)

// Permanent marks err as permanent: a handler returning it has its message
// sent to the error queue without retries. Permanent(nil) is nil. It is
// [middleware.Permanent].
func Permanent(err error) error { return middleware.Permanent(err) }
