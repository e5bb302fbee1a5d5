package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// Sender is what the forwarding stages (Retry, ErrorQueue, Deferral) and
// [Replay] need of a transport: its Dispatch method. A transport.Transport is
// a Sender, and so is a [Dispatcher]. The capabilities a stage needs beyond
// Dispatch, such as transport.Delayer, are found by type assertion on the
// Sender when the stage is built: a Sender that lacks one makes the
// constructor fail with an error wrapping transport.ErrNotSupported.
type Sender interface {
	Dispatch(ctx context.Context, msgs ...transport.Outgoing) error
}

// Dispatch calls d, which makes a Dispatcher a [Sender] (one without any
// optional capability).
func (d Dispatcher) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	return d(ctx, msgs...)
}

// DefaultDispatchTimeout bounds how long a stage waits for the transport to
// confirm a message it forwards (a retry copy, a rescheduled message, an
// error-queue copy) when its options leave the timeout zero.
const DefaultDispatchTimeout = 30 * time.Second

// ForwardError reports that a stage could not forward a message it had to
// move: a retry copy to the endpoint's queue, a rescheduled deferred message,
// or a copy for the error queue. The original was not acked: the stage
// returns the error so that the endpoint gives the message back to the broker
// and it is delivered again. The endpoint must not give it back at once,
// or a broker that refuses publishes makes the message cycle as fast as it
// can be delivered: package bus holds it with an exponential backoff first
// (see its section "When the failure path fails"). The ErrorQueue stage passes a ForwardError from
// the stages inside it through unchanged, instead of sending the message to
// the error queue.
type ForwardError struct {
	// Stage is the stage that failed: "retry", "deferral" or "error queue".
	Stage string
	// Queue is the queue the message was to be forwarded to.
	Queue string
	// MessageID is the message's id.
	MessageID string
	// Err is the cause, from the transport's Dispatch.
	Err error
	// Cause is the handling error that made the stage forward the message,
	// if any. It is not part of the Unwrap chain: a ForwardError is not a
	// handler failure.
	Cause error
}

// Error says which stage failed to forward which message where, and why.
func (e *ForwardError) Error() string {
	s := fmt.Sprintf("middleware: %s: forwarding message %q to queue %q: %v", e.Stage, e.MessageID, e.Queue, e.Err)
	if e.Cause != nil {
		s += fmt.Sprintf(" (forwarded because: %v)", e.Cause)
	}
	return s
}

// Unwrap returns the Dispatch error, so errors.Is finds the transport's
// sentinel (transport.ErrUnroutable and the like).
func (e *ForwardError) Unwrap() error { return e.Err }

// Failure describes a message whose handling failed, as the Retry and
// ErrorQueue stages report it to their hooks ([RetryOptions.OnRetry] and
// [ErrorQueueOptions.OnForward]) once they have dealt with it.
type Failure struct {
	// Message is the message as the stage received it (without the headers
	// the stage wrote on its copy). Read it during the hook only.
	Message *Message
	// MessageID is its id: the message_id property, else the MessageId
	// header.
	MessageID string
	// Err is the handling error.
	Err error
	// Retries counts delayed retries: for OnRetry the number of the retry
	// just scheduled (1 for the first); for OnForward the number the
	// message had before it was forwarded (0 for a permanent error on its
	// first delivery).
	Retries int
	// Delay is, for OnRetry, how long until the retry copy is due; zero for
	// OnForward.
	Delay time.Duration
	// Queue is where the copy went: the endpoint's queue for a retry, the
	// error queue for a forward.
	Queue string
}

// isForwardError reports whether err is (or wraps) a *ForwardError.
func isForwardError(err error) bool {
	var fe *ForwardError
	return errors.As(err, &fe)
}

// interrupted reports whether err is the pipeline's context ending rather
// than a failure of the message: the endpoint is shutting down, and the
// message goes back to the broker without counting a retry.
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// forward dispatches o under a context that survives the cancellation of
// ctx (the handler's, which may be over) but is bounded by timeout.
func forward(ctx context.Context, s Sender, timeout time.Duration, o transport.Outgoing) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return s.Dispatch(fctx, o)
}

// discard is the logger of stages given none.
var discard = slog.New(slog.DiscardHandler)

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultDispatchTimeout
	}
	return d
}

// resolve returns h, or DefaultHeaderNames if h is the zero value, and
// checks that the names a stage uses are set.
func (h HeaderNames) resolve(stage string, used ...func(HeaderNames) string) (HeaderNames, error) {
	if h == (HeaderNames{}) {
		return DefaultHeaderNames, nil
	}
	for _, f := range used {
		if f(h) == "" {
			return h, fmt.Errorf("middleware.%s: Headers sets some header names but not all the stage uses; start from NewHeaderNames", stage)
		}
	}
	return h, nil
}

func errorRetriesName(h HeaderNames) string { return h.ErrorRetries }
func deferredTimeName(h HeaderNames) string { return h.DeferredTime }
func errorDetailsName(h HeaderNames) string { return h.ErrorDetails }
func sourceQueueName(h HeaderNames) string  { return h.SourceQueue }

// messageID returns the id of m: its message_id property, else its MessageId
// header.
func messageID(m *transport.Message, h HeaderNames) string {
	if m.ID != "" {
		return m.ID
	}
	s, _ := HeaderString(m.Headers[h.MessageID])
	return s
}

// withHeaders returns a shallow copy of h with room for extra more entries,
// so that a stage can change the headers of a copy it forwards without
// touching the message it was given.
func withHeaders(h transport.Headers, extra int) transport.Headers {
	c := make(transport.Headers, len(h)+extra)
	for k, v := range h {
		c[k] = v
	}
	return c
}

// deliveryCountHeader is the header RabbitMQ adds to the deliveries of a
// quorum queue (and the memory broker with it): it describes one delivery,
// so the copies a stage forwards (a retry, the error queue's copy, a
// deferred or replayed message) leave it out.
const deliveryCountHeader = "x-delivery-count"

// forwardHeaders is withHeaders for the copy of a received message that a
// stage dispatches again: without the headers that describe its delivery,
// and with the keys RabbitMQ delivered but no transport publishes (not valid
// UTF-8) rewritten and listed under [SanitizedHeader], so that any message
// the broker delivered can be forwarded.
func forwardHeaders(h transport.Headers, extra int) transport.Headers {
	c := withHeaders(h, extra+1)
	delete(c, deliveryCountHeader)
	sanitizeHeaders(c)
	return c
}

// retryCount reads the ErrorRetries header: the number of delayed retries a
// message has had. An absent, negative or unreadable count is 0; err says why
// a present one could not be read.
func retryCount(h transport.Headers, name string) (int, error) {
	n, ok, err := HeaderInt(h[name])
	if err != nil || !ok || n < 0 {
		return 0, err
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return int(n), nil
}

// retryValue is the ErrorRetries header value for n, an int32 as PikaBus's
// Python client writes it (AMQP 'I').
func retryValue(n int) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}

// truncated marks ErrorDetails that were cut to their bound.
const truncated = "\n…(truncated)"

// boundText returns s as valid UTF-8 of at most max bytes, cut on a rune
// boundary and marked when it was cut.
func boundText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	if max <= len(truncated) {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i]
	}
	i := max - len(truncated)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + truncated
}
