// Package bench holds the benchmarks that compare busline with its peers,
// Watermill above all. It is a module of its own, so that the peers'
// modules are in no build list and no go.sum of a program that uses
// busline: `make bench` runs it with the root module's benchmarks.
//
// # RabbitMQ
//
// BenchmarkSendSerial, BenchmarkSend64 and BenchmarkConsume measure
// busline's Bus and watermill-amqp v3 side by side in one binary, against
// the node of `make bench`, on a classic and on a quorum queue: persistent,
// confirmed, mandatory messages with a 256-byte JSON body, msg/s and the
// client's and the RabbitMQ node's CPU time per message. watermill-amqp
// runs in its best durable, confirmed configuration (see
// [watermillConfig]). The root module's benchmarks in package amqp compare
// the bus with amqp091-go used directly.
//
// # Memory
//
// BenchmarkRouter is the trip of the root module's bus BenchmarkBus (Send,
// the standard pipeline, a typed handler, the ack, on the memory broker)
// through Watermill's Router over its GoChannel pub/sub instead.
//
// # JSON codecs
//
// BenchmarkCodec, BenchmarkBusCodec and BenchmarkRouterCodec compare JSON
// libraries as the bus's codec: encoding/json (bus.JSON, and plain
// Marshal/Unmarshal), go-json, segmentio/encoding, json-iterator and sonic,
// each alone on the benchmark's message, as the bus's Options.Codec, and in
// Watermill's router. TestCodecCorpus is the report of their differences
// from encoding/json on a corpus of messages and inputs, run on demand
// (BUSLINE_CODEC_REPORT=1); built with GOEXPERIMENT=jsonv2 it compares
// encoding/json's experimental implementation with a reference file
// written by a build without it (BUSLINE_CODEC_REFERENCE).
package bench
