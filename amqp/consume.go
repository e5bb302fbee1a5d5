package amqp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

var consumerSeq atomic.Uint64

// consumer is a running subscription to a queue: one channel (replaced
// after a channel error or a reconnection) whose deliveries a loop hands to
// a pool of workers, which run the handler. The hand-over is buffered (up to
// the prefetch, which bounds the deliveries anyway), so that the loop and a
// worker do not take turns on every message; once a stop is requested,
// workers requeue what is left instead of handling it. Workers settle on the
// channel the delivery came from, through that channel's acker.
type consumer struct {
	t          *Transport
	queue      string
	conc, pref int
	prio       int // x-priority
	tag        string
	h          transport.Handler

	hctx    context.Context // handler context: the values of Consume's ctx
	hcancel context.CancelFunc
	sctx    context.Context // cancelled when a stop is requested
	scancel context.CancelFunc

	work     chan *transport.Delivery
	workers  sync.WaitGroup
	stopOnce sync.Once
	stopping chan struct{} // closed when Drain or Close begins
	loopDone chan struct{} // closed when the loop hands out nothing more
	done     chan struct{} // closed when fully stopped

	mu      sync.Mutex
	err     error  // the unrecoverable failure, if any
	running bool   // consuming now
	why     error  // why it is not running, while recovering
	cur     *acker // acker of the current channel
}

// Consume implements [transport.Transport.Consume]. The consumer runs on
// the consuming connection with basic.qos set to the prefetch, and hands
// deliveries to Concurrency workers. After a lost connection or a channel
// error it resumes by itself, on a new channel, once the queue is back;
// deliveries received on the old channel can no longer be settled (Ack
// and Nack return [transport.ErrConnectionLost]) and are delivered again.
// If its queue is deleted, the consumer stops and Err wraps
// [transport.ErrNotFound].
func (t *Transport) Consume(ctx context.Context, queue string, opts transport.ConsumeOptions, h transport.Handler) (transport.Consumer, error) {
	if err := transport.ValidateQueueName(queue); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("amqp: consume: nil handler")
	}
	if opts.Priority < math.MinInt32 || opts.Priority > math.MaxInt32 {
		return nil, fmt.Errorf("amqp: consume queue %q: consumer priority %d out of x-priority's range (a 32-bit integer)", queue, opts.Priority)
	}
	if err := t.checkOpen(); err != nil {
		return nil, fmt.Errorf("amqp: consume queue %q: %w", queue, err)
	}
	conc, pref := opts.Limits()
	c := &consumer{
		t:        t,
		queue:    queue,
		conc:     conc,
		pref:     pref,
		prio:     opts.Priority,
		tag:      opts.Tag,
		h:        h,
		work:     make(chan *transport.Delivery, pref),
		stopping: make(chan struct{}),
		loopDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if c.tag == "" {
		c.tag = fmt.Sprintf("busline-%d-%d", os.Getpid(), consumerSeq.Add(1))
	}
	c.hctx, c.hcancel = context.WithCancel(context.WithoutCancel(ctx))
	c.sctx, c.scancel = context.WithCancel(context.Background())

	var failed *session
	var sub *subscription
	for {
		s, err := t.con.wait(ctx, failed)
		if err != nil {
			c.cancelContexts()
			return nil, fmt.Errorf("amqp: consume queue %q: %w", queue, err)
		}
		sub, err = c.subscribe(s)
		if err == nil {
			break
		}
		if !errors.Is(err, transport.ErrConnectionLost) || s.connAlive(nil) || ctx.Err() != nil {
			c.cancelContexts()
			return nil, err
		}
		failed = s
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = sub.ch.Close()
		c.cancelContexts()
		return nil, fmt.Errorf("amqp: consume queue %q: %w", queue, transport.ErrClosed)
	}
	t.consumers[c] = struct{}{}
	t.wg.Add(1 + conc)
	t.mu.Unlock()

	c.workers.Add(conc)
	for range conc {
		go func() {
			defer t.wg.Done()
			defer c.workers.Done()
			for d := range c.work {
				select {
				case <-c.stopping:
					// Received but never handed to the handler: back to
					// the queue at once.
					_ = d.Nack(true)
				default:
					c.h(c.hctx, d)
				}
			}
		}()
	}
	go func() {
		defer t.wg.Done()
		c.loop(sub)
	}()
	return c, nil
}

