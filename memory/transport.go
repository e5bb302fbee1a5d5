package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/busline/transport"
)

// Options configure a [Transport]. The zero value is a transport with a
// broker of its own and PikaBus's exchange names.
type Options struct {
	// Broker is the broker to connect to; nil means a new broker that
	// belongs to the transport and is closed with it.
	Broker *Broker
	// DirectExchange and TopicExchange name the transport's two exchanges;
	// empty means [transport.DefaultDirectExchange] and
	// [transport.DefaultTopicExchange].
	DirectExchange string
	TopicExchange  string
	// Name names the connection in the broker's journal and in errors, as
	// an AMQP connection name does. Optional.
	Name string
	// MaxDelay is the longest delay Dispatch accepts; zero means RabbitMQ
	// transport's limit, 2^28-1 seconds, so that code tested here behaves
	// the same in production.
	MaxDelay time.Duration
	// Logger receives the transport's diagnostics; nil means silent.
	Logger *slog.Logger
}

// DefaultMaxDelay is the longest delay a [Transport] accepts by default:
// that of the RabbitMQ transport's 28 delay levels.
const DefaultMaxDelay = (1<<28 - 1) * time.Second

// Transport is a [transport.Transport] over a [Broker]: one connection to
// it. It also implements [transport.Delayer], [transport.Inspector],
// [transport.Getter], [transport.QueueDeleter], [transport.Watcher],
// [transport.HealthChecker], [transport.AsyncDispatcher] and
// [transport.ExchangeBinder].
type Transport struct {
	b        *Broker
	own      bool
	cn       *conn
	direct   string
	topic    string
	maxDelay time.Duration
	log      *slog.Logger

	closeOnce sync.Once
	closed    atomic.Bool // set when Close starts, for a cheap check
}

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.Delayer         = (*Transport)(nil)
	_ transport.Inspector       = (*Transport)(nil)
	_ transport.Getter          = (*Transport)(nil)
	_ transport.QueueDeleter    = (*Transport)(nil)
	_ transport.Watcher         = (*Transport)(nil)
	_ transport.HealthChecker   = (*Transport)(nil)
	_ transport.AsyncDispatcher = (*Transport)(nil)
	_ transport.ExchangeBinder  = (*Transport)(nil)
)

// New returns a transport connected to opts.Broker, or to a broker of its
// own. It declares the transport's direct and topic exchanges; if one of
// them exists with another kind, Declare reports the conflict. A transport
// on a closed broker is closed.
func New(opts Options) *Transport {
	t := &Transport{
		b:        opts.Broker,
		direct:   opts.DirectExchange,
		topic:    opts.TopicExchange,
		maxDelay: opts.MaxDelay,
		log:      opts.Logger,
	}
	if t.b == nil {
		t.b, t.own = NewBroker(), true
	}
	if t.direct == "" {
		t.direct = transport.DefaultDirectExchange
	}
	if t.topic == "" {
		t.topic = transport.DefaultTopicExchange
	}
	if t.maxDelay <= 0 {
		t.maxDelay = DefaultMaxDelay
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	b := t.b
	cn := &conn{
		b:         b,
		t:         t,
		name:      opts.Name,
		upCh:      make(chan struct{}),
		closedCh:  make(chan struct{}),
		consumers: make(map[*consumer]struct{}),
		temps:     make(map[string]*queue),
		watchers:  make(map[*watcher]struct{}),
	}
	cn.getter = &consumer{b: b, cn: cn}
	t.cn = cn

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cn.closed = true
		close(cn.closedCh)
		return t
	}
	b.queueSeq++
	cn.id = b.queueSeq
	b.conns[cn] = struct{}{}
	if !b.offline {
		cn.up = true
		close(cn.upCh)
	}
	t.declareExchangesLocked()
	return t
}

// Broker returns the broker the transport is connected to.
func (t *Transport) Broker() *Broker { return t.b }

func (t *Transport) declareExchangesLocked() error {
	return errors.Join(
		t.b.declareExchangeLocked(fmt.Sprintf("declare exchange %q", t.direct), t.direct, ExchangeDirect),
		t.b.declareExchangeLocked(fmt.Sprintf("declare exchange %q", t.topic), t.topic, ExchangeTopic),
	)
}

