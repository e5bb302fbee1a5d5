package saga_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/saga"
)

// TestOutboxCommitsStateAndMessagesTogether: under the outbox, a handling
// that fails after the saga's handler ran (another handler of the message
// fails) commits neither the state change nor the messages it sent; its
// retry does both once. A duplicate of the message changes nothing.
func TestOutboxCommitsStateAndMessagesTogether(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		orders := w.bus("orders", bus.Options{UnitOfWork: w.ob.UnitOfWork, Retry: fastRetries})
		must(t, orderSaga(saga.Options{KeepCompleted: time.Hour}).Register(orders, w.store))
		var failed atomic.Int32
		must(t, bus.Handle(orders, func(ctx context.Context, m PaymentReceived) error {
			if failed.Add(1) == 1 {
				return errors.New("the first handling fails after the saga's handler ran")
			}
			return nil
		}))
		// Outgoing messages are at least once (a duplicate may find them
		// dispatched and not yet marked so): shipping's inbox absorbs it.
		shipping := w.bus("shipping", bus.Options{UnitOfWork: w.ob.UnitOfWork})
		var shipped recorder[any]
		must(t, bus.Handle(shipping, func(ctx context.Context, m ShipOrder) error { return shipped.add(m) }))
		must(t, orders.Start(ctx))
		must(t, shipping.Start(ctx))

		client := w.bus("client", bus.Options{})
		must(t, client.Send(ctx, "orders", OrderPlaced{OrderID: "o1"}))
		must(t, client.Send(ctx, "orders", StockReserved{OrderID: "o1"}))
		waitFor(t, "the stock reservation", func() bool {
			r, err := w.store.Find(ctx, "Order", "o1")
			return err == nil && r.Version == 2
		})
		id := bus.NewMessageID()
		must(t, client.Send(ctx, "orders", PaymentReceived{OrderID: "o1"}, bus.WithMessageID(id)))
		waitFor(t, "the shipment", func() bool { return len(shipped.values()) > 0 })
		must(t, client.Send(ctx, "orders", PaymentReceived{OrderID: "o1"}, bus.WithMessageID(id)))
		waitFor(t, "the duplicate", func() bool { return failed.Load() >= 2 })
		// The duplicate is absorbed by the inbox; give a wrong second
		// shipment the time to show, on the memory broker exactly.
		if w.broker != nil {
			must(t, w.broker.WaitIdle(ctx))
		} else {
			time.Sleep(500 * time.Millisecond)
		}
		r, err := w.store.Find(ctx, "Order", "o1")
		must(t, err)
		var o Order
		must(t, jsonUnmarshal(r.State, &o))
		if !r.Completed || !o.Shipped || o.Events != 3 || r.Version != 3 {
			t.Errorf("instance %+v, state %+v: want completed after 3 events, 3 saves", r, o)
		}
		if got := shipped.values(); len(got) != 1 {
			t.Errorf("shipping got %v, want one ShipOrder", got)
		}
		if n := failed.Load(); n != 2 {
			t.Errorf("the other handler ran %d times, want 2 (the duplicate skipped)", n)
		}
	})
}
