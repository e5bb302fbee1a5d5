package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/busline/busline/transport"
)

// maxPrefetch is AMQP's largest prefetch count (a 16-bit field); a larger
// ConsumeOptions.Prefetch is lowered to it (or to Concurrency, if larger).
const maxPrefetch = 65535

// consumer is a consumer of one queue on one connection. The connection's
// getter is a consumer too, without handler goroutines or prefetch limit,
// that holds the deliveries made by Get.
type consumer struct {
	b     *Broker
	cn    *conn
	id    uint64
	queue string
	tag   string

	prefetch    int
	concurrency int
	priority    int // ConsumeOptions.Priority
	h           transport.Handler
	ctx         context.Context
	cancel      context.CancelFunc

	// ch carries deliveries to the handler goroutines, and a nil to each
	// when the consumer stops. Its capacity is the prefetch window, which
	// bounds unacked, so sends under the broker's lock never block.
	ch      chan *delivery
	done    chan struct{}
	workers sync.WaitGroup

	// Guarded by b.mu.
	q        *queue // attached to, nil while stopped or disconnected
	unacked  deliveryList
	free     *delivery // settled deliveries, for reuse
	nextTag  uint64
	stopping bool
	err      error
}

// Delivery states.
const (
	statePending uint32 = iota
	stateLost           // the connection was lost; the message was requeued
	stateClosed         // the consumer stopped; the message was requeued
	stateGone           // the queue was deleted
	stateSettled        // acked or nacked; the delivery is kept for reuse
)

// delivery is one delivery of an entry to a consumer, as the broker keeps
// it; it settles the transport.Delivery handed to the handler, a fresh one
// made by handlerDelivery. A delivery is reused once settled: its
// transport.Delivery calls its Acknowledger at most once, and the tag tells
// a stale call from a current one.
type delivery struct {
	c     *consumer
	q     *queue
	e     *entry
	tag   uint64
	state atomic.Uint32
	// redelivered is the delivery's Redelivered flag.
	redelivered bool
	// deliveryCount is the x-delivery-count header of the delivery, or -1
	// for none: what RabbitMQ adds to the deliveries of a quorum queue, the
	// number of times the message went back to the queue, present from the
	// first redelivery to a consumer and on every basic.get (0 on the
	// first), as measured on RabbitMQ 3.10.8.
	deliveryCount int64

	prev, next *delivery // in c.unacked, or c.free
}

// deliveryList is a consumer's unsettled deliveries in delivery order.
type deliveryList struct {
	head, tail *delivery
	n          int
}

func (l *deliveryList) push(dl *delivery) {
	dl.prev, dl.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = dl
	} else {
		l.head = dl
	}
	l.tail = dl
	l.n++
}

func (l *deliveryList) remove(dl *delivery) {
	if dl.prev != nil {
		dl.prev.next = dl.next
	} else {
		l.head = dl.next
	}
	if dl.next != nil {
		dl.next.prev = dl.prev
	} else {
		l.tail = dl.prev
	}
	dl.prev, dl.next = nil, nil
	l.n--
}

// take empties the list and returns what it held.
func (l *deliveryList) take() []*delivery {
	dls := make([]*delivery, 0, l.n)
	for dl := l.head; dl != nil; dl = dl.next {
		dls = append(dls, dl)
	}
	for _, dl := range dls {
		dl.prev, dl.next = nil, nil
	}
	*l = deliveryList{}
	return dls
}

func (dl *delivery) Ack(tag uint64) error { return dl.c.b.settle(dl, tag, true, false) }

func (dl *delivery) Nack(tag uint64, requeue bool) error {
	return dl.c.b.settle(dl, tag, false, requeue)
}

// deliverLocked hands e to c: to its handler goroutines, or to the caller of
// Get for the getter.
func (c *consumer) deliverLocked(b *Broker, q *queue, e *entry, now stamp) *delivery {
	c.nextTag++
	dl := c.free
	if dl != nil {
		c.free, dl.next = dl.next, nil
	} else {
		dl = new(delivery)
	}
	dl.c, dl.q, dl.e = c, q, e
	dl.tag = c.nextTag
	dl.redelivered = e.redelivered
	dl.deliveryCount = -1
	if q.spec.Type == transport.Quorum && (e.returns > 0 || c == c.cn.getter) {
		dl.deliveryCount = e.returns
	}
	dl.state.Store(statePending)
	e.retain() // for the handler's copy, released once it is made
	c.unacked.push(dl)
	q.unacked++
	if b.journal.limit != 0 {
		b.journal.add(&record{op: Delivered, c: c, e: e, q: q, redelivered: e.redelivered}, now)
	}
	if c.ch != nil {
		c.ch <- dl
	}
	return dl
}

