package bus

import (
	"context"
	"log/slog"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Hooks let an instrumentation (traces, metrics) observe an endpoint where
// [Options.DispatchMiddleware] and [Options.Middleware] cannot: each message
// as Send, Publish, Defer, Reply and Request build it, the dispatch of a
// handler's or transaction's batch, each handling of a received message,
// retries, error-queue forwards and the endpoint's events. [Options.Instrument]
// installs them; package otelbus (a module of its own) fills them for
// OpenTelemetry, which keeps this package free of it.
//
// Every field is optional. Hooks run synchronously on the goroutine of the
// call they observe: they must be quick, must not block, and must not call
// Shutdown, Close or Pause.
type Hooks struct {
	// Send is called for each message Send, Publish, Defer, Reply and
	// Request build, after its properties and headers are set and before
	// it is dispatched or held in the batch of a handler or transaction.
	// It may add headers to s.Message (a trace context, say); it must not
	// change or keep anything else of it. The context it returns is the
	// one the message is dispatched under, and the one given to Sent.
	// Messages that fail to build (an invalid name, a body the codec
	// refuses) are not seen.
	Send func(ctx context.Context, s Sending) context.Context

	// Sent is called once for each message Send saw, with the context
	// Send returned: after the dispatch with its error, or, for a held
	// message (s.Held), once it joined the batch (with an error if the
	// scope had ended). A held message's dispatch is seen by Dispatch.
	Sent func(ctx context.Context, s Sending, err error)

	// Dispatch wraps the dispatch of the batch a handler (after every
	// handler of the message succeeded) or a [Bus.Transaction] collected.
	// It sees each batch once, with the messages Send saw. It wraps the
	// Bus's dispatcher, [Options.DispatchMiddleware] included.
	Dispatch middleware.DispatchMiddleware

	// Handle wraps each handling of a message delivered to the endpoint's
	// queue: it is called with the delivery (read it; settling it is the
	// Bus's business; neither it nor m may be kept past the call, as the
	// transport may reuse them) and must call next once with m and a context derived
	// from ctx, and return what next returned. next runs the whole pipeline
	// (the standard stages, [Options.Middleware], the handlers, the
	// dispatch of their batch); its error, if any, sends the message back
	// to its queue. Handler errors that the pipeline turned into a retry or
	// an error-queue forward are reported by Retry and Forward, with a
	// context derived from the one given to next. It also wraps the
	// arrival of each reply on the reply queue of [Request], where next
	// hands the reply to its request (and acks it) instead.
	Handle func(ctx context.Context, d *transport.Delivery, m *middleware.Message, next middleware.Handler) error

	// Retry is called when a delayed retry was scheduled (see
	// [Bus.OnRetry]), Forward when a message was sent to the error queue
	// (see [Bus.OnForward]), with the context of the handling.
	Retry, Forward func(ctx context.Context, f middleware.Failure)

	// Event is called with each [Event] the Bus raises, as it raises it,
	// whether or not [Options.OnNotice] is set.
	Event func(e Notice)

	// Log, if set, wraps the handler of [Options.Logger] (of
	// slog.Default() when it is nil) for every record the Bus and its
	// standard stages log: for example to add the trace and span ids of
	// the context.
	Log func(h slog.Handler) slog.Handler
}

// Sending is a message being sent, as [Hooks.Send] sees it.
type Sending struct {
	// Operation is the call that sends it: "send", "publish", "defer",
	// "reply" or "request". A Send with [WithDelay] is a "send".
	Operation string
	// Message is the message, built: exchange, routing key, properties and
	// headers.
	Message *transport.Outgoing
	// Held reports that the message is held in the batch of a handler or
	// transaction, and dispatched when it succeeds (see [Hooks.Dispatch]),
	// rather than dispatched at once.
	Held bool
}

// instrument calls Options.Instrument and installs the hooks it returns:
// the logger first, so that the pipeline built after logs through it.
func (b *Bus) instrument() error {
	if b.opts.Instrument == nil {
		return nil
	}
	hooks, err := b.opts.Instrument(b, b.t)
	if err != nil {
		return err
	}
	b.hooks = hooks
	if hooks.Log != nil && b.opts.Logger != nil {
		b.opts.Logger = slog.New(hooks.Log(b.opts.Logger.Handler()))
		b.log = b.opts.Logger
	}
	return nil
}
