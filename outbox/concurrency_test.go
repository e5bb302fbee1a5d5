package outbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
)

// messageCount is the number of orders of TestCompetingConsumers: 10,000,
// the figure, on RabbitMQ and PostgreSQL under make test's -race
// too; fewer on SQLite under -race (300) and with -short (500), where it
// would take minutes on two cores.
func messageCount(w *world) int {
	switch {
	case testing.Short():
		return 500
	case raceEnabled && w.broker != nil:
		// SQLite's engine is Go code too (modernc.org/sqlite): under
		// -race it runs ten times slower than PostgreSQL's C.
		return 300
	}
	return 10000
}

// Competing consumers with duplicates: two orders instances (each its own
// connection and outbox, four messages at once each) take every order
// twice (the same message id sent twice), and billing (four at once) every
// OrderPlaced: each order has exactly one effect in each.
func TestCompetingConsumers(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		competing(t, w, messageCount(w))
	})
}

func competing(t testing.TB, w *world, n int) {
	s := newShopOpts(t, w, bus.Options{Concurrency: 4})
	var first *outbox.Outbox
	for range 2 {
		ob := w.outbox()
		if first == nil {
			first = ob
		}
		s.addOrders(t, ob, bus.Options{Concurrency: 4}, false)
	}
	client := w.bus(w.transport("client"), "", bus.Options{})
	// In batches of 100, each order twice.
	for i := 0; i < n; i += 100 {
		must(t, client.Transaction(ctx, func(ctx context.Context) error {
			for j := i; j < min(i+100, n); j++ {
				id := fmt.Sprintf("o%d", j)
				for range 2 {
					if err := client.Send(ctx, "orders", PlaceOrder{ID: id}, bus.WithMessageID("place-"+id)); err != nil {
						return err
					}
				}
			}
			return nil
		}))
	}
	s.check(t, first, n)
}
