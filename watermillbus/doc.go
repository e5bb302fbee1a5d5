// Package watermillbus connects busline and Watermill
// (github.com/ThreeDotsLabs/watermill) both ways.
//
// # busline transports as Watermill pub/subs
//
// [NewPublisher] and [NewSubscriber] make any busline transport (the
// memory broker, RabbitMQ through package amqp) a Watermill
// message.Publisher and message.Subscriber, usable by a Watermill Router
// and its middleware:
//
//   - Publish(topic, msgs...) dispatches the messages as one batch on the
//     transport's topic exchange with the topic as routing key (or, with
//     PublisherOptions.Direct, to the queue named topic), and returns once
//     the broker has confirmed them;
//   - Subscribe(ctx, topic) declares a queue named after the topic (and the
//     consumer group, if any), binds it under the topic, and consumes it.
//     Subscribers of one queue compete; each consumer group has a queue of
//     its own and gets every message. A topic with "*" or "#" words is a
//     pattern, as on RabbitMQ.
//
// Both pass Watermill's universal pub/sub tests (pubsub/tests) against the
// memory transport and RabbitMQ, with these features: consumer groups,
// persistent messages, order guaranteed with a single subscriber (not
// across competing subscribers, nor exactly-once delivery: a message whose
// subscriber stops before acking it is delivered again).
//
// # A busline bus over any Watermill pub/sub
//
// [NewTransport] makes any Watermill Publisher and Subscriber a busline
// transport, so that a bus runs over watermill-sql (on SQLite with package
// wmsqlite, or PostgreSQL and MySQL with watermill-sql's own adapters),
// watermill-amqp, Kafka, NATS or GoChannel. A queue is a Watermill topic.
// Watermill backends have no exchanges, so the topology lives in a
// [Registry] the transports share: Dispatch on the topic exchange matches
// the routing key against the patterns bound there ("*" one word, "#" zero
// or more, RabbitMQ's rules) and publishes a copy to the topic of each
// matching queue; Mandatory is decided against it. [Transport] lists what
// it cannot do (deferral, exact prefetch, x-delivery-count); with no
// Delayer the bus needs [Pipeline] (immediate retries, then the error
// queue).
//
// The conformance suites run against watermill-sql on SQLite and against
// watermill-amqp v3, each declaring what it cannot do
// (conformance.Harness.Unsupported); examples/sqlite runs a bus over
// SQLite. On watermill-amqp the bus gets what watermill-amqp lacks from
// the transport: mandatory is checked against the Registry (watermill-amqp
// sends the flag and never reads the returns), and non-string headers,
// which its marshaler refuses, travel as typed JSON in one string header.
// What remains is RabbitMQ's own non-string headers: a message that comes
// back from a quorum queue with x-delivery-count, or dead-lettered with
// x-death, cannot be read by watermill-amqp's default marshaler, which
// nacks it back into the queue again and again; use classic queues
// (watermill-amqp's queue configurations declare them) and no
// dead-lettering, or a marshaler that stringifies such headers. GoChannel
// is not a queue (it drops a message published while nobody subscribes
// and gives every subscription every message): endpoints must start before
// anything is sent to them.
//
// # Messages
//
// A Watermill message's UUID is the busline message ID, its payload the
// body and its metadata the string headers. What Watermill's message has
// no field for travels in metadata under the reserved prefix
// [MetadataPrefix]: the AMQP properties (correlation id, reply-to, content
// type and encoding, type, timestamp), and, as typed JSON in
// [MetadataHeaders] (the form of transport.MarshalHeaders), every header that is not a string, so that an integer,
// a timestamp or RabbitMQ's x-death table comes back with its exact type.
// Messages published by plain Watermill code have string metadata only and
// arrive in busline with those as headers.
package watermillbus
