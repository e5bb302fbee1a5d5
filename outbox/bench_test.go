package outbox_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// benchWorlds runs f on SQLite and on PostgreSQL, both with the memory
// broker, so that the figures are the database's and the outbox's.
func benchWorlds(b *testing.B, f func(b *testing.B, w *world)) {
	b.Run("sqlite", func(b *testing.B) { f(b, memoryWorld(b)) })
	b.Run("postgres", func(b *testing.B) {
		w := memoryWorld(b)
		w.db.Close()
		w.db, w.opts = openPostgres(b)
		w.qual = w.opts.Schema + "."
		w.effectsTable()
		f(b, w)
	})
}

// BenchmarkHandler: orders handled per second by a handler that records
// the order in the database and publishes OrderPlaced, four at a time;
// "plain" writes in autocommit and lets the Bus dispatch, "outbox" runs
// under the outbox (inbox record, the write and the stored message in one
// transaction, then dispatch and mark). The ratio outbox/plain within one
// run is the outbox's cost.
func BenchmarkHandler(b *testing.B) {
	for _, mode := range []string{"plain", "outbox"} {
		b.Run(mode, func(b *testing.B) {
			benchWorlds(b, func(b *testing.B, w *world) {
				opts := bus.Options{Concurrency: 4}
				if mode == "outbox" {
					opts.UnitOfWork = w.outbox().UnitOfWork
				}
				tr := w.transport("orders")
				must(b, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: w.prefix + "billing", Type: transport.Classic}, Topics: []string{w.prefix + "orders.placed"}}))
				ob := w.bus(tr, "orders", opts)
				var done atomic.Int64
				finished := make(chan struct{})
				var target int64
				insert := w.bind("INSERT INTO " + w.qual + "effects (endpoint, id) VALUES (?, ?)")
				must(b, bus.Handle(ob, func(ctx context.Context, m PlaceOrder) error {
					var err error
					if tx, ok := outbox.Tx(ctx); ok {
						_, err = tx.ExecContext(ctx, insert, "orders", m.ID)
					} else {
						_, err = w.db.ExecContext(ctx, insert, "orders", m.ID)
					}
					if err != nil {
						return err
					}
					if err := ob.Publish(ctx, "orders.placed", OrderPlaced{ID: m.ID}); err != nil {
						return err
					}
					if done.Add(1) == target {
						close(finished)
					}
					return nil
				}))
				client := w.bus(w.transport("client"), "", bus.Options{})
				must(b, ob.Start(ctx))
				target = int64(b.N)
				b.ResetTimer()
				sendOrders(b, client, b.N)
				select {
				case <-finished:
				case <-time.After(5 * time.Minute):
					b.Fatalf("%d of %d orders handled after 5 minutes", done.Load(), b.N)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		})
	}
}

// sendOrders sends n orders to orders, in batches of 100.
func sendOrders(b testing.TB, client *bus.Bus, n int) {
	for i := 0; i < n; i += 100 {
		must(b, client.Transaction(ctx, func(ctx context.Context) error {
			for j := i; j < min(i+100, n); j++ {
				if err := client.Send(ctx, "orders", PlaceOrder{ID: fmt.Sprint(j)}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// BenchmarkRelay: stored messages dispatched per second by one relay, in
// batches of 100, to the memory broker.
func BenchmarkRelay(b *testing.B) {
	benchWorlds(b, func(b *testing.B, w *world) {
		w.opts.RelayAfter = 1 // microsecond: due at once
		ob := w.outbox()
		outbox.SetCrash(ob, func(step, source string) error {
			if step == "committed" {
				return errCrash
			}
			return nil
		})
		tr := w.transport("web")
		must(b, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: w.prefix + "billing", Type: transport.Classic}, Topics: []string{w.prefix + "orders.placed"}}))
		web := w.bus(tr, "", bus.Options{UnitOfWork: ob.UnitOfWork})
		for i := 0; i < b.N; i += 100 {
			web.Transaction(ctx, func(ctx context.Context) error {
				for j := i; j < min(i+100, b.N); j++ {
					if err := web.Publish(ctx, "orders.placed", OrderPlaced{ID: fmt.Sprint(j)}); err != nil {
						return err
					}
				}
				return nil
			})
		}
		b.ResetTimer()
		total := 0
		for total < b.N {
			n, err := ob.RelayOnce(ctx, web.Sender(), 100)
			must(b, err)
			total += n
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
