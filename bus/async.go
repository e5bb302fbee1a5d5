package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/busline/busline/transport"
)

// DefaultPostWindow is the number of asynchronous posts whose verdict may be
// pending at once when [Options.PostWindow] is zero: as many as the
// RabbitMQ transport keeps confirms in flight on one channel by default.
const DefaultPostWindow = 1024

// ErrPostWindowFull: [Bus.SendAsync] or [Bus.PublishAsync] found
// [Options.PostWindow] posts pending, with [Options.PostWindowFailFast] set.
// Nothing was sent.
var ErrPostWindowFull = errors.New("busline: too many asynchronous posts pending")

// Receipt is the verdict on one message posted with [Bus.SendAsync] or
// [Bus.PublishAsync], which comes later: like a context, it is done once,
// and its Err then says how it went. Its methods are safe for concurrent
// use.
type Receipt struct {
	id   string
	seq  uint64 // posting order, for the callbacks of the posts Close fails
	done chan struct{}
	err  error // set before done is closed
	f    func(*Receipt)
	once sync.Once
}

// MessageID returns the id of the message posted.
func (r *Receipt) MessageID() string { return r.id }

// Done returns a channel closed once the verdict is in.
func (r *Receipt) Done() <-chan struct{} { return r.done }

// Err returns nil until Done is closed. Then it returns nil if the broker
// took responsibility for the message (its publisher confirm; for a
// mandatory message, also routed to a queue), or an error saying why not:
// one wrapping [ErrUnroutable] if the broker returned it, [ErrClosed] if
// the Bus was shut down or closed first ("no confirm, the message may or
// may not have been delivered" when it had been handed over), another for
// a nack or a connection lost for good.
func (r *Receipt) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait waits for the verdict and returns it as Err does, or ctx's error if
// ctx is done first (the post goes on).
func (r *Receipt) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WithOnAck has f called with the receipt once the verdict on a message
// posted by [Bus.SendAsync] or [Bus.PublishAsync] is in, as BlazingMQ's
// on_ack callback. Callbacks run one at a time, in the order the verdicts
// arrive, on a goroutine of the Bus that runs nothing else (never on the
// caller's, never on the transport's), once the receipt is done and its
// place in the window free. A callback may call any method of the Bus,
// SendAsync and Close included, without deadlock; while it runs, the
// callbacks after it wait. The other calls (Send, Publish, ...) refuse the
// option with an error: what they return is their verdict.
func WithOnAck(f func(*Receipt)) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.onAck = f })
}

// SendAsync sends the command msg to queue as [Bus.Send] does, but returns
// once the message is handed to the transport instead of waiting for the
// broker's verdict, which the returned [Receipt] (and the callback of
// [WithOnAck], if given) reports: one caller keeps many confirms in flight,
// as BlazingMQ's post with on_ack does. The message is mandatory: if no
// queue of that name exists, the verdict wraps [ErrUnroutable].
//
// At most [Options.PostWindow] posts wait for their verdict at once; past
// that, SendAsync waits for a verdict to free a place, bounded by ctx, or
// with [Options.PostWindowFailFast] fails at once with [ErrPostWindowFull].
// ctx bounds the call (building, waiting for a place, handing over), not
// the verdict. An error from SendAsync means nothing was sent, and no
// callback is called.
//
// Inside a handler, SendAsync dispatches at once: the message is not part
// of the handler's batch, and is sent whether the handler succeeds or not.
// [WithDelay] and [WithDeliverAt] defer the message as for Send.
//
// Over a transport that implements transport.AsyncDispatcher (memory and
// amqp do), with no [Options.DispatchMiddleware], the transport's own
// deferred confirms carry the post; otherwise the Bus dispatches the posts
// one after the other on a goroutine of its own, which keeps their order
// but overlaps no confirms. Either way, the posts of one goroutine reach
// their queue in the order they were posted.
//
// [Bus.Shutdown] waits for pending verdicts until its context is done;
// then, and at once in [Bus.Close], every receipt still pending is done
// with an error wrapping [ErrClosed] before they return.
func (b *Bus) SendAsync(ctx context.Context, queue string, msg any, opts ...SendOption) (*Receipt, error) {
	cfg := applySend(sendConfig{}, opts)
	return b.postAsync(ctx, opSend, b.queueName(queue, &cfg), msg, &cfg)
}

