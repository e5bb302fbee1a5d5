package amqp

import (
	"errors"
	"fmt"
	"slices"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// The consuming connection's set-up, bounded so that a hung cluster node
// cannot hold it up. Measured on a 3-node RabbitMQ 3.10 cluster with one
// node stopped by SIGSTOP (amqp/clustertest's TestClusterHungNodeProbe):
// on a healthy node, declaring an exchange or a queue that exists, basic.qos
// and basic.consume on a queue led elsewhere answer in milliseconds, but
// every queue.bind, even of a binding that exists, and every new exchange
// or queue waits for the hung node (a Mnesia transaction) until Erlang
// declares it down (net_ticktime) or it thaws, on every node alike. So:
//
//   - each operation is bounded by [Options.operationTimeout]: past it,
//     the connection is dropped and the link tries the next node, as it
//     does when a dial times out;
//   - the bindings come after the declarations, and on a reconnection the
//     consumers do not wait for them longer than bindPatience: the
//     bindings of a queue that exists survive on the broker, so consuming
//     can resume while the cluster holds the re-binding, which finishes in
//     the background.

// bindPatience is how long a reconnection's set-up waits for the bindings
// before it lets the consumers resume: they take milliseconds unless the
// cluster waits for a node that does not answer.
const bindPatience = time.Second

// operationTimeout bounds one broker operation of a set-up or of a
// consumer's subscription: twice the heartbeat, at least 5 s, so that a
// quorum queue created on a loaded machine is not mistaken for a hung node.
func (o *Options) operationTimeout() time.Duration {
	if o.opTimeout > 0 {
		return o.opTimeout
	}
	return max(2*o.Heartbeat, 5*time.Second)
}

// A recovery is one set-up of a consuming connection: declarations on
// bounded channels, bindings collected to be made afterwards.
type recovery struct {
	t     *Transport
	s     *session
	binds []deferredBind
}

// deferredBind is a queue.bind or exchange.bind of a set-up. required
// binds (those of the delay levels) fail the set-up of a first connection
// when refused; the others, as redeclarations, are logged.
type deferredBind struct {
	exchange       bool // an exchange-to-exchange binding
	dest, key, src string
	args           amqp091.Table
	required       bool
}

func (b deferredBind) String() string {
	if b.exchange {
		return fmt.Sprintf("bind exchange %q to %q under %q", b.dest, b.src, b.key)
	}
	return fmt.Sprintf("bind queue %q to exchange %q under %q", b.dest, b.src, b.key)
}

// setupConsume runs on every new consuming connection, before consumers
// resume: it declares the exchanges and the delay levels, redeclares every
// queue declared so far (temporary queues died with the previous
// connection; durable ones may have been deleted meanwhile), then makes
// their bindings again.
func (t *Transport) setupConsume(s *session) error {
	r := &recovery{t: t, s: s}
	ch, err := r.channel(true)
	if err != nil {
		return err
	}
	t.routes.reset()
	t.mu.Lock()
	xbinds := slices.Clone(t.xbinds)
	t.mu.Unlock()
	err = t.declareExchanges(ch)
	for i := 0; err == nil && i < len(xbinds); i++ {
		err = declareOther(ch, xbinds[i].exchange)
	}
	if err == nil {
		err = ch.(*setupChannel).flush()
	}
	_ = ch.Close()
	if err != nil {
		return err
	}
	t.mu.Lock()
	topo := slices.Clone(t.topo)
	binds := make(map[string][]string, len(t.binds))
	for q, ps := range t.binds {
		binds[q] = slices.Clone(ps)
	}
	t.mu.Unlock()
	for _, tp := range topo {
		if err := r.redeclare(tp); err != nil {
			if !s.connAlive(nil) {
				return err
			}
			// Someone else changed or deleted the queue since: keep going
			// with the rest; its consumers will report the problem.
			t.log("redeclare failed", "queue", tp.Queue.Name, "error", err)
		}
	}
	for q, ps := range binds {
		for _, p := range ps {
			r.binds = append(r.binds, deferredBind{dest: q, key: p, src: t.opts.TopicExchange})
		}
	}
	// BindExchange's, after the queues: a temporary queue is there again.
	for _, xb := range xbinds {
		r.binds = append(r.binds, deferredBind{dest: xb.queue, key: xb.pattern, src: xb.exchange})
	}
	return r.bindAll(!s.reconnection)
}

// channel opens a channel whose set-up operations are bounded; with
// required, the binds made on it are those of the delay levels.
func (r *recovery) channel(required bool) (amqpChannel, error) {
	var ch amqpChannel
	err := r.s.bounded(r.t.opts.operationTimeout(), func() (err error) {
		ch, err = r.s.conn.Channel()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &setupChannel{amqpChannel: ch, r: r, required: required}, nil
}

// redeclare declares tp on a channel of its own.
func (r *recovery) redeclare(tp transport.Topology) error {
	ch, err := r.channel(false)
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	err = r.t.declare(ch, tp)
	if errors.Is(err, errRetryOnFreshChannel) {
		tp.Queue.Shared = false
		return r.redeclare(tp)
	}
	return err
}

// bindAll makes the collected bindings on a channel of their own. A first
// connection (Dial) waits for them all; a reconnection waits at most
// bindPatience, and leaves the rest to a goroutine that ends when they
// are made or the connection is lost.
func (r *recovery) bindAll(first bool) error {
	if len(r.binds) == 0 {
		return nil
	}
	if first {
		return r.bind()
	}
	done, gaveUp := make(chan error), make(chan struct{})
	started := r.t.spawn(func() {
		err := r.bind()
		select {
		case done <- err:
		case <-gaveUp:
			if err != nil {
				r.t.log("rebinding failed", "url", r.s.url, "error", err)
			}
		}
	})
	if !started {
		return transport.ErrClosed
	}
	timer := time.NewTimer(bindPatience)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		close(gaveUp)
		r.t.log("bindings still being made: the consumers resume meanwhile (the cluster may be waiting for a node that does not answer)",
			"url", r.s.url)
		return nil
	}
}

// bind makes the bindings in order. A refused bind closes the channel:
// the next one gets a new channel. It returns the first refusal of a
// required bind, or the connection's loss.
func (r *recovery) bind() error {
	var ch amqpChannel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	for _, b := range r.binds {
		if ch == nil {
			c, err := r.s.conn.Channel()
			if err != nil {
				return classify("amqp: open a channel", err)
			}
			ch = c
		}
		var err error
		if b.exchange {
			err = ch.ExchangeBind(b.dest, b.key, b.src, false, b.args)
		} else {
			err = ch.QueueBind(b.dest, b.key, b.src, false, b.args)
		}
		if err == nil {
			continue
		}
		_ = ch.Close()
		ch = nil
		err = classify("amqp: "+b.String(), err)
		if b.required || !r.s.connAlive(nil) {
			return err
		}
		r.t.log("rebind failed", "binding", b.String(), "error", err)
	}
	return nil
}

// setupChannel is a channel of a set-up: its declarations are bounded by
// the operation timeout, its bindings collected for recovery.bindAll.
type setupChannel struct {
	amqpChannel
	r        *recovery
	required bool
}

func (c *setupChannel) op(f func() error) error {
	return c.r.s.bounded(c.r.t.opts.operationTimeout(), f)
}

func (c *setupChannel) ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp091.Table) error {
	return c.op(func() error {
		return c.amqpChannel.ExchangeDeclare(name, kind, durable, autoDelete, internal, noWait, args)
	})
}

// QueueDeclare declares the delay levels' queues without waiting for
// each answer (flush collects any refusal): RabbitMQ answers the
// declaration of an existing quorum queue with its message count, which
// takes 250 ms when the queue's leader hangs (measured), and the 29 levels
// would make a reconnection wait 7 s for figures it does not use.
func (c *setupChannel) QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp091.Table) (q amqp091.Queue, err error) {
	err = c.op(func() error {
		q, err = c.amqpChannel.QueueDeclare(name, durable, autoDelete, exclusive, noWait || c.required, args)
		return err
	})
	return q, err
}