func (t *Transport) exchangeName(e transport.Exchange) string {
	if e == transport.Topic {
		return t.topic
	}
	return t.direct
}

// TemporaryExpiry is how long a temporary queue outlives the loss of its
// transport's connection: the x-expires the RabbitMQ transport gives its
// temporary queues, which RabbitMQ counts from the moment the queue has no
// consumer left.
const TemporaryExpiry = time.Minute

// Declare implements [transport.Transport]. A Temporary queue belongs to
// this transport: it is deleted when the transport closes, or when its
// connection has been lost for [TemporaryExpiry] (and then declared again,
// empty, when the connection returns). Other
// transports may use it as any queue (bind it, publish to it, consume it),
// as they may on RabbitMQ, where the RabbitMQ transport's temporary queues
// are not exclusive.
func (t *Transport) Declare(ctx context.Context, top transport.Topology) error {
	op := fmt.Sprintf("declare queue %q", top.Queue.Name)
	if err := t.checkOpen(op); err != nil {
		return err
	}
	if err := top.Validate(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := t.cn.lockUp(ctx, op); err != nil {
		return err
	}
	b := t.b
	defer b.mu.Unlock()
	if err := t.declareExchangesLocked(); err != nil {
		return err
	}
	var owner *conn
	if top.Queue.Temporary {
		owner = t.cn
	}
	q, err := b.declareQueueLocked(op, top.Queue, owner)
	if err != nil {
		return err
	}
	if owner != nil && q.owner == owner {
		t.cn.temps[q.name] = q
	}
	if err := b.bindLocked(op, t.direct, q.name, q.name); err != nil {
		return err
	}
	for _, p := range top.Topics {
		if err := b.bindLocked(op, t.topic, q.name, p); err != nil {
			return err
		}
	}
	return nil
}

// checkOpen fails once the transport or its broker is closed.
func (t *Transport) checkOpen(op string) error {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	return t.checkOpenLocked(op)
}

func (t *Transport) checkOpenLocked(op string) error {
	if t.cn.closed {
		return fmt.Errorf("memory: %s: transport %w", op, transport.ErrClosed)
	}
	return t.b.errClosedLocked(op)
}

// lockForBinding checks what binding queue under pattern needs before it
// takes the broker's lock (the transport open, the names valid, including
// the exchange of BindExchange and UnbindExchange; none is given for the
// transport's own topic exchange), then takes it: the caller unlocks t.b.mu.
func (t *Transport) lockForBinding(ctx context.Context, op, queue, pattern string, exchange ...string) error {
	if err := t.checkOpen(op); err != nil {
		return err
	}
	if err := t.validateQueuePattern(op, queue, pattern); err != nil {
		return err
	}
	for _, x := range exchange {
		if err := transport.ValidateExchangeName(x); err != nil {
			return fmt.Errorf("memory: %s: %w", op, err)
		}
	}
	return t.cn.lockUp(ctx, op)
}

// Bind implements [transport.Transport].
func (t *Transport) Bind(ctx context.Context, queue, pattern string) error {
	op := fmt.Sprintf("bind queue %q to topic %q", queue, pattern)
	if err := t.lockForBinding(ctx, op, queue, pattern); err != nil {
		return err
	}
	defer t.b.mu.Unlock()
	if err := t.declareExchangesLocked(); err != nil {
		return err
	}
	if _, err := t.queueLocked(op, queue); err != nil {
		return err
	}
	return t.b.bindLocked(op, t.topic, queue, pattern)
}

// BindExchange implements [transport.ExchangeBinder]: it declares the
// exchange as a topic exchange unless it exists or its name starts with
// "amq." (NewBroker predeclares amq.topic, as RabbitMQ does) and binds queue
// there. A temporary queue's
// bindings there are recovered with it, as its other bindings are.
func (t *Transport) BindExchange(ctx context.Context, exchange, queue, pattern string) error {
	op := fmt.Sprintf("bind queue %q to exchange %q under %q", queue, exchange, pattern)
	if err := t.lockForBinding(ctx, op, queue, pattern, exchange); err != nil {
		return err
	}
	defer t.b.mu.Unlock()
	if _, ok := t.b.exchanges[exchange]; strings.HasPrefix(exchange, "amq.") && !ok {
		// The broker's names: a client may not declare one, as on RabbitMQ.
		return fmt.Errorf("memory: %s: %w: no exchange %q", op, transport.ErrNotFound, exchange)
	} else if !ok {
		if err := t.b.declareExchangeLocked(op, exchange, ExchangeTopic); err != nil {
			return err
		}
	}
	if _, err := t.queueLocked(op, queue); err != nil {
		return err
	}
	return t.b.bindLocked(op, exchange, queue, pattern)
}

// UnbindExchange implements [transport.ExchangeBinder].
func (t *Transport) UnbindExchange(ctx context.Context, exchange, queue, pattern string) error {
	op := fmt.Sprintf("unbind queue %q from exchange %q under %q", queue, exchange, pattern)
	if err := t.lockForBinding(ctx, op, queue, pattern, exchange); err != nil {
		return err
	}
	defer t.b.mu.Unlock()
	if ex, ok := t.b.exchanges[exchange]; ok && ex.kind == ExchangeTopic {
		t.b.unbindLocked(exchange, queue, pattern)
	}
	return nil
}

func (t *Transport) validateQueuePattern(op, queue, pattern string) error {
	if err := transport.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := transport.ValidateTopicPattern(pattern); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

// Unbind implements [transport.Transport]. Unbinding from a queue that does
// not exist is harmless.
func (t *Transport) Unbind(ctx context.Context, queue, pattern string) error {
	op := fmt.Sprintf("unbind queue %q from topic %q", queue, pattern)
	if err := t.lockForBinding(ctx, op, queue, pattern); err != nil {
		return err
	}
	defer t.b.mu.Unlock()
	t.b.unbindLocked(t.topic, queue, pattern)
	return nil
}

// Dispatch implements [transport.Transport]. Each message is normalized and
// copied ([transport.Message.Normalized]) before it is routed. A Direct
// message to a queue that exists but is not bound on the direct exchange (a
// queue declared with [Broker.DeclareQueue], as PikaBus 1.x declares its
// own) binds it there first, as the RabbitMQ transport does; the broker's
// own [Broker.Publish] does not, as RabbitMQ does not. A message
// with a NotBefore in the future waits in the broker (see
// [Broker.Deferred]); a deferred mandatory message must be routable now.
func (t *Transport) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	if t.closed.Load() || t.b.closedFlag.Load() {
		return t.checkOpen("dispatch")
	}
	var now time.Time
	var one [1]*entry
	es := one[:0]
	if len(msgs) > 1 {
		es = make([]*entry, 0, len(msgs))
	}
	release := func() { // before publishing: nothing else has seen them
		for _, e := range es {
			e.free()
		}
	}
	for i := range msgs {
		o := &msgs[i]
		err := validateOutgoing(o)
		if err == nil && o.Exchange == transport.Direct && !o.NotBefore.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if d := o.NotBefore.Sub(now); d > t.maxDelay {
				err = fmt.Errorf("%w: a delay of %v is longer than the transport's maximum, %v",
					transport.ErrNotSupported, d, t.maxDelay)
			}
		}
		if err == nil {
			e := newEntry()
			es = append(es, e)
			err = e.set(&o.Message)
			e.exchange, e.key = t.exchangeName(o.Exchange), o.RoutingKey
			if o.ExchangeName != "" {
				e.exchange = o.ExchangeName
			}
		}
		if err != nil {
			release()
			return t.dispatchError(i, o, err)
		}
	}
	if err := ctx.Err(); err != nil {
		release()
		return t.dispatchErrors(msgs, fmt.Errorf("memory: %w", err))
	}
	stamp := t.b.stamp()
	if err := t.cn.lockReady(ctx, "dispatch", true); err != nil {
		release()
		return t.dispatchErrors(msgs, err)
	}
	var errs []error
	var full map[int]error // messages a full queue refused, and why
	for i := range msgs {
		o := &msgs[i]
		if o.Exchange == transport.Direct {
			t.bindDestinationLocked(o.RoutingKey)
		}
		// publishLocked takes over the reference to es[i].
		if err := t.b.publishLocked(t.cn, es[i], o.Mandatory, o.NotBefore, stamp); err != nil {
			if errors.As(err, new(*queueFullError)) {
				if full == nil {
					full = make(map[int]error)
				}
				full[i] = err
				continue
			}
			errs = append(errs, t.dispatchError(i, o, err))
		}
	}
	t.b.mu.Unlock()
	if full != nil {
		errs = append(errs, t.republishRefused(ctx, msgs, full)...)
	}
	if errs == nil {
		return nil
	}
	return errors.Join(errs...)
}