// PublishAsync publishes the event msg under topic as [Bus.Publish] does,
// returning once it is handed to the transport, as [Bus.SendAsync] does for
// commands. An event nobody subscribed to is dropped and confirmed, unless
// [WithRequireSubscriber] or [Options.RequireSubscriber] make its verdict
// an error wrapping [ErrUnroutable].
func (b *Bus) PublishAsync(ctx context.Context, topic string, msg any, opts ...SendOption) (*Receipt, error) {
	cfg := applySend(sendConfig{mandatory: b.opts.RequireSubscriber}, opts)
	return b.postAsync(ctx, opPublish, b.opts.TopicPrefix+topic, msg, &cfg)
}

// posts keeps the asynchronous posts of a Bus.
type posts struct {
	window chan struct{} // a token per pending post
	ad     transport.AsyncDispatcher

	mu       sync.Mutex
	seq      uint64
	pending  map[*Receipt]struct{}
	closed   bool
	idle     chan struct{} // closed when pending empties, for Shutdown; nil if nobody waits
	cbq      []*Receipt    // callbacks to run
	running  bool          // a callback goroutine runs cbq
	fq       []func()      // fallback dispatches to run, in order
	fRunning bool          // a goroutine runs fq

	ctx    context.Context // ends when the Bus closes: bounds fallback dispatches
	cancel context.CancelFunc
	wg     sync.WaitGroup // fallback dispatches
}

func (p *posts) init(b *Bus) {
	w := b.opts.PostWindow
	if w == 0 {
		w = DefaultPostWindow
	}
	p.window = make(chan struct{}, w)
	p.pending = map[*Receipt]struct{}{}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if ad, ok := b.t.(transport.AsyncDispatcher); ok && len(b.opts.DispatchMiddleware) == 0 {
		p.ad = ad
	}
}

func (b *Bus) postAsync(ctx context.Context, k op, target string, msg any, cfg *sendConfig) (*Receipt, error) {
	p := &b.posts
	s := scopeFrom(ctx).handlingScope()
	if (s == nil && b.closed.Load()) || p.isClosed() {
		return nil, b.opError(k, target, msg, cfg, ErrClosed)
	}
	if err := p.acquire(ctx, b.opts.PostWindowFailFast); err != nil {
		return nil, b.opError(k, target, msg, cfg, err)
	}
	o := new(transport.Outgoing)
	if err := b.build(s, k, target, msg, cfg, o, nil); err != nil {
		releaseHeaders(o.Message.Headers)
		<-p.window
		return nil, b.opError(k, target, msg, cfg, err)
	}
	r := &Receipt{id: o.Message.ID, done: make(chan struct{}), f: cfg.onAck}
	var sending Sending
	if b.hooks.Send != nil || b.hooks.Sent != nil {
		sending = Sending{Operation: k.String(), Message: o}
		if b.hooks.Send != nil {
			ctx = b.hooks.Send(ctx, sending)
		}
	}
	hctx := context.WithoutCancel(ctx)
	verdict := func(err error) {
		if b.hooks.Sent != nil {
			b.hooks.Sent(hctx, sending, err)
		}
		if err != nil {
			err = b.opError(k, target, msg, cfg, err)
		}
		p.settle(r, err)
		// The transport reads the message no more once it gave its
		// verdict (transport.AsyncDispatcher), nor does Dispatch.
		releaseHeaders(o.Message.Headers)
	}
	if !p.add(r) {
		releaseHeaders(o.Message.Headers)
		<-p.window
		return nil, b.opError(k, target, msg, cfg, ErrClosed)
	}
	if p.ad != nil {
		if err := p.ad.DispatchAsync(ctx, *o, verdict); err != nil {
			p.remove(r)
			if b.hooks.Sent != nil {
				b.hooks.Sent(hctx, sending, err)
			}
			return nil, b.opError(k, target, msg, cfg, err)
		}
		return r, nil
	}
	// No deferred confirms: Dispatch, one post after the other so that
	// they keep their order, on a goroutine of the Bus, bounded by the
	// Bus's life rather than by ctx, which may end as soon as this returns.
	p.enqueue(func() {
		dctx, cancel := context.WithCancel(hctx)
		stop := context.AfterFunc(p.ctx, cancel)
		err := b.dispatch(dctx, *o)
		stop()
		cancel()
		verdict(err)
	})
	return r, nil
}

