package bus_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

func TestShutdownFinishesInFlightHandlers(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Concurrency: 2, Prefetch: 10})
		billing := e.bus("billing", bus.Options{})
		var billed recorder[string]
		must(t, bus.Handle(billing, func(ctx context.Context, m PlaceOrder) error { return billed.handle(ctx, m.ID) }))
		e.start(billing)
		release := make(chan struct{})
		var started atomic.Int32
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			started.Add(1)
			<-release
			return b.Send(ctx, "billing", m) // allowed: the handler is finishing
		}))
		e.start(b)
		for _, id := range []string{"1", "2", "3", "4"} {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: id}))
		}
		idle()
		if started.Load() != 2 {
			t.Fatalf("%d handlers running, want 2", started.Load())
		}
		done := make(chan error)
		go func() { done <- b.Shutdown(ctx) }()
		idle()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with handlers running", err)
		default:
		}
		if err := b.Send(ctx, "orders", PlaceOrder{}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Send during Shutdown: %v", err)
		}
		close(release)
		must(t, <-done)
		idle()
		if got := billed.all(); len(got) != 2 {
			t.Errorf("billing got %v, want the two in-flight handlers' messages", got)
		}
		if started.Load() != 2 || e.broker.Depth("orders") != 2 {
			t.Errorf("%d started, %d left in the queue; want 2 and 2", started.Load(), e.broker.Depth("orders"))
		}
		must(t, b.Shutdown(ctx))
		must(t, b.Close())
		checkClosed(t, b)
	})
}

func TestShutdownRunsOutOfTime(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var cancelled atomic.Bool
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "never"}))
			<-ctx.Done()
			cancelled.Store(true)
			return ctx.Err()
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "stuck"}))
		idle()
		err := b.Shutdown(after(t, 5*time.Second))
		if !errors.Is(err, context.DeadlineExceeded) || !cancelled.Load() {
			t.Errorf("Shutdown past its deadline: %v (handler cancelled: %v)", err, cancelled.Load())
		}
		// The message is back in its queue, not in the error queue, and
		// nothing the handler sent went out.
		if e.broker.Depth("orders") != 1 || e.broker.Depth("error") != 0 {
			t.Errorf("orders %d, error %d", e.broker.Depth("orders"), e.broker.Depth("error"))
		}
		if m := e.broker.Messages("orders"); len(m) != 1 || string(m[0].Body) != `{"ID":"stuck"}` {
			t.Errorf("queue holds %v", m)
		}
	})
}

func TestCloseCancelsHandlers(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			<-ctx.Done()
			return ctx.Err()
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		must(t, b.Close())
		must(t, b.Close())
		must(t, b.Shutdown(ctx))
		if e.broker.Depth("orders") != 1 || e.broker.Depth("error") != 0 {
			t.Errorf("orders %d, error %d", e.broker.Depth("orders"), e.broker.Depth("error"))
		}
		checkClosed(t, b)
	})
}

func TestCloseDuringShutdown(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			<-ctx.Done()
			return ctx.Err()
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		done := make(chan error)
		go func() { done <- b.Shutdown(ctx) }()
		idle()
		must(t, b.Close())
		<-done
	})
}

// checkClosed checks that every call of a closed Bus fails with ErrClosed.
func checkClosed(t *testing.T, b *bus.Bus) {
	t.Helper()
	_, reqErr := bus.Request[Pong](ctx, b, "orders", Ping{})
	for name, err := range map[string]error{
		"Send":        b.Send(ctx, "orders", PlaceOrder{}),
		"Publish":     b.Publish(ctx, "t", OrderPlaced{}),
		"Defer":       b.Defer(ctx, time.Second, "orders", PlaceOrder{}),
		"Request":     reqErr,
		"Transaction": b.Transaction(ctx, func(context.Context) error { return nil }),
		"Subscribe":   b.Subscribe(ctx, "x"),
		"Unsubscribe": b.Unsubscribe(ctx, "x"),
		"Start":       b.Start(ctx),
		"Pause":       b.Pause(ctx),
		"Resume":      b.Resume(ctx),
		"Health":      b.Health(ctx),
		"Handle":      bus.Handle(b, func(context.Context, Ping) error { return nil }),
	} {
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", name, err)
		}
	}
}