// deliveryCountHeader is the header RabbitMQ adds to the redeliveries of a
// quorum queue.
const deliveryCountHeader = "x-delivery-count"

// handlerDelivery returns the transport.Delivery of dl for the handler, with
// a copy of the message of its own (the body in the same allocation).
func (dl *delivery) handlerDelivery() *transport.Delivery {
	e := dl.e
	d, body := newHandlerDelivery(len(e.msg.Body), dl)
	e.copyMessage(&d.Message, body)
	if dl.deliveryCount >= 0 {
		if d.Message.Headers == nil {
			d.Message.Headers = make(transport.Headers, 1)
		}
		d.Message.Headers[deliveryCountHeader] = dl.deliveryCount
	}
	d.Exchange, d.RoutingKey = e.kind, e.key
	if e.kind == transport.Topic && e.exchange != dl.c.cn.t.topic {
		d.ExchangeName = e.exchange
	}
	dl.c.b.release(e)
	d.Queue = dl.q.name
	d.Redelivered = dl.redelivered
	d.Tag = dl.tag
	return d
}

// handed is the transport.Delivery a handler gets, with the delivery that
// settles it and, when the body is small, the body in the same allocation.
// It is the delivery's Acknowledger, so that [Transport.Recycle] finds it
// from the transport.Delivery, and goes back to its pool there: a consumer
// that gives its deliveries back (package bus does, for typed handlers)
// allocates nothing per message for them.
type handed[B any] struct {
	d    transport.Delivery
	dl   *delivery // nil while in the pool
	pool *sync.Pool
	body B
}

func (h *handed[B]) Ack(tag uint64) error                { return h.dl.Ack(tag) }
func (h *handed[B]) Nack(tag uint64, requeue bool) error { return h.dl.Nack(tag, requeue) }

// recycle puts h back in its pool if d is h's own delivery (not a copy of
// it) and h was not given back already.
func (h *handed[B]) recycle(d *transport.Delivery) {
	if &h.d != d || h.dl == nil {
		return
	}
	h.d, h.dl = transport.Delivery{}, nil
	h.pool.Put(h)
}

// recyclable is what Recycle finds in the Acknowledger of a delivery it
// made.
type recyclable interface {
	recycle(d *transport.Delivery)
}

// handedPools hold the handed deliveries given back, by body size class:
// none or large (the body allocated on its own), then at most 64, 128, ...
// 4096 bytes.
var handedPools [8]sync.Pool

func take[B any](p *sync.Pool, dl *delivery) *handed[B] {
	h, _ := p.Get().(*handed[B])
	if h == nil {
		h = &handed[B]{pool: p}
	}
	h.dl = dl
	h.d.Acknowledger = h
	return h
}

// newHandlerDelivery returns a transport.Delivery settled by dl and a
// buffer of n bytes for its body, from the pools when deliveries were given
// back, else in one allocation when the body is small.
func newHandlerDelivery(n int, dl *delivery) (*transport.Delivery, []byte) {
	switch {
	case n == 0:
		return &take[struct{}](&handedPools[0], dl).d, nil
	case n <= 64:
		h := take[[64]byte](&handedPools[1], dl)
		return &h.d, h.body[:n:n]
	case n <= 128:
		h := take[[128]byte](&handedPools[2], dl)
		return &h.d, h.body[:n:n]
	case n <= 256:
		h := take[[256]byte](&handedPools[3], dl)
		return &h.d, h.body[:n:n]
	case n <= 512:
		h := take[[512]byte](&handedPools[4], dl)
		return &h.d, h.body[:n:n]
	case n <= 1024:
		h := take[[1024]byte](&handedPools[5], dl)
		return &h.d, h.body[:n:n]
	case n <= 2048:
		h := take[[2048]byte](&handedPools[6], dl)
		return &h.d, h.body[:n:n]
	case n <= 4096:
		h := take[[4096]byte](&handedPools[7], dl)
		return &h.d, h.body[:n:n]
	}
	return &take[struct{}](&handedPools[0], dl).d, make([]byte, n)
}

