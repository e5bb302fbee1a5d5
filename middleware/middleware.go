package middleware

import (
	"context"
	"errors"
	"fmt"

	"github.com/busline/busline/transport"
)

// Message is a message received by an endpoint, as it travels down the
// handling pipeline. The pipeline owns it: a stage may change its headers
// (for example to count a retry) before passing it on, and every later stage
// and the handlers see the change.
type Message struct {
	// Message is the wire message: properties, headers, body.
	transport.Message
	// Queue is the endpoint queue the message was consumed from: the
	// source queue for retries and the error queue.
	Queue string
	// Redelivered reports that the broker delivered the message before
	// (see transport.Delivery.Redelivered).
	Redelivered bool
}

// Handler handles one received message. Returning nil means the message was
// dealt with: handled, rescheduled or forwarded, and the endpoint acks it.
// Returning an error means it was not: the endpoint gives it back to the
// broker to be delivered again, so the standard stages turn handler errors
// into retries and error-queue forwards and return nil themselves.
//
// The context is cancelled when the endpoint shuts down past its grace
// period or a [Timeout] expires.
type Handler func(ctx context.Context, m *Message) error

// Middleware wraps a Handler with behaviour of its own, in the style of
// net/http: func(next Handler) Handler.
type Middleware func(next Handler) Handler

// Chain composes middlewares so that the first is the outermost: Chain(a,
// b)(h) is a(b(h)), and a message passes a, then b, then h.
func Chain(ms ...Middleware) Middleware {
	return func(h Handler) Handler {
		for i := len(ms) - 1; i >= 0; i-- {
			h = ms[i](h)
		}
		return h
	}
}

// Dispatcher sends messages; transport.Transport's Dispatch method is one.
// The stages that forward messages (Retry, ErrorQueue, Deferral) take a
// [Sender], which a Dispatcher is. A Dispatcher must not change the messages
// it is given (their headers included): they belong to its caller.
type Dispatcher func(ctx context.Context, msgs ...transport.Outgoing) error

// DispatchMiddleware wraps a Dispatcher: the outgoing side of the pipeline,
// where every message an endpoint sends passes, for stamping headers and the
// like.
type DispatchMiddleware func(next Dispatcher) Dispatcher

// ChainDispatch composes dispatch middlewares with the first outermost, as
// [Chain] does.
func ChainDispatch(ms ...DispatchMiddleware) DispatchMiddleware {
	return func(d Dispatcher) Dispatcher {
		for i := len(ms) - 1; i >= 0; i-- {
			d = ms[i](d)
		}
		return d
	}
}

// ErrPermanent marks an error that retrying cannot fix. The retry stage sends
// a message whose handling failed with such an error straight to the error
// queue. Match it with errors.Is; make one with [Permanent].
var ErrPermanent = errors.New("permanent failure")

// Permanent marks err as permanent (see [ErrPermanent]); the result wraps
// both, so errors.Is and errors.As still find err's own chain. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// IsPermanent reports whether err is marked permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// Errors the bus's handling raises for messages it cannot hand to a handler.
// Both are permanent: such messages go to the error queue without retries.
var (
	// ErrUndecodable: the body could not be decoded into the handler's
	// message type, or its content type has no codec.
	ErrUndecodable = fmt.Errorf("undecodable message: %w", ErrPermanent)
	// ErrUnhandled: no handler takes the message's type.
	ErrUnhandled = fmt.Errorf("no handler for message: %w", ErrPermanent)
)