func TestCloseBeforeStart(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{OnNotice: func(bus.Notice) {}})
		must(t, b.Close())
		checkClosed(t, b)
	})
}

func TestPauseResume(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle))
		if err := b.Pause(ctx); err == nil {
			t.Error("Pause before Start succeeded")
		}
		e.start(b)
		must(t, b.Pause(ctx))
		must(t, b.Pause(ctx))
		must(t, b.Health(ctx)) // paused on request is healthy
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "while paused"}))
		idle()
		if len(r.all()) != 0 || e.broker.Depth("orders") != 1 {
			t.Fatalf("a paused endpoint handled %v", r.all())
		}
		must(t, b.Resume(ctx))
		must(t, b.Resume(ctx))
		idle()
		if got := r.all(); len(got) != 1 {
			t.Errorf("after Resume: %v", got)
		}
	})
}

func TestConcurrency(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Concurrency: 3})
		var now, peak atomic.Int32
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Second)
			now.Add(-1)
			return nil
		}))
		e.start(b)
		for range 10 {
			must(t, b.Send(ctx, "orders", PlaceOrder{}))
		}
		time.Sleep(time.Minute)
		idle()
		if peak.Load() != 3 {
			t.Errorf("peak concurrency %d, want 3", peak.Load())
		}
	})
}

// events records what OnNotice saw.
type events struct {
	mu sync.Mutex
	ev []bus.Notice
}

func (r *events) add(e bus.Notice) { r.mu.Lock(); r.ev = append(r.ev, e); r.mu.Unlock() }

func (r *events) kinds() []bus.NoticeKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []bus.NoticeKind
	for _, e := range r.ev {
		k = append(k, e.Kind)
	}
	return k
}

func TestEventsAndHealth(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var rec events
		b := e.bus("orders", bus.Options{OnNotice: rec.add})
		if err := b.Health(ctx); err == nil {
			t.Error("healthy before Start")
		}
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { return nil }))
		e.start(b)
		must(t, b.Health(ctx))
		must(t, b.Pause(ctx))
		must(t, b.Resume(ctx))

		// The connection drops and returns.
		e.tr.Disconnect()
		idle()
		if err := b.Health(ctx); err == nil {
			t.Error("healthy while disconnected")
		}
		e.tr.Reconnect()
		idle()
		must(t, b.Health(ctx))

		// The queue is deleted: the consumer is lost for good.
		must(t, e.tr.DeleteQueue(ctx, "orders"))
		idle()
		if err := b.Health(ctx); err == nil {
			t.Error("healthy without a consumer")
		}
		must(t, b.Shutdown(ctx))
		want := []bus.NoticeKind{
			bus.Started, bus.Paused, bus.Resumed,
			bus.TransportChanged, bus.ConsumerLost, // disconnected
			bus.TransportChanged, bus.ConsumerResumed, // connected
			bus.ConsumerLost, // queue deleted
			bus.Stopping, bus.Stopped,
		}
		if got := rec.kinds(); !slices.Equal(got, want) {
			t.Errorf("events %v\nwant %v", got, want)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if ev := rec.ev[3]; ev.Transport.Kind != transport.Disconnected {
			t.Errorf("event 3 %+v, want the transport's Disconnected", ev)
		}
		if ev := rec.ev[7]; ev.Queue != "orders" || ev.Err == nil {
			t.Errorf("event 7 %+v, want the lost consumer of orders", ev)
		}
		for _, ev := range rec.ev {
			if ev.Time.IsZero() || ev.Kind.String() == "unknown notice" {
				t.Errorf("event %+v", ev)
			}
		}
	})
}

func TestEventCallbackMayCallTheBus(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var b *bus.Bus
		var health []error
		b = e.bus("orders", bus.Options{OnNotice: func(ev bus.Notice) {
			if ev.Kind == bus.Started {
				health = append(health, b.Health(ctx), b.Pause(ctx))
			}
		}})
		e.start(b)
		idle()
		must(t, b.Shutdown(ctx))
		if len(health) != 2 || health[0] != nil || health[1] != nil {
			t.Errorf("calls from OnNotice: %v", health)
		}
	})
}
