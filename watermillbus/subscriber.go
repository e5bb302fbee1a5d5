package watermillbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/transport"
)

// SubscriberOptions configure a [Subscriber]. The zero value consumes topic
// T from a queue named T, bound on the topic exchange under T, of the
// transport's default queue type, with a prefetch of 16.
type SubscriberOptions struct {
	// ConsumerGroup, when set, consumes topic T from the queue
	// "T.<ConsumerGroup>" instead: subscribers of one group compete for
	// the topic's messages, and each group gets every message, as
	// Watermill's consumer groups do.
	ConsumerGroup string

	// Queue, when set, names the queue a topic is consumed from and
	// overrides ConsumerGroup.
	Queue func(topic string) string

	// QueueType is the type of the queues Subscribe declares. Empty means
	// the transport's default (quorum on RabbitMQ).
	QueueType transport.QueueType

	// Prefetch bounds how many messages the broker hands a subscription
	// before they are acked. Messages still reach the channel one at a
	// time, the next after the previous one is acked or nacked, as
	// Watermill expects. Zero means 16.
	Prefetch int

	// NackDelay is how long a nacked message waits before it goes back to
	// its queue, so that a handler that always fails cannot make a message
	// cycle at the broker's speed (Watermill's Nack means "deliver again").
	// Zero means 100 milliseconds.
	NackDelay time.Duration

	// Logger receives the messages that cannot be converted (never
	// expected: a transport delivers canonical headers). Nil discards.
	Logger *slog.Logger
}

// Subscriber is a Watermill message.Subscriber over a busline transport.
// It is also a message.SubscribeInitializer: SubscribeInitialize declares
// the topic's queue and binding, so that messages published before the
// first Subscribe wait in the queue.
type Subscriber struct {
	tr   transport.Transport
	opts SubscriberOptions

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a Subscriber that consumes through tr. The caller
// keeps tr and closes it after the Subscriber.
func NewSubscriber(tr transport.Transport, opts SubscriberOptions) (*Subscriber, error) {
	if tr == nil {
		return nil, errors.New("watermillbus: NewSubscriber: the transport is nil")
	}
	if opts.Prefetch < 0 {
		return nil, fmt.Errorf("watermillbus: NewSubscriber: Prefetch %d is negative", opts.Prefetch)
	}
	if opts.NackDelay < 0 {
		return nil, fmt.Errorf("watermillbus: NewSubscriber: NackDelay %v is negative", opts.NackDelay)
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = 16
	}
	if opts.NackDelay == 0 {
		opts.NackDelay = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Subscriber{tr: tr, opts: opts, closing: make(chan struct{})}, nil
}

// queue returns the name of the queue topic is consumed from.
func (s *Subscriber) queue(topic string) string {
	switch {
	case s.opts.Queue != nil:
		return s.opts.Queue(topic)
	case s.opts.ConsumerGroup != "":
		return topic + "." + s.opts.ConsumerGroup
	}
	return topic
}

// SubscribeInitialize declares the queue of topic and binds it under topic
// on the transport's topic exchange.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.declare(ctx, topic)
	return err
}

func (s *Subscriber) declare(ctx context.Context, topic string) (string, error) {
	q := s.queue(topic)
	err := s.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: s.opts.QueueType}, Topics: []string{topic}})
	if err != nil {
		return "", fmt.Errorf("watermillbus: subscribing to %q: %w", topic, err)
	}
	return q, nil
}

// Subscribe declares the topic's queue and binding and consumes the queue.
// The channel is closed when ctx is done, when the Subscriber is closed,
// or when the consumer stops for good (its queue was deleted, say). Each
// message must be acked or nacked before the next one arrives; a nacked
// message is delivered again after NackDelay. The message's context carries
// ctx's values and is cancelled once the message is settled or the
// subscription ends.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("watermillbus: Subscribe to %q: %w", topic, transport.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	q, err := s.declare(ctx, topic)
	if err != nil {
		s.wg.Done()
		return nil, err
	}
	out := make(chan *message.Message)
	c, err := s.tr.Consume(ctx, q, transport.ConsumeOptions{Prefetch: s.opts.Prefetch}, func(hctx context.Context, d *transport.Delivery) {
		s.handle(hctx, d, out)
	})
	if err != nil {
		s.wg.Done()
		return nil, fmt.Errorf("watermillbus: Subscribe to %q: %w", topic, err)
	}
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.closing:
		case <-c.Done():
		}
		// Close cancels the handlers, which then return, leaving their
		// message unsettled: it goes back to the queue.
		_ = c.Close()
		close(out)
	}()
	return out, nil
}

// handle hands one delivery to the channel and settles it as the
// Watermill handler does.
func (s *Subscriber) handle(ctx context.Context, d *transport.Delivery, out chan<- *message.Message) {
	wm, err := toWatermill(&d.Message)
	if err != nil {
		// Not expected: a transport delivers canonical headers. Requeuing
		// would loop, so the message is dropped, loudly.
		s.opts.Logger.Error("watermillbus: dropping a message that cannot be converted", "queue", d.Queue, "id", d.ID, "error", err)
		_ = d.Nack(false)
		return
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wm.SetContext(mctx)
	select {
	case out <- wm:
	case <-ctx.Done():
		return
	}
	select {
	case <-wm.Acked():
		_ = d.Ack()
	case <-wm.Nacked():
		cancel()
		t := time.NewTimer(s.opts.NackDelay)
		defer t.Stop()
		select {
		case <-t.C:
			_ = d.Nack(true)
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
}

// Close ends every subscription, closing their channels; messages not yet
// acked go back to their queues. It does not close the transport, which
// belongs to the caller.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
