package transport

import (
	"context"
	"time"
)

// Transport moves messages between queues through a direct and a topic
// exchange. Implementations must honour the rules in the package
// documentation; package conformance checks them.
type Transport interface {
	// Declare idempotently ensures the topology's queue, the queue's binding
	// on the direct exchange under its own name, and its topic bindings
	// (existing bindings are kept). Declaring an existing queue with
	// another type or other arguments fails with [ErrTopologyConflict],
	// unless the queue is Shared. It blocks until the broker has confirmed
	// every step or ctx is done.
	Declare(ctx context.Context, t Topology) error

	// Bind binds queue on the topic exchange under pattern. Binding twice
	// is harmless. It fails with [ErrNotFound] if the queue does not exist.
	Bind(ctx context.Context, queue, pattern string) error

	// Unbind removes the binding of queue under pattern from the topic
	// exchange. Removing a binding that does not exist is harmless.
	Unbind(ctx context.Context, queue, pattern string) error

	// Dispatch publishes msgs and blocks until the broker has taken
	// responsibility for every one of them, or ctx is done. It returns nil
	// only if every message was confirmed and every mandatory one reached a
	// queue; otherwise it returns a [DispatchError] for each failed message
	// (joined with errors.Join). Every message is validated before any is
	// sent: one invalid message fails the whole call and nothing is sent.
	// During a connection outage Dispatch waits for the connection to
	// return, bounded by ctx; it never reports success without a confirm.
	//
	// A Direct message goes to the queue its routing key names whether or
	// not that queue is bound on the direct exchange: a queue declared by
	// someone else without that binding (PikaBus 1.x declares its queues
	// so, and binds a destination just before it sends to it) is bound
	// there under its own name before the message is published, as
	// PikaBus does. A mandatory Direct message to a queue that does not
	// exist fails with [ErrUnroutable]. A transport whose bind is a round
	// trip remembers the destinations it has bound, so that it costs one
	// per destination, not per message, and forgets them when its
	// connection is replaced, when it deletes the queue, and when a
	// message to one comes back unroutable (then it binds again and
	// publishes that message once more). See "Destinations" in the
	// package documentation.
	Dispatch(ctx context.Context, msgs ...Outgoing) error

	// Consume starts delivering the messages of queue to h and returns at
	// once; ctx bounds only the start. Several consumers of one queue
	// compete: each message goes to one of them, round robin. The queue
	// must exist ([ErrNotFound] otherwise). A transport that recovers from a
	// lost connection resumes its consumers by itself.
	Consume(ctx context.Context, queue string, opts ConsumeOptions, h Handler) (Consumer, error)

	// Close closes every consumer as [Consumer.Close] does, waits for the
	// transport's goroutines to end (every handler call included, also
	// those of a consumer whose Drain or Close is still waiting for them:
	// a caller may stop waiting for a handler that ignores its context,
	// and Close is where its goroutine ends) and releases its connection. Dispatch
	// calls under way return [ErrClosed] (or succeed, if confirmed first).
	// A second Close returns nil.
	Close() error
}

// Delayer is implemented by transports that honour [Outgoing.NotBefore]:
// a deferred message enters its queue no earlier than its NotBefore time,
// and not long after. A transport without it refuses deferred messages with
// [ErrNotSupported].
type Delayer interface {
	// MaxDelay is the longest delay the transport can schedule (for
	// RabbitMQ's delay levels 2^28-1 seconds). Dispatch refuses a longer one
	// with [ErrNotSupported]; callers that need more re-defer on arrival.
	MaxDelay() time.Duration
}

// AsyncDispatcher is implemented by transports that can publish a message
// without making the caller wait for the broker's verdict: publisher
// confirms in flight overlap, so that one caller gets the throughput many
// concurrent Dispatch calls would. Package bus uses it for SendAsync and
// PublishAsync, and falls back to Dispatch on a goroutine of its own over a
// transport without it.
type AsyncDispatcher interface {
	// DispatchAsync validates msg and hands it to the broker's connection,
	// and returns once it has: ctx bounds only that (during a connection
	// outage, the wait for the connection). It returns an error, and never
	// calls done, when msg is invalid, the transport is closed or ctx ends
	// first; then nothing was sent.
	//
	// Otherwise it calls done exactly once with the outcome Dispatch would
	// have returned for msg alone: nil once the broker confirmed it (and, if
	// mandatory, routed it), an error wrapping [ErrUnroutable] if it was
	// returned, [ErrClosed] if the transport closed first, another error
	// for a nack or a lost connection the transport could not publish
	// through again. A transport retries as Dispatch does, for as long as it
	// is open. done may be called on any goroutine, before DispatchAsync
	// returns included; it must not block.
	//
	// The transport may read msg (its headers and body) until it calls
	// done: the caller must not modify them before then.
	DispatchAsync(ctx context.Context, msg Outgoing, done func(error)) error
}