func (b *Broker) settle(dl *delivery, tag uint64, ack, requeue bool) error {
	// Whatever can be done before taking the lock is: a producer waits for
	// it.
	now := b.stamp()
	b.mu.Lock()
	defer b.mu.Unlock()
	verb := "ack"
	if !ack {
		verb = "nack"
	}
	if dl.tag != tag || tag == 0 {
		// dl was settled and reused: the call comes from a copy of a
		// settled transport.Delivery.
		return fmt.Errorf("memory: %s delivery %d: %w", verb, tag, transport.ErrSettled)
	}
	c, q := dl.c, dl.q
	switch dl.state.Load() {
	case statePending:
	case stateLost:
		c.recycleLocked(dl)
		return fmt.Errorf("memory: %s delivery %d of queue %q: %w; the message was requeued", verb, tag, q.name, transport.ErrConnectionLost)
	case stateClosed:
		c.recycleLocked(dl)
		return fmt.Errorf("memory: %s delivery %d of queue %q: consumer %w; the message was requeued", verb, tag, q.name, transport.ErrClosed)
	case stateGone:
		c.recycleLocked(dl)
		return fmt.Errorf("memory: %s delivery %d of queue %q: %w: the queue was deleted", verb, tag, q.name, transport.ErrNotFound)
	default:
		return fmt.Errorf("memory: %s delivery %d of queue %q: %w", verb, tag, q.name, transport.ErrSettled)
	}
	c.unacked.remove(dl)
	e := dl.e
	if q.deleted {
		c.recycleLocked(dl)
		return fmt.Errorf("memory: %s delivery %d of queue %q: %w: the queue was deleted", verb, tag, q.name, transport.ErrNotFound)
	}
	q.unacked--
	r := record{op: Acked, c: c, e: e, q: q, redelivered: dl.redelivered}
	if !ack {
		r.op, r.requeue = Nacked, requeue
	}
	c.recycleLocked(dl)
	b.journal.add(&r, now)
	switch {
	case requeue:
		q.returnLocked(b, e, true, now)
	case !ack:
		b.deadLetterLocked(q, e, reasonRejected, now)
		fallthrough
	default:
		b.releaseLocked(e) // the queue's reference: the message is gone
	}
	if c.q != nil {
		c.q.pumpLocked(b, now) // c has room again
	}
	if requeue && c.q != q {
		q.pumpLocked(b, now)
	}
	if requeue {
		q.enforceLocked(b, now)
	}
	b.checkIdleLocked()
	return nil
}

// recycleLocked keeps a settled delivery for reuse.
func (c *consumer) recycleLocked(dl *delivery) {
	dl.state.Store(stateSettled)
	dl.q, dl.e, dl.tag = nil, nil, 0
	dl.prev, dl.next = nil, c.free
	c.free = dl
}

// returnLocked gives back every delivery c has not settled: requeued unless
// the queue is gone, and marked with state so that settling it later fails
// as it should.
func (c *consumer) returnLocked(state uint32) {
	if c.unacked.n == 0 {
		return
	}
	dls := c.unacked.take()
	now := c.b.stamp()
	for _, dl := range dls {
		c.returnOneLocked(dl, state, now)
	}
	for _, dl := range dls {
		if !dl.q.deleted {
			dl.q.pumpLocked(c.b, now)
			dl.q.enforceLocked(c.b, now)
		}
	}
}

func (c *consumer) returnOneLocked(dl *delivery, state uint32, now stamp) {
	q := dl.q
	if q.deleted {
		dl.state.Store(stateGone)
		return
	}
	dl.state.Store(state)
	q.unacked--
	c.b.journal.add(&record{op: Requeued, c: c, e: dl.e, q: q, redelivered: dl.redelivered}, now)
	q.returnLocked(c.b, dl.e, false, now)
}

