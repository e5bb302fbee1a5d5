package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/busline/busline/transport"
)

// DefaultDeferralTolerance is how far in the future a DeferredTime may be
// for the Deferral stage to handle the message at once anyway, when
// [DeferralOptions.Tolerance] is zero. It absorbs small clock differences
// between hosts without a round trip through the broker.
const DefaultDeferralTolerance = 100 * time.Millisecond

// DeferralOptions configure the [Deferral] stage. The zero value uses
// [DefaultDeferralTolerance], PikaBus's header names and no logging.
type DeferralOptions struct {
	// Tolerance: a message due less than this far in the future is handled
	// now. Zero means [DefaultDeferralTolerance]; a negative value means
	// none.
	Tolerance time.Duration
	// Headers are the header names; the zero value means
	// [DefaultHeaderNames].
	Headers HeaderNames
	// DispatchTimeout bounds the dispatch of a rescheduled message. Zero
	// means [DefaultDispatchTimeout].
	DispatchTimeout time.Duration
	// Logger receives the stage's decisions: messages rescheduled (Debug),
	// DeferredTime headers that cannot be read (Warn), reschedules that
	// failed (Error). Nil means silent.
	Logger *slog.Logger
}

// Deferral returns the deferral stage, which honours the DeferredTime header
// PikaBus services (and busline's retries) put on messages that must not be
// handled before a time. A message whose DeferredTime is more than
// [DeferralOptions.Tolerance] in the future is not handled: the stage
// dispatches it unchanged to its own queue, [Message.Queue], through the
// direct exchange with Mandatory set and [transport.Outgoing.NotBefore] set
// to the DeferredTime, clamped to the transport's MaxDelay (the header keeps
// the real time, so a message deferred longer than MaxDelay is rescheduled
// again when it arrives), and returns nil once Dispatch has returned nil.
// The message is never sent back for immediate redelivery nor held in
// process.
//
// A DeferredTime in the past, an absent one, or one that cannot be read
// (logged at Warn) lets the message through to be handled now. Both
// busline's RFC 3339 times and PikaBus 1.x's are read (see [ParseTime]).
//
// If the reschedule cannot be dispatched the stage returns a [*ForwardError]
// and the endpoint gives the message back to the broker.
//
// Deferral fails with an error wrapping transport.ErrNotSupported if s does
// not implement transport.Delayer.
func Deferral(s Sender, opts DeferralOptions) (Middleware, error) {
	if s == nil {
		return nil, errors.New("middleware.Deferral: nil Sender")
	}
	delayer, ok := s.(transport.Delayer)
	if !ok {
		return nil, fmt.Errorf("middleware.Deferral: deferral needs a transport that implements transport.Delayer: %w", transport.ErrNotSupported)
	}
	if delayer.MaxDelay() <= 0 {
		return nil, fmt.Errorf("middleware.Deferral: the transport's MaxDelay is %v: %w", delayer.MaxDelay(), transport.ErrNotSupported)
	}
	names, err := opts.Headers.resolve("Deferral", deferredTimeName)
	if err != nil {
		return nil, err
	}
	d := &deferral{
		sender:    s,
		delayer:   delayer,
		tolerance: opts.Tolerance,
		names:     names,
		timeout:   timeoutOr(opts.DispatchTimeout),
		log:       loggerOr(opts.Logger),
	}
	switch {
	case d.tolerance == 0:
		d.tolerance = DefaultDeferralTolerance
	case d.tolerance < 0:
		d.tolerance = 0
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			v, ok := m.Headers[d.names.DeferredTime]
			if !ok {
				return next(ctx, m)
			}
			return d.check(ctx, m, v, next)
		}
	}, nil
}

type deferral struct {
	sender    Sender
	delayer   transport.Delayer
	tolerance time.Duration
	names     HeaderNames
	timeout   time.Duration
	log       *slog.Logger
}

func (d *deferral) check(ctx context.Context, m *Message, v any, next Handler) error {
	due, ok, err := HeaderTime(v)
	if err != nil {
		d.log.WarnContext(ctx, "unreadable DeferredTime; handling the message now",
			"message_id", messageID(&m.Message, d.names), "queue", m.Queue,
			"header", d.names.DeferredTime, "error", err)
		return next(ctx, m)
	}
	now := time.Now()
	if !ok || due.Sub(now) <= d.tolerance {
		return next(ctx, m)
	}
	notBefore := due
	if max := d.delayer.MaxDelay(); due.Sub(now) > max {
		notBefore = now.Add(max)
	}
	id := messageID(&m.Message, d.names)
	msg := m.Message
	if _, ok := msg.Headers[deliveryCountHeader]; ok {
		msg.Headers = forwardHeaders(msg.Headers, 0)
	}
	if ferr := forward(ctx, d.sender, d.timeout, transport.Outgoing{
		Exchange:   transport.Direct,
		RoutingKey: m.Queue,
		Mandatory:  true,
		NotBefore:  notBefore,
		Message:    msg,
	}); ferr != nil {
		d.log.ErrorContext(ctx, "cannot reschedule deferred message; it goes back to its queue",
			"message_id", id, "queue", m.Queue, "due", due, "error", ferr)
		return &ForwardError{Stage: "deferral", Queue: m.Queue, MessageID: id, Err: ferr}
	}
	d.log.DebugContext(ctx, "deferred message rescheduled",
		"message_id", id, "queue", m.Queue, "due", due, "not_before", notBefore)
	return nil
}
