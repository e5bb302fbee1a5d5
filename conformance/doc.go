// Package conformance checks that a transport honours the contract of
// package transport. A transport, ours or a third party's, gets the whole
// suite with one call:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunTransport(t, conformance.Harness{
//			New: func(ctx context.Context, t testing.TB) (transport.Transport, error) {
//				return mytransport.Dial(ctx, url)
//			},
//		})
//	}
//
// [RunBus] runs package bus's scenarios (send, publish, defer, reply,
// request, transactions, retries and the error queue, the wire format) over
// the same transports, end to end through real endpoints; a transport should
// pass both. Its subtests are listed on RunBus.
//
// The suites use only package testing and this module's own packages, so
// importing them pulls in no other module.
//
// # The harness
//
// [Harness] is a struct, not an interface, so that adding a field never
// breaks a caller: only New is required, and every other field's zero value
// is a documented default. Optional capabilities ([transport.Delayer],
// [transport.Inspector], [transport.Getter], [transport.QueueDeleter],
// [transport.Watcher], [transport.HealthChecker],
// [transport.AsyncDispatcher], [transport.ExchangeBinder]) are found by type
// assertion on a transport New returns; a subtest that needs a missing one
// skips and names the interface. The harness carries only what cannot be
// discovered: how long to wait, how late a deferred message may be, how
// queues are named and typed, the random seed, how to run a subtest's
// body (for example in a testing/synctest bubble), and what the transport
// declares it cannot do (Harness.Unsupported: those subtests skip, giving
// the reason, and every other one must pass).
//
// # Running against a real broker
//
// Every subtest opens a transport of its own, names its queues with
// Harness.QueuePrefix plus a random part, deletes them at the end when the
// transport is a [transport.QueueDeleter], and bounds every wait by
// Harness.Timeout. Nothing depends on exact timing: a deferred message
// must not arrive before its NotBefore time and must arrive within
// Harness.DelayTolerance after it; the absence of a message is shown by a
// marker message sent after it (queues are FIFO) wherever possible, and
// otherwise watched for during Harness.QuietPeriod. Transports of different
// subtests must not share a topic exchange (see Harness.New). The first
// group (Close, or Lifecycle for RunBus) runs alone; then every other group
// runs at once, their subtests in parallel within go test's -parallel
// limit, so that a run against a broker takes about as long as its slowest
// subtest.
//
// # Goroutines
//
// Close/Goroutines lists the goroutines before it calls Harness.New and
// again after Close, leaving out package testing's own, and fails for any
// started in between that is still running when Harness.Timeout has passed.
// It runs before every other subtest of the suite, alone; a test calling
// RunTransport must not run in parallel with tests that start goroutines of
// their own, or their goroutines count against the transport.
//
// # Subtests
//
// The names are stable; select them with go test -run.
//
//	Close/Goroutines          no goroutine a transport started is left after Close
//	Close/ErrClosed           every method, capabilities included, fails with ErrClosed after Close
//	Close/Twice               a second Close, and concurrent ones, return nil without blocking
//	Close/Consumers           Close cancels handlers, waits for them, stops consumers; Ack then fails with ErrClosed
//	Declare/Idempotent        declaring twice keeps messages and binds once
//	Declare/KeepsBindings     declaring again adds topic bindings, keeps the old ones
//	Declare/Conflict          other arguments or another queue type: ErrTopologyConflict
//	Declare/Shared            a Shared queue is used as found, or created
//	Declare/Temporary         a Temporary queue works, another transport may bind it and publish to it, and it ends with its transport
//	Declare/Canceled          a canceled context gives a context error
//	Bind/MissingQueue         ErrNotFound
//	Bind/Twice                binding twice delivers one copy
//	Bind/Unbind               Unbind removes routing, is harmless when repeated, leaves the direct binding
//	Routing/Direct            the direct exchange routes by queue name only; unroutable mandatory messages fail
//	Routing/Topic/<case>      one subtest per topic-matching edge case of docs/architecture.md
//	Routing/OneCopyPerQueue   several matching bindings, one copy per queue
//	Routing/Random            random patterns and keys against a reference matcher (seed logged)
//	Dispatch/UnboundQueue     a queue not bound on the direct exchange (PikaBus 1.x's) is reached, deferred too; a missing one is ErrUnroutable
//	Dispatch/Empty            no messages, no error
//	Dispatch/Order            a batch arrives in order in each queue
//	Dispatch/Mandatory        one DispatchError per unroutable mandatory message; the rest delivered
//	Dispatch/InvalidMessage   ErrInvalidMessage, and nothing of the batch is sent
//	Dispatch/Ownership        the caller may reuse its message; deliveries do not share memory
//	Dispatch/Canceled         a canceled context gives a context error
//	Messages/Properties       every AMQP property round-trips; unset ones stay unset
//	Messages/Headers          a header of every canonical type round-trips exactly
//	Messages/InputHeaders     accepted input types arrive in canonical form
//	Messages/Bodies           nil, empty, binary and 1 MiB bodies round-trip
//	Names/AtLimit             255-byte queue names, routing keys and patterns work
//	Names/OverLimit           256 bytes: ErrInvalidName from every method, and nothing sent
//	Names/Invalid             empty, "amq." and non-UTF-8 names: ErrInvalidName
//	Consume/MissingQueue      ErrNotFound
//	Consume/HandlerContext    handler context has Consume's values, not its cancellation
//	Consume/HandlerMayDispatch a handler may dispatch
//	Consume/Competing         two consumers of a queue both receive, each message once
//	Consume/Priority          consumer priority: the highest with room in its prefetch gets a message; lower ones only while higher ones are full
//	Consume/Prefetch          prefetch P: exactly P unsettled deliveries, one more per settlement
//	Consume/Concurrency       exactly Concurrency handler calls at once
//	Consume/Drain             Drain waits for handlers and requeues what they were not given
//	Consume/DrainTimeout      Drain's context ending cancels handlers and requeues
//	Consume/Close             Consumer.Close cancels and waits for handlers and requeues
//	Settle/Ack                acked messages are gone for good
//	Settle/Twice              settling twice gives ErrSettled
//	Settle/NackDrop           Nack without requeue drops
//	Settle/NackRequeue        Nack with requeue redelivers, Redelivered set, message intact
//	Settle/DeliveryCount      quorum queues add x-delivery-count (int64) to redeliveries and to every Get, as RabbitMQ; classic queues do not
//	Settle/ConsumerCloseRequeues unsettled deliveries of a closed consumer go to another, redelivered
//	Deferral/NotBefore        deferred messages arrive after NotBefore, within the tolerance, intact
//	Deferral/Past             a NotBefore in the past delivers at once
//	Deferral/Topic            deferral on the topic exchange: ErrNotSupported, nothing sent
//	Deferral/MaxDelay         within MaxDelay accepted, beyond it ErrNotSupported
//	Deferral/Mandatory        a deferred mandatory message to a missing queue: ErrUnroutable
//	Deferral/Unsupported      a transport that is not a Delayer refuses deferral with ErrNotSupported
//	QueueArguments/Refused    options and arguments a queue type refuses: ErrNotSupported; bad values: ErrInvalidMessage
//	QueueArguments/Conflict   QueueOptions compared on a redeclare, equal to the same x- arguments
//	QueueArguments/Priority   a classic priority queue delivers by priority, requeues to a message's place among its priority
//	QueueArguments/DeliveryLimit a quorum queue dead-letters (reason delivery_limit) or drops a message returned more than the limit, nacked or by a closed consumer
//	QueueArguments/NackDeadLetter a nack without requeue dead-letters, reason rejected
//	QueueArguments/DropHead   the oldest messages go (reason maxlen); bytes count bodies only
//	QueueArguments/RejectPublish a full queue refuses with ErrRejected: classic at the limit, quorum past it until 80%; reject-publish-dlx dead-letters
//	QueueArguments/MessageTTL expired messages are dead-lettered without a consumer (reason expired); a requeued message keeps its expiry
//	Capabilities/Inspector    queue depth and consumer count; ErrNotFound
//	Capabilities/Getter       Get, Nack requeue, Redelivered, empty queue
//	Capabilities/QueueDeleter deletion stops consumers with an error and removes bindings
//	Capabilities/Watcher      ConsumerStarted and ConsumerStopped events
//	Capabilities/HealthChecker healthy when open, an error when closed
//	Capabilities/AsyncDispatcher DispatchAsync: a window of messages confirmed, in order; unroutable; invalid refused, done not called; ErrClosed after Close
//	Capabilities/ExchangeBinder bindings on amq.topic: routed there only, ExchangeName set, unbind, ErrNotFound
//
// # Adding suites
//
// Each Run… function takes the same [Harness] and shares its helpers:
// per-subtest transports, unique queue names, bounded waits, cleanup.
package conformance