// enqueue runs f after the fallback dispatches queued before it, on a
// goroutine that ends when none is left.
func (p *posts) enqueue(f func()) {
	p.mu.Lock()
	p.fq = append(p.fq, f)
	start := !p.fRunning
	p.fRunning = true
	if start {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if !start {
		return
	}
	go func() {
		defer p.wg.Done()
		for {
			p.mu.Lock()
			q := p.fq
			p.fq = nil
			if len(q) == 0 {
				p.fRunning = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			for _, f := range q {
				f()
			}
		}
	}()
}

func (p *posts) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// acquire takes a place in the window.
func (p *posts) acquire(ctx context.Context, failFast bool) error {
	select {
	case p.window <- struct{}{}:
		return nil
	default:
	}
	if failFast {
		return fmt.Errorf("%w (%d)", ErrPostWindowFull, cap(p.window))
	}
	select {
	case p.window <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for one of %d asynchronous posts to be confirmed: %w", cap(p.window), ctx.Err())
	case <-p.ctx.Done():
		return ErrClosed
	}
}

// add registers r as pending, unless the Bus closed.
func (p *posts) add(r *Receipt) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.seq++
	r.seq = p.seq
	p.pending[r] = struct{}{}
	return true
}

// remove forgets r, refused by the transport, and frees its place.
func (p *posts) remove(r *Receipt) {
	p.mu.Lock()
	_, ok := p.pending[r]
	delete(p.pending, r)
	p.idleLocked()
	p.mu.Unlock()
	if ok {
		<-p.window
	}
}

func (p *posts) idleLocked() {
	if len(p.pending) == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// settle records r's verdict, the first one given (the transport's, or the
// Bus's ErrClosed), frees its place and queues its callback.
func (p *posts) settle(r *Receipt, err error) {
	r.once.Do(func() {
		r.err = err
		close(r.done)
		p.mu.Lock()
		if _, ok := p.pending[r]; !ok {
			p.mu.Unlock()
			return
		}
		delete(p.pending, r)
		p.idleLocked()
		start := false
		if r.f != nil {
			p.cbq = append(p.cbq, r)
			start, p.running = !p.running, true
		}
		p.mu.Unlock()
		<-p.window
		if start {
			go p.callbacks()
		}
	})
}

// callbacks runs the queued callbacks, one at a time, until none is left.
// The goroutine is not waited for by Close, so that a callback may call
// Close: it ends once the callbacks queued (those of the posts Close failed
// included) have run.
func (p *posts) callbacks() {
	for {
		p.mu.Lock()
		q := p.cbq
		p.cbq = nil
		if len(q) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		for _, r := range q {
			r.f(r)
		}
	}
}

// wait waits until no post is pending, or ctx is done.
func (p *posts) wait(ctx context.Context) error {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close fails every pending post with ErrClosed, refuses new ones and waits
// for the fallback dispatches to end.
func (p *posts) close(name string) {
	p.mu.Lock()
	p.closed = true
	rs := make([]*Receipt, 0, len(p.pending))
	for r := range p.pending {
		rs = append(rs, r)
	}
	p.mu.Unlock()
	slices.SortFunc(rs, func(a, b *Receipt) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range rs {
		p.settle(r, fmt.Errorf("%s: asynchronous post of message %q: no verdict before the Bus closed, the message may or may not have been delivered: %w",
			name, r.id, ErrClosed))
	}
	p.cancel()
	p.wg.Wait()
}
