package memory

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/busline/busline/transport"
)

// The x-death reasons RabbitMQ 3.10 writes, as measured (see
// docs/architecture.md, "Queue arguments").
const (
	reasonExpired       = "expired"
	reasonMaxLen        = "maxlen"
	reasonRejected      = "rejected"
	reasonDeliveryLimit = "delivery_limit"
)

// limits are the queue arguments the broker enforces, parsed once when the
// queue is created.
type limits struct {
	priority    bool // x-max-priority given: a priority queue
	maxPriority uint8

	deliveryLimit    int64
	hasDeliveryLimit bool

	maxLen, maxBytes int64 // -1: no limit
	overflow         transport.Overflow

	ttl time.Duration // -1: messages do not expire

	hasDLX bool
	dlx    string
	hasKey bool
	dlKey  string
}

// argError is RabbitMQ's PRECONDITION_FAILED "invalid arg" as the memory
// broker reports it: an argument of the wrong type or out of range wraps
// ErrInvalidMessage, an argument the queue type refuses ErrNotSupported.
func argError(sentinel error, arg, why string) error {
	return fmt.Errorf("%w: argument %q: %s (RabbitMQ's PRECONDITION_FAILED invalid arg)", sentinel, arg, why)
}

// parseLimits reads the arguments of a queue of type typ (arguments
// normalized) and refuses those RabbitMQ 3.10.8 refuses, for the same
// reasons: first an argument the type does not take, then a value of the
// wrong type or out of range.
func parseLimits(typ transport.QueueType, args transport.Headers) (limits, error) {
	l := limits{maxLen: -1, maxBytes: -1, ttl: -1, overflow: transport.DropHead}
	for _, k := range slices.Sorted(mapKeys(args)) {
		if typ == transport.Quorum && k == "x-max-priority" {
			return l, argError(transport.ErrNotSupported, k, "quorum queues do not take it")
		}
		if typ == transport.Classic && (k == "x-delivery-limit" || k == "x-dead-letter-strategy") {
			return l, argError(transport.ErrNotSupported, k, "classic queues do not take it")
		}
	}
	integer := func(k string, max int64) (int64, bool, error) {
		v, ok := args[k]
		if !ok {
			return 0, false, nil
		}
		n, isInt := asInt(v)
		switch {
		case !isInt:
			return 0, false, argError(transport.ErrInvalidMessage, k, fmt.Sprintf("expected an integer, got %T", v))
		case n < 0 && k != "x-delivery-limit":
			return 0, false, argError(transport.ErrInvalidMessage, k, fmt.Sprintf("%d is negative", n))
		case max > 0 && n > max:
			return 0, false, argError(transport.ErrInvalidMessage, k, fmt.Sprintf("%d is more than %d", n, max))
		}
		return n, true, nil
	}
	var err error
	var n int64
	var ok bool
	if n, l.priority, err = integer("x-max-priority", 255); err != nil {
		return l, err
	}
	l.maxPriority = uint8(n)
	if l.deliveryLimit, l.hasDeliveryLimit, err = integer("x-delivery-limit", 0); err != nil {
		return l, err
	}
	if n, ok, err = integer("x-max-length", 0); err != nil {
		return l, err
	} else if ok {
		l.maxLen = n
	}
	if n, ok, err = integer("x-max-length-bytes", 0); err != nil {
		return l, err
	} else if ok {
		l.maxBytes = n
	}
	if n, ok, err = integer("x-message-ttl", 0); err != nil {
		return l, err
	} else if ok {
		l.ttl = time.Duration(n) * time.Millisecond
	}
	if v, ok := args["x-overflow"]; ok {
		s, _ := v.(string)
		switch o := transport.Overflow(s); o {
		case transport.DropHead, transport.RejectPublish:
			l.overflow = o
		case transport.RejectPublishDLX:
			// RabbitMQ 3.10.8's quorum queues take it and drop
			// the head.
			l.overflow = o
			if typ == transport.Quorum {
				l.overflow = transport.DropHead
			}
		default:
			return l, argError(transport.ErrInvalidMessage, "x-overflow", fmt.Sprintf("%v is not drop-head, reject-publish or reject-publish-dlx", v))
		}
	}
	if v, ok := args["x-dead-letter-exchange"]; ok {
		s, isString := v.(string)
		if !isString {
			return l, argError(transport.ErrInvalidMessage, "x-dead-letter-exchange", fmt.Sprintf("expected a string, got %T", v))
		}
		l.hasDLX, l.dlx = true, s
	}
	if v, ok := args["x-dead-letter-routing-key"]; ok {
		s, isString := v.(string)
		if !isString {
			return l, argError(transport.ErrInvalidMessage, "x-dead-letter-routing-key", fmt.Sprintf("expected a string, got %T", v))
		}
		if !l.hasDLX {
			return l, argError(transport.ErrInvalidMessage, "x-dead-letter-routing-key", "given without x-dead-letter-exchange")
		}
		l.hasKey, l.dlKey = true, s
	}
	return l, nil
}

func mapKeys(h transport.Headers) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}
}

