package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/busline/busline/transport"
)

// ErrNoSourceQueue is the reason [Replay] leaves a message on the error
// queue when its SourceQueue header is missing, not a string, not a valid
// queue name, or names the error queue itself.
var ErrNoSourceQueue = errors.New("no usable SourceQueue header")

// ReplayOptions choose what [Replay] moves. The zero value replays every
// message of the queue "error" that has a usable SourceQueue header.
type ReplayOptions struct {
	// Queue is the error queue. Empty means [DefaultErrorQueue].
	Queue string
	// MessageIDs, if not empty, limits the replay to messages with one of
	// these ids (the message_id property or the MessageId header). Replay
	// stops once it has replayed each of them.
	MessageIDs []string
	// SourceQueues, if not empty, limits the replay to messages whose
	// SourceQueue header is one of these.
	SourceQueues []string
	// Max, if positive, is the most messages to replay.
	Max int
	// Headers are the header names; the zero value means
	// [DefaultHeaderNames].
	Headers HeaderNames
	// Logger receives a record per message replayed (Debug) or left
	// behind (Warn). Nil means silent.
	Logger *slog.Logger
}

// ReplayedMessage is a message [Replay] moved back to its source queue.
type ReplayedMessage struct {
	// ID is the message's id.
	ID string
	// SourceQueue is the queue it was sent to.
	SourceQueue string
}

// LeftMessage is a message [Replay] was asked to move but left on the error
// queue.
type LeftMessage struct {
	// ID is the message's id.
	ID string
	// SourceQueue is its SourceQueue header, if it is a string.
	SourceQueue string
	// Reason says why: [ErrNoSourceQueue], or the Dispatch error (for
	// example transport.ErrUnroutable when the source queue no longer
	// exists).
	Reason error
}

// ReplayResult is what [Replay] did.
type ReplayResult struct {
	// Replayed are the messages moved back to their source queues, in the
	// order they were moved.
	Replayed []ReplayedMessage
	// Left are the messages selected for replay but left on the error
	// queue, with the reason.
	Left []LeftMessage
	// Skipped counts the messages looked at that the options did not
	// select; they stay on the error queue, in their place.
	Skipped int
}

