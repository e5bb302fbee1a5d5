package saga_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/saga"
	"github.com/busline/busline/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var ctx = context.Background()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The test saga: an order that ships once paid and reserved, and is
// cancelled if the payment does not come within 30 minutes.
type (
	OrderPlaced     struct{ OrderID string }
	PaymentReceived struct{ OrderID string }
	StockReserved   struct{ OrderID string }
	PaymentOverdue  struct{ OrderID string }
	ShipOrder       struct{ OrderID string }
	CancelOrder     struct{ OrderID string }
	OrderStatus     struct {
		OrderID string
		Status  string
	}
	GetStatus struct{ OrderID string }
)

type Order struct {
	Paid, Reserved, Shipped, Cancelled bool
	Events                             int
}

const paymentTimeout = 30 * time.Minute

func orderSaga(opts saga.Options) *saga.Saga[Order] {
	sg := saga.New[Order]("Order", opts)
	saga.StartedBy(sg, func(m OrderPlaced) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m OrderPlaced) error {
			s.State.Events++
			return s.RequestTimeout(paymentTimeout, PaymentOverdue{OrderID: m.OrderID})
		})
	saga.Handles(sg, func(m PaymentReceived) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m PaymentReceived) error {
			s.State.Paid = true
			s.State.Events++
			return maybeShip(s)
		})
	saga.Handles(sg, func(m StockReserved) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m StockReserved) error {
			s.State.Reserved = true
			s.State.Events++
			return maybeShip(s)
		})
	saga.Handles(sg, func(m GetStatus) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m GetStatus) error {
			return s.Reply(OrderStatus{OrderID: m.OrderID, Status: status(s.State)})
		})
	saga.Timeout(sg, func(ctx context.Context, s *saga.Instance[Order], m PaymentOverdue) error {
		if s.State.Paid {
			return nil
		}
		s.State.Cancelled = true
		s.Complete()
		if err := s.Send("shipping", CancelOrder{OrderID: m.OrderID}); err != nil {
			return err
		}
		return s.ReplyToOriginator(OrderStatus{OrderID: m.OrderID, Status: "cancelled"})
	})
	return sg
}

func maybeShip(s *saga.Instance[Order]) error {
	if !s.State.Paid || !s.State.Reserved {
		return nil
	}
	s.State.Shipped = true
	s.Complete()
	if err := s.Send("shipping", ShipOrder{OrderID: s.Correlation()}); err != nil {
		return err
	}
	return s.ReplyToOriginator(OrderStatus{OrderID: s.Correlation(), Status: "shipped"})
}

func status(o Order) string {
	switch {
	case o.Shipped:
		return "shipped"
	case o.Cancelled:
		return "cancelled"
	case o.Paid:
		return "paid"
	}
	return "placed"
}

// env is a memory broker with an "orders" endpoint running the order saga
// and a "shipping" endpoint recording what it gets, created inside the
// synctest bubble of its test.
type env struct {
	t        *testing.T
	broker   *memory.Broker
	orders   *bus.Bus
	shipping *bus.Bus
	store    saga.Store
	shipped  recorder[any]
}

func bubble(t *testing.T, opts saga.Options, busOpts bus.Options, f func(t *testing.T, e *env)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f(t, newEnv(t, opts, busOpts, saga.NewMemoryStore()))
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("SAGA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t *testing.T, opts saga.Options, busOpts bus.Options, store saga.Store) *env {
	e := &env{t: t, broker: memory.NewBroker(), store: store}
	t.Cleanup(func() { e.broker.Close() })
	if busOpts.Logger == nil {
		busOpts.Logger = testLogger()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	e.orders = e.bus("orders", busOpts)
	must(t, orderSaga(opts).Register(e.orders, store))
	e.shipping = e.bus("shipping", bus.Options{Logger: busOpts.Logger})
	must(t, bus.Handle(e.shipping, func(ctx context.Context, m ShipOrder) error { return e.shipped.add(m) }))
	must(t, bus.Handle(e.shipping, func(ctx context.Context, m CancelOrder) error { return e.shipped.add(m) }))
	must(t, e.orders.Start(ctx))
	must(t, e.shipping.Start(ctx))
	return e
}

func (e *env) bus(queue string, opts bus.Options) *bus.Bus {
	tr := memory.New(memory.Options{Broker: e.broker, Name: queue})
	b, err := bus.New(tr, queue, opts)
	must(e.t, err)
	e.t.Cleanup(func() {
		b.Close()
		tr.Close()
	})
	return b
}

// client returns a started endpoint that sends to orders and records the
// replies it gets.
func (e *env) client(r *recorder[any]) *bus.Bus {
	c := e.bus("client", bus.Options{Logger: testLogger()})
	must(e.t, bus.Handle(c, func(ctx context.Context, m OrderStatus) error { return r.add(m) }))
	must(e.t, c.Start(ctx))
	return c
}

// instance returns the stored state of the order, and whether it exists.
func (e *env) instance(id string) (saga.Record, Order, bool) {
	e.t.Helper()
	r, err := e.store.Find(ctx, "Order", id)
	if errors.Is(err, saga.ErrNotFound) {
		return r, Order{}, false
	}
	must(e.t, err)
	var o Order
	must(e.t, jsonUnmarshal(r.State, &o))
	return r, o, true
}

func idle() { synctest.Wait() }

// recorder records values, safe for concurrent use.
type recorder[T any] struct {
	mu  sync.Mutex
	all []T
}

func (r *recorder[T]) add(v T) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, v)
	return nil
}

func (r *recorder[T]) values() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.all...)
}

// fastRetries: failed handlings are retried at once, then every 100 ms,
// many times, so that conflicts resolve.
var fastRetries = middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.Retries(50), Backoff: func(int) time.Duration { return 100 * time.Millisecond }}

var _ transport.Transport = (*memory.Transport)(nil)
