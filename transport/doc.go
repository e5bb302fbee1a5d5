// Package transport is the contract between busline's portable bus and the
// brokers that carry its messages.
//
// A transport moves a [Message] (bytes plus headers plus a handful of
// AMQP-style properties) between named queues through two exchanges, one
// direct and one topic, exactly as RabbitMQ does. It knows nothing of codecs,
// handlers, retries or message types: those live in packages bus and
// middleware. This package imports the standard library only, so that a
// program built on the in-memory transport pulls in no RabbitMQ client.
//
// This documentation is written for people who implement a transport. People
// who build services use package bus.
//
// # The model
//
// Every transport owns two exchanges, whose names are configured on the
// transport (PikaBus's defaults are [DefaultDirectExchange] and
// [DefaultTopicExchange]):
//
//   - the direct exchange, on which every endpoint queue is bound under its
//     own name, so that a message sent with routing key "orders" reaches the
//     queue "orders";
//   - the topic exchange, on which queues are bound under patterns of
//     dot-separated words where "*" matches exactly one word and "#" matches
//     zero or more (see [ValidateTopicPattern] for the full rules, which are
//     RabbitMQ's).
//
// [Transport.Declare] creates a queue and its bindings, [Transport.Bind] and
// [Transport.Unbind] change topic bindings at run time, [Transport.Dispatch]
// sends a batch of [Outgoing] messages, and [Transport.Consume] delivers a
// queue's messages to a [Handler].
//
// # Delivery semantics
//
// Dispatch returns nil only when the broker has taken responsibility for every
// message of the batch (on RabbitMQ: a publisher confirm) and every message
// marked [Outgoing.Mandatory] reached at least one queue. Messages of one
// Dispatch call that land in the same queue are enqueued in the order of the
// call. A batch is not atomic: when Dispatch fails, some messages may have
// been enqueued; the error says which ones failed. Callers that retry a failed
// Dispatch therefore deliver at least once, never exactly once.
//
// Messages are persistent. A queue delivers its messages in FIFO order to the
// consumers attached to it, round robin when there are several. Each delivery
// must be settled exactly once with [Delivery.Ack] or [Delivery.Nack]. A
// message nacked with requeue, or left unsettled when its consumer stops or
// its connection is lost, goes back to its queue and is delivered again with
// [Delivery.Redelivered] set. Where it goes back depends on the queue type,
// as on RabbitMQ 3.10: a classic queue puts it back at its original position;
// a quorum queue puts a nacked message at the back, and a message whose
// consumer stopped back at its original position. Callers must not rely on
// the order of redeliveries. Settlement need not happen inside the handler
// call, but an unsettled delivery counts against the consumer's prefetch
// until it is settled.
//
// An [Outgoing] message with a NotBefore time in the future is not delivered
// before that time. Deferred delivery is an optional capability, see
// [Delayer].
//
// # Destinations
//
// A Direct message reaches the queue named by its routing key if that queue
// exists, bound on the direct exchange or not: the transport binds it there
// first (see [Transport.Dispatch]). This is what PikaBus 1.x expects of its
// peers: it declares its listener queue without the direct binding and
// binds each destination just before sending to it, so a peer that only
// publishes would find a freshly started 1.x service unroutable. One
// mechanism serves every Direct message, deferred ones included (RabbitMQ's
// delay levels need the destination bound on their delivery exchange too).
// A transport remembers what it has bound and forgets it on the events that
// can undo a binding; a queue that does not exist stays an error,
// [ErrUnroutable] for a mandatory message, as a publish to it would be. The
// conformance suite checks this (its Harness.DeclareUnbound).
//
// # Queue arguments
//
// A [Queue]'s [QueueOptions] are RabbitMQ's queue arguments by name:
// priorities, a delivery limit, length limits and what a full queue does,
// message TTL, a dead-letter queue. A transport declares them as the x-
// arguments [Queue.ArgumentsFor] gives and enforces them as RabbitMQ 3.10
// does (docs/architecture.md has the facts measured): it refuses one the
// queue type lacks with [ErrNotSupported] (RabbitMQ's quorum queues take no
// priorities, its classic queues no delivery limit), and a transport that
// cannot enforce them at all refuses them the same way rather than ignore
// them. A message a full queue refuses is a nack: Dispatch fails with
// [ErrRejected] once its context ends, never reports it sent.
//
// # Headers
//
// Header values may be of any type AMQP 0-9-1 tables carry, not only strings:
// integers of every width, floats, decimals, timestamps, byte strings, nested
// tables and arrays (RabbitMQ itself adds such headers, for example the x-death
// array of tables on dead-lettered messages). A transport must deliver every
// header it received, whatever its type; a header it cannot represent is never
// a reason to make a message unreadable. [Headers.Normalize] gives the
// canonical Go representation that every transport delivers, so that a test
// on one transport sees the values production sees on another.
//
// # Errors
//
// Errors are matched with [errors.Is] against the sentinels of this package:
// [ErrClosed], [ErrUnroutable], [ErrRejected], [ErrNotSupported],
// [ErrInvalidName], [ErrInvalidMessage], [ErrTopologyConflict], [ErrNotFound],
// [ErrSettled] and [ErrConnectionLost]. An error names the operation and the
// queue, exchange or routing key it concerns; an error from the underlying
// client library stays reachable with [errors.As]. An error caused by a
// context stays matchable with errors.Is(err, context.Canceled) or
// context.DeadlineExceeded. Names are validated before anything is sent:
// an invalid queue name, routing key or topic pattern is refused with an
// error wrapping [ErrInvalidName], and nothing reaches the broker.
//
// # Concurrency
//
// Every method of [Transport] and of [Consumer] is safe for concurrent use.
// Methods that take a context block at most until the context is done; when
// they return because of it, the error wraps the context's error. After
// [Transport.Close] every method returns an error wrapping [ErrClosed];
// calling Close again returns nil without blocking.
//
// A [Handler] is called on goroutines owned by the transport, at most
// [ConsumeOptions.Concurrency] at a time for one consumer. A handler may call
// any method of the transport, including Dispatch and Consume, but must not
// wait for its own consumer to stop: [Consumer.Drain] and [Consumer.Close]
// wait for running handlers, so calling them from a handler of the same
// consumer deadlocks.
//
// # Optional capabilities
//
// Some transports can do more than the core contract. Each extra capability
// is a small interface found by type assertion: [Delayer] (deferred
// delivery), [Inspector] (queue depth), [Getter] (pull one message),
// [QueueDeleter], [Watcher] (connection and consumer events),
// [HealthChecker], [Recycler] (reuse of a settled delivery's memory) and
// [AsyncDispatcher] (publishing without waiting for the confirm). A caller that needs a capability a transport lacks must
// fail when it is configured, never silently degrade.
package transport
