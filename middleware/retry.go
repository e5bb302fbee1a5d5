package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/busline/busline/transport"
)

// DefaultMaxRetries is the number of delayed retries PikaBus makes before it
// sends a message to the error queue.
const DefaultMaxRetries = 5

// Backoff is a retry policy: it returns how long to wait before delayed
// retry number retry (1 for the first). It is called concurrently. A
// negative result counts as zero: the copy is delivered at once.
type Backoff func(retry int) time.Duration

// DefaultBackoff is PikaBus's backoff: linear, retry × 1 s × 2, so 2 s, 4 s,
// 6 s, 8 s and 10 s for the default five retries. A busline service using it
// retries on the same schedule as the PikaBus services it shares a broker
// with.
func DefaultBackoff(retry int) time.Duration {
	return time.Duration(retry) * 2 * time.Second
}

// LinearBackoff returns a policy that waits retry × step. It panics if step
// is not positive, as [time.NewTicker] does: the policy is written in the
// program, not read from input.
func LinearBackoff(step time.Duration) Backoff {
	if step <= 0 {
		panic(fmt.Sprintf("middleware.LinearBackoff: step %v must be positive", step))
	}
	return func(retry int) time.Duration {
		if retry < 1 {
			return 0
		}
		d := time.Duration(retry) * step
		if d/step != time.Duration(retry) {
			return time.Duration(1<<63 - 1)
		}
		return d
	}
}

// ExponentialBackoff returns a policy whose delay doubles with each retry
// from initial and is capped at max, with jitter: retry n waits a random
// duration between half of min(max, initial × 2^(n-1)) and all of it, so
// that messages that failed together do not come back together. It panics
// unless 0 < initial <= max, as [time.NewTicker] panics on a bad period.
func ExponentialBackoff(initial, max time.Duration) Backoff {
	if initial <= 0 || max < initial {
		panic(fmt.Sprintf("middleware.ExponentialBackoff: want 0 < initial (%v) <= max (%v)", initial, max))
	}
	return func(retry int) time.Duration {
		if retry < 1 {
			return 0
		}
		d := initial
		for i := 1; i < retry && d < max; i++ {
			d *= 2
		}
		if d > max || d <= 0 {
			d = max
		}
		half := d / 2
		return half + rand.N(d-half+1)
	}
}

// RetryLimit is how many delayed retries a message gets before its error goes
// on to the error queue. Its zero value means [DefaultMaxRetries], PikaBus's
// five, so that a zero RetryOptions behaves as PikaBus does; [Retries] gives
// any other number, and [NoRetries] none. It is a type of its own, not an
// int, so that no count has a second meaning: Retries(0) is none, and there
// is no -1.
type RetryLimit struct {
	n   int
	set bool
}

// Retries returns a limit of n delayed retries; Retries(0) is [NoRetries]. It
// panics if n is negative.
func Retries(n int) RetryLimit {
	if n < 0 {
		panic(fmt.Sprintf("middleware.Retries: %d is negative", n))
	}
	return RetryLimit{n: n, set: true}
}

// NoRetries is the limit of no delayed retries: a failure goes on to the
// error queue (after the immediate retries, if any). With it the Sender need
// not be a transport.Delayer.
var NoRetries = Retries(0)

// Count returns the number of delayed retries the limit allows:
// [DefaultMaxRetries] for the zero value.
func (l RetryLimit) Count() int {
	if !l.set {
		return DefaultMaxRetries
	}
	return l.n
}

// String returns the count, such as "5", or "none".
func (l RetryLimit) String() string {
	if l.Count() == 0 {
		return "none"
	}
	return strconv.Itoa(l.Count())
}

