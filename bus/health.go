package bus

import (
	"context"
	"sync"

	"github.com/busline/busline/transport"
)

// HealthMonitor tells whether the host an endpoint runs on is healthy, as
// BlazingMQ's host health monitor does: an endpoint given one in
// [Options.HealthMonitor] stops taking messages while the host is unhealthy
// (a disk filling up, a dependency down, a node being drained), so that
// other instances take them, and takes them again once it recovers. Its
// methods must be safe for concurrent use.
type HealthMonitor interface {
	// Healthy reports whether the host is healthy now.
	Healthy() bool
	// Watch calls f after each change of health from now on, until stop
	// is called; f then reads Healthy. f must not block: the Bus only
	// wakes its own goroutine with it.
	Watch(f func()) (stop func())
}

// BasicHealthMonitor is a [HealthMonitor] that the program, or a test, sets
// healthy or unhealthy, as BlazingMQ's BasicHealthMonitor. The zero value is
// healthy. Its methods are safe for concurrent use.
type BasicHealthMonitor struct {
	mu        sync.Mutex
	unhealthy bool
	next      int
	watchers  map[int]func()
}

// Healthy reports whether the monitor was last set healthy (or never set).
func (m *BasicHealthMonitor) Healthy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.unhealthy
}

// SetHealthy marks the host healthy and tells the watchers if that is a
// change.
func (m *BasicHealthMonitor) SetHealthy() { m.set(false) }

// SetUnhealthy marks the host unhealthy and tells the watchers if that is a
// change.
func (m *BasicHealthMonitor) SetUnhealthy() { m.set(true) }

func (m *BasicHealthMonitor) set(unhealthy bool) {
	m.mu.Lock()
	if m.unhealthy == unhealthy {
		m.mu.Unlock()
		return
	}
	m.unhealthy = unhealthy
	fs := make([]func(), 0, len(m.watchers))
	for _, f := range m.watchers {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// Watch implements [HealthMonitor]: f is called on the goroutine that
// changes the health, after the change.
func (m *BasicHealthMonitor) Watch(f func()) (stop func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watchers == nil {
		m.watchers = map[int]func(){}
	}
	id := m.next
	m.next++
	m.watchers[id] = f
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.watchers, id)
	}
}

// watchHealth follows Options.HealthMonitor from Start until the Bus
// stops, suspending and resuming consumption on a goroutine of the Bus.
func (b *Bus) watchHealth() {
	m := b.opts.HealthMonitor
	if m == nil || b.queue == "" {
		return
	}
	wake := make(chan struct{}, 1)
	stop := m.Watch(func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	wake <- struct{}{} // the health at Start
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer stop()
		for {
			select {
			case <-wake:
				b.applyHealth(m.Healthy())
			case <-b.finishing:
				return
			}
		}
	}()
}

// applyHealth suspends consumption while the host is unhealthy, and starts
// it again when it is healthy and the Bus is not paused. In-flight
// handlers finish first: the consumer is drained.
func (b *Bus) applyHealth(healthy bool) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	st, c, was := b.st, b.cons, b.suspended
	if b.closed.Load() || st == stopped || was == !healthy {
		b.mu.Unlock()
		return
	}
	b.suspended = !healthy
	b.mu.Unlock()
	ctx := context.Background()
	if !healthy {
		var err error
		if c != nil {
			b.releaseHolds()
			// Not waited for past the Bus's end: a handler that ignores
			// its context must not hold up Shutdown and Close, which
			// bound their wait (the goroutine ends when it returns).
			drained := make(chan error, 1)
			go func() { drained <- c.Drain(ctx) }()
			select {
			case err = <-drained:
			case <-b.finishing:
				return
			}
			b.mu.Lock()
			if b.cons == c {
				b.cons = nil
			}
			b.mu.Unlock()
		}
		b.emit(Notice{Kind: Suspended, Queue: b.queue, Err: err})
		b.log.Warn("the host is unhealthy: consumption suspended", "queue", b.queue)
		return
	}
	var err error
	if st == running {
		err = b.startConsuming(ctx)
	}
	b.emit(Notice{Kind: Unsuspended, Queue: b.queue, Err: err})
	if err != nil {
		b.log.Error("the host is healthy again, but consuming failed", "queue", b.queue, "error", err)
		b.consumerLost(b.queue, err, transport.Event{})
		return
	}
	b.log.Info("the host is healthy again: consumption resumed", "queue", b.queue)
}
