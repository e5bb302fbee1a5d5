package memory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/busline/busline/transport"
)

// conn is a transport's connection to its broker. All fields but wg are
// guarded by b.mu.
type conn struct {
	b    *Broker
	t    *Transport
	id   uint64
	name string

	up      bool
	offline bool // Transport.Disconnect
	closed  bool
	// upCh is closed while the connection is up; a new one replaces it
	// when the connection goes down.
	upCh     chan struct{}
	closedCh chan struct{}

	consumers  map[*consumer]struct{}
	consumerID uint64
	getter     *consumer
	// temps are the temporary queues the connection declared; lostTemps
	// what is needed to declare them again when it recovers, once expiry
	// deleted them during an outage of more than TemporaryExpiry.
	temps     map[string]*queue
	lostTemps []lostTemp
	expiry    *time.Timer
	watchers  map[*watcher]struct{}

	// wg counts the connection's goroutines that no call waits for.
	wg sync.WaitGroup
}

type lostTemp struct {
	spec     transport.Queue
	bindings []Binding
}

// lockUp locks the broker once the connection is up, waiting for it
// bounded by ctx. On error the lock is not held.
func (cn *conn) lockUp(ctx context.Context, op string) error {
	return cn.lockReady(ctx, op, false)
}

// lockReady is lockUp, which for a publish also waits while the broker
// blocks publishing.
func (cn *conn) lockReady(ctx context.Context, op string, publish bool) error {
	b := cn.b
	for {
		b.mu.Lock()
		switch {
		case b.closed:
			b.mu.Unlock()
			return fmt.Errorf("memory: %s: broker %w", op, transport.ErrClosed)
		case cn.closed:
			b.mu.Unlock()
			return fmt.Errorf("memory: %s: transport %w", op, transport.ErrClosed)
		case cn.up && (!publish || b.blocked == nil):
			// A context that is done fails the call even when nothing
			// would block, as on RabbitMQ.
			if err := ctx.Err(); err != nil {
				b.mu.Unlock()
				return fmt.Errorf("memory: %s: %w", op, err)
			}
			return nil
		}
		wait, why := cn.upCh, "waiting for the connection"
		if cn.up {
			wait, why = b.blocked, b.blockedErr.Error()
		}
		b.mu.Unlock()
		select {
		case <-wait:
		case <-cn.closedCh:
		case <-ctx.Done():
			return fmt.Errorf("memory: %s: %s: %w", op, why, ctx.Err())
		}
	}
}

func (cn *conn) sortedConsumersLocked() []*consumer {
	cs := make([]*consumer, 0, len(cn.consumers))
	for c := range cn.consumers {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].id < cs[j].id })
	return cs
}

// updateLocked brings the connection up or down as the broker's and its
// own offline flags say.
func (cn *conn) updateLocked() {
	if cn.closed {
		return // closing: Close takes everything back itself
	}
	want := !cn.offline && !cn.b.offline
	switch {
	case want && !cn.up:
		cn.recoverLocked()
	case !want && cn.up:
		cn.dropLocked()
	}
}

func (cn *conn) dropLocked() {
	b := cn.b
	cn.up = false
	cn.upCh = make(chan struct{})
	err := fmt.Errorf("memory: connection %q: %w", cn.name, transport.ErrConnectionLost)
	cn.t.log.Info("memory: connection lost", "connection", cn.name)
	cn.emitLocked(transport.Event{Kind: transport.Disconnected, Err: err})
	for _, c := range cn.sortedConsumersLocked() {
		c.suspendLocked()
		cn.emitLocked(transport.Event{Kind: transport.ConsumerStopped, Queue: c.queue, Err: err})
	}
	cn.getter.returnLocked(stateLost)
	if len(cn.temps) > 0 {
		// As RabbitMQ's x-expires on the RabbitMQ transport's temporary
		// queues: they outlive a short outage, with their messages.
		// The timer is set under the lock its function takes, and a
		// function that fired while a recovery stopped it finds another
		// timer (or none) in cn.expiry: a stale one does nothing.
		var tm *time.Timer
		tm = time.AfterFunc(TemporaryExpiry, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if cn.expiry == tm && !cn.up && !cn.closed && !b.closed {
				cn.expiry = nil
				cn.expireTempsLocked()
			}
		})
		cn.expiry = tm
	}
	b.checkIdleLocked()
}

