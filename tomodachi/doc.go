// Package tomodachi lets busline endpoints talk with tomodachi services
// (github.com/kalaspuff/tomodachi, its AMQP transport) on the same RabbitMQ
// broker: codecs for tomodachi's two message envelopes and its naming rules,
// read from tomodachi's source (tomodachi/transport/amqp.py,
// tomodachi/envelope/json_base.py and protobuf_base.py).
//
// # The wire form
//
// A tomodachi service publishes on the topic exchange "amq.topic" (its
// options.amqp.exchange_name) under its routing key, prefixed with
// options.amqp.routing_key_prefix, with characters outside a safe set
// written as ___hex_ ([EncodeRoutingKey]). The message has no headers and
// no properties: the body is the whole message, in the service's envelope:
//
//   - JsonBase ([JSONEnvelope]): a JSON object {"service": {"name", "uuid"},
//     "metadata": {"message_uuid", "protocol_version":
//     "tomodachi-json-base--1.0.0", "compatible_protocol_versions",
//     "timestamp" (seconds since the epoch), "topic", "data_encoding"},
//     "data"}; data is the message itself ("raw"), or, when its JSON is
//     60,000 characters or more, a base64 string of its zlib-compressed
//     JSON ("base64_gzip_json").
//   - ProtobufBase ([ProtobufEnvelope]): the base64 text of an
//     SNSSQSMessage (proto/sns_sqs_message.proto: service, metadata with
//     protocol_version "tomodachi-protobuf-base--1.0.0", data bytes);
//     data is the message's protobuf encoding ("proto"), zlib-compressed
//     beyond 60,000 bytes ("gzip_proto").
//
// Each subscribing handler of a tomodachi service has a queue of its own,
// bound on amq.topic: durable, classic, with x-expires of
// options.amqp.queue_ttl (a day). A competing handler's queue is named by
// the SHA-256 of its encoded routing key; a non-competing one's by that of
// the routing key, the handler's function name and the service instance's
// uuid, so that each instance has its own ([QueueName]); both after
// options.amqp.queue_name_prefix. Note: tomodachi's README says competing
// defaults to True, but its AMQP transport treats the default (None)
// without a queue_name as non-competing.
//
// # Using it with busline
//
// Give the endpoint amq.topic as one of its [bus.Options.Exchanges], with
// an envelope codec: what a tomodachi service publishes there arrives
// without a content type or a message type, so the Bus decodes it with the
// exchange's codec and types it by its routing key, and Publish
// [bus.WithExchange] wraps what a busline service publishes in the
// envelope. A handler receives the envelope's data decoded into its
// parameter's type, or the whole envelope as an [Envelope]. busline's own
// headers travel beside the body; tomodachi ignores them.
//
// For tomodachi's competing=False, a busline endpoint uses
// [bus.Options.PerInstance]: a queue per instance, removed when it goes
// away.
//
// # Checked against tomodachi
//
// The tests check the wire form on the memory broker and on RabbitMQ, the
// protobuf envelope against tomodachi's own SNSSQSMessage descriptor.
// scripts/tomodachi-interop.sh runs a live tomodachi service (from a
// checkout, with Debian's Python packages) against busline endpoints; it is
// manual, since CI cannot install tomodachi.
//
// # Module
//
// The package is a module of its own (github.com/busline/busline/tomodachi),
// since the protobuf envelope needs google.golang.org/protobuf.
package tomodachi
