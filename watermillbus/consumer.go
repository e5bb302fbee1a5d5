package watermillbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/transport"
)

// backendStopTimeout bounds the wait for a Watermill subscription to close
// its channel once its context is cancelled, as Watermill promises.
const backendStopTimeout = 10 * time.Second

// The metadata a Transport adds for its own consumers, never a header.
const (
	metadataRedelivered = "busline.redelivered"
	metadataExchange    = "busline.exchange"
	metadataRoutingKey  = "busline.routing_key"
)

// consumer hands the messages of a queue's topic to a handler: one
// Watermill subscription per prefetch slot (a subscription holds one
// message until it is settled), at most Concurrency handler calls at once.
type consumer struct {
	t     *Transport
	queue string
	h     transport.Handler
	sem   chan struct{}

	subCtx    context.Context
	cancelSub context.CancelFunc
	hctx      context.Context
	cancelH   context.CancelFunc

	stopOnce sync.Once
	stopping chan struct{}
	pumps    sync.WaitGroup
	done     chan struct{}
	err      atomic.Pointer[error]
	tags     atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*pending
}

// pending is a delivery handed over and not seen settled.
type pending struct {
	tag     uint64
	wm      *message.Message
	settled chan struct{}
	// state is guarded by consumer.mu: 0 open, 1 settled, 2 requeued
	// because the consumer stopped.
	state int
}

func newConsumer(t *Transport, ctx context.Context, queue string, concurrency int, h transport.Handler) *consumer {
	c := &consumer{t: t, queue: queue, h: h, sem: make(chan struct{}, concurrency),
		stopping: make(chan struct{}), done: make(chan struct{}), pending: map[uint64]*pending{}}
	c.subCtx, c.cancelSub = context.WithCancel(context.WithoutCancel(ctx))
	c.hctx, c.cancelH = context.WithCancel(context.WithoutCancel(ctx))
	return c
}

func (c *consumer) stop() { c.stopOnce.Do(func() { close(c.stopping) }) }

// start runs a pump per subscription and closes done when all have ended.
func (c *consumer) start(subs []<-chan *message.Message) {
	for _, msgs := range subs {
		c.pumps.Add(1)
		go c.pump(msgs)
	}
	go func() {
		c.pumps.Wait()
		c.cancelH()
		c.cancelSub()
		// A subscription's channel closes once its backend has stopped,
		// after it wrote the acks it was given (watermill-sql writes an
		// acked offset after Ack returns): waiting for that makes an ack
		// durable before Drain or Close returns, so that the next
		// consumer does not see the message again. A message the backend
		// still pushes is not handed over, and goes back.
		timeout := time.NewTimer(backendStopTimeout)
		defer timeout.Stop()
	drain:
		for _, msgs := range subs {
			for {
				select {
				case m, ok := <-msgs:
					if !ok {
						continue drain
					}
					m.Nack()
				case <-timeout.C:
					break drain
				}
			}
		}
		c.t.forget(c)
		close(c.done)
	}()
}

// pump takes one subscription's messages, one at a time.
func (c *consumer) pump(msgs <-chan *message.Message) {
	defer c.pumps.Done()
	// The first pump to end, for whatever reason, ends them all.
	defer c.stop()
	for {
		var wm *message.Message
		select {
		case <-c.stopping:
			return
		case m, ok := <-msgs:
			if !ok {
				select {
				case <-c.stopping:
				default:
					err := errors.New("watermillbus: the Watermill subscription of queue " + c.queue + " ended")
					c.err.CompareAndSwap(nil, &err)
				}
				return
			}
			wm = m
		}
		select {
		case c.sem <- struct{}{}:
		case <-c.stopping:
			// Received, never handed over: back to the backend as it was.
			wm.Nack()
			return
		}
		p := &pending{tag: c.tags.Add(1), wm: wm, settled: make(chan struct{})}
		c.mu.Lock()
		c.pending[p.tag] = p
		c.mu.Unlock()
		c.h(c.hctx, c.delivery(p))
		<-c.sem
		select {
		case <-p.settled:
		case <-c.stopping:
			c.requeueUnsettled(p)
			return
		}
	}
}

// delivery converts p's message. A message whose busline metadata cannot
// be read (not written by busline) is delivered with what could be read.
func (c *consumer) delivery(p *pending) *transport.Delivery {
	md := p.wm.Metadata
	redelivered := md.Get(metadataRedelivered) != ""
	ex := transport.Direct
	key := c.queue
	if md.Get(metadataExchange) == "topic" {
		ex = transport.Topic
	}
	if k, ok := md[metadataRoutingKey]; ok {
		key = k
	}
	clean := p.wm.Copy()
	for _, k := range []string{metadataRedelivered, metadataExchange, metadataRoutingKey} {
		delete(clean.Metadata, k)
	}
	m, _ := fromWatermill(clean)
	return &transport.Delivery{Message: m, Queue: c.queue, Exchange: ex, RoutingKey: key, Redelivered: redelivered,
		Tag: p.tag, Acknowledger: (*acknowledger)(c)}
}

// requeueUnsettled gives an unsettled delivery back to the queue when the
// consumer stops; a later Ack or Nack of it fails with ErrClosed.
func (c *consumer) requeueUnsettled(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.state != 0 {
		return
	}
	p.state = 2
	_ = c.settle(p, true)
}

// settle acks p's Watermill message, first publishing a redelivered copy
// when requeue is set; if that fails, Watermill's Nack asks the backend
// to deliver it again. c.mu is held.
func (c *consumer) settle(p *pending, requeue bool) error {
	if requeue {
		if err := c.t.requeue(c.queue, p.wm); err != nil {
			p.wm.Nack()
			return fmt.Errorf("watermillbus: requeuing a message of %q: %w", c.queue, err)
		}
	}
	p.wm.Ack()
	return nil
}

// acknowledger settles the deliveries of a consumer.
type acknowledger consumer

func (a *acknowledger) settleTag(tag uint64, requeue bool) error {
	c := (*consumer)(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[tag]
	if p == nil {
		return fmt.Errorf("watermillbus: settling delivery %d of %q: %w", tag, c.queue, transport.ErrSettled)
	}
	switch p.state {
	case 1:
		return transport.ErrSettled
	case 2:
		return fmt.Errorf("watermillbus: settling a delivery of %q: %w (it went back to the queue)", c.queue, transport.ErrClosed)
	}
	p.state = 1
	delete(c.pending, tag)
	err := c.settle(p, requeue)
	close(p.settled)
	return err
}

func (a *acknowledger) Ack(tag uint64) error { return a.settleTag(tag, false) }

func (a *acknowledger) Nack(tag uint64, requeue bool) error { return a.settleTag(tag, requeue) }

// Drain stops taking messages and waits for the handler to return; if ctx
// ends first, it cancels the handler and waits for it.
func (c *consumer) Drain(ctx context.Context) error {
	c.stop()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.cancelH()
		<-c.done
		return ctx.Err()
	}
}

// Close stops taking messages, cancels the handler and waits for it.
func (c *consumer) Close() error {
	c.stop()
	c.cancelH()
	<-c.done
	return nil
}

func (c *consumer) Done() <-chan struct{} { return c.done }

func (c *consumer) Err() error {
	if err := c.err.Load(); err != nil {
		return *err
	}
	return nil
}
