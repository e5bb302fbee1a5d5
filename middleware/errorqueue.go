package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/busline/busline/transport"
)

// DefaultErrorQueue is the error queue's name, PikaBus's.
const DefaultErrorQueue = "error"

// DefaultMaxErrorDetails bounds the ErrorDetails header, in bytes, when
// [ErrorQueueOptions.MaxDetails] is zero: enough for an error and the top of
// a panic's stack, small enough to keep the message's header frame small.
const DefaultMaxErrorDetails = 8 << 10

// ErrorQueueOptions configure the [ErrorQueue] stage. The zero value
// forwards to PikaBus's error queue, "error", with PikaBus's header names
// and no logging.
type ErrorQueueOptions struct {
	// Queue is the error queue. Empty means [DefaultErrorQueue]. The stage
	// sends to it through the direct exchange, so it must be bound there
	// under its own name (the bus declares it as a Shared queue).
	Queue string
	// Headers are the header names; the zero value means
	// [DefaultHeaderNames].
	Headers HeaderNames
	// MaxDetails bounds the ErrorDetails header in bytes; longer text is cut
	// and marked. Zero means [DefaultMaxErrorDetails].
	MaxDetails int
	// DispatchTimeout bounds the dispatch to the error queue. Zero means
	// [DefaultDispatchTimeout].
	DispatchTimeout time.Duration
	// Logger receives a record for each message forwarded (Error) and each
	// one that could not be (Error). Nil means silent.
	Logger *slog.Logger
	// OnForward, if set, is called for each message forwarded to the
	// error queue, once its copy has been dispatched, on the handling
	// goroutine, before the message is acked: [Failure.Retries] is the
	// number of delayed retries the message had. It must return quickly
	// and must not keep the Failure's Message. Package bus turns it into
	// its SentToErrorQueue event.
	OnForward func(ctx context.Context, f Failure)
}

// ErrorQueue returns the error-queue stage. When the handling below it
// returns an error, the stage dispatches a copy of the message to the error
// queue through the direct exchange with Mandatory set, and returns nil once
// Dispatch has returned nil, so the original is acked only after the copy is
// safe. The copy keeps the body, the properties and every header, and gains:
//
//   - ErrorDetails: the error's text, with the stack for a [*PanicError],
//     valid UTF-8 and at most [ErrorQueueOptions.MaxDetails] bytes;
//   - SourceQueue: [Message.Queue], where [Replay] sends it back;
//   - ErrorRetries: the number of delayed retries so far plus one (an
//     int32), as PikaBus writes it: a message that failed its first delivery
//     and five delayed retries arrives with 6.
//
// Forwarding works even when the handler's context was cancelled: it runs
// under context.WithoutCancel with [ErrorQueueOptions.DispatchTimeout]. If
// it fails the stage returns a [*ForwardError] and the endpoint gives the
// message back to the broker, so nothing is lost.
//
// Two errors are passed through instead of forwarded: a [*ForwardError] from
// a stage inside (a retry copy that could not be dispatched: the message
// goes back to its queue) and a context error caused by the endpoint's own
// context ending (a shutdown, not a failure of the message).
func ErrorQueue(s Sender, opts ErrorQueueOptions) (Middleware, error) {
	if s == nil {
		return nil, errors.New("middleware.ErrorQueue: nil Sender")
	}
	q := opts.Queue
	if q == "" {
		q = DefaultErrorQueue
	}
	if err := transport.ValidateQueueName(q); err != nil {
		return nil, fmt.Errorf("middleware.ErrorQueue: %w", err)
	}
	if opts.MaxDetails < 0 {
		return nil, fmt.Errorf("middleware.ErrorQueue: MaxDetails %d is negative", opts.MaxDetails)
	}
	names, err := opts.Headers.resolve("ErrorQueue", errorRetriesName, errorDetailsName, sourceQueueName)
	if err != nil {
		return nil, err
	}
	e := &errorQueue{
		sender:  s,
		queue:   q,
		names:   names,
		max:     opts.MaxDetails,
		timeout: timeoutOr(opts.DispatchTimeout),
		log:     loggerOr(opts.Logger),
		onFwd:   opts.OnForward,
	}
	if e.max == 0 {
		e.max = DefaultMaxErrorDetails
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil || interrupted(ctx, err) || isForwardError(err) {
				return err
			}
			return e.forward(ctx, m, err)
		}
	}, nil
}

type errorQueue struct {
	sender  Sender
	queue   string
	names   HeaderNames
	max     int
	timeout time.Duration
	log     *slog.Logger
	onFwd   func(context.Context, Failure)
}

func (e *errorQueue) forward(ctx context.Context, m *Message, err error) error {
	id := messageID(&m.Message, e.names)
	done, rerr := retryCount(m.Headers, e.names.ErrorRetries)
	if rerr != nil {
		e.log.WarnContext(ctx, "unreadable retry count; counting from zero",
			"message_id", id, "queue", m.Queue, "header", e.names.ErrorRetries, "error", rerr)
	}
	h := forwardHeaders(m.Headers, 3)
	h[e.names.ErrorDetails] = ErrorDetails(err, e.max)
	h[e.names.SourceQueue] = m.Queue
	h[e.names.ErrorRetries] = retryValue(done + 1)
	out := m.Message
	out.Headers = h
	if ferr := forward(ctx, e.sender, e.timeout, transport.Outgoing{
		Exchange:   transport.Direct,
		RoutingKey: e.queue,
		Mandatory:  true,
		Message:    out,
	}); ferr != nil {
		e.log.ErrorContext(ctx, "cannot forward failed message to the error queue; it goes back to its queue",
			"message_id", id, "queue", m.Queue, "error_queue", e.queue, "error", ferr, "handling_error", err)
		return &ForwardError{Stage: "error queue", Queue: e.queue, MessageID: id, Err: ferr, Cause: err}
	}
	e.log.ErrorContext(ctx, "handling failed; message forwarded to the error queue",
		"message_id", id, "queue", m.Queue, "error_queue", e.queue, "error", err)
	if e.onFwd != nil {
		e.onFwd(ctx, Failure{Message: m, MessageID: id, Err: err, Retries: done, Queue: e.queue})
	}
	return nil
}

// ErrorDetails is the text the ErrorQueue stage writes into the ErrorDetails
// header for err: its message and, for a [*PanicError] in its chain, the
// panic's stack; made valid UTF-8 and cut to at most max bytes (on a
// character boundary, marked "…(truncated)").
func ErrorDetails(err error, max int) string {
	s := err.Error()
	var p *PanicError
	if errors.As(err, &p) && len(p.Stack) > 0 {
		s += "\n\n" + string(p.Stack)
	}
	return boundText(s, max)
}
