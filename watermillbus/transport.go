package watermillbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/transport"
)

// TransportOptions configure a [Transport]. Publisher and Subscriber are
// required.
type TransportOptions struct {
	// Publisher publishes to the Watermill topic of a queue.
	Publisher message.Publisher

	// Subscriber consumes the topic of a queue. It must hand each message
	// of a topic to one of its subscriptions, as a queue does (watermill-
	// sql and Kafka within a consumer group, NATS queue groups,
	// watermill-amqp's queue configurations): then consumers of a queue
	// compete. GoChannel hands every message to every subscription, so on
	// it a queue must have one consumer at a time.
	Subscriber message.Subscriber

	// Competing declares that the Subscriber's subscriptions of one topic
	// compete, each message going to one of them (watermill-amqp's queue
	// configurations, NATS queue groups, Kafka consumer groups): a
	// consumer then opens one subscription per unit of Concurrency.
	// Without it a consumer opens one subscription and handles one
	// message at a time, whatever the Concurrency (an upper bound in the
	// transport contract).
	Competing bool

	// Registry keeps the queues and bindings; every transport that
	// publishes to or consumes from the same queues must share it. Nil
	// means a memory registry of this transport's own.
	Registry Registry

	// CloseBackend makes Close also close the Publisher and the
	// Subscriber, for a transport that owns them.
	CloseBackend bool

	// Topic maps a queue name to its Watermill topic. Nil means the queue
	// name itself. Backends restrict topic names (watermill-sql takes
	// letters, digits and "-$:._"); map the names there.
	Topic func(queue string) string
}

// Transport is a busline transport over a Watermill Publisher and
// Subscriber, so that a bus runs over GoChannel, watermill-sql, Kafka,
// NATS, watermill-amqp or any other Watermill backend.
//
// # Mapping
//
// Each busline queue is one Watermill topic ([TransportOptions.Topic]).
// Dispatch on the direct exchange publishes to the topic of the queue
// named by the routing key; on the topic exchange it looks the routing key
// up in the [Registry] (RabbitMQ's rules: "*" one word, "#" zero or more)
// and publishes a copy to the topic of every queue bound under a matching
// pattern. Routing therefore happens in the publishing process, which is
// why every transport must share the Registry; a mandatory message that
// matches no queue in it fails with transport.ErrUnroutable, decided by
// the Registry, not by the backend. Dispatch returns when the Publisher's
// Publish has returned, which is Watermill's promise that the backend
// keeps the message.
//
// # What it cannot do
//
// It implements the core transport contract with these limits, declared
// to the conformance suites:
//
//   - Watermill hands a subscription its next message after the previous
//     one is acked or nacked, so a consumer holds one unsettled message
//     per subscription whatever the Prefetch: one subscription, in queue
//     order, or, on a backend whose subscriptions compete
//     ([TransportOptions.Competing]), one per unit of Concurrency; on
//     other backends one message is handled at a time whatever the
//     Concurrency;
//   - Nack with requeue, and a consumer stopped with a delivery unsettled,
//     publish the message again to the back of its queue, marked
//     redelivered, then ack the original: the redelivery is exact on
//     every backend, its position is a quorum queue's, not a classic's,
//     and there is no x-delivery-count;
//   - no consumer priority: Consume refuses a non-zero
//     ConsumeOptions.Priority with transport.ErrNotSupported;
//   - no deferred delivery (not a transport.Delayer: the bus then runs
//     without delayed retries), no Inspector, Getter, QueueDeleter,
//     Watcher, HealthChecker or AsyncDispatcher (the bus posts
//     asynchronously through Dispatch, one post after the other);
//   - queue types and arguments are recorded in the Registry and checked
//     on redeclaration, not enforced by the backend (no x-max-length).
//
// Headers of every type survive any backend: non-string ones travel as
// typed JSON in one metadata entry (see the package documentation).
type Transport struct {
	opts TransportOptions

	mu        sync.Mutex
	closed    bool
	consumers map[*consumer]struct{}
	temporary []string
	// initialized holds the topics initialized once already.
	initialized sync.Map
}

var _ transport.Transport = (*Transport)(nil)

// NewTransport returns a Transport over opts's Publisher and Subscriber.
// The caller keeps them and closes them after the Transport, unless
// CloseBackend is set.
func NewTransport(opts TransportOptions) (*Transport, error) {
	if opts.Publisher == nil || opts.Subscriber == nil {
		return nil, errors.New("watermillbus: NewTransport: Publisher and Subscriber are required")
	}
	if opts.Registry == nil {
		opts.Registry = NewMemoryRegistry()
	}
	if opts.Topic == nil {
		opts.Topic = func(queue string) string { return queue }
	}
	return &Transport{opts: opts, consumers: map[*consumer]struct{}{}}, nil
}