// flush waits until the broker has handled every declaration sent on c:
// the answer to a synchronous method comes after them, and a refused one
// has closed the channel, which the method then reports.
func (c *setupChannel) flush() error {
	err := c.op(func() error { return c.amqpChannel.Qos(0, 0, false) })
	if err != nil {
		return classify("amqp: declare the delay levels", err)
	}
	return nil
}

func (c *setupChannel) QueueDeclarePassive(name string, durable, autoDelete, exclusive, noWait bool, args amqp091.Table) (q amqp091.Queue, err error) {
	err = c.op(func() error {
		q, err = c.amqpChannel.QueueDeclarePassive(name, durable, autoDelete, exclusive, noWait, args)
		return err
	})
	return q, err
}

func (c *setupChannel) QueueBind(name, key, exchange string, _ bool, args amqp091.Table) error {
	c.r.binds = append(c.r.binds, deferredBind{dest: name, key: key, src: exchange, args: args, required: c.required})
	return nil
}

func (c *setupChannel) ExchangeBind(destination, key, source string, _ bool, args amqp091.Table) error {
	c.r.binds = append(c.r.binds, deferredBind{exchange: true, dest: destination, key: key, src: source, args: args, required: c.required})
	return nil
}

func (c *setupChannel) Close() error {
	return c.op(c.amqpChannel.Close)
}
