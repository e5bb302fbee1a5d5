package bus_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

type uowKey struct{}

// uowLog is a UnitOfWork that records what it was given, keeps the ids of
// the messages it handled (an inbox in memory) and dispatches the batch
// itself, through the Bus's Sender.
type uowLog struct {
	mu      sync.Mutex
	units   []string // "handle <id>" or "transaction"
	batches [][]string
	seen    map[string]bool
	fail    error
}

func (l *uowLog) work(ctx context.Context, u *bus.Unit) error {
	l.mu.Lock()
	what := "transaction"
	if u.Incoming != nil {
		what = "handle " + u.Incoming.MessageID
		if l.seen[u.Incoming.MessageID] {
			l.units = append(l.units, "skip "+u.Incoming.MessageID)
			l.mu.Unlock()
			return nil
		}
	}
	l.units = append(l.units, what)
	fail := l.fail
	l.mu.Unlock()
	out, err := u.Run(context.WithValue(ctx, uowKey{}, "tx"))
	if err != nil {
		return err
	}
	if fail != nil {
		return fail
	}
	var keys []string
	for _, o := range out {
		keys = append(keys, o.RoutingKey+":"+o.Message.ID)
	}
	if _, err := u.Run(ctx); err == nil {
		return errors.New("a second Run succeeded")
	}
	if err := u.Bus.Sender().Dispatch(ctx, out...); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, keys)
	if u.Incoming != nil {
		l.seen[u.Incoming.MessageID] = true
	}
	return nil
}

func TestUnitOfWork(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		l := &uowLog{seen: map[string]bool{}}
		b := e.bus("orders", bus.Options{UnitOfWork: l.work, Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries, Immediate: 1}})
		billing := e.bus("billing", bus.Options{})
		var billed recorder[string]
		must(t, bus.Handle(billing, func(ctx context.Context, m PlaceOrder) error { return billed.handle(ctx, m.ID) }))
		e.start(billing)
		var values []any
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			values = append(values, ctx.Value(uowKey{}))
			if in, ok := bus.IncomingFrom(ctx); !ok || in.MessageID != m.ID {
				t.Errorf("IncomingFrom in a unit of work: %+v, %v", in, ok)
			}
			if m.ID == "bad" {
				return errors.New("bad order")
			}
			return b.Send(ctx, "billing", PlaceOrder{ID: m.ID + "-bill"}, bus.WithMessageID(m.ID+"-bill"))
		}))
		e.start(b)
		// The same message id twice: the unit of work skips the second.
		for _, id := range []string{"o1", "o1", "bad"} {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: id}, bus.WithMessageID(id)))
		}
		idle()
		if got := billed.all(); !slices.Equal(got, []string{"o1-bill"}) {
			t.Errorf("billing got %v", got)
		}
		if want := []string{"handle o1", "skip o1", "handle bad", "handle bad"}; !slices.Equal(l.units, want) {
			t.Errorf("units %v, want %v", l.units, want)
		}
		if len(l.batches) != 1 || !slices.Equal(l.batches[0], []string{"billing:o1-bill"}) {
			t.Errorf("batches %v", l.batches)
		}
		if !slices.Equal(values, []any{"tx", "tx", "tx"}) {
			t.Errorf("the handlers saw %v as the unit's value", values)
		}
		if n := e.broker.Depth(b.ErrorQueue()); n != 1 {
			t.Errorf("%d messages in the error queue, want the bad one", n)
		}
		if n := e.broker.Depth("orders"); n != 0 {
			t.Errorf("%d messages left in orders", n)
		}

		// A Transaction outside handlers is a unit of work too.
		must(t, b.Transaction(ctx, func(ctx context.Context) error {
			if ctx.Value(uowKey{}) != "tx" {
				t.Error("the transaction's function does not see the unit's context")
			}
			return b.Send(ctx, "billing", PlaceOrder{ID: "t"})
		}))
		idle()
		if got := billed.all(); !slices.Equal(got, []string{"o1-bill", "t"}) {
			t.Errorf("billing got %v", got)
		}
		// Its function's error, and the unit's, are Transaction's.
		boom := errors.New("boom")
		if err := b.Transaction(ctx, func(ctx context.Context) error { return boom }); err != boom {
			t.Errorf("Transaction returned %v, want the function's error", err)
		}
		l.fail = boom
		if err := b.Transaction(ctx, func(ctx context.Context) error { return nil }); err != boom {
			t.Errorf("Transaction returned %v, want the unit's error", err)
		}
	})
}

// A failing unit of work fails the handling like a handler's error, and
// nothing the handlers sent is dispatched by the Bus.
func TestUnitOfWorkFails(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var dispatched []string
		b := e.bus("orders", bus.Options{
			Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries},
			UnitOfWork: func(ctx context.Context, u *bus.Unit) error {
				if _, err := u.Run(ctx); err != nil {
					return err
				}
				return errors.New("commit failed")
			},
			DispatchMiddleware: []middleware.DispatchMiddleware{func(next middleware.Dispatcher) middleware.Dispatcher {
				return func(ctx context.Context, msgs ...transport.Outgoing) error {
					for _, m := range msgs {
						dispatched = append(dispatched, m.RoutingKey)
					}
					return next(ctx, msgs...)
				}
			}},
		})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			return b.Send(ctx, "billing", m)
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "o"}))
		idle()
		// The send, then the error queue copy; never billing.
		if !slices.Equal(dispatched, []string{"orders", "error"}) {
			t.Errorf("dispatched %v", dispatched)
		}
	})
}
