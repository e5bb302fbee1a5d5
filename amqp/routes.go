package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// routes remembers the destination queues whose bindings this transport has
// made sure of: on the direct exchange under the queue's own name, and on
// the delay levels' delivery exchange. PikaBus 1.x declares its listener
// queue without the direct binding and binds a destination just before
// each of its sends; a Dispatch to such a queue binds it in the same way,
// once per destination and not once per message: the first message to a
// destination costs one round trip on a control channel, the others a map
// lookup.
//
// What it remembers can go stale: the queue deleted and declared again
// without the binding (a PikaBus 1.x service redeployed), or by a broker
// that lost its state. So the set is emptied whenever either connection is
// replaced, a queue is forgotten when this transport deletes it, and a
// Direct message that comes back unroutable to a destination believed bound
// makes Dispatch forget it, bind it again and publish the message once
// more (see Transport.Dispatch).
type routes struct {
	t *Transport
	// known is the set of bound destinations, copied on write: read on
	// every Dispatch without a lock, written once per new destination.
	known atomic.Pointer[map[string]struct{}]
	// hops is the set of the delay levels' hop keys bound, likewise.
	hops atomic.Pointer[map[string]struct{}]

	mu      sync.Mutex
	gen     uint64               // bumped by reset: a bind begun before it is not remembered
	binding map[string]*bindCall // binds under way, shared by concurrent callers
	warned  map[string]bool      // destinations whose bind failed for a reason logged once
}

// bindCall is one bind under way; err is set before done is closed.
type bindCall struct {
	done chan struct{}
	err  error
}

func newRoutes(t *Transport) *routes {
	r := &routes{t: t, binding: make(map[string]*bindCall), warned: make(map[string]bool)}
	r.known.Store(&map[string]struct{}{})
	r.hops.Store(&map[string]struct{}{})
	return r
}

func (r *routes) has(dest string) bool {
	_, ok := (*r.known.Load())[dest]
	return ok
}

// add remembers dest as bound, unless the set was reset since gen.
func (r *routes) add(dest string, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return
	}
	old := *r.known.Load()
	if _, ok := old[dest]; ok {
		return
	}
	m := make(map[string]struct{}, len(old)+1)
	for k := range old {
		m[k] = struct{}{}
	}
	m[dest] = struct{}{}
	r.known.Store(&m)
}

// declared remembers the queue a Declare just bound.
func (r *routes) declared(queue string) {
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	r.add(queue, gen)
}

// forget drops dest from the set.
func (r *routes) forget(dest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.known.Load()
	if _, ok := old[dest]; !ok {
		return
	}
	m := make(map[string]struct{}, len(old))
	for k := range old {
		if k != dest {
			m[k] = struct{}{}
		}
	}
	r.known.Store(&m)
}

// reset forgets every destination: a connection was replaced, and the
// broker may have lost or changed its bindings meanwhile.
func (r *routes) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.known.Store(&map[string]struct{}{})
	r.hops.Store(&map[string]struct{}{})
}

// ensureHops binds the hop keys the messages routed by hops need (see
// delays.route) and this transport has not bound since its connections
// were last replaced, in one control round. When it cannot (ctx done,
// transport closed, connection down, refused), it sends nothing and
// returns a DispatchError for every message.
func (r *routes) ensureHops(ctx context.Context, msgs []transport.Outgoing, ds []delivery) error {
	for i := range ds {
		if ds[i].hops != 0 {
			return r.bindHops(ctx, msgs, ds)
		}
	}
	return nil // without an allocation: bindHops's closure takes its map to the heap
}

