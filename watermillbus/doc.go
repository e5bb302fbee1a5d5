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
// # Messages
//
// A Watermill message's UUID is the busline message ID, its payload the
// body and its metadata the string headers. What Watermill's message has
// no field for travels in metadata under the reserved prefix
// [MetadataPrefix]: the AMQP properties (correlation id, reply-to, content
// type and encoding, type, timestamp), and, as typed JSON in
// [MetadataHeaders], every header that is not a string, so that an integer,
// a timestamp or RabbitMQ's x-death table comes back with its exact type.
// Messages published by plain Watermill code have string metadata only and
// arrive in busline with those as headers.
package watermillbus
