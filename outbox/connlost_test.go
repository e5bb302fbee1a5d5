package outbox_test

import (
	"context"
	"sync"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
)

// The broker's connections drop after the commit, and again after the
// dispatch: the unacked message is delivered again, and the dispatch
// waits for the connection to come back; each order still has one effect.
func TestBrokerConnectionLost(t *testing.T) {
	for _, step := range []string{"committed", "dispatched", "marked"} {
		t.Run(step, func(t *testing.T) {
			w := memoryWorld(t)
			s := newShop(t, w)
			ob := w.outbox()
			var dropped sync.Map
			outbox.SetCrash(ob, func(at, source string) error {
				if at == step {
					if _, dup := dropped.LoadOrStore(source, true); !dup {
						w.broker.DropConnections()
					}
				}
				return nil
			})
			s.addOrders(t, ob, bus.Options{}, false)
			s.place(t, 5)
			s.check(t, ob, 5)
		})
	}
}

// PostgreSQL's connection is killed under the handler's transaction
// (after its business write), and every connection after the commit: the
// handling fails, is retried, and each order has one effect.
func TestDatabaseConnectionLost(t *testing.T) {
	w := rabbitWorld(t)
	s := newShop(t, w)
	ob := w.outbox()
	var mu sync.Mutex
	killed := map[string]bool{}
	terminate := func() {
		if _, err := w.db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()", w.opts.Schema); err != nil {
			t.Error(err)
		}
	}
	outbox.SetCrash(ob, func(at, source string) error {
		mu.Lock()
		defer mu.Unlock()
		if at == "committed" && !killed["c"+source] {
			killed["c"+source] = true
			terminate()
		}
		return nil
	})
	tr := w.transport("orders")
	b := w.bus(tr, "orders", bus.Options{UnitOfWork: ob.UnitOfWork})
	must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
		if err := w.effect(ctx, "orders", m.ID); err != nil {
			return err
		}
		mu.Lock()
		first := !killed["h"+m.ID]
		killed["h"+m.ID] = true
		mu.Unlock()
		if first {
			tx, _ := outbox.Tx(ctx)
			var pid int
			must(t, tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
			if _, err := w.db.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Error(err)
			}
		}
		return b.Publish(ctx, "orders.placed", OrderPlaced{ID: m.ID})
	}))
	must(t, b.Start(ctx))
	s.place(t, 5)
	s.check(t, ob, 5)
}
