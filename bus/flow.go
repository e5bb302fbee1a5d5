package bus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/busline/busline/transport"
)

// FlowControl is an endpoint's flow control, BlazingMQ's queue options:
// [Options] gives it at New (Prefetch, MaxUnackedBytes, ConsumerPriority)
// and [Bus.SetFlowControl] changes it on a running endpoint.
type FlowControl struct {
	// Prefetch bounds how many messages the broker hands the endpoint
	// before they are acked (basic.qos). Zero means 3 × Concurrency; a
	// value below Concurrency is raised to it. Zero never pauses delivery,
	// as BlazingMQ's configure_queue with zeros does: [Bus.Pause] does
	// that.
	Prefetch int

	// MaxUnackedBytes bounds the bytes (message bodies) of the messages
	// being handled at once: a message waits, holding its place in the
	// prefetch window, until the bodies of those in handling leave room
	// for its own (a message larger than the bound is handled alone).
	// Zero means no bound. RabbitMQ does not implement basic.qos's
	// prefetch_size, so the bound is the client's: the broker still hands
	// over up to Prefetch messages of any size, which wait in memory; what
	// is bounded is the work under way, and what the process holds is at
	// most MaxUnackedBytes plus Prefetch messages.
	MaxUnackedBytes int

	// Priority is the endpoint's consumer priority among the consumers of
	// its queue (RabbitMQ's x-priority): the broker hands a message to a
	// consumer of the highest priority with room in its prefetch window,
	// round robin among equals; instances of lower priority get messages
	// only while those above them are full. Zero is the default.
	Priority int
}

// FlowControl returns the endpoint's flow control as in effect, the
// defaults applied.
func (b *Bus) FlowControl() FlowControl {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flow
}

// SetFlowControl changes the endpoint's flow control at run time. A new
// MaxUnackedBytes applies at once, to the messages waiting for room
// included. A new Prefetch or Priority needs a new consumer (RabbitMQ
// applies basic.qos and x-priority when a consumer starts): the Bus drains
// its consumer as Pause does (the broker stops delivering, the messages
// prefetched and not yet handled go back to the queue, the handlers under
// way finish, bounded by ctx) and consumes again with the new values. On a
// paused or suspended Bus, or before Start, the values apply when it
// consumes again.
func (b *Bus) SetFlowControl(ctx context.Context, f FlowControl) error {
	if b.queue == "" {
		return fmt.Errorf("%s: set flow control: %w", b.name, ErrSendOnly)
	}
	if f.Prefetch < 0 || f.MaxUnackedBytes < 0 {
		return fmt.Errorf("%s: set flow control: negative Prefetch (%d) or MaxUnackedBytes (%d)", b.name, f.Prefetch, f.MaxUnackedBytes)
	}
	f = b.flowDefaults(f)
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	old, st, c := b.flow, b.st, b.cons
	b.flow = f
	b.mu.Unlock()
	if b.closed.Load() || st == stopped {
		return fmt.Errorf("%s: set flow control: %w", b.name, ErrClosed)
	}
	b.gate.setLimit(int64(f.MaxUnackedBytes))
	if c == nil || (old.Prefetch == f.Prefetch && old.Priority == f.Priority) {
		return nil
	}
	b.releaseHolds()
	err := c.Drain(ctx)
	b.mu.Lock()
	if b.cons == c {
		b.cons = nil
	}
	b.mu.Unlock()
	// The consumer stopped, whether Drain finished in time or not: start
	// its successor even if ctx is done.
	if serr := b.startConsuming(context.WithoutCancel(ctx)); serr != nil {
		b.consumerLost(b.queue, serr, transport.Event{})
		return fmt.Errorf("%s: set flow control: consuming again: %w", b.name, serr)
	}
	if err != nil {
		return fmt.Errorf("%s: set flow control: draining the consumer: %w", b.name, err)
	}
	b.log.InfoContext(ctx, "flow control changed", "queue", b.queue,
		"prefetch", f.Prefetch, "max_unacked_bytes", f.MaxUnackedBytes, "priority", f.Priority)
	return nil
}

// flowDefaults applies the defaults of Options to f.
func (b *Bus) flowDefaults(f FlowControl) FlowControl {
	if f.Prefetch == 0 {
		f.Prefetch = defaultPrefetchFactor * b.opts.Concurrency
	}
	f.Prefetch = max(f.Prefetch, b.opts.Concurrency)
	return f
}

// byteGate bounds the bytes of the messages in handling
// (FlowControl.MaxUnackedBytes).
type byteGate struct {
	limit atomic.Int64 // 0: no bound

	mu    sync.Mutex
	inUse int64
	n     int           // messages admitted
	wake  chan struct{} // closed when room is made; nil if nobody waits
}

// acquire waits until a message of size bytes fits, or ctx ends. It
// reports whether the message was admitted and must be released.
func (g *byteGate) acquire(ctx context.Context, size int) (admitted, ok bool) {
	if g.limit.Load() <= 0 {
		return false, true
	}
	s := int64(size)
	for {
		g.mu.Lock()
		limit := g.limit.Load()
		if limit <= 0 || g.n == 0 || g.inUse+s <= limit {
			g.inUse += s
			g.n++
			g.mu.Unlock()
			return true, true
		}
		if g.wake == nil {
			g.wake = make(chan struct{})
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false, false
		}
	}
}

func (g *byteGate) release(size int) {
	g.mu.Lock()
	g.inUse -= int64(size)
	g.n--
	g.wakeLocked()
	g.mu.Unlock()
}

func (g *byteGate) wakeLocked() {
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
}

func (g *byteGate) setLimit(n int64) {
	g.mu.Lock()
	g.limit.Store(n)
	g.wakeLocked()
	g.mu.Unlock()
}