// limited reports whether the queue has a length limit.
func (l *limits) limited() bool { return l.maxLen >= 0 || l.maxBytes >= 0 }

// over reports whether q's ready messages exceed its length limits.
func (q *queue) over() bool {
	return (q.lim.maxLen >= 0 && int64(q.readyLen()) > q.lim.maxLen) ||
		(q.lim.maxBytes >= 0 && q.readyBytes > q.lim.maxBytes)
}

// refusesLocked reports whether q refuses a message of size body bytes
// under its reject-publish overflow: a classic queue one that would take
// it over a limit; a quorum queue every message from the one that took it
// over its limits until it is down to 80% of them, as rabbit_fifo does
// (measured on 3.10.8: a quorum queue of x-max-length 10 takes an 11th
// message, then refuses until it holds 8).
func (q *queue) refusesLocked(body int) bool {
	l := &q.lim
	if !l.limited() || (l.overflow != transport.RejectPublish && l.overflow != transport.RejectPublishDLX) {
		return false
	}
	if q.spec.Type == transport.Quorum {
		if !q.rejecting {
			return false
		}
		if (l.maxLen < 0 || int64(q.readyLen()) <= int64(float64(l.maxLen)*0.8)) &&
			(l.maxBytes < 0 || q.readyBytes <= int64(float64(l.maxBytes)*0.8)) {
			q.rejecting = false
			return false
		}
		return true
	}
	return (l.maxLen >= 0 && int64(q.readyLen())+1 > l.maxLen) ||
		(l.maxBytes >= 0 && q.readyBytes+int64(body) > l.maxBytes)
}

// queueFullError is the refusal of a message by a full queue: the nack a
// RabbitMQ publisher gets. It wraps [transport.ErrRejected].
type queueFullError struct{ err error }

func (e *queueFullError) Error() string { return e.err.Error() }
func (e *queueFullError) Unwrap() error { return e.err }

// fullError says which limit refused a message.
func (q *queue) fullError() error {
	var lim []string
	if q.lim.maxLen >= 0 {
		lim = append(lim, fmt.Sprintf("x-max-length %d", q.lim.maxLen))
	}
	if q.lim.maxBytes >= 0 {
		lim = append(lim, fmt.Sprintf("x-max-length-bytes %d", q.lim.maxBytes))
	}
	return &queueFullError{fmt.Errorf("queue %q is full (%s, x-overflow %s): the broker nacked the message, which did not enter it: %w",
		q.name, strings.Join(lim, ", "), q.lim.overflow, transport.ErrRejected)}
}

// enforceLocked applies q's limits once messages entered its ready list
// (published or requeued) and the consumers took what they could: expired
// messages at the head go, a drop-head queue drops its oldest messages
// until it is within its limits, and a quorum reject-publish queue over
// its limits starts refusing publishes.
func (q *queue) enforceLocked(b *Broker, now stamp) {
	if q.lim.ttl >= 0 {
		q.expireHeadLocked(b, now)
	}
	if !q.lim.limited() || q.deleted {
		return
	}
	switch q.lim.overflow {
	case transport.DropHead:
		for q.readyLen() > 0 && q.over() {
			e := q.popFront()
			b.deadLetterLocked(q, e, reasonMaxLen, now)
			b.releaseLocked(e)
		}
		if q.lim.ttl >= 0 {
			q.armExpiryLocked(b)
		}
	case transport.RejectPublish:
		if q.spec.Type == transport.Quorum && q.over() {
			q.rejecting = true
		}
	}
}

// expireHeadLocked drops or dead-letters the expired messages at the head
// of q: RabbitMQ expires a message only once it reaches the head, so one
// behind a message that lives longer waits.
func (q *queue) expireHeadLocked(b *Broker, now stamp) {
	if q.readyLen() == 0 {
		return
	}
	t := time.Now()
	for q.readyLen() > 0 {
		h := q.ready.at(0)
		if h.expires.IsZero() || t.Before(h.expires) {
			return
		}
		q.popFront()
		b.deadLetterLocked(q, h, reasonExpired, now)
		b.releaseLocked(h)
	}
}

// armExpiryLocked keeps one timer per queue with a TTL, for the expiry of
// the message at its head, so that expired messages go without a consumer
// as they do on RabbitMQ.
func (q *queue) armExpiryLocked(b *Broker) {
	var due time.Time
	if q.readyLen() > 0 && !q.deleted && !b.closed {
		due = q.ready.at(0).expires
	}
	if q.ttlTimer != nil && due.Equal(q.ttlDue) {
		return
	}
	q.stopExpiryLocked(b)
	if due.IsZero() {
		return
	}
	q.ttlDue = due
	q.ttlGen++
	gen := q.ttlGen
	b.sched.wg.Add(1)
	q.ttlTimer = time.AfterFunc(time.Until(due), func() {
		defer b.sched.wg.Done()
		b.expireDue(q, gen)
	})
}