// bindHops is ensureHops for a batch with a message routed by hops.
func (r *routes) bindHops(ctx context.Context, msgs []transport.Outgoing, ds []delivery) error {
	type bind struct {
		exchange string
		to       int
	}
	var missing map[string]bind
	known := *r.hops.Load()
	for i := range ds {
		if ds[i].hops == 0 {
			continue
		}
		r.t.delays.hops(ds[i].hops, ds[i].rot, func(key, exchange string, to int) {
			if _, ok := known[key]; ok {
				return
			}
			if missing == nil {
				missing = make(map[string]bind)
			}
			missing[key] = bind{exchange, to}
		})
	}
	if len(missing) == 0 {
		return nil
	}
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	t := r.t
	err := t.control(ctx, func(ch amqpChannel) error {
		for key, b := range missing {
			if err := t.delays.bindHop(ch, key, b.exchange, b.to); err != nil {
				return classify("amqp: bind the delay levels' hops", err)
			}
		}
		return nil
	})
	if err != nil {
		all := make([]error, len(msgs))
		for j := range msgs {
			all[j] = dispatchError(&msgs[j], j, fmt.Errorf("amqp: dispatch: not sent: %w", err))
		}
		return errors.Join(all...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return nil
	}
	old := *r.hops.Load()
	m := make(map[string]struct{}, len(old)+len(missing))
	for k := range old {
		m[k] = struct{}{}
	}
	for k := range missing {
		m[k] = struct{}{}
	}
	r.hops.Store(&m)
	return nil
}

// errNoQueue marks the failure of a mandatory message whose destination
// queue does not exist, which binding it again cannot cure.
type errNoQueue struct{ queue string }

func (e *errNoQueue) Error() string {
	return fmt.Sprintf("amqp: %v: queue %q does not exist", transport.ErrUnroutable, e.queue)
}

func (e *errNoQueue) Unwrap() error { return transport.ErrUnroutable }

// ensure makes sure every Direct destination of the batch is bound, binding
// those it does not know. A destination that does not exist fails its
// mandatory messages in errs (one per message) with ErrUnroutable; its other messages go
// ahead and are dropped by the broker, as an unroutable message that is not
// mandatory is. When it cannot tell (ctx done, transport closed, connection
// down) it sends nothing and returns a DispatchError for every message.
func (r *routes) ensure(ctx context.Context, msgs []transport.Outgoing, errs []error) error {
	var tried map[string]error
	for i := range msgs {
		o := &msgs[i]
		if o.ExchangeName != "" {
			if err := r.exchangeExists(ctx, o.ExchangeName); err != nil {
				errs[i] = err
			}
			continue
		}
		if o.Exchange != transport.Direct || r.has(o.RoutingKey) {
			continue
		}
		dest := o.RoutingKey
		berr, seen := tried[dest]
		if !seen {
			berr = r.bind(ctx, dest)
			if tried == nil {
				tried = make(map[string]error)
			}
			tried[dest] = berr
		}
		switch {
		case berr == nil:
		case errors.Is(berr, transport.ErrNotFound):
			if o.Mandatory {
				errs[i] = &errNoQueue{queue: dest}
			}
		default:
			// Nothing was sent: every message of the batch fails so.
			all := make([]error, len(msgs))
			for j := range msgs {
				all[j] = dispatchError(&msgs[j], j, fmt.Errorf("amqp: dispatch: not sent: %w", berr))
			}
			return errors.Join(all...)
		}
	}
	return nil
}

// bind binds dest where the transport's messages enter, or waits for the
// bind another caller has under way. It returns nil when dest is bound or
// cannot be bound for a reason publishing will show anyway (say an account
// that may not bind it), an error wrapping ErrNotFound when the queue does
// not exist, and another error when the outcome is unknown.
func (r *routes) bind(ctx context.Context, dest string) error {
	r.mu.Lock()
	if r.has(dest) {
		r.mu.Unlock()
		return nil
	}
	c, ok := r.binding[dest]
	if !ok {
		c = &bindCall{done: make(chan struct{})}
		r.binding[dest] = c
		gen := r.gen
		r.mu.Unlock()
		c.err = r.bindNow(ctx, dest, gen)
		r.mu.Lock()
		delete(r.binding, dest)
		r.mu.Unlock()
		close(c.done)
		return c.err
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		if c.err != nil && !errors.Is(c.err, transport.ErrNotFound) {
			// The other caller's context ended, or its connection:
			// try with ours.
			return r.bind(ctx, dest)
		}
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("amqp: bind queue %q: %w", dest, ctx.Err())
	}
}

func (r *routes) bindNow(ctx context.Context, dest string, gen uint64) error {
	t := r.t
	err := t.control(ctx, func(ch amqpChannel) error {
		if err := ch.QueueBind(dest, dest, t.opts.DirectExchange, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q", dest, t.opts.DirectExchange), err)
		}
		if !t.noDelay {
			if err := t.delays.bind(ch, dest); err != nil {
				return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q", dest, t.delays.delivery), err)
			}
		}
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrNotFound), errors.Is(err, transport.ErrClosed),
		errors.Is(err, transport.ErrConnectionLost), ctx.Err() != nil:
		return err
	default:
		// Refused (an account without the permission to bind, an
		// exclusive queue of another connection): publish anyway, as
		// before this transport bound destinations; if the queue is
		// unbound the message comes back unroutable.
		r.mu.Lock()
		first := !r.warned[dest]
		r.warned[dest] = true
		r.mu.Unlock()
		if first {
			t.log("cannot bind a destination queue; publishing to it as it is", "queue", dest, "error", err)
		}
	}
	r.add(dest, gen)
	return nil
}

// exchangeExists checks, once per connection, that a topic exchange other
// than the transport's own exists before a message is published there:
// RabbitMQ answers a publish to a missing exchange by closing the channel,
// which would fail every message in flight on it as of unknown fate. The
// error wraps ErrNotFound when the exchange is missing.
func (r *routes) exchangeExists(ctx context.Context, exchange string) error {
	key := "\x00exchange\x00" + exchange // no queue name holds a NUL
	if r.has(key) {
		return nil
	}
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	err := r.t.control(ctx, func(ch amqpChannel) error {
		if err := ch.ExchangeDeclarePassive(exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: dispatch to exchange %q", exchange), err)
		}
		return nil
	})
	if err == nil {
		r.add(key, gen)
	}
	return err
}

// stale picks, among the failures of a Dispatch, the Direct messages that
// came back unroutable though their destination was believed bound: the
// queue was deleted and declared again without its binding, or the broker
// lost it. It forgets those destinations and returns the messages' indexes
// and the failures to keep.
func (r *routes) stale(msgs []transport.Outgoing, err error) (again []int, keep []error) {
	for _, e := range unjoin(err) {
		var de *transport.DispatchError
		var nq *errNoQueue
		if errors.As(e, &de) && de.Index >= 0 && de.Index < len(msgs) && msgs[de.Index].Exchange == transport.Direct &&
			msgs[de.Index].NotBefore.IsZero() && errors.Is(e, transport.ErrUnroutable) && !errors.As(e, &nq) {
			r.forget(msgs[de.Index].RoutingKey)
			again = append(again, de.Index)
			continue
		}
		keep = append(keep, e)
	}
	return again, keep
}

// unjoin returns the errors errors.Join joined into err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Dispatch implements [transport.Transport.Dispatch].
//
// A Direct message goes to the queue its routing key names even when that
// queue is not bound on the direct exchange, as PikaBus 1.x declares its
// queues: the transport binds a destination it does not know yet (there and
// on the delay levels' delivery exchange) before publishing to it, and
// remembers it, so that this costs one round trip per destination, not per
// message. A mandatory message to a queue that does not exist fails with
// [transport.ErrUnroutable]. A Direct message that comes back unroutable
// from a destination the transport believed bound is published once more
// after binding it again.
//
// The messages of one call are published in order on one channel, each as
// soon as the window has room, and Dispatch returns when every one is
// settled. A message whose confirm is lost with its channel or connection
// (a socket error, a connection closed by the broker or by a heartbeat
// timeout) is published again once the connection is back, and so is a
// nacked one, after a pause that grows to a second, on a fresh channel
// when its channel keeps nacking: both are retried until ctx ends (at
// least once: the broker may have enqueued the first copy). A message
// that failed because the broker closed its channel while the connection
// stayed up is tried three times at most, since the cause may be the
// message. A return fails the message with [transport.ErrUnroutable], at
// once, except as said above. When ctx ends first, a message that was
// written at least once fails with an error saying it may or may not have
// been delivered, and a message never written with one saying it was not
// sent.
func (t *Transport) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	err := t.dispatch(ctx, msgs)
	if err == nil {
		return nil
	}
	again, keep := t.routes.stale(msgs, err)
	if len(again) == 0 {
		return err
	}
	retry := make([]transport.Outgoing, len(again))
	for k, i := range again {
		retry[k] = msgs[i]
	}
	for _, e := range unjoin(t.dispatch(ctx, retry)) {
		var de *transport.DispatchError
		if errors.As(e, &de) && de.Index >= 0 && de.Index < len(again) {
			c := *de
			c.Index = again[de.Index]
			e = &c
		}
		if e != nil {
			keep = append(keep, e)
		}
	}
	return errors.Join(keep...)
}
