package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// Transport is the RabbitMQ transport. It implements [transport.Transport]
// and the optional [transport.Delayer], [transport.Inspector],
// [transport.Getter], [transport.QueueDeleter], [transport.Watcher] and
// [transport.HealthChecker]. Create it with [Dial]; its methods are safe for
// concurrent use.
type Transport struct {
	opts    Options
	urls    []string
	secrets secrets
	delays  delays
	noDelay bool // dialed by DialNoDelay: no delay levels, no deferral

	pub, con *link
	pool     *publisher
	routes   *routes // destinations known to be bound; see routes.go
	events   eventHub
	ctl      chan amqpChannel // idle control channels of the consuming link
	getter   getChannel

	mu        sync.Mutex
	closed    bool
	isClosed  atomic.Bool          // closed, read without the lock on hot paths
	deferred  atomic.Uint64        // deferred messages planned: each one's rotation of its levels (see delays.path)
	topo      []transport.Topology // declared, in order, for redeclaration
	binds     map[string][]string  // queue → patterns bound with Bind on queues not declared here
	xbinds    []exchangeBinding    // bound with BindExchange, in order
	consumers map[*consumer]struct{}
	done      chan struct{} // closed by Close
	waiting   bool          // Close is waiting for the goroutines: start no more

	wg sync.WaitGroup // every goroutine the transport starts
}

var (
	_ transport.Transport           = (*Transport)(nil)
	_ transport.Delayer             = (*Transport)(nil)
	_ transport.DelayedQueueLimiter = (*Transport)(nil)
	_ transport.Inspector           = (*Transport)(nil)
	_ transport.Getter              = (*Transport)(nil)
	_ transport.QueueDeleter        = (*Transport)(nil)
	_ transport.Watcher             = (*Transport)(nil)
	_ transport.HealthChecker       = (*Transport)(nil)
)

// Dial connects to the broker at url (amqp:// or amqps://), declares the
// exchanges and the delay levels, and returns a running transport. For a
// cluster, url is one node and Options.ClusterURLs the others: the transport
// tries them in turn, now and on every reconnection, in an order of its own
// unless Options.OrderedURLs is set. Each URL is tried once: if none
// answers, or ctx is done first, Dial fails. Errors never contain a
// password.
func Dial(ctx context.Context, url string, opts Options) (*Transport, error) {
	return dial(ctx, url, opts, false)
}

// dial is Dial, or DialNoDelay with noDelay.
func dial(ctx context.Context, url string, opts Options, noDelay bool) (*Transport, error) {
	if url == "" {
		return nil, errors.New("amqp: Dial: no broker URL")
	}
	urls := append([]string{url}, opts.ClusterURLs...)
	opts = opts.withDefaults()
	if opts.DelayLevels > maxDelayLevels {
		return nil, fmt.Errorf("amqp: Dial: %d delay levels, at most %d", opts.DelayLevels, maxDelayLevels)
	}
	if err := checkURLs(urls); err != nil {
		return nil, err
	}
	t := &Transport{
		opts:      opts,
		urls:      placeURLs(urls, opts.OrderedURLs),
		secrets:   newSecrets(urls),
		delays:    newDelays(opts),
		noDelay:   noDelay,
		ctl:       make(chan amqpChannel, 4),
		binds:     make(map[string][]string),
		consumers: make(map[*consumer]struct{}),
		done:      make(chan struct{}),
	}
	t.routes = newRoutes(t)
	t.pub = newLink(t, "publish", func(*session) error { t.routes.reset(); return nil })
	t.con = newLink(t, "consume", t.setupConsume)
	t.pool = newPublisher(t)
	t.getter.t = t

	type result struct {
		s   *session
		err error
	}
	dial := func(l *link) <-chan result {
		c := make(chan result, 1)
		go func() {
			s, err := l.connect(ctx)
			c <- result{s, err}
		}()
		return c
	}
	pc, cc := dial(t.pub), dial(t.con)
	// Both dials give up when ctx is done.
	rs := [2]result{<-pc, <-cc}
	ctxErr := ctx.Err()
	if ctxErr != nil || rs[0].err != nil || rs[1].err != nil {
		for _, r := range rs {
			if r.s != nil {
				_ = r.s.conn.Close()
			}
		}
		if ctxErr != nil {
			return nil, fmt.Errorf("amqp: Dial: %w", ctxErr)
		}
		return nil, errors.Join(rs[0].err, rs[1].err)
	}
	t.pub.start(rs[0].s)
	t.con.start(rs[1].s)
	return t, nil
}