// RetryOptions configure the [Retry] stage. The zero value is PikaBus's
// behaviour: no immediate retries, five delayed retries with
// [DefaultBackoff], PikaBus's header names, no logging.
type RetryOptions struct {
	// Immediate is the number of immediate retries: the handler is called
	// again at once, in process, up to this many times before the message
	// gets a delayed retry. Zero means none. Keep it small: the message
	// holds its delivery slot meanwhile.
	Immediate int
	// MaxRetries is the number of delayed retries before the error goes on
	// (to the error queue, with the standard pipeline): [Retries](n), or
	// [NoRetries], with which the Sender need not be a transport.Delayer.
	// The zero value means [DefaultMaxRetries].
	MaxRetries RetryLimit
	// Backoff is the delay before each delayed retry. Nil means
	// [DefaultBackoff].
	Backoff Backoff
	// Headers are the header names; the zero value means
	// [DefaultHeaderNames].
	Headers HeaderNames
	// DispatchTimeout bounds the dispatch of a retry copy. Zero means
	// [DefaultDispatchTimeout].
	DispatchTimeout time.Duration
	// TimeFormat is how the DeferredTime of a retry copy is written, and
	// so the DeferredTime the copy keeps on the error queue. The zero
	// value is [TimeRFC3339]. A message whose TimeSent is in PikaBus 1.x's
	// form (see [TimeFormatOf]) gets [TimePikaBus1] whatever this says, so
	// that no copy of a 1.x service's message carries a time 1.x cannot
	// read. Package bus sets it to bus.Options.TimeFormat.
	TimeFormat TimeFormat
	// Logger receives the stage's decisions: immediate retries (Debug),
	// delayed retries scheduled and retries exhausted (Warn), copies that
	// could not be dispatched (Error). Nil means silent.
	Logger *slog.Logger
	// OnRetry, if set, is called for each delayed retry once its copy has
	// been dispatched, on the handling goroutine, before the message is
	// acked: [Failure.Retries] is the number of the retry scheduled (1 for
	// the first) and [Failure.Delay] how long until it is due. Immediate
	// retries are not reported. It must return quickly and must not keep
	// the Failure's Message. Package bus turns it into its Retried event.
	OnRetry func(ctx context.Context, f Failure)
}

// Retry returns the retry stage. When the handling below it fails, the
// stage retries:
//
//   - immediately, calling next again up to [RetryOptions.Immediate] times;
//   - then delayed: it reads the number of delayed retries so far from the
//     ErrorRetries header (see [HeaderInt]; absent means 0), and if one more
//     is allowed dispatches a copy of the message (body, properties and
//     every header kept) to the endpoint's own queue, [Message.Queue],
//     through the direct exchange with Mandatory set, with ErrorRetries
//     raised by one (an int32), DeferredTime set to the due time (in
//     [RetryOptions.TimeFormat]) and [transport.Outgoing.NotBefore] set to it (clamped
//     to the transport's MaxDelay; the Deferral stage re-defers the rest on
//     arrival). It returns nil only once Dispatch has returned nil, so the
//     original is acked after its copy is safe.
//
// When no delayed retry is left the stage returns the handling error, noting
// how many retries were made, for the ErrorQueue stage above it. It also
// returns at once, without retrying, an error marked [Permanent] (which
// includes [ErrUndecodable] and [ErrUnhandled]), a [*ForwardError], and a
// context error caused by the endpoint's context ending (a shutdown: the
// message goes back to the broker without counting a retry). If the copy
// cannot be dispatched it returns a [*ForwardError], so the message goes back
// to its queue rather than to the error queue. The dispatch works even when
// the handler's context was cancelled.
//
// Retry fails with an error wrapping transport.ErrNotSupported when delayed
// retries are enabled and s does not implement transport.Delayer: the retry
// copies could not be deferred.
func Retry(s Sender, opts RetryOptions) (Middleware, error) {
	if s == nil {
		return nil, errors.New("middleware.Retry: nil Sender")
	}
	if opts.Immediate < 0 {
		return nil, fmt.Errorf("middleware.Retry: Immediate %d is negative", opts.Immediate)
	}
	if opts.TimeFormat > TimePikaBus1 {
		return nil, fmt.Errorf("middleware.Retry: unknown TimeFormat %d", opts.TimeFormat)
	}
	names, err := opts.Headers.resolve("Retry", errorRetriesName, deferredTimeName)
	if err != nil {
		return nil, err
	}
	r := &retry{
		sender:    s,
		immediate: opts.Immediate,
		max:       opts.MaxRetries.Count(),
		backoff:   opts.Backoff,
		names:     names,
		timeout:   timeoutOr(opts.DispatchTimeout),
		times:     opts.TimeFormat,
		log:       loggerOr(opts.Logger),
		onRetry:   opts.OnRetry,
	}
	if r.backoff == nil {
		r.backoff = DefaultBackoff
	}
	if r.max > 0 {
		d, ok := s.(transport.Delayer)
		if !ok {
			return nil, fmt.Errorf("middleware.Retry: delayed retries need a transport that implements transport.Delayer (or set MaxRetries to NoRetries): %w", transport.ErrNotSupported)
		}
		if d.MaxDelay() <= 0 {
			return nil, fmt.Errorf("middleware.Retry: the transport's MaxDelay is %v: %w", d.MaxDelay(), transport.ErrNotSupported)
		}
		r.delayer = d
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil {
				return nil
			}
			return r.failed(ctx, m, next, err)
		}
	}, nil
}