func (q *queue) stopExpiryLocked(b *Broker) {
	if q.ttlTimer != nil && q.ttlTimer.Stop() {
		b.sched.wg.Done()
	}
	q.ttlTimer, q.ttlDue = nil, time.Time{}
}

// expireDue runs when the message at the head of q may have expired.
func (b *Broker) expireDue(q *queue, gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || q.deleted || gen != q.ttlGen {
		return
	}
	q.ttlTimer, q.ttlDue = nil, time.Time{}
	now := b.stamp()
	q.expireHeadLocked(b, now)
	q.pumpLocked(b, now)
	q.armExpiryLocked(b)
	b.checkIdleLocked()
}

// returnLocked puts e back into q after a delivery that was not acked:
// nacked with requeue (nacked), or left unsettled by a consumer that
// stopped. A quorum queue counts the return and dead-letters (or drops)
// a message that went back more than its x-delivery-limit allows.
func (q *queue) returnLocked(b *Broker, e *entry, nacked bool, now stamp) {
	if q.spec.Type == transport.Quorum && q.lim.hasDeliveryLimit && e.returns+1 > q.lim.deliveryLimit {
		e.returns++
		b.deadLetterLocked(q, e, reasonDeliveryLimit, now)
		b.releaseLocked(e)
		return
	}
	if nacked {
		q.nackRequeue(b, e)
	} else {
		q.requeue(e)
	}
}

// deadLetterLocked publishes a copy of e, which q dropped for reason, to
// q's dead-letter exchange with RabbitMQ's x-death headers, or does
// nothing when q has none. The caller keeps its reference to e. As
// RabbitMQ's default (at-most-once) dead-lettering does, the copy is lost
// when the exchange does not exist, routes it nowhere or only to full
// queues, and a queue already in its x-death history is skipped unless the
// message was rejected on the way (a cycle).
func (b *Broker) deadLetterLocked(q *queue, e *entry, reason string, now stamp) {
	if !q.lim.hasDLX {
		return
	}
	var ex *exchange
	if q.lim.dlx != "" {
		var ok bool
		if ex, ok = b.exchanges[q.lim.dlx]; !ok {
			return
		}
	}
	key := e.key
	if q.lim.hasKey {
		key = q.lim.dlKey
	}
	d := e.clone()
	d.hdrs = deathHeaders(d.hdrs, q.name, reason, e.exchange, e.key, time.Now())
	d.exchange, d.key = q.lim.dlx, key
	qs := slices.DeleteFunc(b.routeFreshLocked(ex, key), func(t *queue) bool { return inCycle(d.hdrs, t.name) })
	b.enqueueLocked(ex, d, qs, now)
}

// routeFreshLocked is routeLocked into a slice of its own, for routing
// while the caller still iterates over the result of routeLocked.
func (b *Broker) routeFreshLocked(ex *exchange, key string) []*queue {
	saved := b.route.out
	b.route.out = nil
	qs := b.routeLocked(ex, key)
	b.route.out = saved
	return qs
}

// deathHeaders returns hdrs with the x-death history of a message queue
// dropped for reason: RabbitMQ 3.10 keeps one table per queue and reason,
// newest first, counting repeats, and sets x-first-death-queue, -reason and
// -exchange once.
func deathHeaders(hdrs []header, queue, reason, exchange, key string, at time.Time) []header {
	var deaths []any
	out := hdrs[:0:0]
	first := map[string]bool{}
	for _, h := range hdrs {
		switch h.key {
		case "x-death":
			deaths, _ = h.value.([]any)
			continue
		case "x-first-death-queue", "x-first-death-reason", "x-first-death-exchange":
			first[h.key] = true
		}
		out = append(out, h)
	}
	var next []any
	count := int64(1)
	for _, d := range deaths {
		t, ok := d.(map[string]any)
		if ok && t["queue"] == queue && t["reason"] == reason {
			if c, ok := asInt(t["count"]); ok {
				count = c + 1
			}
			continue
		}
		next = append(next, cloneValue(d))
	}
	entry := map[string]any{
		"count":        count,
		"reason":       reason,
		"queue":        queue,
		"time":         at.Truncate(time.Second).UTC(),
		"exchange":     exchange,
		"routing-keys": []any{key},
	}
	next = append([]any{entry}, next...)
	out = append(out, header{"x-death", next})
	for k, v := range map[string]string{"x-first-death-queue": queue, "x-first-death-reason": reason, "x-first-death-exchange": exchange} {
		if !first[k] {
			out = append(out, header{k, v})
		}
	}
	return out
}

// inCycle reports whether dead-lettering a message with headers hdrs to
// queue would close a cycle RabbitMQ breaks: the queue is in its x-death
// history and no step of it was a rejection.
func inCycle(hdrs []header, queue string) bool {
	for _, h := range hdrs {
		if h.key != "x-death" {
			continue
		}
		deaths, _ := h.value.([]any)
		seen := false
		for _, d := range deaths {
			t, _ := d.(map[string]any)
			if t["reason"] == reasonRejected {
				return false
			}
			if t["queue"] == queue {
				seen = true
			}
		}
		return seen
	}
	return false
}