// ExchangeBinder is implemented by transports that bind queues on topic
// exchanges other than their own, such as RabbitMQ's predeclared amq.topic,
// where tomodachi services publish and subscribe: a queue bound there
// receives what those services publish, with [Delivery.ExchangeName] set,
// and [Outgoing.ExchangeName] publishes there. A transport without it
// refuses both with [ErrNotSupported].
type ExchangeBinder interface {
	// BindExchange binds queue on the topic exchange named exchange under
	// pattern (see [ValidateExchangeName] and [ValidateTopicPattern]).
	// The exchange is declared durable if it does not exist, as tomodachi
	// declares it; names starting with "amq." are the broker's own and are
	// used as found. An existing exchange of another kind fails with
	// [ErrTopologyConflict], a missing queue with [ErrNotFound]. Binding
	// twice is harmless. The binding is kept as the transport keeps
	// Bind's: redone after a reconnection, and, for a temporary queue,
	// when the queue is declared again.
	BindExchange(ctx context.Context, exchange, queue, pattern string) error

	// UnbindExchange removes the binding BindExchange made. Removing one
	// that does not exist, or from an exchange or queue that does not
	// exist, is harmless.
	UnbindExchange(ctx context.Context, exchange, queue, pattern string) error
}

// Recycler is implemented by transports that can reuse the memory of the
// messages they deliver (header maps, for one). A consumer that is done with
// a delivery may give it back with Recycle: it promises that the delivery
// is settled and that neither it nor anything reachable from its Message
// (headers, nested tables, body) will be read or written again, by the
// handler or by anything the handler started. Giving deliveries back is
// optional; a delivery not given back is left to the garbage collector.
type Recycler interface {
	// Recycle takes d back. It must not block, and it ignores a delivery
	// the transport did not make.
	Recycle(d *Delivery)
}

// DelayedQueueLimiter is implemented by a [Delayer] whose deferred delivery
// reaches only queues whose names are short enough: RabbitMQ's delay levels
// route a deferred message under a key that holds two bytes per level
// before the destination's name, within AMQP's 255 bytes. Package bus
// refuses, at New, an endpoint queue whose delayed retries and deferred
// messages could not reach it.
type DelayedQueueLimiter interface {
	// MaxDelayedQueueName is the longest queue name, in bytes, that a
	// deferred message can be delivered to.
	MaxDelayedQueueName() int
}

// QueueInfo describes a queue's state at one moment.
type QueueInfo struct {
	// Name is the queue's name.
	Name string
	// Messages is the number of messages ready for delivery (not counting
	// deliveries not yet settled).
	Messages int
	// Consumers is the number of consumers attached.
	Consumers int
}

// Inspector is implemented by transports that can report a queue's state.
type Inspector interface {
	// Inspect returns the state of queue, or an error wrapping
	// [ErrNotFound] if it does not exist.
	Inspect(ctx context.Context, queue string) (QueueInfo, error)
}

// Getter is implemented by transports that can pull a single message from a
// queue without a consumer (AMQP basic.get).
type Getter interface {
	// Get returns the next ready message of queue, or ok false if it has
	// none. The delivery must be settled like any other.
	Get(ctx context.Context, queue string) (d *Delivery, ok bool, err error)
}

// QueueDeleter is implemented by transports that can delete queues, which
// tests use to clean up after themselves.
type QueueDeleter interface {
	// DeleteQueue deletes queue with its messages and bindings. Deleting a
	// queue that does not exist is harmless. Its consumers stop with an
	// error.
	DeleteQueue(ctx context.Context, queue string) error
}

// EventKind classifies an [Event].
type EventKind uint8

// The kinds of [Event].
const (
	// Connected: a connection to the broker is up (for the first time or
	// again, Event.Err is nil).
	Connected EventKind = iota + 1
	// Disconnected: the connection was lost; the transport is recovering.
	Disconnected
	// Blocked: the broker stopped accepting publishes (resource alarm).
	Blocked
	// Unblocked: the broker accepts publishes again.
	Unblocked
	// ConsumerStarted: a consumer of Event.Queue started or resumed.
	ConsumerStarted
	// ConsumerStopped: a consumer of Event.Queue stopped, for the reason
	// in Event.Err (nil when asked to).
	ConsumerStopped
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Blocked:
		return "blocked"
	case Unblocked:
		return "unblocked"
	case ConsumerStarted:
		return "consumer started"
	case ConsumerStopped:
		return "consumer stopped"
	}
	return "unknown event"
}

// Event is a change of a transport's connection or consumers.
type Event struct {
	Kind EventKind
	// Time is when the transport noticed the change.
	Time time.Time
	// Queue is the consumer's queue, for consumer events.
	Queue string
	// Err is the cause, for Disconnected, Blocked and ConsumerStopped.
	Err error
}

// Watcher is implemented by transports that report connection and consumer
// events.
type Watcher interface {
	// Watch calls f for each event from now on, in order, on a goroutine of
	// the transport, until stop is called or the transport is closed. f must
	// not block for long.
	Watch(f func(Event)) (stop func())
}

// HealthChecker is implemented by transports that can tell whether they are
// able to do their work now.
type HealthChecker interface {
	// Health returns nil when the transport is connected and its consumers
	// are running, or an error saying what is wrong.
	Health(ctx context.Context) error
}