// republishRefused publishes again, after a pause that grows to a second,
// the messages of msgs that a full queue (x-overflow reject-publish)
// refused, until the queues take them or ctx ends. That is what the
// RabbitMQ transport does with the nacks RabbitMQ sends for them: a full
// queue passes, the broker does not say which queue nacked, and a
// publisher that wants to give up sooner says so with its context. Like a
// nack, a message that reached other queues as well reaches them again.
func (t *Transport) republishRefused(ctx context.Context, msgs []transport.Outgoing, full map[int]error) []error {
	pause := 50 * time.Millisecond
	for len(full) > 0 {
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		pause = min(2*pause, time.Second)
		if ctx.Err() != nil {
			break
		}
		stamp := t.b.stamp()
		if err := t.cn.lockReady(ctx, "dispatch", true); err != nil {
			var errs []error
			for _, i := range slices.Sorted(maps.Keys(full)) {
				errs = append(errs, t.dispatchError(i, &msgs[i], err))
			}
			return errs
		}
		for _, i := range slices.Sorted(maps.Keys(full)) {
			o := &msgs[i]
			e := newEntry()
			_ = e.set(&o.Message) // it passed the first time
			e.exchange, e.key = t.exchangeName(o.Exchange), o.RoutingKey
			err := t.b.publishLocked(t.cn, e, o.Mandatory, o.NotBefore, stamp)
			if err == nil || !errors.As(err, new(*queueFullError)) {
				delete(full, i)
				if err != nil {
					t.b.mu.Unlock()
					return append(t.republishFailed(ctx, msgs, full), t.dispatchError(i, o, err))
				}
				continue
			}
			full[i] = err
		}
		t.b.mu.Unlock()
	}
	return t.republishFailed(ctx, msgs, full)
}

