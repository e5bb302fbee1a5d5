package outbox_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/cputime"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// benchWorlds runs f on every pair of broker (the memory broker, RabbitMQ)
// and database (SQLite, PostgreSQL): the memory broker's figures are the
// database's and the outbox's alone, RabbitMQ's what a service sees.
func benchWorlds(b *testing.B, f func(b *testing.B, w *world)) {
	for _, broker := range []string{"memory", "rabbitmq"} {
		for _, db := range []string{"sqlite", "postgres"} {
			b.Run(broker+"+"+db, func(b *testing.B) { f(b, newWorld(b, broker, db)) })
		}
	}
}

// measure runs f, the timed part of a benchmark that handles b.N
// messages, and reports messages per second and the CPU time of this
// process per message (the broker's and PostgreSQL's are not in it): on
// a shared machine the CPU time is the steadier figure.
func measure(b *testing.B, f func()) {
	cpu := cputime.Used()
	b.ResetTimer()
	f()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cputime.Used()-cpu).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// declareBilling declares the queue OrderPlaced goes to, so that it is
// routable; nobody consumes it. It is deleted when the benchmark ends.
func declareBilling(b *testing.B, w *world, tr transport.Transport) {
	q := w.prefix + "billing"
	must(b, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic}, Topics: []string{w.prefix + "orders.placed"}}))
	if d, ok := tr.(transport.QueueDeleter); ok {
		b.Cleanup(func() { d.DeleteQueue(context.Background(), q) })
	}
}

// BenchmarkHandler: orders handled per second by a handler that records
// the order in the database and publishes OrderPlaced, four at a time;
// "plain" writes in autocommit and dispatches after the handler as a Bus
// does, "outbox" runs under the outbox (inbox record, the write and the
// stored message in one transaction, then dispatch and mark). The ratio outbox/plain of one
// broker and database within one run is the outbox's cost.
func BenchmarkHandler(b *testing.B) {
	benchWorlds(b, func(b *testing.B, world0 *world) {
		for _, mode := range []string{"plain", "outbox"} {
			b.Run(mode, func(b *testing.B) {
				// Each round its own queues, closed when it ends.
				w := &world{}
				*w = *world0
				w.t, w.prefix = b, "t"+randomName()+"."
				var done atomic.Int64
				finished := make(chan struct{})
				target := int64(b.N)
				// An order is done when its unit of work is: the
				// handler ran, OrderPlaced is confirmed, and with the
				// outbox the transaction committed and the message
				// was marked; only the ack is left.
				unit := plainUnit
				if mode == "outbox" {
					unit = w.outbox().UnitOfWork
				}
				opts := bus.Options{Concurrency: 4, UnitOfWork: func(ctx context.Context, u *bus.Unit) error {
					if err := unit(ctx, u); err != nil {
						return err
					}
					if done.Add(1) == target {
						close(finished)
					}
					return nil
				}}
				tr := w.transport("orders")
				declareBilling(b, w, tr)
				ob := w.bus(tr, "orders", opts)
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
					return ob.Publish(ctx, "orders.placed", OrderPlaced{ID: m.ID})
				}))
				client := w.bus(w.transport("client"), "", bus.Options{})
				must(b, ob.Start(ctx))
				measure(b, func() {
					sendOrders(b, client, b.N)
					select {
					case <-finished:
					case <-time.After(5 * time.Minute):
						b.Fatalf("%d of %d orders handled after 5 minutes", done.Load(), b.N)
					}
				})
			})
		}
	})
}

// plainUnit does what a Bus without a UnitOfWork does: it runs the
// handlers and dispatches what they sent.
func plainUnit(ctx context.Context, u *bus.Unit) error {
	out, err := u.Run(ctx)
	if err != nil || len(out) == 0 {
		return err
	}
	return u.Bus.Sender().Dispatch(ctx, out...)
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
// batches of 100 (lease, dispatch with confirms, mark).
func BenchmarkRelay(b *testing.B) {
	benchWorlds(b, func(b *testing.B, w *world) {
		w.opts.RelayAfter = 1 // microsecond: due at once
		ob := w.outbox()
		outbox.SetCrash(ob, func(step, source string) error {
			if step == "committed" {
				return errCrash // stored, not dispatched
			}
			return nil
		})
		tr := w.transport("web")
		declareBilling(b, w, tr)
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
		measure(b, func() {
			for total := 0; total < b.N; {
				n, err := ob.RelayOnce(ctx, web.Sender(), 100)
				must(b, err)
				total += n
			}
		})
	})
}