type retry struct {
	sender    Sender
	delayer   transport.Delayer
	immediate int
	max       int
	backoff   Backoff
	names     HeaderNames
	timeout   time.Duration
	times     TimeFormat
	log       *slog.Logger
	onRetry   func(context.Context, Failure)
}

// settled reports whether err must go on without a retry.
func settled(ctx context.Context, err error) bool {
	return IsPermanent(err) || interrupted(ctx, err) || isForwardError(err)
}

func (r *retry) failed(ctx context.Context, m *Message, next Handler, err error) error {
	for i := 1; i <= r.immediate && !settled(ctx, err) && ctx.Err() == nil; i++ {
		r.log.DebugContext(ctx, "handling failed; retrying immediately",
			"message_id", messageID(&m.Message, r.names), "queue", m.Queue,
			"attempt", i, "of", r.immediate, "error", err)
		if err = next(ctx, m); err == nil {
			return nil
		}
	}
	if settled(ctx, err) || r.max == 0 {
		return err
	}
	id := messageID(&m.Message, r.names)
	done, rerr := retryCount(m.Headers, r.names.ErrorRetries)
	if rerr != nil {
		r.log.WarnContext(ctx, "unreadable retry count; counting from zero",
			"message_id", id, "queue", m.Queue, "header", r.names.ErrorRetries, "error", rerr)
	}
	if done+1 > r.max {
		r.log.WarnContext(ctx, "handling failed; no retries left",
			"message_id", id, "queue", m.Queue, "retries", done, "error", err)
		return &exhaustedError{err: err, retries: done}
	}
	n := done + 1
	delay := r.backoff(n)
	if delay < 0 {
		delay = 0
	}
	now := time.Now()
	due := now.Add(delay)
	notBefore := due
	if max := r.delayer.MaxDelay(); delay > max {
		notBefore = now.Add(max)
	}
	if delay == 0 {
		notBefore = time.Time{}
	}
	h := forwardHeaders(m.Headers, 2)
	h[r.names.ErrorRetries] = retryValue(n)
	times := r.times
	if f, ok := TimeFormatOf(m.Headers[r.names.TimeSent]); ok && f == TimePikaBus1 {
		times = f
	}
	h[r.names.DeferredTime] = times.Format(due)
	out := m.Message
	out.Headers = h
	if ferr := forward(ctx, r.sender, r.timeout, transport.Outgoing{
		Exchange:   transport.Direct,
		RoutingKey: m.Queue,
		Mandatory:  true,
		NotBefore:  notBefore,
		Message:    out,
	}); ferr != nil {
		r.log.ErrorContext(ctx, "cannot dispatch retry copy; the message goes back to its queue",
			"message_id", id, "queue", m.Queue, "retry", n, "error", ferr, "handling_error", err)
		return &ForwardError{Stage: "retry", Queue: m.Queue, MessageID: id, Err: ferr, Cause: err}
	}
	r.log.WarnContext(ctx, "handling failed; retry scheduled",
		"message_id", id, "queue", m.Queue, "retry", n, "of", r.max, "delay", delay, "error", err)
	if r.onRetry != nil {
		r.onRetry(ctx, Failure{Message: m, MessageID: id, Err: err, Retries: n, Delay: delay, Queue: m.Queue})
	}
	return nil
}

// exhaustedError is a handling error after the last delayed retry.
type exhaustedError struct {
	err     error
	retries int
}

func (e *exhaustedError) Error() string {
	return fmt.Sprintf("%v (gave up after %d delayed retries)", e.err, e.retries)
}

func (e *exhaustedError) Unwrap() error { return e.err }