func (t *Transport) log(msg string, args ...any) {
	if t.opts.Logger != nil {
		t.opts.Logger.LogAttrs(context.Background(), slog.LevelInfo, "amqp: "+msg, attrs(t.secrets, args)...)
	}
}

func attrs(s secrets, args []any) []slog.Attr {
	var out []slog.Attr
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		v := args[i+1]
		switch v := v.(type) {
		case error:
			out = append(out, slog.String(k, s.scrub(v.Error())))
		case string:
			out = append(out, slog.String(k, s.scrub(v)))
		default:
			out = append(out, slog.Any(k, v))
		}
	}
	return out
}

// connAlive reports, after an error on ch, whether the connection survived
// (a channel exception) or died with it.
func (s *session) connAlive(ch amqpChannel) bool {
	select {
	case <-s.dead:
		return false
	default:
	}
	c, err := s.conn.Channel()
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func (t *Transport) declareExchanges(ch amqpChannel) error {
	for _, x := range []struct{ name, kind string }{
		{t.opts.DirectExchange, amqp091.ExchangeDirect},
		{t.opts.TopicExchange, amqp091.ExchangeTopic},
	} {
		if err := ch.ExchangeDeclare(x.name, x.kind, true, false, false, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: declare exchange %q", x.name), err)
		}
	}
	if t.noDelay {
		return nil
	}
	if err := t.delays.declare(ch); err != nil {
		var aerr *amqp091.Error
		if errors.As(err, &aerr) && aerr.Code == amqp091.AccessRefused {
			return classify("amqp: declare the delay levels (an account that may not configure them can use DialNoDelay)", err)
		}
		return classify("amqp: declare the delay levels", err)
	}
	return nil
}

// queueArgs returns the arguments q is declared with.
func (t *Transport) queueArgs(q transport.Queue) (amqp091.Table, error) {
	typ := q.Type
	if typ == "" {
		typ = t.opts.QueueType
	}
	if q.Temporary {
		typ = transport.Classic
	}
	declared, err := q.ArgumentsFor(typ)
	if err != nil {
		return nil, err
	}
	args, err := encodeHeaders(declared)
	if err != nil {
		return nil, err
	}
	if q.Temporary {
		if _, ok := args["x-expires"]; !ok {
			if args == nil {
				args = amqp091.Table{}
			}
			args["x-expires"] = int32(temporaryExpiry / time.Millisecond)
		}
		return args, nil
	}
	if args == nil {
		args = amqp091.Table{}
	}
	args["x-queue-type"] = string(typ)
	return args, nil
}

// declare declares tp's queue and bindings on ch. It returns the first
// error, which may have closed ch.
func (t *Transport) declare(ch amqpChannel, tp transport.Topology) error {
	q := tp.Queue
	args, err := t.queueArgs(q)
	if err != nil {
		return err
	}
	switch {
	case q.Temporary:
		// Not exclusive: a PikaBus 2 service binds the queue it replies to
		// on the direct exchange before publishing, and RabbitMQ refuses
		// that bind on another connection's exclusive queue with
		// RESOURCE_LOCKED, which closes the Python service's channel and
		// makes it redeliver the request forever (seen with
		// scripts/pikabus-interop.sh). Not auto-deleted either, so that a
		// consumer's channel closing does not delete the queue under its
		// resubscription: Close deletes it, and x-expires does when the
		// process went away without closing.
		_, err = ch.QueueDeclare(q.Name, false, false, false, false, args)
	case q.Shared:
		if _, err = ch.QueueDeclarePassive(q.Name, true, false, false, false, nil); err == nil {
			break
		}
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp091.NotFound {
			break
		}
		// The passive declare closed the channel: create the queue on a
		// fresh one.
		return fmt.Errorf("%w: %w", errRetryOnFreshChannel, err)
	default:
		_, err = ch.QueueDeclare(q.Name, true, false, false, false, args)
	}
	if err != nil {
		return classify(fmt.Sprintf("amqp: declare queue %q", q.Name), err)
	}
	return t.bindAll(ch, tp)
}

var errRetryOnFreshChannel = errors.New("retry on a fresh channel")

func (t *Transport) bindAll(ch amqpChannel, tp transport.Topology) error {
	name := tp.Queue.Name
	if err := ch.QueueBind(name, name, t.opts.DirectExchange, false, nil); err != nil {
		return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q", name, t.opts.DirectExchange), err)
	}
	if !t.noDelay {
		if err := t.delays.bind(ch, name); err != nil {
			return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q", name, t.delays.delivery), err)
		}
	}
	for _, p := range tp.Topics {
		if err := ch.QueueBind(name, p, t.opts.TopicExchange, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q under %q", name, t.opts.TopicExchange, p), err)
		}
	}
	return nil
}

// control runs fn on a control channel of the consuming connection, bounded
// by ctx. When the connection is lost under it, it waits for the next one
// and runs fn again; any other error is returned as is (fn classifies it).
func (t *Transport) control(ctx context.Context, fn func(ch amqpChannel) error) error {
	var failed *session
	for attempt := 1; ; attempt++ {
		if err := t.checkOpen(); err != nil {
			return err
		}
		s, err := t.con.wait(ctx, failed)
		if err != nil {
			return err
		}
		err = t.onChannel(ctx, s, fn)
		if err == nil || !errors.Is(err, transport.ErrConnectionLost) || ctx.Err() != nil {
			return err
		}
		if s.alive() && s.connAlive(nil) {
			// Only the channel was lost (a pooled channel the broker
			// had closed): try again on a fresh one, a few times.
			if attempt >= 3 {
				return err
			}
			continue
		}
		failed = s
	}
}

func (t *Transport) onChannel(ctx context.Context, s *session, fn func(ch amqpChannel) error) error {
	var ch amqpChannel
	select {
	case ch = <-t.ctl:
	default:
	}
	if ch != nil && !t.ctlOf(ch, s) {
		_ = ch.Close()
		ch = nil
	}
	if ch == nil {
		c, err := s.conn.Channel()
		if err != nil {
			return classify("amqp: open a channel", err)
		}
		ch = ctlChannel{c, s}
	}
	res := make(chan error, 1)
	started := t.spawn(func() {
		err := fn(ch)
		if err != nil && isChannelError(err) {
			_ = ch.Close()
		} else {
			select {
			case t.ctl <- ch:
			default:
				_ = ch.Close()
			}
		}
		res <- err
	})
	if !started {
		_ = ch.Close()
		return transport.ErrClosed
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctlChannel remembers the session a control channel belongs to.
type ctlChannel struct {
	amqpChannel
	s *session
}

func (t *Transport) ctlOf(ch amqpChannel, s *session) bool {
	c, ok := ch.(ctlChannel)
	return ok && c.s == s
}

func (t *Transport) checkOpen() error {
	if t.isClosed.Load() {
		return transport.ErrClosed
	}
	return nil
}

// Declare implements [transport.Transport.Declare]. Queues are quorum
// queues unless Options.QueueType or the topology says otherwise; a
// temporary queue is a classic, non-durable queue that the transport
// redeclares after a reconnection and deletes on Close, with an x-expires of
// one minute for a transport that never closes. It is not exclusive, so that
// other connections may bind it: a PikaBus 2 service binds the queue it
// replies to. Every declared queue
// is also bound on the delay levels' delivery exchange.
func (t *Transport) Declare(ctx context.Context, tp transport.Topology) error {
	if err := tp.Validate(); err != nil {
		return err
	}
	tp.Topics = slices.Clone(tp.Topics)
	err := t.control(ctx, func(ch amqpChannel) error { return t.declare(ch, tp) })
	if errors.Is(err, errRetryOnFreshChannel) {
		// A shared queue that does not exist yet: create it as described.
		create := tp
		create.Queue.Shared = false
		err = t.control(ctx, func(ch amqpChannel) error { return t.declare(ch, create) })
	}
	if err != nil {
		return err
	}
	t.routes.declared(tp.Queue.Name)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, old := range t.topo {
		if old.Queue.Name == tp.Queue.Name {
			topics := old.Topics
			for _, p := range tp.Topics {
				if !slices.Contains(topics, p) {
					topics = append(topics, p)
				}
			}
			tp.Topics = topics
			t.topo[i] = tp
			return nil
		}
	}
	t.topo = append(t.topo, tp)
	return nil
}

// Bind implements [transport.Transport.Bind].
func (t *Transport) Bind(ctx context.Context, queue, pattern string) error {
	if err := transport.ValidateQueueName(queue); err != nil {
		return err
	}
	if err := transport.ValidateTopicPattern(pattern); err != nil {
		return err
	}
	err := t.control(ctx, func(ch amqpChannel) error {
		if err := ch.QueueBind(queue, pattern, t.opts.TopicExchange, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q under %q", queue, t.opts.TopicExchange, pattern), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.remember(queue, pattern, true)
	return nil
}

// Unbind implements [transport.Transport.Unbind].
func (t *Transport) Unbind(ctx context.Context, queue, pattern string) error {
	if err := transport.ValidateQueueName(queue); err != nil {
		return err
	}
	if err := transport.ValidateTopicPattern(pattern); err != nil {
		return err
	}
	err := t.control(ctx, func(ch amqpChannel) error {
		err := ch.QueueUnbind(queue, pattern, t.opts.TopicExchange, nil)
		if err != nil {
			err = classify(fmt.Sprintf("amqp: unbind queue %q from exchange %q under %q", queue, t.opts.TopicExchange, pattern), err)
			if errors.Is(err, transport.ErrNotFound) {
				// The queue is gone, and its bindings with it.
				return nil
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	t.remember(queue, pattern, false)
	return nil
}

// exchangeBinding is a binding made with BindExchange.
type exchangeBinding struct{ exchange, queue, pattern string }

// declareOther declares a topic exchange other than the transport's own as
// tomodachi does (durable, not auto-deleted), except RabbitMQ's predeclared
// "amq." ones, which a client may not declare and tomodachi does not.
func declareOther(ch amqpChannel, exchange string) error {
	if strings.HasPrefix(exchange, "amq.") {
		return nil
	}
	if err := ch.ExchangeDeclare(exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
		return classify(fmt.Sprintf("amqp: declare exchange %q", exchange), err)
	}
	return nil
}

// BindExchange implements [transport.ExchangeBinder]. The binding is redone
// on every new connection, after the queues are declared again.
func (t *Transport) BindExchange(ctx context.Context, exchange, queue, pattern string) error {
	if err := validateExchangeBinding(exchange, queue, pattern); err != nil {
		return err
	}
	err := t.control(ctx, func(ch amqpChannel) error {
		if err := declareOther(ch, exchange); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, pattern, exchange, false, nil); err != nil {
			return classify(fmt.Sprintf("amqp: bind queue %q to exchange %q under %q", queue, exchange, pattern), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	xb := exchangeBinding{exchange, queue, pattern}
	t.mu.Lock()
	if !slices.Contains(t.xbinds, xb) {
		t.xbinds = append(t.xbinds, xb)
	}
	t.mu.Unlock()
	return nil
}

// UnbindExchange implements [transport.ExchangeBinder].
func (t *Transport) UnbindExchange(ctx context.Context, exchange, queue, pattern string) error {
	if err := validateExchangeBinding(exchange, queue, pattern); err != nil {
		return err
	}
	err := t.control(ctx, func(ch amqpChannel) error {
		err := ch.QueueUnbind(queue, pattern, exchange, nil)
		if err != nil {
			err = classify(fmt.Sprintf("amqp: unbind queue %q from exchange %q under %q", queue, exchange, pattern), err)
			if errors.Is(err, transport.ErrNotFound) {
				return nil // the queue or the exchange is gone, and the binding with it
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	xb := exchangeBinding{exchange, queue, pattern}
	t.mu.Lock()
	t.xbinds = slices.DeleteFunc(slices.Clone(t.xbinds), func(x exchangeBinding) bool { return x == xb })
	t.mu.Unlock()
	return nil
}

func validateExchangeBinding(exchange, queue, pattern string) error {
	if err := transport.ValidateExchangeName(exchange); err != nil {
		return err
	}
	if err := transport.ValidateQueueName(queue); err != nil {
		return err
	}
	return transport.ValidateTopicPattern(pattern)
}

// boundExchange reports whether BindExchange bound a queue on exchange.
func (t *Transport) boundExchange(exchange string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.ContainsFunc(t.xbinds, func(x exchangeBinding) bool { return x.exchange == exchange })
}

// remember records a binding change, so that it is redone on reconnection.
func (t *Transport) remember(queue, pattern string, bound bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.topo {
		if t.topo[i].Queue.Name == queue {
			tp := &t.topo[i]
			has := slices.Contains(tp.Topics, pattern)
			switch {
			case bound && !has:
				tp.Topics = append(tp.Topics, pattern)
			case !bound && has:
				tp.Topics = slices.DeleteFunc(slices.Clone(tp.Topics), func(p string) bool { return p == pattern })
			}
			return
		}
	}
	ps := t.binds[queue]
	has := slices.Contains(ps, pattern)
	switch {
	case bound && !has:
		t.binds[queue] = append(ps, pattern)
	case !bound && has:
		t.binds[queue] = slices.DeleteFunc(slices.Clone(ps), func(p string) bool { return p == pattern })
	}
}

// MaxDelay implements [transport.Delayer]: 2^Options.DelayLevels-1 seconds.
func (t *Transport) MaxDelay() time.Duration { return t.delays.max() }

// MaxDelayedQueueName implements [transport.DelayedQueueLimiter]: 255 bytes
// less two per delay level (199 with the default 28 levels).
func (t *Transport) MaxDelayedQueueName() int { return t.delays.maxDest() }

// Inspect implements [transport.Inspector] with a passive queue declare.
func (t *Transport) Inspect(ctx context.Context, queue string) (transport.QueueInfo, error) {
	if err := transport.ValidateQueueName(queue); err != nil {
		return transport.QueueInfo{}, err
	}
	var info transport.QueueInfo
	err := t.control(ctx, func(ch amqpChannel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			return classify(fmt.Sprintf("amqp: inspect queue %q", queue), err)
		}
		info = transport.QueueInfo{Name: q.Name, Messages: q.Messages, Consumers: q.Consumers}
		return nil
	})
	return info, err
}

// DeleteQueue implements [transport.QueueDeleter]. The queue is also
// forgotten: it is not redeclared after a reconnection.
func (t *Transport) DeleteQueue(ctx context.Context, queue string) error {
	if err := transport.ValidateQueueName(queue); err != nil {
		return err
	}
	err := t.control(ctx, func(ch amqpChannel) error {
		if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
			err = classify(fmt.Sprintf("amqp: delete queue %q", queue), err)
			if errors.Is(err, transport.ErrNotFound) {
				return nil
			}
			return err
		}
		return nil
	})
	t.routes.forget(queue)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.topo = slices.DeleteFunc(t.topo, func(tp transport.Topology) bool { return tp.Queue.Name == queue })
	delete(t.binds, queue)
	t.xbinds = slices.DeleteFunc(t.xbinds, func(x exchangeBinding) bool { return x.queue == queue })
	t.mu.Unlock()
	return nil
}

// Watch implements [transport.Watcher].
func (t *Transport) Watch(f func(transport.Event)) (stop func()) {
	return t.events.watch(f)
}

// Health implements [transport.HealthChecker]: both connections must be up
// and every consumer running.
func (t *Transport) Health(ctx context.Context) error {
	if err := t.checkOpen(); err != nil {
		return err
	}
	var errs []error
	for _, l := range []*link{t.pub, t.con} {
		if l.current() == nil {
			errs = append(errs, fmt.Errorf("amqp: the %s connection is down: %w", l.role, transport.ErrConnectionLost))
		}
	}
	t.mu.Lock()
	cs := make([]*consumer, 0, len(t.consumers))
	for c := range t.consumers {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		if err := c.health(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close implements [transport.Transport.Close]: it closes every consumer,
// fails the Dispatch calls still waiting with [transport.ErrClosed], closes
// both connections and waits for the transport's goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.isClosed.Store(true)
	close(t.done)
	cs := make([]*consumer, 0, len(t.consumers))
	for c := range t.consumers {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	t.deleteTemporary()
	t.getter.close()
	t.pool.close()
	t.pub.close()
	t.con.close()
	for {
		select {
		case ch := <-t.ctl:
			_ = ch.Close()
			continue
		default:
		}
		break
	}
	t.mu.Lock()
	t.waiting = true
	t.mu.Unlock()
	t.wg.Wait()
	t.events.close()
	return nil
}

// temporaryExpiry is the x-expires of temporary queues: how long RabbitMQ
// keeps one that nobody consumes, once its transport went away without
// Close (a crash, a lost connection that did not come back).
const temporaryExpiry = time.Minute

// temporaryDeleteTimeout bounds Close's deletion of the temporary queues.
const temporaryDeleteTimeout = 2 * time.Second

// deleteTemporary deletes the temporary queues for Close, best effort and
// bounded: after a failure x-expires deletes them.
func (t *Transport) deleteTemporary() {
	t.mu.Lock()
	var qs []string
	for _, tp := range t.topo {
		if tp.Queue.Temporary {
			qs = append(qs, tp.Queue.Name)
		}
	}
	t.mu.Unlock()
	if len(qs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), temporaryDeleteTimeout)
	defer cancel()
	s, err := t.con.wait(ctx, nil)
	if err != nil {
		return
	}
	err = t.onChannel(ctx, s, func(ch amqpChannel) error {
		for _, q := range qs {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.log("deleting the temporary queues failed; they expire", "queues", qs, "error", err)
	}
}

// spawn runs f on a goroutine Close waits for, unless Close is already
// waiting.
func (t *Transport) spawn(f func()) bool {
	t.mu.Lock()
	if t.waiting {
		t.mu.Unlock()
		return false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}