// republishFailed gives the errors of the messages still refused when ctx
// ended: not delivered to the full queue (a copy may have reached others).
func (t *Transport) republishFailed(ctx context.Context, msgs []transport.Outgoing, full map[int]error) []error {
	var errs []error
	for _, i := range slices.Sorted(maps.Keys(full)) {
		cause := ctx.Err()
		if cause == nil {
			cause = context.Canceled
		}
		errs = append(errs, t.dispatchError(i, &msgs[i], fmt.Errorf("memory: %w; gave up when the context ended: %w", full[i], cause)))
	}
	return errs
}

// DispatchAsync implements [transport.AsyncDispatcher]. The broker takes a
// message under its lock, so the verdict is known at once: done is called
// on the caller's goroutine before DispatchAsync returns. During a simulated
// outage ([Transport.Disconnect]) it waits for the connection, bounded by
// ctx, as Dispatch does.
func (t *Transport) DispatchAsync(ctx context.Context, msg transport.Outgoing, done func(error)) error {
	if err := msg.Validate(); err != nil {
		return t.dispatchError(0, &msg, err)
	}
	err := t.Dispatch(ctx, msg)
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrClosed), errors.Is(err, transport.ErrInvalidMessage),
		errors.Is(err, transport.ErrNotSupported), errors.Is(err, transport.ErrInvalidName),
		ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err // refused before the broker saw it: nothing was sent
	}
	done(err)
	return nil
}

// bindDestinationLocked binds the queue named queue, if it exists, on the
// direct exchange under its own name, as the RabbitMQ transport does before
// it publishes to a destination it does not know: a PikaBus 1.x service
// declares its queue without that binding. Under the broker's lock it is
// exact and costs no round trip, so the memory transport keeps no set of
// known destinations.
func (t *Transport) bindDestinationLocked(queue string) {
	b := t.b
	ex, ok := b.exchanges[t.direct]
	if !ok {
		return
	}
	q, ok := b.queues[queue]
	if !ok || slices.Contains(ex.direct[queue], q) {
		return
	}
	ex.bind(q, queue)
	q.bindings[binding{ex, queue}] = struct{}{}
}

