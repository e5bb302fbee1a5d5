package transport

import (
	"context"
	"sync/atomic"
)

// Delivery is one message delivered to a [Handler]. It must be settled
// exactly once, with Ack or Nack, by the handler or later by any goroutine.
type Delivery struct {
	// Message is the message as delivered. Its headers are in the canonical
	// form described on [Headers]; the handler owns them and the body.
	Message
	// Queue is the queue the message was consumed from.
	Queue string
	// Exchange is the kind of exchange the message was published to.
	Exchange Exchange
	// RoutingKey is the routing key it was published with.
	RoutingKey string
	// ExchangeName names the topic exchange the message was published to
	// when that is not the transport's own but one a queue was bound on
	// with [ExchangeBinder.BindExchange] (Exchange is then Topic); empty
	// otherwise. A Bus uses it to decode messages from other systems, such
	// as tomodachi services, with the codec configured for that exchange.
	ExchangeName string
	// Redelivered reports that the message was delivered before and not
	// acked: nacked with requeue, or left unsettled when a consumer stopped
	// or a connection was lost. It may already have been handled.
	Redelivered bool

	// Tag identifies the delivery to its Acknowledger.
	Tag uint64
	// Acknowledger settles the delivery. Transports set it; handlers call
	// Ack and Nack instead.
	Acknowledger Acknowledger

	settled atomic.Bool
}

// Acknowledger settles deliveries on behalf of a transport. Ack and Nack are
// called at most once per delivery tag: [Delivery] guards against repeats.
type Acknowledger interface {
	// Ack removes the delivery's message from its queue.
	Ack(tag uint64) error
	// Nack gives the delivery's message back to its queue (requeue) or
	// drops it.
	Nack(tag uint64, requeue bool) error
}

// Ack tells the broker the message was handled: it leaves its queue for good.
// It returns an error wrapping [ErrSettled] if the delivery was settled
// already, [ErrClosed] if its consumer was closed and [ErrConnectionLost] if
// its connection was lost; in the last two cases the message was requeued
// and will be delivered again.
func (d *Delivery) Ack() error {
	if !d.settled.CompareAndSwap(false, true) {
		return ErrSettled
	}
	return d.Acknowledger.Ack(d.Tag)
}

// Nack tells the broker the message was not handled. With requeue it goes
// back to its queue (at its original position in a classic queue, at the back
// of a quorum queue) and is delivered again with Redelivered set; without, it
// is dropped (or dead-lettered, if the queue is configured to). Errors are as
// for [Delivery.Ack].
func (d *Delivery) Nack(requeue bool) error {
	if !d.settled.CompareAndSwap(false, true) {
		return ErrSettled
	}
	return d.Acknowledger.Nack(d.Tag, requeue)
}

// Settled reports whether Ack or Nack has been called.
func (d *Delivery) Settled() bool { return d.settled.Load() }

// Handler handles deliveries of a consumer. The context carries the values of
// the context given to [Transport.Consume], not its cancellation; it is
// cancelled when the consumer is closed, or when draining it outlasts the
// context given to [Consumer.Drain]. A handler that returns without settling
// its delivery leaves it unsettled: it still counts against the prefetch
// window until it is settled, and is requeued when the consumer stops.
type Handler func(ctx context.Context, d *Delivery)

// ConsumeOptions tune a consumer. The zero value is one handler at a time and
// a prefetch window of one message.
type ConsumeOptions struct {
	// Concurrency is the number of handler calls that may run at once.
	// Zero means 1.
	Concurrency int
	// Prefetch bounds how many deliveries are unsettled at once (handed to
	// the consumer and not yet acked or nacked). Zero means Concurrency;
	// a value below Concurrency is raised to it.
	Prefetch int
	// Tag names the consumer for the broker's management tools. Optional.
	Tag string
	// Priority is the consumer's priority among the consumers of its
	// queue (RabbitMQ's x-priority consumer argument): a message goes to a
	// consumer of the highest priority that has room in its prefetch
	// window, round robin among those of equal priority; a consumer of
	// lower priority gets messages only while every consumer above it is
	// full (or gone). Zero is RabbitMQ's default; negative values are
	// allowed.
	Priority int
}

// Limits returns the effective concurrency and prefetch of o, with the
// defaults applied.
func (o ConsumeOptions) Limits() (concurrency, prefetch int) {
	concurrency, prefetch = o.Concurrency, o.Prefetch
	if concurrency <= 0 {
		concurrency = 1
	}
	if prefetch < concurrency {
		prefetch = concurrency
	}
	return concurrency, prefetch
}

// Consumer is a running subscription to a queue, returned by
// [Transport.Consume]. Its methods are safe for concurrent use; neither may
// be called from a handler of the same consumer (they wait for handlers).
type Consumer interface {
	// Drain stops the consumer gracefully: the broker stops delivering,
	// messages received but not yet handed to the handler are requeued, and
	// Drain waits for every running handler call to return. If ctx is done
	// first, Drain cancels the handlers' contexts, waits for them to return,
	// requeues every unsettled delivery and returns the context's error.
	// Calls after the first return nil once the consumer has stopped.
	Drain(ctx context.Context) error

	// Close stops the consumer at once: the broker stops delivering, the
	// handlers' contexts are cancelled, and Close waits for running handler
	// calls to return; unsettled deliveries are requeued. A second Close
	// returns nil.
	Close() error

	// Done is closed when the consumer has stopped, whether by Drain, Close,
	// the transport's Close, or a failure it cannot recover from (see Err).
	Done() <-chan struct{}

	// Err is nil while the consumer runs and after a stop that was asked
	// for; after an unrecoverable failure (its queue was deleted, say) it
	// says why.
	Err() error
}
