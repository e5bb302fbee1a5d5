package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// countingSender dispatches through s and counts each message id
// dispatched.
type countingSender struct {
	s     middleware.Sender
	mu    sync.Mutex
	count map[string]int
}

func (c *countingSender) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	err := c.s.Dispatch(ctx, msgs...)
	if err == nil {
		c.mu.Lock()
		if c.count == nil {
			c.count = map[string]int{}
		}
		for _, m := range msgs {
			c.count[m.Message.ID]++
		}
		c.mu.Unlock()
	}
	return err
}

// Transactions outside handlers whose process stops after the commit:
// their messages wait in the outbox until relays, several at once,
// dispatch each exactly once.
func TestTransactionAndRelays(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		s := newShop(t, w)
		ob := w.outbox()
		outbox.SetCrash(ob, func(step, source string) error {
			if step == "committed" {
				return errCrash
			}
			return nil
		})
		web := w.bus(w.transport("web"), "", bus.Options{UnitOfWork: ob.UnitOfWork})
		const n = 60
		for i := range n {
			id := fmt.Sprintf("o%d", i)
			err := web.Transaction(ctx, func(ctx context.Context) error {
				if err := w.effect(ctx, "orders", id); err != nil {
					return err
				}
				return web.Publish(ctx, "orders.placed", OrderPlaced{ID: id})
			})
			if !errors.Is(err, errCrash) {
				t.Fatalf("Transaction: %v, want the injected crash", err)
			}
		}
		// A transaction that fails stores nothing.
		boom := errors.New("boom")
		if err := web.Transaction(ctx, func(ctx context.Context) error {
			if err := w.effect(ctx, "orders", "never"); err != nil {
				return err
			}
			if err := web.Publish(ctx, "orders.placed", OrderPlaced{ID: "never"}); err != nil {
				return err
			}
			return boom
		}); err != boom {
			t.Fatalf("Transaction: %v, want the function's error", err)
		}
		if p, err := ob.Pending(ctx); err != nil || p != n {
			t.Fatalf("Pending: %d, %v; want %d", p, err, n)
		}
		if got := w.effects("orders"); len(got) != n {
			t.Fatalf("%d orders stored, want %d", len(got), n)
		}

		// Three relays, three processes, 10 messages a batch.
		sender := &countingSender{s: web.Sender()}
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range 3 {
			r := w.outbox()
			wg.Go(func() {
				r.Relay(rctx, sender, outbox.RelayOptions{Interval: 20 * time.Millisecond, BatchSize: 10})
			})
		}
		waitFor(t, "the relays to dispatch everything", func() bool {
			p, err := ob.Pending(ctx)
			must(t, err)
			return p == 0
		})
		cancel()
		wg.Wait()
		s.check(t, ob, n)
		if len(sender.count) != n {
			t.Errorf("%d messages dispatched, want %d", len(sender.count), n)
		}
		for id, c := range sender.count {
			if c != 1 {
				t.Errorf("message %s dispatched %d times by the relays", id, c)
			}
		}
	})
}

// The broker refuses the dispatch after the commit: the handling fails,
// and its retry dispatches what the first attempt stored. On the relay's
// side a refused message is retried later.
func TestBrokerRefusesDispatch(t *testing.T) {
	w := memoryWorld(t)
	s := newShop(t, w)
	ob := w.outbox()
	var once sync.Once
	outbox.SetCrash(ob, func(step, source string) error {
		if step == "committed" {
			once.Do(func() { w.broker.FailDispatches(1, nil) })
		}
		return nil
	})
	s.addOrders(t, ob, bus.Options{}, false)
	s.place(t, 5)
	s.check(t, ob, 5)

	// The relay: the first dispatch refused, the next one goes.
	web := w.bus(w.transport("web"), "", bus.Options{UnitOfWork: ob.UnitOfWork})
	w.broker.FailDispatches(1, nil)
	must(t, web.Transaction(ctx, func(ctx context.Context) error {
		return web.Publish(ctx, "orders.placed", OrderPlaced{ID: "t"})
	}))
	if p, _ := ob.Pending(ctx); p != 1 {
		t.Fatalf("%d pending after a refused dispatch, want 1", p)
	}
	time.Sleep(100 * time.Millisecond) // RelayAfter
	w.broker.FailDispatches(1, nil)
	if n, err := ob.RelayOnce(ctx, web.Sender(), 10); n != 0 || !errors.Is(err, transport.ErrRejected) {
		t.Fatalf("RelayOnce with the broker refusing: %d, %v", n, err)
	}
	// It backs off: not due again at once.
	if n, err := ob.RelayOnce(ctx, web.Sender(), 10); n != 0 || err != nil {
		t.Fatalf("RelayOnce right after a failure: %d, %v; want nothing due", n, err)
	}
}
