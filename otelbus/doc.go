// Package otelbus instruments busline endpoints with OpenTelemetry: traces
// and metrics that follow OpenTelemetry's semantic conventions for messaging
// (and RabbitMQ's), and log records that carry the trace. It is installed
// with one option on an endpoint, as otelhttp and otelgrpc are on theirs:
//
//	b, err := bus.New(t, "orders", bus.Options{
//		Instrument: otelbus.Instrument(), // the global providers and propagator
//	})
//
// [WithTracerProvider], [WithMeterProvider] and [WithPropagator] choose
// others. Package bus knows nothing of OpenTelemetry: it offers hooks
// (bus.Hooks), which [Instrument] fills; this package is a module of its
// own, so that programs that use only bus and amqp build without any
// OpenTelemetry module.
//
// # Context propagation
//
// Each message carries the context of the span that created it in
// unprefixed W3C headers, traceparent and tracestate, and the baggage in
// baggage (with the default propagator): PikaBus services pass them through
// untouched. The handling of a message continues the sender's trace: its
// process span is a child of the message's creation context (and links to
// it, and to the span of the context the endpoint consumes under, if any).
// So a request and its reply, the messages a handler sends, a deferred
// message and every retry of a message are in the trace of the call that
// began it. Handlers see the baggage in their context.
//
// # Spans
//
// Span names are "{messaging.operation.name} {destination}"; attributes are
// set at span creation, where samplers see them. messaging.system is
// "rabbitmq" on every transport (the memory broker is RabbitMQ's model).
//
//   - Send, Publish, Defer, Reply and Request outside a handler: a PRODUCER
//     span "send {destination}" ("publish ..." for Publish), operation type
//     send, from the call to the broker's confirmation. Its context is the
//     message's creation context.
//   - The same calls inside a handler or a transaction, whose messages are
//     held and dispatched as a batch when the handler succeeds: a PRODUCER
//     span per message, operation type create (its context is the
//     message's creation context), and a CLIENT span "send ..." for the
//     batch's dispatch, operation type send, with
//     messaging.batch.message_count and a link to each message's creation
//     context; its destination is left out when the batch goes to several.
//     Under a bus.UnitOfWork (a transactional outbox), which dispatches the
//     batch itself, the messages' create spans and the context they carry
//     are there, but not the batch's send span, nor its
//     messaging.client.sent.messages.
//   - Each handling of a received message: a CONSUMER span
//     "process {destination}", operation type process, from the delivery to
//     the end of the pipeline (handlers and the dispatch of their batch
//     included, the ack excluded). A retry scheduled adds the event
//     [EventRetryScheduled], a forward to the error queue the event
//     [EventSentToErrorQueue]; either marks the span failed (status Error,
//     error.type), as does a pipeline error that sends the message back to
//     its queue.
//   - The arrival of a reply on a Request's reply queue: a CONSUMER span
//     "process ..." too, a child of the reply's creation, which ends when
//     the reply is handed to the waiting Request.
//
// Destinations are RabbitMQ's: "{exchange}:{routing key}" for a producer
// (PikaBusDirect:orders, PikaBusTopic:orders.placed) and
// "{exchange}:{routing key}:{queue}" for a consumer, the routing key left
// out when it is the queue's name (PikaBusDirect:orders,
// PikaBusTopic:orders.placed:billing). A Request's reply queue, temporary
// and named at random, is given as a template (messaging.destination.template
// PikaBusDirect:orders.reply-{id}, messaging.destination.temporary true).
// [WithExchanges] names exchanges other than PikaBus's.
//
// Producer spans carry messaging.system, messaging.operation.name (send or
// publish), messaging.operation.type, messaging.destination.name (or
// template and temporary), messaging.rabbitmq.destination.routing_key,
// messaging.message.id, messaging.message.conversation_id,
// busline.message.type and busline.operation (send, publish, defer, reply
// or request). Process spans carry messaging.system,
// messaging.operation.name and type (process), messaging.destination.name,
// messaging.rabbitmq.destination.routing_key,
// messaging.rabbitmq.message.delivery_tag, messaging.message.id,
// messaging.message.conversation_id, busline.message.type, and
// busline.message.retries and busline.message.redelivered when they apply.
// server.address and server.port are not set: the transport interface does
// not tell them.
//
// # Metrics
//
// Every instrument carries messaging.system ("rabbitmq"). No message id
// is ever a metric attribute; destinations are queue names, topics and
// reply-queue templates, error types come from the short list below.
//
//	messaging.client.sent.messages      Counter {message}
//	    messages sent, once the broker answered: messaging.operation.name
//	    (send, publish), messaging.operation.type (send),
//	    messaging.destination.name (or .template and .temporary),
//	    error.type on failure. Retry and error-queue copies are not
//	    counted here (see busline.retries, busline.error_queue.forwarded).
//	messaging.client.operation.duration Histogram s
//	    the duration of each send outside handlers and of each batch
//	    dispatch: the same attributes (a batch's destination only when all
//	    its messages share it).
//	messaging.client.consumed.messages  Counter {message}
//	    messages handed to the handlers: messaging.operation.name and type
//	    (process), messaging.destination.name, error.type when the handling
//	    failed (retried, forwarded or sent back to the queue).
//	messaging.process.duration          Histogram s
//	    the duration of each handling: the same attributes.
//	busline.retries                     Counter {retry}
//	    delayed retries scheduled: messaging.destination.name (the queue),
//	    busline.message.type, error.type.
//	busline.error_queue.forwarded       Counter {message}
//	    messages sent to the error queue: the same attributes.
//	busline.handlings.active            UpDownCounter {handling}
//	    messages being handled: messaging.destination.name (the queue).
//	busline.queue.messages              Gauge {message}
//	    messages ready in the endpoint's queue and in the error queue, read
//	    from the broker at each collection, when the transport is a
//	    transport.Inspector: messaging.destination.name (the queue).
//	busline.connection.up               Gauge {connection}
//	    1 while the endpoint runs and its transport is connected (as its
//	    Connected and Disconnected events tell), else 0: busline.endpoint.
//	busline.connection.blocked          Gauge {connection}
//	    1 while the broker blocks publishing (a resource alarm):
//	    busline.endpoint.
//
// The histograms use the bucket boundaries the conventions advise, 5 ms to
// 10 s.
//
// # Errors
//
// error.type is one of: undecodable, unhandled, panic, permanent (a
// middleware.Permanent error), forward_failed (a retry or error-queue copy
// that could not be dispatched), timeout (context.DeadlineExceeded),
// canceled, unroutable, rejected, connection_lost, closed, scope_ended, and
// _OTHER for any other error, such as a handler's own.
//
// # Logs
//
// [Instrument] wraps the endpoint's logger (bus.Options.Logger) with
// [LogHandler]: the records the bus and its pipeline log while handling a
// message (a retry scheduled, a forward to the error queue) carry the
// trace_id and span_id of the handling's span. Wrap the application's own
// logger with LogHandler to correlate its records too.
//
// # Cost
//
// With no-op providers (go.opentelemetry.io/otel/trace/noop and
// metric/noop), which Instrument recognizes, it records nothing and only
// carries the context from the messages handled to the messages sent: no
// allocation, and a cost lost in the noise of BenchmarkBus. The global
// providers of a program that installed no SDK forward to no-ops that
// cannot be recognized, and cost the spans' and measurements' calls; a
// recording SDK costs what its spans, metrics and exporter cost. See
// BenchmarkBus in this package, which compares them with an endpoint
// without instrumentation.
package otelbus
