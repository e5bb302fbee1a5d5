package middleware

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"

	"github.com/busline/busline/transport"
)

// ErrNoSourceQueue is the reason [Replay] leaves a message on the error
// queue when its SourceQueue header is missing, not a string, not a valid
// queue name, or names the error queue itself.
var ErrNoSourceQueue = errors.New("no usable SourceQueue header")

// ErrAlreadyReplayed is the reason [Replay] leaves a message on the error
// queue when it replayed a message with the same id earlier in the same
// call: the message failed again at once and came back, or the queue held
// two copies of it.
var ErrAlreadyReplayed = errors.New("replayed earlier in this Replay, and on the error queue again")

// ReplayOptions choose what [Replay] moves. The zero value replays every
// message of the queue "error" that has a usable SourceQueue header.
type ReplayOptions struct {
	// Queue is the error queue. Empty means [DefaultErrorQueue].
	Queue string
	// MessageIDs, if not empty, limits the replay to messages with one of
	// these ids (the message_id property or the MessageId header). Replay
	// stops once it has replayed each of them; those it did not come
	// across are reported in [ReplayResult.NotFound].
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
	// behind (Warn), and one for requested ids not found (Warn). Nil means
	// silent.
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
	// Reason says why: [ErrNoSourceQueue], [ErrAlreadyReplayed], or the
	// Dispatch error (for example transport.ErrUnroutable when the source
	// queue no longer exists).
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
	// NotFound are the ids of [ReplayOptions.MessageIDs] that Replay did
	// not come across in the whole queue, in the order requested. Replay
	// then also returns an error wrapping transport.ErrNotFound. It is
	// empty when Replay stopped before the end of the queue (at
	// [ReplayOptions.Max], or on an error).
	NotFound []string
}

// Replay moves messages from the error queue back to the queues they failed
// in, so that they are handled again: each goes to the queue named by its
// SourceQueue header (or, for a message the broker dead-lettered to the
// error queue, such as one over its queue's delivery limit
// (transport.QueueOptions.DeliveryLimit), the queue of the newest entry of
// its x-death header),
// through the direct exchange with Mandatory set, with its body,
// properties and other headers unchanged and the ErrorRetries,
// DeferredTime, ErrorDetails, SourceQueue and dead-lettering (x-death,
// x-first-death-*) headers removed, so it starts afresh with a full set of
// retries. Package bus offers it as
// Bus.ReplayErrors, with the endpoint's error queue, header names and
// transport.
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
// Replay pulls until the queue yields no message, rather than trusting a
// count taken when it starts: a message given back to the queue just before
// (a nack, which is asynchronous on RabbitMQ) is not missed, nor one that
// arrives while Replay runs. It looks at each message at most once: a
// message whose id it has replayed already in this call (one that failed
// again at once and came back, or a second copy) is left on the error queue
// with [ErrAlreadyReplayed], and held, so that it does not come round
// again. Messages without an id are recognized by their body. A steady flow
// of new failures into the queue keeps Replay pulling: bound it with ctx or
// [ReplayOptions.Max]. Replay also stops after Max messages, or once every
// id of [ReplayOptions.MessageIDs] is replayed.
//
// The error is nil when Replay went through the queue and found every id
// asked for. Otherwise it says why Replay stopped early (ctx ended, a pull
// failed, or a replayed message could not be acked: it is then in both
// queues), or wraps transport.ErrNotFound and names the ids of
// ReplayOptions.MessageIDs not found ([ReplayResult.NotFound]). The result
// is valid either way.
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

	wantIDs := set(opts.MessageIDs)
	wantSources := set(opts.SourceQueues)
	replayed := make(map[string]bool) // keys (see replayKey) of the messages replayed
	seenIDs := make(map[string]bool)  // ids of MessageIDs come across
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

	for {
		if opts.Max > 0 && len(res.Replayed) >= opts.Max {
			return res, nil
		}
		if len(wantIDs) > 0 && foundIDs == len(wantIDs) {
			return res, nil
		}
		d, ok, gerr := getter.Get(ctx, q)
		if gerr != nil {
			return res, fmt.Errorf("middleware.Replay: pull from %q: %w", q, gerr)
		}
		if !ok {
			break
		}
		id := messageID(&d.Message, names)
		for _, k := range [...]string{d.ID, headerMessageID(&d.Message, names)} {
			if k != "" && wantIDs[k] {
				seenIDs[k] = true
			}
		}
		source := sourceQueue(d.Headers, names)
		if !selected(&d.Message, names, wantIDs, wantSources, source) {
			held = append(held, d)
			res.Skipped++
			continue
		}
		key := replayKey(&d.Message, names)
		if replayed[key] {
			held = append(held, d)
			res.Left = append(res.Left, LeftMessage{ID: id, SourceQueue: source, Reason: ErrAlreadyReplayed})
			log.WarnContext(ctx, "message left on the error queue: replayed earlier in this Replay, and back",
				"message_id", id, "queue", q, "source_queue", source)
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
		out.Headers = forwardHeaders(d.Headers, 0)
		delete(out.Headers, names.ErrorRetries)
		delete(out.Headers, names.DeferredTime)
		delete(out.Headers, names.ErrorDetails)
		delete(out.Headers, names.SourceQueue)
		for k := range out.Headers {
			if k == "x-death" || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") {
				delete(out.Headers, k)
			}
		}
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
		replayed[key] = true
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
	for _, id := range opts.MessageIDs {
		if !seenIDs[id] && !slices.Contains(res.NotFound, id) {
			res.NotFound = append(res.NotFound, id)
		}
	}
	if len(res.NotFound) > 0 {
		log.WarnContext(ctx, "messages asked for are not on the error queue", "queue", q, "message_ids", res.NotFound)
		return res, fmt.Errorf("middleware.Replay: %d of the %d messages asked for are not on %q: %q: %w",
			len(res.NotFound), len(wantIDs), q, res.NotFound, transport.ErrNotFound)
	}
	return res, nil
}

// replayKey identifies a message within one Replay: its id, else (for a
// message without one) its body.
func replayKey(m *transport.Message, names HeaderNames) string {
	if id := messageID(m, names); id != "" {
		return "id " + id
	}
	h := fnv.New64a()
	h.Write(m.Body)
	return fmt.Sprintf("body %d %x", len(m.Body), h.Sum64())
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

// sourceQueue is the queue a message on the error queue failed in: its
// SourceQueue header, or the queue RabbitMQ dead-lettered it from last:
// the newest entry of x-death, not x-first-death-queue, which names a
// delay level for a message that was deferred (a retry copy) before it
// was dead-lettered from its queue.
func sourceQueue(h transport.Headers, names HeaderNames) string {
	if source, ok := HeaderString(h[names.SourceQueue]); ok {
		return source
	}
	if deaths, ok := h["x-death"].([]any); ok && len(deaths) > 0 {
		if last, ok := deaths[0].(map[string]any); ok {
			if source, ok := HeaderString(last["queue"]); ok {
				return source
			}
		}
	}
	source, _ := HeaderString(h["x-first-death-queue"])
	return source
}