func (t *Transport) checkOpen(op string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("watermillbus: %s: %w", op, transport.ErrClosed)
	}
	return nil
}

// Declare records the queue and its bindings in the Registry and, when
// the Subscriber is a message.SubscribeInitializer, initializes the
// queue's topic (watermill-sql creates its table there, watermill-amqp its
// queue).
func (t *Transport) Declare(ctx context.Context, topo transport.Topology) error {
	if err := t.checkOpen("Declare"); err != nil {
		return err
	}
	if err := topo.Validate(); err != nil {
		return fmt.Errorf("watermillbus: Declare: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("watermillbus: Declare %q: %w", topo.Queue.Name, err)
	}
	if !topo.Queue.Options.IsZero() && !topo.Queue.Shared && !topo.Queue.Temporary {
		// Watermill's pub/subs have no priorities, limits, TTL or dead
		// lettering to enforce them with: refuse rather than ignore.
		return fmt.Errorf("watermillbus: Declare %q: %w: queue options (priority, delivery limit, length limits, TTL, dead-letter queue)", topo.Queue.Name, transport.ErrNotSupported)
	}
	q := topo.Queue
	if init, ok := t.opts.Subscriber.(message.SubscribeInitializer); ok {
		topic := t.opts.Topic(q.Name)
		if _, done := t.initialized.Load(topic); !done {
			if err := init.SubscribeInitialize(topic); err != nil {
				return fmt.Errorf("watermillbus: Declare %q: initializing topic %q: %w", q.Name, topic, err)
			}
			t.initialized.Store(topic, true)
		}
	}
	created, err := t.opts.Registry.DeclareQueue(ctx, q)
	if err != nil {
		return fmt.Errorf("watermillbus: Declare: %w", err)
	}
	if created && q.Temporary {
		t.mu.Lock()
		t.temporary = append(t.temporary, q.Name)
		t.mu.Unlock()
	}
	for _, p := range topo.Topics {
		if err := t.opts.Registry.Bind(ctx, q.Name, p); err != nil {
			return fmt.Errorf("watermillbus: Declare %q: binding %q: %w", q.Name, p, err)
		}
	}
	return nil
}

// Bind binds queue under pattern in the Registry.
func (t *Transport) Bind(ctx context.Context, queue, pattern string) error {
	if err := t.checkOpen("Bind"); err != nil {
		return err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("watermillbus: Bind: %w", err)
	}
	if err := transport.ValidateTopicPattern(pattern); err != nil {
		return fmt.Errorf("watermillbus: Bind: %w", err)
	}
	if err := t.opts.Registry.Bind(ctx, queue, pattern); err != nil {
		return fmt.Errorf("watermillbus: Bind %q under %q: %w", queue, pattern, err)
	}
	return nil
}

// Unbind removes the binding from the Registry.
func (t *Transport) Unbind(ctx context.Context, queue, pattern string) error {
	if err := t.checkOpen("Unbind"); err != nil {
		return err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("watermillbus: Unbind: %w", err)
	}
	if err := transport.ValidateTopicPattern(pattern); err != nil {
		return fmt.Errorf("watermillbus: Unbind: %w", err)
	}
	if err := t.opts.Registry.Unbind(ctx, queue, pattern); err != nil {
		return fmt.Errorf("watermillbus: Unbind %q under %q: %w", queue, pattern, err)
	}
	return nil
}

// Dispatch routes each message through the Registry and publishes it to
// the topic of every queue it reaches, one Publish call per topic, in
// order.
func (t *Transport) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	if err := t.checkOpen("Dispatch"); err != nil {
		return err
	}
	for i := range msgs {
		if err := msgs[i].Validate(); err != nil {
			return fmt.Errorf("watermillbus: Dispatch: message %d: %w", i, err)
		}
		if msgs[i].NotBefore.After(time.Now()) {
			return fmt.Errorf("watermillbus: Dispatch: message %d: %w: deferred delivery (the transport is not a Delayer)", i, transport.ErrNotSupported)
		}
		if msgs[i].ExchangeName != "" {
			return fmt.Errorf("watermillbus: Dispatch: message %d: %w: exchange %q (the transport is not an ExchangeBinder)", i, transport.ErrNotSupported, msgs[i].ExchangeName)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("watermillbus: Dispatch: %w", err)
	}
	type batch struct {
		topic   string
		msgs    []*message.Message
		indexes []int
	}
	var batches []*batch
	byTopic := map[string]*batch{}
	failed := map[int]error{}
	for i := range msgs {
		o := &msgs[i]
		var queues []string
		switch o.Exchange {
		case transport.Direct:
			ok, err := t.opts.Registry.QueueExists(ctx, o.RoutingKey)
			if err != nil {
				failed[i] = err
				continue
			}
			if ok {
				queues = []string{o.RoutingKey}
			}
		case transport.Topic:
			qs, err := t.opts.Registry.Route(ctx, o.RoutingKey)
			if err != nil {
				failed[i] = err
				continue
			}
			queues = qs
		}
		if len(queues) == 0 {
			if o.Mandatory {
				failed[i] = fmt.Errorf("%w: no queue is bound under the routing key", transport.ErrUnroutable)
			}
			continue
		}
		for _, q := range queues {
			wm, err := toWatermill(&o.Message)
			if err != nil {
				failed[i] = err
				break
			}
			if o.Exchange == transport.Topic {
				wm.Metadata[metadataExchange] = "topic"
				wm.Metadata[metadataRoutingKey] = o.RoutingKey
			}
			topic := t.opts.Topic(q)
			b := byTopic[topic]
			if b == nil {
				b = &batch{topic: topic}
				byTopic[topic] = b
				batches = append(batches, b)
			}
			b.msgs = append(b.msgs, wm)
			b.indexes = append(b.indexes, i)
		}
	}
	for _, b := range batches {
		if err := ctx.Err(); err != nil {
			for _, i := range b.indexes {
				failed[i] = err
			}
			continue
		}
		if err := t.opts.Publisher.Publish(b.topic, b.msgs...); err != nil {
			for _, i := range b.indexes {
				failed[i] = fmt.Errorf("%w: publishing to topic %q: %w", transport.ErrRejected, b.topic, err)
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	var errs []error
	for i := range msgs {
		if err, ok := failed[i]; ok {
			errs = append(errs, &transport.DispatchError{Index: i, Exchange: msgs[i].Exchange, RoutingKey: msgs[i].RoutingKey, MessageID: msgs[i].Message.ID, Err: err})
		}
	}
	return errors.Join(errs...)
}

// Consume subscribes to the queue's topic and hands its messages to h, one
// at a time.
func (t *Transport) Consume(ctx context.Context, queue string, opts transport.ConsumeOptions, h transport.Handler) (transport.Consumer, error) {
	if err := t.checkOpen("Consume"); err != nil {
		return nil, err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return nil, fmt.Errorf("watermillbus: Consume: %w", err)
	}
	if h == nil {
		return nil, errors.New("watermillbus: Consume: the handler is nil")
	}
	if opts.Priority != 0 {
		return nil, fmt.Errorf("watermillbus: Consume %q: consumer priority %d: Watermill's subscribers have none: %w",
			queue, opts.Priority, transport.ErrNotSupported)
	}
	concurrency, prefetch := opts.Limits()
	_ = prefetch
	subscriptions := 1
	if t.opts.Competing {
		subscriptions = concurrency
	}
	if ok, err := t.opts.Registry.QueueExists(ctx, queue); err != nil {
		return nil, fmt.Errorf("watermillbus: Consume %q: %w", queue, err)
	} else if !ok {
		return nil, fmt.Errorf("watermillbus: Consume %q: %w: queue", queue, transport.ErrNotFound)
	}
	c := newConsumer(t, ctx, queue, concurrency, h)
	subs := make([]<-chan *message.Message, subscriptions)
	for i := range subs {
		msgs, err := t.opts.Subscriber.Subscribe(c.subCtx, t.opts.Topic(queue))
		if err != nil {
			c.cancelSub()
			return nil, fmt.Errorf("watermillbus: Consume %q: %w", queue, err)
		}
		subs[i] = msgs
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.cancelSub()
		return nil, fmt.Errorf("watermillbus: Consume: %w", transport.ErrClosed)
	}
	t.consumers[c] = struct{}{}
	t.mu.Unlock()
	c.start(subs)
	return c, nil
}

// forget removes a stopped consumer.
func (t *Transport) forget(c *consumer) {
	t.mu.Lock()
	delete(t.consumers, c)
	t.mu.Unlock()
}

// requeue publishes a copy of wm's message, marked redelivered, to the
// back of queue: the transport's Nack with requeue.
func (t *Transport) requeue(queue string, wm *message.Message) error {
	cp := wm.Copy()
	cp.Metadata.Set(metadataRedelivered, "1")
	return t.opts.Publisher.Publish(t.opts.Topic(queue), cp)
}

// Close stops every consumer (their unsettled deliveries go back to their
// queues), forgets the temporary queues it declared and makes every
// method fail with transport.ErrClosed. It closes the Publisher and the
// Subscriber only with CloseBackend.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	consumers := make([]*consumer, 0, len(t.consumers))
	for c := range t.consumers {
		consumers = append(consumers, c)
	}
	temporary := t.temporary
	t.mu.Unlock()
	for _, c := range consumers {
		_ = c.Close()
	}
	for _, q := range temporary {
		_ = t.opts.Registry.DeleteQueue(context.Background(), q)
	}
	if t.opts.CloseBackend {
		return errors.Join(t.opts.Subscriber.Close(), t.opts.Publisher.Close())
	}
	return nil
}