func (c *consumer) cancelContexts() {
	c.hcancel()
	c.scancel()
}

// subscription is one basic.consume on one channel.
type subscription struct {
	s          *session
	ch         amqpChannel
	deliveries <-chan amqp091.Delivery
	cancelled  <-chan string
	closing    <-chan *amqp091.Error
	ack        *acker
}

func (c *consumer) subscribe(s *session) (*subscription, error) {
	op := fmt.Sprintf("amqp: consume queue %q", c.queue)
	// Each step is bounded: a subscription stuck on a node that does not
	// answer drops the connection, and the consumer resumes on the next.
	bounded := func(f func() error) error { return s.bounded(c.t.opts.operationTimeout(), f) }
	var ch amqpChannel
	err := bounded(func() (err error) {
		ch, err = s.conn.Channel()
		return err
	})
	if err != nil {
		return nil, classify(op, err)
	}
	if err := bounded(func() error { return ch.Qos(c.pref, 0, false) }); err != nil {
		_ = ch.Close()
		return nil, classify(op, err)
	}
	sub := &subscription{
		s:         s,
		ch:        ch,
		cancelled: ch.NotifyCancel(make(chan string, 1)),
		closing:   ch.NotifyClose(make(chan *amqp091.Error, 1)),
		ack:       newAcker(c.t, ch, c.queue, c.pref, c.t.opts.AckDelay),
	}
	var args amqp091.Table
	if c.prio != 0 {
		args = amqp091.Table{"x-priority": int32(c.prio)}
	}
	err = bounded(func() (err error) {
		sub.deliveries, err = ch.Consume(c.queue, c.tag, false, false, false, false, args)
		return err
	})
	if err != nil {
		_ = ch.Close()
		return nil, classify(op, err)
	}
	c.mu.Lock()
	c.running, c.why, c.cur = true, nil, sub.ack
	c.mu.Unlock()
	c.t.log("consumer started", "queue", c.queue)
	c.t.events.emit(transport.Event{Kind: transport.ConsumerStarted, Queue: c.queue})
	return sub, nil
}

// errStop is the loop's reason when a stop was requested.
var errStop = errors.New("stop requested")

// loop consumes until a stop is requested or the consumer fails for good,
// resubscribing after every interruption.
func (c *consumer) loop(sub *subscription) {
	defer close(c.loopDone)
	for {
		why := c.run(sub)
		if why == errStop {
			c.cancel(sub)
			return
		}
		if errors.Is(why, transport.ErrNotFound) {
			sub.ack.lost(why)
			c.fail(why)
			return
		}
		c.interrupted(sub, why)
		var err error
		if sub, err = c.resubscribe(sub.s); err != nil {
			if err != errStop {
				c.fail(err)
			}
			return
		}
	}
}

// run hands the deliveries of sub to the workers until they stop coming,
// and says why.
func (c *consumer) run(sub *subscription) error {
	for {
		select {
		case <-c.stopping:
			return errStop
		case d, ok := <-sub.deliveries:
			if !ok {
				return c.endCause(sub)
			}
			sub.ack.track(d.DeliveryTag)
			td := c.delivery(&d, sub.ack)
			select {
			case c.work <- td:
			case <-c.stopping:
				_ = td.Nack(true)
				return errStop
			}
		}
	}
}

// endCause says why a subscription's deliveries stopped: the broker
// cancelled the consumer (its queue was deleted, typically), the channel
// was closed by a channel error, or the connection was lost.
func (c *consumer) endCause(sub *subscription) error {
	select {
	case <-sub.cancelled:
		if c.queueExists(sub.s) {
			return fmt.Errorf("amqp: consumer of queue %q cancelled by the broker", c.queue)
		}
		return fmt.Errorf("amqp: consume queue %q: %w: the queue was deleted", c.queue, transport.ErrNotFound)
	case e := <-sub.closing:
		if !sub.s.alive() {
			return fmt.Errorf("amqp: consume queue %q: %w", c.queue, sub.s.err)
		}
		if e == nil {
			return fmt.Errorf("amqp: consume queue %q: channel closed: %w", c.queue, transport.ErrConnectionLost)
		}
		return classify(fmt.Sprintf("amqp: consume queue %q: channel closed", c.queue), e)
	case <-time.After(time.Second):
		return fmt.Errorf("amqp: consume queue %q: deliveries stopped: %w", c.queue, transport.ErrConnectionLost)
	}
}