// Replay moves messages from the error queue back to the queues they failed
// in, so that they are handled again: each goes to the queue named by its
// SourceQueue header, through the direct exchange with Mandatory set, with
// its body, properties and other headers unchanged and the ErrorRetries,
// DeferredTime, ErrorDetails and SourceQueue headers removed, so it starts
// afresh with a full set of retries. Package bus re-exports it.
//
// Replay pulls the error queue's messages one at a time with
// transport.Getter (s must implement it, or Replay fails with an error
// wrapping transport.ErrNotSupported), so no consumer is left behind and
// nothing is delivered that Replay does not settle. Each message is
// dispatched, and confirmed by the broker, before it is acked on the error
// queue: a failure in between duplicates it, never loses it. Messages not
// selected by the options, or that cannot be replayed (no usable SourceQueue,
// a failed Dispatch), are held unacked while Replay runs, so that the next
// pull moves past them, and given back to the error queue (nack with
// requeue) before Replay returns, in their place.
//
// Replay looks at each message present when it starts at most once: with a
// transport.Inspector it pulls no more than the queue held at the start;
// without one it stops when a message id it has replayed comes round again
// (a replayed message that failed again at once). It also stops after
// [ReplayOptions.Max] messages, or once every id of
// [ReplayOptions.MessageIDs] is replayed.
//
// The error is nil when Replay went through the queue; otherwise it says why
// Replay stopped early (ctx ended, a pull failed, or a replayed message could
// not be acked: it is then in both queues). The result is valid either way.
func Replay(ctx context.Context, s Sender, opts ReplayOptions) (res ReplayResult, err error) {
	if s == nil {
		return res, errors.New("middleware.Replay: nil Sender")
	}
	getter, ok := s.(transport.Getter)
	if !ok {
		return res, fmt.Errorf("middleware.Replay: the transport does not implement transport.Getter: %w", transport.ErrNotSupported)
	}
	q := opts.Queue
	if q == "" {
		q = DefaultErrorQueue
	}
	if err := transport.ValidateQueueName(q); err != nil {
		return res, fmt.Errorf("middleware.Replay: %w", err)
	}
	if opts.Max < 0 {
		return res, fmt.Errorf("middleware.Replay: Max %d is negative", opts.Max)
	}
	names, err := opts.Headers.resolve("Replay", errorRetriesName, deferredTimeName, errorDetailsName, sourceQueueName)
	if err != nil {
		return res, err
	}
	log := loggerOr(opts.Logger)

	budget := -1 // pulls left; negative: unbounded
	if insp, ok := s.(transport.Inspector); ok {
		info, err := insp.Inspect(ctx, q)
		if err != nil {
			return res, fmt.Errorf("middleware.Replay: %w", err)
		}
		budget = info.Messages
	}
	wantIDs := set(opts.MessageIDs)
	wantSources := set(opts.SourceQueues)
	replayedIDs := make(map[string]bool)
	foundIDs := 0

	var held []*transport.Delivery
	defer func() {
		for _, d := range held {
			if nerr := d.Nack(true); nerr != nil {
				log.WarnContext(ctx, "cannot give a message back to the error queue; the broker requeues it",
					"message_id", messageID(&d.Message, names), "queue", q, "error", nerr)
			}
		}
	}()

	for budget != 0 {
		if opts.Max > 0 && len(res.Replayed) >= opts.Max {
			break
		}
		if len(wantIDs) > 0 && foundIDs == len(wantIDs) {
			break
		}
		d, ok, gerr := getter.Get(ctx, q)
		if gerr != nil {
			return res, fmt.Errorf("middleware.Replay: pull from %q: %w", q, gerr)
		}
		if !ok {
			break
		}
		budget--
		id := messageID(&d.Message, names)
		if budget < 0 && id != "" && replayedIDs[id] {
			held = append(held, d)
			break
		}
		source, _ := HeaderString(d.Headers[names.SourceQueue])
		if !selected(&d.Message, names, wantIDs, wantSources, source) {
			held = append(held, d)
			res.Skipped++
			continue
		}
		if transport.ValidateQueueName(source) != nil || source == q {
			held = append(held, d)
			res.Left = append(res.Left, LeftMessage{ID: id, SourceQueue: source, Reason: ErrNoSourceQueue})
			log.WarnContext(ctx, "message left on the error queue: no usable SourceQueue",
				"message_id", id, "queue", q, "source_queue", source)
			continue
		}
		out := d.Message
		out.Headers = withHeaders(d.Headers, 0)
		delete(out.Headers, names.ErrorRetries)
		delete(out.Headers, names.DeferredTime)
		delete(out.Headers, names.ErrorDetails)
		delete(out.Headers, names.SourceQueue)
		if derr := s.Dispatch(ctx, transport.Outgoing{
			Exchange:   transport.Direct,
			RoutingKey: source,
			Mandatory:  true,
			Message:    out,
		}); derr != nil {
			held = append(held, d)
			if ctx.Err() != nil {
				return res, fmt.Errorf("middleware.Replay: %w", derr)
			}
			res.Left = append(res.Left, LeftMessage{ID: id, SourceQueue: source, Reason: derr})
			log.WarnContext(ctx, "message left on the error queue: cannot dispatch it to its source queue",
				"message_id", id, "queue", q, "source_queue", source, "error", derr)
			continue
		}
		res.Replayed = append(res.Replayed, ReplayedMessage{ID: id, SourceQueue: source})
		if id != "" {
			replayedIDs[id] = true
		}
		if len(wantIDs) > 0 {
			for _, k := range [...]string{d.ID, headerMessageID(&d.Message, names)} {
				if k != "" && wantIDs[k] {
					wantIDs[k] = false
					foundIDs++
				}
			}
		}
		if aerr := d.Ack(); aerr != nil {
			return res, fmt.Errorf("middleware.Replay: message %q was replayed to %q but is still on %q (acking it failed): %w", id, source, q, aerr)
		}
		log.DebugContext(ctx, "message replayed", "message_id", id, "queue", q, "source_queue", source)
	}
	return res, nil
}

// set returns the strings of ss as the keys of a map to true; nil for none.
func set(ss []string) map[string]bool {
	if len(ss) == 0 {
		return nil
	}
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// selected reports whether the filters of ReplayOptions take m. An id of
// wantIDs already replayed maps to false and selects no further copy.
func selected(m *transport.Message, names HeaderNames, wantIDs, wantSources map[string]bool, source string) bool {
	if wantSources != nil && !wantSources[source] {
		return false
	}
	if wantIDs != nil && !wantIDs[m.ID] && !wantIDs[headerMessageID(m, names)] {
		return false
	}
	return true
}

func headerMessageID(m *transport.Message, names HeaderNames) string {
	s, _ := HeaderString(m.Headers[names.MessageID])
	return s
}
