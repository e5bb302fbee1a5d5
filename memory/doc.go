// Package memory is an in-process message broker that behaves like
// RabbitMQ, and a [transport.Transport] over it, for tests and for programs
// that need a bus without a broker.
//
// [New] returns a [Transport] with a broker of its own; several transports
// given the same [Broker] in their [Options] model several services, each
// with its own connection, on one RabbitMQ. Brokers share no state, so any
// number of them live in one process (one per test, say).
//
//	b := memory.NewBroker()
//	defer b.Close()
//	orders := memory.New(memory.Options{Broker: b, Name: "orders"})
//	billing := memory.New(memory.Options{Broker: b, Name: "billing"})
//
// # The broker
//
// A [Broker] has RabbitMQ's model: exchanges of kind direct, topic or
// fanout, queues, and bindings between them. The default exchange "" always
// exists, routes a message to the queue named by its routing key, and can be
// neither declared, bound nor deleted. Topic routing follows RabbitMQ's
// rules to the letter (see [transport.ValidateTopicPattern]), delivers one
// copy to a queue however many of its bindings match, and costs the same
// with ten bindings as with ten thousand. The broker's methods can be used
// directly, to seed queues, inspect them or build a topology a
// [Transport] does not declare.
//
// # Delivery semantics
//
// Everything the [transport] package documentation promises holds: a queue
// is FIFO; consumers of one queue compete, served round robin among those
// with room in their prefetch window; a message left unsettled when its
// consumer stops or its connection is lost goes back to its original
// position and is delivered again with Redelivered set; mandatory messages
// that reach no queue fail with [transport.ErrUnroutable]; publishing to an
// exchange that does not exist fails with [transport.ErrNotFound].
//
// A message nacked with requeue goes back where RabbitMQ 3.10 puts it: to
// its original position in a classic queue, but to the back of a quorum
// queue (the default type), behind the messages that arrived meanwhile.
// Both were checked against RabbitMQ 3.10.8, as was every topic matching
// rule.
//
// Each message goes through [transport.Message.Normalized] when it is
// dispatched, so a handler sees what it would see after a trip through
// RabbitMQ (canonical header types, a timestamp to the second), and every
// queue, every delivery and the sender have copies of their own.
//
// Queue arguments are stored and compared on a redeclare the way RabbitMQ
// compares them (only the arguments RabbitMQ checks, integers of any width
// by value), and those of [transport.QueueOptions] are enforced as
// RabbitMQ 3.10.8 enforces them, whether given by name or as raw x-
// arguments: priority queues (x-max-priority, classic), the delivery limit
// (x-delivery-limit, quorum), length limits (x-max-length,
// x-max-length-bytes) with drop-head, reject-publish and
// reject-publish-dlx, message TTL (x-message-ttl, expired at the head of
// the queue, on a timer) and dead-lettering (x-dead-letter-exchange and
// -routing-key, with x-death headers). docs/architecture.md lists the
// facts measured; arguments a queue type does not take are refused as
// RabbitMQ refuses them. A message a full queue refuses fails Dispatch
// with [transport.ErrRejected], naming the queue, once the context ends:
// like the RabbitMQ transport with a nack, Dispatch publishes it again
// until the queue has room. Like RabbitMQ 3.10, the broker adds the header
// x-delivery-count (an int64) to the deliveries of a quorum queue: the
// number of times the message went back to the queue (nacked with
// requeue, or unsettled when its consumer stopped or its connection was
// lost), from the first redelivery to a consumer on, and on every Get (0
// on the first). Classic queues add no such header.
//
// # Connections
//
// Each [Transport] is one connection to its broker. The temporary queues
// ([transport.Queue.Temporary]) it declares belong to it: closing the
// transport deletes them, as it closes its consumers (requeueing what they
// had not settled). Other transports may bind, publish to and consume them,
// as on RabbitMQ, where the RabbitMQ transport's temporary queues are not
// exclusive (a PikaBus 2 service binds the queue it replies to). As on
// RabbitMQ (x-expires), a temporary queue outlives an outage of its
// connection of up to [TemporaryExpiry], with its messages; after that it
// is deleted, and declared again, empty, when the connection returns.
//
// [Broker.Disconnect], [Broker.Reconnect], [Broker.DropConnections] and
// their per-transport versions [Transport.Disconnect] and
// [Transport.Reconnect] simulate the loss of connections, so that recovery
// logic can be tested without RabbitMQ. While a transport's connection is
// down, its consumers receive nothing and their unsettled deliveries are
// back in their queues (Ack and Nack on them fail with
// [transport.ErrConnectionLost]); its temporary queues expire after
// [TemporaryExpiry]; Dispatch and every other call that needs the broker
// wait for the connection to return, bounded by their context;
// [Transport.Health] fails;
// watchers see [transport.Disconnected] and a [transport.ConsumerStopped]
// for each consumer. When the connection returns the transport recovers as
// amqp091-go's recovery does: temporary queues are declared again with
// their bindings, consumers resume by themselves, and watchers see
// [transport.Connected] and a [transport.ConsumerStarted] for each consumer.
//
// [Broker.Block] and [Broker.Unblock] simulate a resource alarm: Dispatch
// waits (bounded by its context) and watchers see [transport.Blocked] and
// [transport.Unblocked].
//
// # Deferred delivery and testing/synctest
//
// [Transport] implements [transport.Delayer]: a message whose NotBefore is
// in the future waits in the broker on a timer and is routed when it is due.
// A mandatory deferred message must be routable when it is dispatched; one
// that is no longer routable when it falls due is dropped, as RabbitMQ drops
// an unroutable dead-lettered message.
//
// The broker blocks only on channels, wait groups and timers, so it works
// inside a [testing/synctest] bubble: a broker created inside a bubble runs
// on the bubble's fake clock, and synctest.Wait returns once every consumer
// is idle. Create the broker (and its transports) inside the bubble that
// uses them. The race detector does not count the firing of a timer as
// synchronization with the goroutine that slept until then, so a test should
// guard what its handlers share with it (a mutex or a channel) rather than
// rely on time.Sleep and synctest.Wait alone.
//
// # Test affordances
//
// Beyond RabbitMQ's model a broker offers what tests of code built on it
// need: [Broker.Depth], [Broker.Messages] and [Broker.Stats] show a queue's
// contents, [Broker.WaitIdle] waits until every message that can be consumed
// has been handled, [Broker.Journal] records every message dispatched,
// delivered, acked, nacked and requeued (the newest [DefaultJournalLimit]
// records unless [Broker.SetJournalLimit] says otherwise),
// [Broker.Deferred] lists the messages waiting for their time, and
// [Broker.FailDispatches] makes the next dispatches fail. To reproduce the
// faults of a production broker: [Broker.Inject] puts a message into a queue
// as RabbitMQ delivers what a foreign client published, header keys that
// are not valid UTF-8 included (Publish refuses them, as every busline
// transport does); [Broker.DeleteQueue] deletes a queue, the error queue
// say, while endpoints run; [Broker.FailDispatches] and [Broker.Block]
// make the broker refuse or hold publishes.
//
// # Errors
//
// Errors wrap the sentinels of package transport, so errors.Is(err,
// transport.ErrNotFound) and the like work as with any transport, and name
// the operation and the queue, exchange or routing key concerned. After
// [Broker.Close] every method of the broker and of its transports fails with
// [transport.ErrClosed].
//
// # Concurrency
//
// Every method of [Broker] and [Transport] is safe for concurrent use. Each
// goroutine the package starts (a consumer's handler goroutines, a
// watcher's goroutine) belongs to a transport, which waits for it in Close,
// including those of a consumer still stopping (package bus
// gives up waiting for handlers that ignore their context);
// timers belong to the broker, which stops them in Close.
package memory