func (c *consumer) queueExists(s *session) bool {
	ch, err := s.conn.Channel()
	if err != nil {
		return true // cannot tell: try to resume
	}
	defer func() { _ = ch.Close() }()
	_, err = ch.QueueDeclarePassive(c.queue, true, false, false, false, nil)
	var aerr *amqp091.Error
	return !errors.As(err, &aerr) || aerr.Code != amqp091.NotFound
}

// interrupted records that sub stopped delivering for reason why.
func (c *consumer) interrupted(sub *subscription, why error) {
	sub.ack.lost(why)
	_ = sub.ch.Close()
	c.mu.Lock()
	c.running, c.why = false, why
	c.mu.Unlock()
	c.t.log("consumer interrupted", "queue", c.queue, "error", why)
	c.t.events.emit(transport.Event{Kind: transport.ConsumerStopped, Queue: c.queue, Err: why})
}

// resubscribe waits for a connection and subscribes again, with backoff,
// until it works, the queue turns out to be gone, or a stop is requested.
func (c *consumer) resubscribe(prev *session) (*subscription, error) {
	failed := prev
	if prev.alive() {
		failed = nil
	}
	delay := c.t.opts.ReconnectDelay
	for {
		s, err := c.t.con.wait(c.sctx, failed)
		if err != nil {
			return nil, errStop
		}
		sub, err := c.subscribe(s)
		if err == nil {
			return sub, nil
		}
		if errors.Is(err, transport.ErrNotFound) {
			return nil, err
		}
		failed = nil
		if !s.alive() {
			failed = s
		}
		c.mu.Lock()
		c.why = err
		c.mu.Unlock()
		c.t.log("consumer resubscribe failed", "queue", c.queue, "error", err, "retry_in", delay)
		timer := time.NewTimer(delay)
		select {
		case <-c.stopping:
			timer.Stop()
			return nil, errStop
		case <-timer.C:
		}
		delay = min(2*delay, c.t.opts.MaxReconnectDelay)
	}
}

// cancel ends a subscription on request: the broker stops delivering, and
// what it delivered but no handler got is requeued at once. The channel
// stays open until the handlers are done, so that they can settle.
func (c *consumer) cancel(sub *subscription) {
	if sub.s.alive() {
		_ = sub.ch.Cancel(c.tag, false)
	}
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		select {
		case d, ok := <-sub.deliveries:
			if !ok {
				return
			}
			_ = sub.ch.Nack(d.DeliveryTag, false, true)
		case <-timer.C:
			return
		}
	}
}

// fail records an unrecoverable failure.
func (c *consumer) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.running, c.why = false, err
	c.mu.Unlock()
	c.t.log("consumer failed", "queue", c.queue, "error", err)
	c.stop()
}

// stop begins stopping; it is idempotent.
func (c *consumer) stop() {
	c.stopOnce.Do(func() {
		close(c.stopping)
		c.scancel()
		if !c.t.spawn(c.finish) {
			go c.finish()
		}
	})
}

// finish waits for the loop and the workers, then closes the channel,
// which requeues every unsettled delivery.
func (c *consumer) finish() {
	<-c.loopDone
	close(c.work)
	c.workers.Wait()
	c.mu.Lock()
	a, err := c.cur, c.err
	c.running = false
	c.mu.Unlock()
	if a != nil {
		a.close()
	}
	c.t.mu.Lock()
	delete(c.t.consumers, c)
	c.t.mu.Unlock()
	c.hcancel()
	if err == nil {
		c.t.log("consumer stopped", "queue", c.queue)
		c.t.events.emit(transport.Event{Kind: transport.ConsumerStopped, Queue: c.queue})
	} else {
		c.t.events.emit(transport.Event{Kind: transport.ConsumerStopped, Queue: c.queue, Err: err})
	}
	close(c.done)
}

