package transport

import (
	"errors"
	"fmt"
	"time"
)

// The sentinel errors of the contract. Transports wrap them (with %w) in
// errors that name the operation and the queue, exchange or routing key;
// callers match them with [errors.Is].
var (
	// ErrClosed is returned by every method called after Close, and by
	// Ack or Nack on a delivery whose consumer was closed (the message has
	// been requeued and will be delivered again).
	ErrClosed = errors.New("busline: closed")

	// ErrUnroutable means a mandatory message matched no queue: no queue is
	// bound under its routing key. The message was not enqueued anywhere.
	ErrUnroutable = errors.New("busline: unroutable message")

	// ErrRejected means the broker refused responsibility for a message (on
	// RabbitMQ a publisher nack, for example from a full queue with
	// x-overflow=reject-publish). The message may or may not have been
	// enqueued; it is safe to send it again.
	ErrRejected = errors.New("busline: message rejected by the broker")

	// ErrNotSupported means the transport lacks a capability the call needs,
	// for example deferred delivery.
	ErrNotSupported = errors.New("busline: not supported by this transport")

	// ErrInvalidName means a queue name, routing key or topic pattern breaks
	// the broker's rules. See [ValidateQueueName], [ValidateRoutingKey] and
	// [ValidateTopicPattern]. Nothing was sent.
	ErrInvalidName = errors.New("busline: invalid name")

	// ErrInvalidMessage means a message cannot be carried: a header of a type
	// no transport can encode, a property longer than 255 bytes, and the like.
	// Nothing was sent.
	ErrInvalidMessage = errors.New("busline: invalid message")

	// ErrTopologyConflict means a queue exists with other arguments than the
	// ones declared (RabbitMQ's PRECONDITION_FAILED "inequivalent arg").
	ErrTopologyConflict = errors.New("busline: topology conflict")

	// ErrNotFound means a queue or exchange the call needs does not exist.
	ErrNotFound = errors.New("busline: not found")

	// ErrSettled is returned by Ack or Nack on a delivery that was already
	// acked or nacked. The second call has no effect.
	ErrSettled = errors.New("busline: delivery already settled")

	// ErrConnectionLost means the connection to the broker went away while
	// the operation was under way. For Ack or Nack it means the message will
	// be delivered again; for Dispatch that the outcome is unknown and the
	// message should be sent again.
	ErrConnectionLost = errors.New("busline: connection lost")
)

// DispatchError reports the failure of one message of a Dispatch batch.
// Dispatch returns one DispatchError per failed message, joined with
// [errors.Join] when there are several, so errors.Is finds the cause of any
// of them and errors.As the first.
type DispatchError struct {
	// Index is the message's position in the batch given to Dispatch.
	Index int
	// Exchange is the kind of exchange it was published to.
	Exchange Exchange
	// RoutingKey is the routing key it was published with.
	RoutingKey string
	// MessageID is [Message.ID] of the message.
	MessageID string
	// Err is the cause; it wraps one of the sentinels of this package or a
	// context error.
	Err error
}

func (e *DispatchError) Error() string {
	return fmt.Sprintf("dispatch message %d (id %q) to %s exchange with routing key %q: %v",
		e.Index, e.MessageID, e.Exchange, shorten(e.RoutingKey), e.Err)
}

func (e *DispatchError) Unwrap() error { return e.Err }

// NameError reports a queue name, routing key or topic pattern that breaks
// the broker's rules. It wraps [ErrInvalidName].
type NameError struct {
	// Kind is what the name was meant to be: "queue name", "routing key" or
	// "topic pattern".
	Kind string
	// Name is the offending name.
	Name string
	// Reason says which rule it breaks.
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Kind, shorten(e.Name), e.Reason)
}

func (e *NameError) Unwrap() error { return ErrInvalidName }

// shorten keeps error messages readable when a name is far over the limit.
func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:max], len(s))
}

// RetryAfter is implemented by errors that know when a failed operation may
// succeed if tried again (for example a broker that blocked publishing).
// It is advisory.
type RetryAfter interface {
	RetryAfter() time.Duration
}