// drainLocked empties ch: deliveries no handler has taken yet.
func (c *consumer) drainLocked() {
	if c.ch == nil {
		return
	}
	for {
		select {
		case <-c.ch:
		default:
			return
		}
	}
}

func (c *consumer) detachLocked() {
	if c.q != nil {
		c.q.detach(c)
		c.q = nil
	}
}

// suspendLocked stops deliveries to c while its connection is down; the
// handler goroutines stay, and the unsettled deliveries go back.
func (c *consumer) suspendLocked() {
	c.detachLocked()
	c.drainLocked()
	c.returnLocked(stateLost)
}

// beginStopLocked stops deliveries to c for good and releases its handler
// goroutines once they are idle; the caller then waits for them and calls
// finish. It reports false if c was stopping already.
func (c *consumer) beginStopLocked(err error) bool {
	if c.stopping {
		return false
	}
	c.stopping = true
	c.err = err
	c.detachLocked()
	// Deliveries in ch never reached a handler: give them back now, so that
	// other consumers can have them.
	now := c.b.stamp()
	for {
		select {
		case dl := <-c.ch:
			if dl.state.Load() == statePending {
				c.unacked.remove(dl)
				c.returnOneLocked(dl, stateClosed, now)
				if !dl.q.deleted {
					dl.q.pumpLocked(c.b, now)
					dl.q.enforceLocked(c.b, now)
				}
			}
			continue
		default:
		}
		break
	}
	delete(c.cn.consumers, c)
	c.cn.emitLocked(transport.Event{Kind: transport.ConsumerStopped, Queue: c.queue, Err: err})
	for range c.concurrency {
		c.ch <- nil // one for each handler goroutine: the consumer stopped
	}
	c.b.checkIdleLocked()
	return true
}

// finish requeues what is still unsettled once the handler goroutines have
// returned, and marks c done.
func (c *consumer) finish() {
	c.b.mu.Lock()
	c.returnLocked(stateClosed)
	c.b.checkIdleLocked()
	c.b.mu.Unlock()
	c.cancel()
	close(c.done)
}

// failLocked stops c because of err (its queue was deleted, say), without
// waiting: a goroutine of the connection waits for the handlers.
func (c *consumer) failLocked(err error) {
	if !c.beginStopLocked(err) {
		return
	}
	c.cn.wg.Add(1)
	go func() {
		defer c.cn.wg.Done()
		c.cancel()
		c.workers.Wait()
		c.finish()
	}()
}

func (c *consumer) work() {
	defer c.cn.wg.Done()
	defer c.workers.Done()
	for {
		dl := <-c.ch
		if dl == nil {
			return
		}
		c.handle(dl)
	}
}

func (c *consumer) handle(dl *delivery) {
	c.b.running.Add(1)
	defer c.b.handlerDone()
	if dl.state.Load() != statePending {
		c.b.release(dl.e) // the reference for the handler's copy
		return            // requeued while it waited in ch
	}
	c.h(c.ctx, dl.handlerDelivery())
}

// Close implements [transport.Consumer].
func (c *consumer) Close() error {
	c.b.mu.Lock()
	started := c.beginStopLocked(nil)
	c.b.mu.Unlock()
	if !started {
		// A Drain is under way: stopping "at once" still means the
		// handlers' contexts end now, not when the Drain's would.
		c.cancel()
		<-c.done
		return nil
	}
	c.cancel()
	c.workers.Wait()
	c.finish()
	return nil
}

// Drain implements [transport.Consumer].
func (c *consumer) Drain(ctx context.Context) error {
	c.b.mu.Lock()
	started := c.beginStopLocked(nil)
	c.b.mu.Unlock()
	if !started {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("memory: drain consumer of queue %q: %w", c.queue, ctx.Err())
		}
	}
	idle := make(chan struct{})
	go func() {
		c.workers.Wait()
		close(idle)
	}()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = fmt.Errorf("memory: drain consumer of queue %q: %w", c.queue, ctx.Err())
		c.cancel()
		<-idle
	}
	c.finish()
	return err
}

// Done implements [transport.Consumer].
func (c *consumer) Done() <-chan struct{} { return c.done }

// Err implements [transport.Consumer].
func (c *consumer) Err() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.err
}
