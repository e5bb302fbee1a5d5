package memory

import (
	"fmt"
	"time"

	"github.com/busline/busline/transport"
)

// Inject puts msg into queue as RabbitMQ would deliver it after another
// client published it, for tests that reproduce what a foreign producer
// sends: unlike [Broker.Publish] it keeps header keys (top level or inside
// nested tables) that are not valid UTF-8, which RabbitMQ accepts (an AMQP
// field name is a short string of any bytes) and delivers as they are, but
// which no transport of busline publishes. Everything else is checked as
// Publish checks it: properties and keys of at most 255 bytes, values of
// the types [transport.Headers] lists (converted to their canonical form).
// The message is routed through the default exchange, as if published to
// it under the queue's name; Inject fails with an error wrapping
// [transport.ErrNotFound] if the queue does not exist. It is not affected by
// [Broker.FailDispatches], [Broker.Block] or [Broker.Disconnect].
func (b *Broker) Inject(queueName string, msg transport.Message) error {
	op := fmt.Sprintf("inject into queue %q", queueName)
	if err := transport.ValidateQueueName(queueName); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	hdrs, err := deliveredHeaders(msg.Headers)
	if err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	bare := msg
	bare.Headers = nil
	if err := bare.Validate(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	e := newEntry()
	_ = e.set(&bare) // no headers: cannot fail
	for k, v := range hdrs {
		e.hdrs = append(e.hdrs, header{k, v})
	}
	e.exchange, e.key = "", queueName
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		e.free()
		return err
	}
	q, ok := b.queues[queueName]
	if !ok {
		e.free()
		return fmt.Errorf("memory: %s: %w: no such queue", op, transport.ErrNotFound)
	}
	if full := b.enqueueLocked(nil, e, []*queue{q}, b.stamp()); full != nil {
		return fmt.Errorf("memory: %s: %w", op, q.fullError())
	}
	return nil
}

// deliveredHeaders is [transport.Headers.Normalize] for headers as RabbitMQ
// delivers them: keys that are not valid UTF-8 are kept.
func deliveredHeaders(h transport.Headers) (transport.Headers, error) {
	if len(h) == 0 {
		return nil, nil
	}
	out := make(transport.Headers, len(h))
	for k, v := range h {
		if len(k) > transport.MaxNameLength {
			return nil, fmt.Errorf("%w: header key %q is %d bytes long, the limit is %d",
				transport.ErrInvalidMessage, k, len(k), transport.MaxNameLength)
		}
		nv, err := deliveredValue(v)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		out[k] = nv
	}
	return out, nil
}

func deliveredValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		t, err := deliveredHeaders(v)
		if t == nil {
			t = transport.Headers{}
		}
		return map[string]any(t), err
	case transport.Headers:
		return deliveredValue(map[string]any(v))
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			ne, err := deliveredValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = ne
		}
		return out, nil
	case time.Time:
		return v.Truncate(time.Second).UTC(), nil
	}
	n, err := transport.Headers{"v": v}.Normalize()
	if err != nil {
		return nil, err
	}
	return n["v"], nil
}
