// Package amqp is busline's RabbitMQ transport, built on
// github.com/rabbitmq/amqp091-go. [Dial] returns a [Transport] that
// implements [transport.Transport] and the optional capabilities
// [transport.Delayer], [transport.Inspector], [transport.Getter],
// [transport.QueueDeleter], [transport.Watcher] and
// [transport.HealthChecker].
//
//	tr, err := amqp.Dial(ctx, "amqp://user:pass@rabbit/", amqp.Options{})
//
// # Topology
//
// The transport declares two durable exchanges, PikaBus's PikaBusDirect
// (direct) and PikaBusTopic (topic) by default, so that Go and Python
// services share a broker. [Transport.Declare] creates an endpoint queue
// (quorum by default, classic on request), binds it on the direct exchange
// under its own name and on the topic exchange under its topics. A queue
// marked Shared, such as a PikaBus installation's "error", is used as found
// when it exists. Redeclaring a queue with another type or other arguments
// fails with [transport.ErrTopologyConflict], naming the queue and the
// argument RabbitMQ reported; RabbitMQ compares the arguments it knows
// (x-queue-type, x-message-ttl, x-max-length, dead-lettering and the like)
// and ignores others. [transport.QueueOptions] are declared as those x-
// arguments; an argument the queue type refuses fails Declare with
// [transport.ErrNotSupported], a value RabbitMQ refuses with
// [transport.ErrInvalidMessage]. A temporary queue is a classic, non-durable queue,
// redeclared after a reconnection and deleted on Close (or by RabbitMQ a
// minute after its transport went away without closing, x-expires). It is
// not exclusive: a PikaBus 2 service replying to a Request binds the reply
// queue on the direct exchange, which RabbitMQ refuses on another
// connection's exclusive queue (RESOURCE_LOCKED).
//
// # Delivery semantics
//
// Messages are persistent and published with publisher confirms: Dispatch
// returns nil only when the broker confirmed every message, and a mandatory
// message that reached no queue fails with [transport.ErrUnroutable]. A
// nack is transient (a quorum queue nacks while it elects a leader, a full
// queue with x-overflow=reject-publish until it drains): the message is
// published again after a pause that grows to a second, on a fresh channel
// once its channel nacked twice in a row (after a leader died, RabbitMQ
// nacks every publish on a channel first used while the queue had no
// leader, for a while), until the caller's context ends; then it fails
// with [transport.ErrRejected] and the context's error, saying that it may
// or may not have been delivered. Dispatch keeps nothing of
// the messages it is given once it returns, even when its context ends
// while one of them is being written: it waits for the write, so that the
// caller may reuse bodies and header maps at once.
//
// Publishing uses one channel by default (Options.PublishChannels) shared by
// every caller. Each channel has a writer goroutine that publishes the
// messages callers queue, back to back, and a window of
// Options.ConfirmWindow confirms in flight; no lock is held across a round
// trip, so concurrent Dispatch calls overlap their confirms. The messages of
// one call go out in order on one channel. A listener goroutine per channel
// reads its confirms and its basic.return frames in the order the broker
// sent them (a return always precedes the confirm of its message, and
// amqp091 hands both over from one reader goroutine), and matches a return
// to its publish. The message id alone cannot do that: a retried copy keeps
// it. So among the mandatory messages in flight on a channel with the same
// exchange, routing key and message id, the first goes as it is and the
// others carry their delivery tag in the header "x-busline-publish-seq"
// (consumers strip it); a return with the header names its publish, a
// return without it belongs to the one untagged copy. Most messages need no
// header, which matters: a header table costs RabbitMQ some 10% of its
// confirmed throughput on messages that had none.
//
// Consumers run on a connection of their own (RabbitMQ throttles a
// connection that publishes too fast, which must not hold back acks). Each
// consumer has one channel with basic.qos set to its prefetch and
// Concurrency workers that run the handler and settle on that channel.
//
// Acks are coalesced, so that a consumer does not pay a socket write per
// message: an ack waits at most Options.AckDelay (5ms by default) and goes
// out with the acks before it as one basic.ack with multiple set, or as
// soon as half the prefetch window waits. A multiple ack covers only the
// deliveries below the lowest one a handler still holds (with several
// workers, deliveries are settled out of order); an ack above it that
// comes due is sent alone. Nacks are sent at once and exactly. Drain and
// Close send the acks that wait before closing the channel. An Ack that
// returned nil while its channel was lost before the ack went out is
// delivered again, as when the ack itself is lost in transit: delivery is
// at least once either way.
//
// # Deferred delivery
//
// A message with a NotBefore in the future travels through delay levels
// without a plugin, as NServiceBus does: Options.DelayLevels (28 by
// default) pairs of a topic exchange and a quorum queue named
// "busline-delay-NN". Level L's queue holds a message 2^L seconds
// (x-message-ttl), then dead-letters it, at least once, to level L-1's
// exchange, and level 0's to the exchange "busline-delay-delivery", on
// which every declared queue is bound. A message waits in the level of
// each set bit of its delay in seconds, in ascending order rotated by its
// rank among the transport's deferred messages, and then goes on to its
// destination: messages that fall due together leave their last level
// together and enter it together, its TTL before, and the rotation spreads
// those crowds of dead-letter hops over as many queues and moments as the
// delay has set bits (highest first, as NServiceBus takes them, every
// message's short levels came last and crowded the seconds before the due
// time). Delays are rounded up to whole seconds, odd ones to even ones
// (level 0 can only come last, and would add a hop at the due time), and
// the entry level holds the
// message less the rounding (a per-message TTL), so a message is due to
// the millisecond and never early; one that enters its level just behind a
// message with less or nothing taken back may wait for it, by less than
// its own rounding. The longest delay is 2^DelayLevels-1 seconds.
//
// The way through the levels is spelt in routing keys the broker compares
// word for word, never by a long pattern: the message goes to the default
// exchange with a BCC header (RabbitMQ's sender-selected distribution,
// which the broker removes before anyone sees it) naming its entry level's
// queue and, for each level it waits in but the last, a hop key
// ("busline-delay-03>05": from level 3's queue to level 5's) that the
// exchange the level dead-letters to binds to the next level's queue, or
// to the delivery exchange; its routing key is its destination's delivery
// key ("busline-delay>" and the queue's name with "." and "%" escaped),
// under which the destination is bound on the delivery exchange.
// Dead-lettering routes a message with all the keys it was published with.
// NServiceBus's routing key, the delay as DelayLevels binary digits then
// the destination, with patterns on each level's exchange that pick the
// level's bit, stays bound and is still used for a message with CC or BCC
// headers of its own and for a destination whose delivery key would not
// fit in 255 bytes; it costs the broker a match of a 29-word key at every
// exchange the message passes, which made entering a level three to four
// times as expensive as a Send, and moving messages on five to seven
// times slower (see the README's "Benchmarks").
//
// An account that may not configure the delay levels' exchanges and queues
// uses [DialNoDelay] instead of Dial: its [NoDelayTransport] declares no
// delay levels, refuses a message with a NotBefore in the future with
// [transport.ErrNotSupported], and is not a [transport.Delayer] (it has no
// MaxDelay method), so that whoever discovers capabilities by type
// assertion sees that it cannot defer. Package bus then builds a pipeline
// without deferral, whose retries are immediate (see bus.New). The
// alternatives were worse: a MaxDelay of zero on the one Transport type
// would make the type assertion claim a capability the value lacks.
//
// A message whose destination queue is deleted while it waits would stay in
// the delay queues for ever (at-least-once dead-lettering keeps what it
// cannot route, and retries): the delivery exchange's alternate exchange
// routes it to the quorum queue "busline-delay-undelivered" instead, which
// keeps it seven days for an operator to look at.
//
// A deferred message reaches its destination with the x-death,
// x-first-death-* and x-last-death-* headers that dead-lettering added:
// RabbitMQ cannot be told to leave them out. This transport's consumers
// remove them, and report the message as delivered from the direct
// exchange under its destination's name, so a busline handler sees the
// message as it was sent; a consumer of another library, a PikaBus
// service say, receives them (PikaBus ignores them). Dispatch makes sure
// the destination is bound on the delivery exchange before it publishes
// (see "Destinations"), so a deferred message to a queue that was never
// declared through this transport arrives; if the queue does not exist, a
// mandatory deferred message fails with ErrUnroutable.
//
// # Destinations
//
// A Direct message reaches the queue its routing key names even if that
// queue is not bound on the direct exchange, as PikaBus 1.x leaves its
// listener queue until a sender binds it: Dispatch binds a destination it
// does not know yet, on the direct exchange under its own name and on the
// delay levels' delivery exchange, on a control channel, before the first
// message to it, and remembers it. Later messages to it cost nothing more;
// concurrent callers share one bind. The transport forgets every
// destination when either connection is replaced, a queue when it deletes
// it, and a destination whose message comes back unroutable (the queue was
// deleted and declared again without its binding): that message is
// published once more after a new bind. A queue that does not exist fails
// a mandatory message with [transport.ErrUnroutable]; an account that may
// not bind a queue (ACCESS_REFUSED) publishes to it as it is, and the
// transport logs that once per queue.
//
// # Recovery
//
// Each of the two connections is supervised: when it is lost the
// transport reconnects with exponential backoff (Options.ReconnectDelay up
// to Options.MaxReconnectDelay, with jitter), trying the URLs in turn,
// starting with the one after the URL whose connection was lost, so that a
// dead or hung node is tried last; it redeclares the exchanges, the delay
// levels and every queue and binding declared so far, and resumes the
// consumers. A connection counts as lost when a read or a write on its
// socket fails, when the broker closes it, and when no frame arrived for
// Options.Heartbeat (two heartbeats the broker missed; amqp091 alone would
// wait six). A connection attempt that gets no answer gives up after
// Options.DialTimeout, shorter than the heartbeat, so a hung node costs a
// reconnection that long at most.
//
// Every broker operation of a consuming connection's set-up (the
// redeclarations) and of a consumer's subscription (qos, consume) is
// bounded by twice the heartbeat, at least 5 s: past it the connection is
// dropped and the transport goes on with the next node, as after a dial
// timeout. The bindings are made after the declarations, and on a
// reconnection the consumers do not wait for them more than a second:
// while a cluster node hangs, RabbitMQ makes every queue.bind (even of a
// binding that exists) wait for it, on every node, until the cluster
// declares it down (net_ticktime), whereas the bindings of a queue that
// exists are still there. They are finished in the background. Close
// never waits on a node that does not answer: a connection whose closing
// handshake takes longer than Options.DialTimeout is dropped, which also
// ends every operation still waiting on it.
//
// Options.ClusterURLs names the other nodes of a cluster. Each transport
// tries its URLs in an
// order of its own, chosen at random by Dial (Options.OrderedURLs keeps the
// order given), so that the instances of a service spread over the nodes:
// RabbitMQ places a new quorum queue's leader on the node that declares it.
// Both connections of a transport start with the same node. The transport does not use
// amqp091's own automatic recovery: it retries a bounded number of times and
// one URL only, its pending deferred confirmations end as if nacked, and a
// recovered channel restarts its delivery tags, so that a late ack from a
// handler could settle another message.
//
// A Dispatch call waits for the connection during an outage, bounded by its
// context. A message whose confirm was lost with its channel or connection
// (a reset socket, a write that failed, a heartbeat timeout, a connection
// the broker closed) is published again on the next connection (the broker
// may have enqueued the first copy: delivery is at least once), bounded by
// the context; when the context ends first, the message fails with an
// error wrapping the context's error and, if the connection was down,
// [transport.ErrConnectionLost], saying "not sent" if no copy was ever
// written and "may or may not have been delivered" otherwise. Dispatch
// never reports success without a confirm, and never a failure while its
// context lives unless the broker returned the message, refused it by
// closing the channel three times, or the transport closed. While the broker blocks publishing (a resource alarm),
// Dispatch waits before writing, bounded by its context.
//
// Deliveries received on a channel that is gone can no longer be settled:
// Ack and Nack return [transport.ErrConnectionLost] and the broker delivers
// the message again. A consumer whose queue is deleted stops, and its Err
// wraps [transport.ErrNotFound].
//
// # Headers
//
// Every AMQP field type is accepted in both directions; see the header
// codec in codec.go. Outgoing headers that need a conversion are
// normalized into a copy ([transport.Headers.Normalize]), so a Go int is
// never sent as amqp091's 32-bit field and truncated; headers that need
// none (strings and fixed-size values, such as PikaBus's) are written as
// they are, read only while Dispatch runs. The message properties message_id,
// correlation_id, reply_to, content_type, content_encoding, type and
// timestamp map to the fields of [transport.Message].
//
// # Errors
//
// Errors wrap the sentinels of package transport and keep amqp091's
// *amqp091.Error reachable with errors.As. No error or log line contains
// a password: URLs are shown through [RedactURL], which also masks the
// userinfo of a URL url.Parse rejects (everything between "://" and the
// last '@'); a URL Dial refuses is described without quoting any part of
// it, and every message is scrubbed of the passwords of the configured URLs
// in the forms an error may show them (raw, decoded, escaped, Go-quoted).
// FuzzRedactURL checks it.
//
// # Concurrency
//
// Every method is safe for concurrent use. Every goroutine the transport
// starts ends before Close returns.
package amqp
