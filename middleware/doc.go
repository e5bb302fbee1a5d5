// Package middleware is busline's handling pipeline: the vocabulary of
// stages a received message passes through before (and after) its handlers
// run, and the standard stages that make an endpoint recoverable.
//
// A [Handler] handles one received [Message]; a [Middleware] wraps a Handler,
// in the style of net/http. A [Dispatcher] sends messages and a
// [DispatchMiddleware] wraps one: the outgoing side, where headers are
// stamped. Package bus builds an endpoint's pipeline from these; users can
// replace or extend it.
//
// # The standard pipeline
//
// The bus installs PikaBus's recoverability by default, outermost first:
//
//	Deferral    an incoming message whose DeferredTime header is in the
//	            future is rescheduled through the transport, never bounced
//	ErrorQueue  a message whose handling failed for good is forwarded to the
//	            error queue with ErrorDetails, SourceQueue and ErrorRetries
//	Retry       a failed handling is retried: immediately in process (a few
//	            times, optional), then delayed: a copy with ErrorRetries+1 is
//	            dispatched with a not-before time from a backoff policy before
//	            the original is acked; after the last retry the error goes on
//	            to ErrorQueue
//	Recover     a panic in a handler becomes an error, with its stack
//	Timeout     optional: the handler's context ends after a duration
//	            ... user middleware ...
//	handlers
//
// [Standard] builds exactly this chain from a transport; [Deferral],
// [ErrorQueue], [Retry], [Recover] and [Timeout] build its stages one by one
// for a chain of one's own. The stages that forward messages take a
// [Sender] (any transport.Transport, or a [Dispatcher]) and look on it for
// the capabilities they need: Deferral and delayed retries need
// transport.Delayer, and their constructors fail with an error wrapping
// transport.ErrNotSupported without it, rather than silently doing less.
// Options structs configure the stages; their zero values are PikaBus's
// behaviour, and header names, backoff policies ([DefaultBackoff],
// [LinearBackoff], [ExponentialBackoff]) and limits are exported. Retry and
// ErrorQueue report what they did through hooks ([RetryOptions.OnRetry],
// [ErrorQueueOptions.OnForward], given a [Failure]), which package bus
// turns into events; the stages know nothing of the bus.
//
// On the outgoing side, [Stamp] sets headers on every message sent.
//
// [Replay] moves messages from the error queue back to the queues they
// failed in, with their retry count reset (package bus offers it as
// Bus.ReplayErrors, with an endpoint's defaults).
//
// # Errors
//
// An error marked with [Permanent] (match it with [ErrPermanent]) skips the
// retries and goes straight to the error queue, as do [ErrUndecodable] and
// [ErrUnhandled] from the bus. A handler that returns nil has its message
// acked; a pipeline that returns an error (which the standard stages do
// only when they cannot forward the message) has it requeued by the broker.
//
// Forwarding never loses a message: the copy is dispatched (and confirmed)
// before the original is acked, so a crash in between duplicates it, never
// loses it. Forwarding to the error queue works even when the handler's
// context was cancelled: the stages dispatch under context.WithoutCancel
// with a timeout of their own. A stage that cannot forward returns a
// [*ForwardError], and the message goes back to its queue.
//
// A handler that returns a context error because the endpoint's own context
// ended (a shutdown) has not failed: Retry and ErrorQueue pass the error
// through, so the message goes back to the broker without counting a retry.
// A [Timeout] that expires, in contrast, is a failure and is retried.
//
// # Logging
//
// Every stage logs through the *slog.Logger of its options (nil means
// silent), with the message id and queue: decisions at Debug (immediate
// retries, reschedules), retries and unreadable headers at Warn, messages
// forwarded to the error queue and forwards that failed at Error. The
// success path logs nothing and allocates nothing.
//
// # Headers and times
//
// The standard header names are PikaBus's ([DefaultHeaderNames]), under a
// configurable prefix ([NewHeaderNames]). Times are written as RFC 3339 UTC
// with microseconds ([FormatTime]) and read in that form or PikaBus 1.x's
// ([ParseTime]). Header values from foreign producers may be of any AMQP
// type: [HeaderInt], [HeaderString] and [HeaderTime] read them leniently.
//
// # Concurrency
//
// A Handler is called concurrently for different messages; a Message is
// handled by one goroutine at a time. Stages must not keep a Message after
// their Handler returns.
package middleware