// Drain implements [transport.Consumer.Drain].
func (c *consumer) Drain(ctx context.Context) error {
	c.stop()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.hcancel()
		<-c.done
		return ctx.Err()
	}
}

// Close implements [transport.Consumer.Close].
func (c *consumer) Close() error {
	c.hcancel()
	c.stop()
	<-c.done
	return nil
}

// Done implements [transport.Consumer.Done].
func (c *consumer) Done() <-chan struct{} { return c.done }

// Err implements [transport.Consumer.Err].
func (c *consumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *consumer) health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stopping:
		return nil
	default:
	}
	if !c.running {
		return fmt.Errorf("amqp: consumer of queue %q is not running: %w", c.queue, c.why)
	}
	return nil
}

// delivery converts an amqp091 delivery. A message that came through the
// delay levels is shown as sent to its destination on the direct exchange,
// without the headers dead-lettering added.
func (c *consumer) delivery(d *amqp091.Delivery, a *acker) *transport.Delivery {
	return c.t.delivery(d, c.queue, a)
}

func (t *Transport) delivery(d *amqp091.Delivery, queue string, a *acker) *transport.Delivery {
	delayed := t.delays.owns(d.Exchange)
	drop := func(k string) bool { return k == seqHeader || (delayed && deathHeader(k)) }
	td := &transport.Delivery{
		Message:      message(d, drop),
		Queue:        queue,
		Exchange:     transport.Direct,
		RoutingKey:   d.RoutingKey,
		Redelivered:  d.Redelivered,
		Tag:          d.DeliveryTag,
		Acknowledger: a,
	}
	switch d.Exchange {
	case t.opts.TopicExchange:
		td.Exchange = transport.Topic
	case t.opts.DirectExchange, "":
	default:
		if delayed {
			td.RoutingKey = t.delays.destination(d.RoutingKey)
		} else if t.boundExchange(d.Exchange) {
			td.Exchange, td.ExchangeName = transport.Topic, d.Exchange
		}
	}
	return td
}

// getChannel is the channel Get pulls messages on; its deliveries are
// settled on it, so it is kept open.
type getChannel struct {
	t  *Transport
	mu sync.Mutex
	s  *session
	ch amqpChannel
	a  *acker
}

// Get implements [transport.Getter] with basic.get.
func (t *Transport) Get(ctx context.Context, queue string) (*transport.Delivery, bool, error) {
	if err := transport.ValidateQueueName(queue); err != nil {
		return nil, false, err
	}
	g := &t.getter
	var failed *session
	for attempt := 1; ; attempt++ {
		if err := t.checkOpen(); err != nil {
			return nil, false, fmt.Errorf("amqp: get from queue %q: %w", queue, err)
		}
		s, err := t.con.wait(ctx, failed)
		if err != nil {
			return nil, false, fmt.Errorf("amqp: get from queue %q: %w", queue, err)
		}
		d, ok, a, err := g.get(s, queue)
		if err == nil {
			if !ok {
				return nil, false, nil
			}
			return t.delivery(&d, queue, a), true, nil
		}
		err = classify(fmt.Sprintf("amqp: get from queue %q", queue), err)
		if !errors.Is(err, transport.ErrConnectionLost) || ctx.Err() != nil || attempt >= 5 {
			return nil, false, err
		}
		if !s.alive() || !s.connAlive(nil) {
			failed = s
		}
	}
}

func (g *getChannel) get(s *session, queue string) (amqp091.Delivery, bool, *acker, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil || g.s != s || g.a.state.Load() != nil {
		if g.a != nil {
			g.a.lost(errors.New("get channel replaced"))
			_ = g.ch.Close()
		}
		ch, err := s.conn.Channel()
		if err != nil {
			g.ch, g.a = nil, nil
			return amqp091.Delivery{}, false, nil, err
		}
		g.s, g.ch, g.a = s, ch, &acker{t: g.t, ch: ch, queue: "(get)"}
	}
	d, ok, err := g.ch.Get(queue, false)
	if err != nil {
		g.a.lost(err)
		_ = g.ch.Close()
		g.ch, g.a = nil, nil
	}
	return d, ok, g.a, err
}

func (g *getChannel) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.a != nil {
		g.a.close()
		g.ch, g.a = nil, nil
	}
}
