package bus_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
)

// arrivals records when each message was handled, on the bubble's clock.
type arrivals struct {
	recorder[string]
	at map[string]time.Time
}

func (a *arrivals) handler(ctx context.Context, m PlaceOrder) error {
	a.mu.Lock()
	if a.at == nil {
		a.at = map[string]time.Time{}
	}
	a.at[m.ID] = time.Now()
	a.mu.Unlock()
	return a.handle(ctx, m.ID)
}

func (a *arrivals) when(id string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.at[id]
	return t, ok
}

func TestDeferIsNeverEarly(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var a arrivals
		must(t, bus.Handle(b, a.handler))
		e.start(b)
		start := time.Now()
		must(t, b.Defer(ctx, 90*time.Second, "orders", PlaceOrder{ID: "defer"}))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "delay"}, bus.WithDelay(30*time.Second)))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "at"}, bus.WithDeliverAt(start.Add(time.Minute))))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "past"}, bus.WithDeliverAt(start.Add(-time.Minute))))
		must(t, b.Defer(ctx, 0, "orders", PlaceOrder{ID: "zero"}))
		idle()
		for _, id := range []string{"past", "zero"} {
			if at, ok := a.when(id); !ok || !at.Equal(start) {
				t.Errorf("%s: handled %v at %v, want at once", id, ok, at)
			}
		}
		for _, c := range []struct {
			id  string
			due time.Duration
		}{{"delay", 30 * time.Second}, {"at", time.Minute}, {"defer", 90 * time.Second}} {
			time.Sleep(time.Until(start.Add(c.due)) - time.Millisecond)
			idle()
			if _, ok := a.when(c.id); ok {
				t.Errorf("%s handled before it was due", c.id)
			}
			time.Sleep(time.Millisecond)
			idle()
			if at, ok := a.when(c.id); !ok || at.Sub(start) != c.due {
				t.Errorf("%s: handled %v after %v, want after %v", c.id, ok, at.Sub(start), c.due)
			}
		}
		in := a.incoming()
		last := in[len(in)-1]
		due, _, err := middleware.HeaderTime(last.Message.Headers["PikaBus.DeferredTime"])
		if err != nil || !due.Equal(start.Add(90*time.Second)) {
			t.Errorf("DeferredTime %v (%v), want %v", due, err, start.Add(90*time.Second))
		}
	})
}

func TestDeferBeyondMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		short := memory.New(memory.Options{Broker: e.broker, MaxDelay: time.Hour})
		t.Cleanup(func() { short.Close() })
		b := e.busOn(short, "orders", bus.Options{})
		var a arrivals
		must(t, bus.Handle(b, a.handler))
		e.start(b)
		start := time.Now()
		must(t, b.Defer(ctx, 150*time.Minute, "orders", PlaceOrder{ID: "long"}))
		// Scheduled for the transport's longest delay, then again on
		// arrival until due.
		if d := e.broker.Deferred(); len(d) != 1 || !d[0].NotBefore.Equal(start.Add(time.Hour)) {
			t.Fatalf("deferred %+v, want one due in an hour", d)
		}
		time.Sleep(150*time.Minute - time.Millisecond)
		idle()
		if _, ok := a.when("long"); ok {
			t.Fatal("handled early")
		}
		time.Sleep(time.Millisecond)
		idle()
		if at, ok := a.when("long"); !ok || at.Sub(start) != 150*time.Minute {
			t.Errorf("handled %v after %v", ok, at.Sub(start))
		}
	})
}

func TestDeferNeedsDelayer(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		pipeline := func(bus.Plumbing) (middleware.Middleware, error) {
			return middleware.Chain(middleware.Recover()), nil
		}
		b := e.busOn(noDelay{e.tr}, "orders", bus.Options{Pipeline: pipeline})
		var handlerErr error
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			handlerErr = b.Defer(ctx, time.Second, "orders", m)
			return nil
		}))
		e.start(b)
		for _, err := range []error{
			b.Defer(ctx, time.Second, "orders", PlaceOrder{}),
			b.Defer(ctx, 0, "orders", PlaceOrder{}),
			b.Send(ctx, "orders", PlaceOrder{}, bus.WithDelay(time.Second)),
		} {
			if !errors.Is(err, bus.ErrNotSupported) {
				t.Errorf("deferral without a Delayer: %v", err)
			}
		}
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		if !errors.Is(handlerErr, bus.ErrNotSupported) {
			t.Errorf("deferral in a handler without a Delayer: %v", handlerErr)
		}
		// Events and requests cannot be deferred, whatever the transport.
		if err := b.Publish(ctx, "t", OrderPlaced{}, bus.WithDelay(time.Second)); !errors.Is(err, bus.ErrNotSupported) {
			t.Errorf("deferred Publish: %v", err)
		}
	})
}
