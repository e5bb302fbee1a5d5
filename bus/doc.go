// Package bus is what applications use: an endpoint bound to one queue that
// sends commands, publishes events, defers messages, replies and requests,
// and hands the messages it receives to typed handlers, with retries and an
// error queue. It runs over any [transport.Transport]: the in-memory broker
// in tests, RabbitMQ in production.
//
//	b, err := bus.New(t, "orders", bus.Options{Subscriptions: []string{"payments.*"}})
//	bus.Handle(b, func(ctx context.Context, o PlaceOrder) error {
//		// ... then, dispatched only if this handler succeeds:
//		return b.Publish(ctx, "orders.placed", OrderPlaced{ID: o.ID})
//	})
//	err = b.Start(ctx)
//	defer b.Shutdown(context.WithoutCancel(ctx))
//
// # Endpoints
//
// [New] checks its arguments and options and touches no broker. [Bus.Start]
// declares the endpoint's topology (its queue, quorum by default, bound on
// the direct exchange under its own name and on the topic exchange under
// [Options.Subscriptions]; and the error queue as a shared queue) and starts
// consuming. [Bus.Shutdown] stops consuming, lets the handlers under way
// finish and dispatch what they sent, and stops; [Bus.Close] stops at once.
// Neither closes the transport, which belongs to the caller and may be
// shared by several endpoints.
//
// An endpoint made with an empty queue name is a send-only client: it can
// send, publish, defer and request (with or without Start) but has no queue,
// so it takes no handlers and no subscriptions, and its messages carry no
// ReplyToAddress or OriginatingAddress header.
//
// # Messages and handlers
//
// A message is any Go value the endpoint's [Codec] can encode (JSON by
// default). Its message type, the name in the MessageType header that picks
// the handler on the receiving side, is given by a MessageType method (see
// [MessageTyper]) or else derived from the Go type: its name without the
// package, such as "PlaceOrder", which survives moving the type to another
// package; a Bus refuses two Go types of one derived name (see
// [TypeName]). [WithMessageType] overrides it for one call or one handler.
//
// [Handle] registers a typed handler, [Bus.HandleRaw] one that sees the wire
// message. Every handler of a message's type runs, in the order registered,
// and all must succeed; [IncomingFrom] gives a handler the message's
// metadata.
//
// An incoming message's type is its MessageType header, else its AMQP type
// property, else [Options.DefaultMessageType]: Python PikaBus services send
// no type unless told to, so an endpoint that receives one kind of message
// from them names it there. A message goes to the handlers of its type; if
// there are none, to the fallback handlers ([Bus.HandleFallback]), which
// take everything else, as PikaBus's own handlers do; if there are none
// either, it is not acked silently: by default it goes to the error queue
// with the reason ([Options.Unhandled]).
//
// # Outgoing messages and transactions
//
// Inside a handler, whatever [Bus.Send], [Bus.Publish], [Bus.Defer] and
// [Bus.Reply] are given (with the handler's context) is held back and
// dispatched, as one batch, only after every handler of the message
// returned nil, and before the message is acked. A failing handler sends
// nothing: its retry starts again with nothing pending. If the batch cannot
// be dispatched the handling fails and is retried like a handler error.
// Outside handlers the same calls dispatch at once, unless they are made
// within [Bus.Transaction], which batches them the same way: dispatched when
// the function returns nil, dropped when it returns an error or panics.
// Using the context of a handler or transaction after it returned is an
// error ([ErrScopeEnded]); a goroutine that outlives its handler and sends
// needs a context not derived from the handler's (context.WithoutCancel
// keeps the handler's values, and so its scope). [Request] is the
// exception: it always sends at once, since it waits for the reply.
//
// [Options.UnitOfWork] hands each handling, and each Transaction outside
// handlers, to a [UnitOfWork], which runs the work and takes charge of the
// batch instead of the Bus: the transactional outbox of the nested module
// github.com/busline/busline/outbox stores it in the database transaction
// of the handler's own writes, with an inbox record of the message, and
// dispatches it after the commit.
//
// # Wire format
//
// Messages are PikaBus's, so that Go and Python services share a broker:
// every outgoing message carries the headers PikaBus.MessageId,
// CorrelationId (inherited from the message being handled, else the new
// message's id), ConversationId (inherited likewise), TimeSent (RFC 3339,
// UTC, microseconds), ReplyToAddress and OriginatingAddress (this endpoint's
// queue), Intent ("command" for Send, Reply and Defer, "event" for
// Publish), MessageType, ContentType and ContentEncoding, plus DeferredTime
// on deferred messages and the W3C traceparent of the message being handled,
// if it had one. The AMQP properties mirror them: message_id,
// correlation_id, reply_to, content_type, content_encoding, type (the
// message type; PikaBus 1 put the content type there) and timestamp. The
// header prefix is configurable ([Options.HeaderPrefix]). Incoming headers
// are read leniently: foreign value types never make a message unreadable,
// and PikaBus 1.x's times are understood.
//
// # PikaBus 1.x services
//
// PikaBus 1.x reads times only in its own form, "%m/%d/%Y %H:%M:%S", and
// requeues for ever a message whose TimeSent or DeferredTime it cannot
// read; PikaBus 2 reads only ISO 8601. The Bus writes the 2.x form except
// where it knows the receiver: a Reply, and a Send or Defer from a handler
// to the queue the handled message came from, use the handled message's
// form; [Options.TimeFormatByQueue] names the queues of 1.x services;
// [WithTimeFormat] decides for one call; [Options.TimeFormat] for the rest.
// The first message in the 1.x form from a queue not configured so makes
// the Bus log a warning naming it. Send, Defer, Reply and Request reach a
// 1.x service's queue although 1.x declares it without its binding on the
// direct exchange: the transport binds a destination before its first
// message to it (see transport.Transport.Dispatch).
//
// # Delivery semantics
//
// Delivery is at least once. A message is acked only after its handlers
// succeeded and everything they sent was confirmed by the broker; a crash in
// between delivers it again, so handlers must be idempotent. Send, Reply,
// Defer and Request are mandatory: a message that reaches no queue is an
// error wrapping [ErrUnroutable]. Publish is not, by default: an event
// nobody subscribed to is dropped, as in NServiceBus; [WithRequireSubscriber]
// and [Options.RequireSubscriber] make it an error.
//
// A failed handling goes through the pipeline of package middleware:
// delayed retries (five, PikaBus's backoff, by default), then the error
// queue with ErrorDetails, SourceQueue and ErrorRetries. Errors marked
// [Permanent], bodies that cannot be decoded ([ErrUndecodable]) and
// unhandled types ([ErrUnhandled]) skip the retries. A panicking handler
// fails like one that returned an error. [Options.OnNotice] reports each
// delayed retry ([Retried]) and each message sent to the error queue
// ([SentToErrorQueue]), with its id, type, error and retry count;
// [Bus.ReplayErrors] sends messages from the error queue back to the queues
// they failed in, with a fresh set of retries.
//
// # Instrumentation
//
// [Options.Instrument] installs [Hooks]: an instrumentation sees each
// message as it is sent (and may add headers, such as a trace context),
// the dispatch of each handler's batch, each handling of a received
// message, each retry and error-queue forward, and the endpoint's events.
// Package otelbus, a module of its own so that this package and programs
// that do not use it stay free of OpenTelemetry, fills them with traces and
// metrics following OpenTelemetry's messaging conventions.
//
// # When the failure path fails
//
// No input and no broker state makes a message cycle faster than a
// backoff. When the pipeline cannot deal with a failure (a retry copy or an
// error-queue copy cannot be dispatched: the broker refuses publishes, the
// error queue was deleted, the copy is refused; or a pipeline of one's own
// returns an error), the Bus holds the delivery before it nacks it with
// requeue: 1 s the first time, twice as long each time the same message
// (by queue and id) comes back, up to a minute, forgotten two minutes after
// it stops coming back. The delivery keeps its handling slot meanwhile, so
// the consumer slows down. A hold ends early when the Bus pauses or stops.
// For a forward that failed, the Bus raises [ForwardFailed] and logs, at
// Error level, "cannot forward the failed message; holding it, then giving
// it back to its queue" (with the message id, stage, destination, hold and
// error): alert on either, they repeat while the cause lasts. If the error
// queue was missing (unroutable), the Bus declares it again, as Start did,
// so the next delivery reaches it.
//
// A message RabbitMQ delivered can always be forwarded: header keys that
// are not valid UTF-8 (which RabbitMQ accepts and no client of busline
// publishes) are rewritten on the copy, each invalid byte as \xNN, and
// listed in its [middleware.SanitizedHeader] header. [New] refuses an
// endpoint queue whose name is too long for the transport's deferred
// delivery (transport.DelayedQueueLimiter: 199 bytes with RabbitMQ's
// default 28 delay levels), since its delayed retries could not reach it.
//
// # Stopping
//
// [Bus.Shutdown] returns by its context's deadline, as http.Server.Shutdown
// does, plus [StopGrace] for the handlers it cancelled to return; [Bus.Close]
// waits StopGrace at most. A handler that ignores its context goes on after
// they returned, on the transport's goroutine: its message is not acked,
// whatever it returns (the Bus nacks it when it returns, and what it sent is
// not dispatched), and the transport's Close waits for it. So the rule for
// leak-free programs and tests: close the transport after its endpoints;
// its Close returns once every handler has.
//
// # Request and reply
//
// [Request] sends a message and waits for the reply correlated with it. The
// reply comes back to this process even when several instances consume the
// endpoint's queue: each Bus has a temporary reply queue of its own,
// declared on its first Request. A reply that arrives after its request
// gave up is acked and dropped. The error a responder's handler returns does
// not travel back: the requester's context runs out. To report failures,
// reply with a message that says so.
//
// # Errors
//
// Errors are matched with [errors.Is] against the sentinels re-exported from
// package transport ([ErrClosed], [ErrUnroutable], [ErrInvalidName], ...)
// and this package's own. Every error names the endpoint (`bus "orders"`,
// or "send-only bus"), the operation and the queue or topic. Names are
// checked before anything is sent.
//
// # Concurrency
//
// Every method of [Bus] is safe for concurrent use. The endpoint handles up
// to [Options.Concurrency] messages at once (one by default, in queue
// order). Handlers may call any method of the Bus except Shutdown, Close and
// Pause, which wait for the handlers (Shutdown and Close for a bounded
// time, see Stopping). The [Options.OnNotice] callback runs on
// a goroutine of the Bus, one event at a time, and must not call Shutdown or
// Close. The callbacks of [WithOnAck] run on another goroutine of the Bus,
// one at a time, in the order the verdicts arrive; they may call any method
// of the Bus, Shutdown and Close included: the window of
// [Options.PostWindow] is freed when a verdict arrives, not when its
// callback returns, and Close does not wait for callbacks.
//
// # Flow control and host health
//
// As BlazingMQ's queue options, [FlowControl] bounds what an endpoint
// takes: Prefetch (messages), MaxUnackedBytes (bytes in handling, bounded
// by the client since RabbitMQ has no byte prefetch) and Priority (RabbitMQ's
// consumer priority among the instances of the endpoint);
// [Bus.SetFlowControl] changes them while it runs. [Options.HealthMonitor]
// suspends consumption while the host is unhealthy ([Suspended],
// [Unsuspended]); [BasicHealthMonitor] is set by hand. [Bus.SendAsync] and
// [Bus.PublishAsync] post without waiting for the broker's verdict, which a
// [Receipt] reports.
package bus