// expireTempsLocked deletes the temporary queues of a connection that has
// been down for TemporaryExpiry, and remembers how to declare them again.
func (cn *conn) expireTempsLocked() {
	b := cn.b
	names := make([]string, 0, len(cn.temps))
	for name := range cn.temps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		q := cn.temps[name]
		lt := lostTemp{spec: q.spec}
		for bd := range q.bindings {
			lt.bindings = append(lt.bindings, Binding{Exchange: bd.ex.name, Key: bd.key})
		}
		sort.Slice(lt.bindings, func(i, j int) bool {
			x, y := lt.bindings[i], lt.bindings[j]
			return x.Exchange < y.Exchange || x.Exchange == y.Exchange && x.Key < y.Key
		})
		cn.lostTemps = append(cn.lostTemps, lt)
		b.deleteQueueLocked(q)
	}
	b.checkIdleLocked()
}

// stopExpiryLocked stops the expiry of the temporary queues.
func (cn *conn) stopExpiryLocked() {
	if cn.expiry != nil {
		cn.expiry.Stop()
		cn.expiry = nil
	}
}

func (cn *conn) recoverLocked() {
	b := cn.b
	cn.up = true
	close(cn.upCh)
	cn.t.log.Info("memory: connection recovered", "connection", cn.name)
	cn.emitLocked(transport.Event{Kind: transport.Connected})
	cn.stopExpiryLocked()
	// Like the RabbitMQ transport's recovery: the exchanges are declared
	// again, and the temporary queues that expired during the outage, with
	// their bindings.
	cn.t.declareExchangesLocked()
	for _, lt := range cn.lostTemps {
		q, err := b.declareQueueLocked("recover temporary queue", lt.spec, cn)
		if err != nil || q.owner != cn {
			continue // someone else took the name meanwhile
		}
		cn.temps[q.name] = q
		for _, bd := range lt.bindings {
			_ = b.bindLocked("recover binding", bd.Exchange, q.name, bd.Key)
		}
	}
	cn.lostTemps = nil
	for _, c := range cn.sortedConsumersLocked() {
		q, ok := b.queues[c.queue]
		if !ok {
			err := fmt.Errorf("memory: resume consumer of queue %q: %w", c.queue, transport.ErrNotFound)
			cn.t.log.Warn("memory: consumer not resumed", "connection", cn.name, "queue", c.queue, "error", err)
			c.failLocked(err)
			continue
		}
		c.q = q
		q.attach(c)
		cn.emitLocked(transport.Event{Kind: transport.ConsumerStarted, Queue: c.queue})
		q.pumpLocked(b, b.stamp())
	}
}

// emitLocked queues ev for every watcher of the connection.
func (cn *conn) emitLocked(ev transport.Event) {
	if len(cn.watchers) == 0 {
		return
	}
	ev.Time = time.Now()
	for w := range cn.watchers {
		w.push(ev)
	}
}

// watcher calls f for each event of a connection, in order, on its own
// goroutine.
type watcher struct {
	f    func(transport.Event)
	wake chan struct{}
	quit chan struct{}

	mu       sync.Mutex
	events   []transport.Event
	stopped  bool // stop was called: no more calls of f
	draining bool // the transport closed: deliver what is queued, then end
}

func (w *watcher) push(ev transport.Event) {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) run() {
	for {
		select {
		case <-w.wake:
		case <-w.quit:
		}
		for {
			w.mu.Lock()
			if w.stopped || len(w.events) == 0 {
				done := w.stopped || w.draining
				w.mu.Unlock()
				if done {
					return
				}
				break
			}
			ev := w.events[0]
			w.events[0] = transport.Event{}
			w.events = w.events[1:]
			w.mu.Unlock()
			w.f(ev)
		}
	}
}
