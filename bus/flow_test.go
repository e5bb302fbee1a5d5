package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/busline/busline/bus"
)

func TestSetFlowControl(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		sendOnly := e.bus("", bus.Options{})
		if err := sendOnly.SetFlowControl(ctx, bus.FlowControl{}); !errors.Is(err, bus.ErrSendOnly) {
			t.Errorf("SetFlowControl of a send-only Bus = %v, want ErrSendOnly", err)
		}
		b := e.bus("orders", bus.Options{Concurrency: 2})
		if f := b.FlowControl(); f != (bus.FlowControl{Prefetch: 6}) {
			t.Errorf("FlowControl() with the defaults = %+v, want a prefetch of 3 × Concurrency", f)
		}
		if err := b.SetFlowControl(ctx, bus.FlowControl{MaxUnackedBytes: -1}); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("SetFlowControl with a negative bound = %v", err)
		}
		// Before Start, and while paused, the values wait for the consumer.
		must(t, b.SetFlowControl(ctx, bus.FlowControl{Prefetch: 1, Priority: 3}))
		if f := b.FlowControl(); f != (bus.FlowControl{Prefetch: 2, Priority: 3}) {
			t.Errorf("FlowControl() = %+v, want the prefetch raised to Concurrency", f)
		}
		var n atomic.Int32
		must(t, bus.Handle(b, func(context.Context, PlaceOrder) error { n.Add(1); return nil }))
		e.start(b)
		must(t, b.Pause(ctx))
		must(t, b.SetFlowControl(ctx, bus.FlowControl{Prefetch: 8}))
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		if n.Load() != 0 {
			t.Fatal("SetFlowControl resumed a paused Bus")
		}
		must(t, b.Resume(ctx))
		idle()
		if n.Load() != 1 {
			t.Fatal("the message sent while paused was not handled after Resume")
		}
		must(t, b.Close())
		if err := b.SetFlowControl(ctx, bus.FlowControl{}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("SetFlowControl after Close = %v, want ErrClosed", err)
		}
		if _, err := bus.New(e.tr, "x", bus.Options{MaxUnackedBytes: -1}); err == nil {
			t.Error("bus.New with a negative MaxUnackedBytes succeeded")
		}
	})
}

func TestMaxUnackedBytes(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		// Bodies of 13 bytes ({"ID":"0123"}), a bound of 30: two at a time.
		b := e.bus("orders", bus.Options{Concurrency: 4, MaxUnackedBytes: 30})
		release := make(chan struct{})
		var running, most atomic.Int32
		must(t, bus.Handle(b, func(ctx context.Context, p PlaceOrder) error {
			r := running.Add(1)
			for {
				m := most.Load()
				if r <= m || most.CompareAndSwap(m, r) {
					break
				}
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			running.Add(-1)
			return nil
		}))
		e.start(b)
		for range 4 {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "0123"}))
		}
		idle()
		if r := running.Load(); r != 2 {
			t.Fatalf("%d handlers running under a bound that fits two messages", r)
		}
		close(release)
		idle()
		if m := most.Load(); m != 2 {
			t.Errorf("at most %d handlers ran at once, want 2", m)
		}
	})
}
