package middleware_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/busline/busline/transport"
)

// broker is a small in-process stand-in for a transport, with the
// capabilities the stages look for (Delayer, Getter, Inspector) provided by
// wrappers, so that each test chooses what the stages see.
type broker struct {
	mu       sync.Mutex
	queues   map[string][]*entry
	maxDelay time.Duration
	tag      uint64
	sent     []transport.Outgoing // every message Dispatch accepted, in order
	// fail, if set, is called for each message before it is accepted; an
	// error fails the Dispatch.
	fail func(ctx context.Context, o transport.Outgoing) error
	// onDispatch, if set, runs after a message is enqueued.
	onDispatch func(b *broker, o transport.Outgoing)
	// delivered counts the messages deliver handed to a handler, so that
	// a test looping until the queue is empty fails when messages keep
	// coming back instead of looping until go test's timeout.
	delivered int
}

type entry struct {
	msg     transport.Message
	due     time.Time
	tag     uint64
	unacked bool
}

func newBroker(queues ...string) *broker {
	b := &broker{queues: map[string][]*entry{}, maxDelay: 24 * time.Hour}
	for _, q := range queues {
		b.queues[q] = nil
	}
	return b
}

func (b *broker) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range msgs {
		if err := msgs[i].Validate(); err != nil {
			return err
		}
	}
	for _, o := range msgs {
		if b.fail != nil {
			if err := b.fail(ctx, o); err != nil {
				return &transport.DispatchError{RoutingKey: o.RoutingKey, MessageID: o.Message.ID, Err: err}
			}
		}
		if err := b.enqueue(o); err != nil {
			return err
		}
		if b.onDispatch != nil {
			b.onDispatch(b, o)
		}
	}
	return nil
}

func (b *broker) enqueue(o transport.Outgoing) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o.Exchange != transport.Direct {
		return fmt.Errorf("fake broker: only the direct exchange: %w", transport.ErrNotSupported)
	}
	q, ok := b.queues[o.RoutingKey]
	if !ok {
		if o.Mandatory {
			return &transport.DispatchError{RoutingKey: o.RoutingKey, MessageID: o.Message.ID, Err: transport.ErrUnroutable}
		}
		return nil
	}
	if d := time.Until(o.NotBefore); d > b.maxDelay {
		return fmt.Errorf("delay %v over %v: %w", d, b.maxDelay, transport.ErrNotSupported)
	}
	m, err := o.Message.Normalized()
	if err != nil {
		return err
	}
	b.sent = append(b.sent, o)
	b.tag++
	b.queues[o.RoutingKey] = append(q, &entry{msg: m, due: o.NotBefore, tag: b.tag})
	return nil
}

// put enqueues m on queue directly, as if a producer had sent it.
func (b *broker) put(queue string, m transport.Message) {
	if err := b.enqueue(transport.Outgoing{RoutingKey: queue, Message: m}); err != nil {
		panic(err)
	}
}

// messages returns the messages of queue, ready or not, in queue order.
func (b *broker) messages(queue string) []transport.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ms []transport.Message
	for _, e := range b.queues[queue] {
		ms = append(ms, e.msg)
	}
	return ms
}

// next takes the message of queue that is due first, waiting (in fake time,
// inside a synctest bubble) until it is due. ok is false if the queue is
// empty.
func (b *broker) next(queue string) (m transport.Message, at time.Time, ok bool) {
	b.mu.Lock()
	q := b.queues[queue]
	if len(q) == 0 {
		b.mu.Unlock()
		return m, at, false
	}
	i := 0
	for j, e := range q {
		if e.due.Before(q[i].due) {
			i = j
		}
	}
	e := q[i]
	b.queues[queue] = slices.Delete(q, i, i+1)
	b.mu.Unlock()
	if d := time.Until(e.due); d > 0 {
		time.Sleep(d)
	}
	return e.msg, time.Now(), true
}

func (b *broker) get(ctx context.Context, queue string) (*transport.Delivery, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[queue]
	if !ok {
		return nil, false, transport.ErrNotFound
	}
	now := time.Now()
	for _, e := range q {
		if e.unacked || e.due.After(now) {
			continue
		}
		e.unacked = true
		m, _ := e.msg.Normalized()
		return &transport.Delivery{Message: m, Queue: queue, Tag: e.tag, Acknowledger: acker{b, queue}}, true, nil
	}
	return nil, false, nil
}

func (b *broker) inspect(ctx context.Context, queue string) (transport.QueueInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[queue]
	if !ok {
		return transport.QueueInfo{}, transport.ErrNotFound
	}
	n := 0
	for _, e := range q {
		if !e.unacked {
			n++
		}
	}
	return transport.QueueInfo{Name: queue, Messages: n}, nil
}

type acker struct {
	b     *broker
	queue string
}

func (a acker) Ack(tag uint64) error { return a.settle(tag, false) }

func (a acker) Nack(tag uint64, requeue bool) error { return a.settle(tag, requeue) }

func (a acker) settle(tag uint64, requeue bool) error {
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	q := a.b.queues[a.queue]
	for i, e := range q {
		if e.tag == tag {
			if requeue {
				e.unacked = false
			} else {
				a.b.queues[a.queue] = slices.Delete(q, i, i+1)
			}
			return nil
		}
	}
	return transport.ErrSettled
}

// The views of a broker the stages are given: each has Dispatch and the
// capabilities its name says.
type (
	// plain has Dispatch only.
	plain struct{ b *broker }
	// delaying is a transport.Delayer.
	delaying struct{ *broker }
	// getting is a transport.Getter.
	getting struct{ *broker }
	// full is a Delayer, a Getter and an Inspector.
	full struct{ *broker }
)

func (p plain) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	return p.b.Dispatch(ctx, msgs...)
}

func (d delaying) MaxDelay() time.Duration { return d.maxDelay }

func (g getting) Get(ctx context.Context, q string) (*transport.Delivery, bool, error) {
	return g.get(ctx, q)
}

func (f full) MaxDelay() time.Duration { return f.maxDelay }

func (f full) Get(ctx context.Context, q string) (*transport.Delivery, bool, error) {
	return f.get(ctx, q)
}

func (f full) Inspect(ctx context.Context, q string) (transport.QueueInfo, error) {
	return f.inspect(ctx, q)
}