// validateOutgoing validates o as [transport.Outgoing.Validate] does, except
// for the headers, which entry.set validates as it copies them.
func validateOutgoing(o *transport.Outgoing) error {
	c := *o // the caller's message is not ours to change, even for a moment
	c.Message.Headers = nil
	return c.Validate()
}

func (t *Transport) dispatchError(i int, o *transport.Outgoing, err error) error {
	return &transport.DispatchError{Index: i, Exchange: o.Exchange, RoutingKey: o.RoutingKey, MessageID: o.Message.ID, Err: err}
}

func (t *Transport) dispatchErrors(msgs []transport.Outgoing, err error) error {
	errs := make([]error, len(msgs))
	for i := range msgs {
		errs[i] = t.dispatchError(i, &msgs[i], err)
	}
	return errors.Join(errs...)
}

// Consume implements [transport.Transport]. ConsumeOptions.Prefetch above
// 65535 (AMQP's limit) is lowered to it, or to Concurrency if that is
// larger.
func (t *Transport) Consume(ctx context.Context, queue string, opts transport.ConsumeOptions, h transport.Handler) (transport.Consumer, error) {
	op := fmt.Sprintf("consume queue %q", queue)
	if err := t.checkOpen(op); err != nil {
		return nil, err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	if h == nil {
		return nil, fmt.Errorf("memory: %s: nil handler", op)
	}
	concurrency, prefetch := opts.Limits()
	prefetch = max(min(prefetch, maxPrefetch), concurrency)
	if err := t.cn.lockUp(ctx, op); err != nil {
		return nil, err
	}
	b, cn := t.b, t.cn
	defer b.mu.Unlock()
	q, err := t.queueLocked(op, queue)
	if err != nil {
		return nil, err
	}
	cn.consumerID++
	tag := opts.Tag
	if tag == "" {
		tag = fmt.Sprintf("ctag-%d", cn.consumerID)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &consumer{
		b:           b,
		cn:          cn,
		id:          cn.consumerID,
		queue:       queue,
		tag:         tag,
		prefetch:    prefetch,
		concurrency: concurrency,
		priority:    opts.Priority,
		h:           h,
		ctx:         hctx,
		cancel:      cancel,
		ch:          make(chan *delivery, prefetch),
		done:        make(chan struct{}),
	}
	c.workers.Add(concurrency)
	// The connection owns the handler goroutines too, so that Close waits
	// for the handlers of a consumer whose own Close or Drain gave up on
	// them (package bus does, for handlers that ignore their context).
	cn.wg.Add(concurrency)
	for range concurrency {
		go c.work()
	}
	cn.consumers[c] = struct{}{}
	c.q = q
	q.attach(c)
	cn.emitLocked(transport.Event{Kind: transport.ConsumerStarted, Queue: queue})
	q.pumpLocked(b, b.stamp())
	return c, nil
}

// queueLocked finds a queue.
func (t *Transport) queueLocked(op, name string) (*queue, error) {
	q, ok := t.b.queues[name]
	if !ok {
		return nil, fmt.Errorf("memory: %s: %w: no queue %q", op, transport.ErrNotFound, name)
	}
	return q, nil
}

// Close implements [transport.Transport]: it closes the transport's
// consumers, requeues what they and Get left unsettled, deletes its
// temporary queues and stops its watchers. A transport created without
// Options.Broker closes its broker too. A second Close returns nil at once.
func (t *Transport) Close() error {
	t.close()
	return nil
}

func (t *Transport) close() {
	first := false
	t.closeOnce.Do(func() { first = true })
	if !first {
		return
	}
	b, cn := t.b, t.cn
	t.closed.Store(true)
	b.mu.Lock()
	if !cn.closed {
		cn.closed = true
		close(cn.closedCh)
	}
	cs := cn.sortedConsumersLocked()
	b.mu.Unlock()

	for _, c := range cs {
		c.Close()
	}

	b.mu.Lock()
	cn.getter.returnLocked(stateClosed)
	for _, q := range cn.temps {
		b.deleteQueueLocked(q)
	}
	cn.lostTemps = nil
	cn.stopExpiryLocked()
	delete(b.conns, cn)
	for w := range cn.watchers {
		w.mu.Lock()
		w.draining = true
		w.mu.Unlock()
		close(w.quit)
	}
	cn.watchers = nil
	b.checkIdleLocked()
	b.mu.Unlock()

	cn.wg.Wait()
	if t.own {
		b.Close()
	}
}

// Disconnect drops this transport's connection and keeps it down until
// [Transport.Reconnect], as [Broker.Disconnect] does for all of them.
func (t *Transport) Disconnect() {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if t.cn.closed {
		return
	}
	t.cn.offline = true
	t.cn.updateLocked()
}

// Reconnect ends a [Transport.Disconnect]; the connection recovers unless
// the whole broker is disconnected.
func (t *Transport) Reconnect() {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if t.cn.closed {
		return
	}
	t.cn.offline = false
	t.cn.updateLocked()
}

// MaxDelay implements [transport.Delayer].
func (t *Transport) MaxDelay() time.Duration { return t.maxDelay }

// Inspect implements [transport.Inspector].
func (t *Transport) Inspect(ctx context.Context, queue string) (transport.QueueInfo, error) {
	op := fmt.Sprintf("inspect queue %q", queue)
	if err := t.checkOpen(op); err != nil {
		return transport.QueueInfo{}, err
	}
	if err := t.cn.lockUp(ctx, op); err != nil {
		return transport.QueueInfo{}, err
	}
	defer t.b.mu.Unlock()
	q, err := t.queueLocked(op, queue)
	if err != nil {
		return transport.QueueInfo{}, err
	}
	return transport.QueueInfo{Name: q.name, Messages: q.readyLen(), Consumers: len(q.consumers)}, nil
}

// Get implements [transport.Getter]. The delivery belongs to the
// transport's connection: it is requeued if the connection is lost or the
// transport closes before it is settled.
func (t *Transport) Get(ctx context.Context, queue string) (*transport.Delivery, bool, error) {
	op := fmt.Sprintf("get from queue %q", queue)
	if err := t.checkOpen(op); err != nil {
		return nil, false, err
	}
	if err := t.cn.lockUp(ctx, op); err != nil {
		return nil, false, err
	}
	q, err := t.queueLocked(op, queue)
	if err == nil && q.lim.ttl >= 0 {
		q.expireHeadLocked(t.b, t.b.stamp())
	}
	if err != nil || q.readyLen() == 0 {
		t.b.mu.Unlock()
		return nil, false, err
	}
	dl := t.cn.getter.deliverLocked(t.b, q, q.popFront(), t.b.stamp())
	if q.lim.ttl >= 0 {
		q.armExpiryLocked(t.b)
	}
	t.b.mu.Unlock()
	return dl.handlerDelivery(), true, nil
}

// DeleteQueue implements [transport.QueueDeleter].
func (t *Transport) DeleteQueue(ctx context.Context, queue string) error {
	op := fmt.Sprintf("delete queue %q", queue)
	if err := t.checkOpen(op); err != nil {
		return err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := t.cn.lockUp(ctx, op); err != nil {
		return err
	}
	defer t.b.mu.Unlock()
	q, ok := t.b.queues[queue]
	if !ok {
		return nil
	}
	t.b.deleteQueueLocked(q)
	return nil
}

// Watch implements [transport.Watcher]. After stop returns, f is not called
// again (a call under way may still be running). When the transport closes,
// f receives the events already queued, then the watcher ends.
func (t *Transport) Watch(f func(transport.Event)) (stop func()) {
	w := &watcher{f: f, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	b, cn := t.b, t.cn
	b.mu.Lock()
	defer b.mu.Unlock()
	if cn.closed || b.closed {
		return func() {}
	}
	cn.watchers[w] = struct{}{}
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		w.run()
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			_, live := cn.watchers[w]
			delete(cn.watchers, w)
			b.mu.Unlock()
			w.mu.Lock()
			w.stopped = true
			w.mu.Unlock()
			if live {
				close(w.quit)
			}
		})
	}
}

// Health implements [transport.HealthChecker]: it fails while the
// connection is down or after Close.
func (t *Transport) Health(ctx context.Context) error {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if err := t.checkOpenLocked("health"); err != nil {
		return err
	}
	if !t.cn.up {
		return fmt.Errorf("memory: health: connection %q: %w", t.cn.name, transport.ErrConnectionLost)
	}
	return ctx.Err()
}
