// Command sqlite runs busline's bus over Watermill's SQL pub/sub
// (watermill-sql) on a SQLite database file: an order service publishes
// OrderPlaced when it handles PlaceOrder, and a billing service subscribed
// to "orders.*" invoices it. Both services use the same file, as two
// processes on one machine would.
//
//	go run ./examples/sqlite -db /tmp/bus.db
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/watermillbus"
	"github.com/busline/busline/watermillbus/wmsqlite"
)

// PlaceOrder is a command, OrderPlaced an event.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
)

func main() {
	path := flag.String("db", filepath.Join(os.TempDir(), "busline-example.db"), "the SQLite database file")
	flag.Parse()
	if err := run(context.Background(), *path, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, path string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// WAL lets readers run beside the one writer; the busy timeout makes
	// writers wait for each other instead of failing.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	pub, sub, err := wmsqlite.New(db, "busline", wmsqlite.Options{})
	if err != nil {
		return err
	}
	// The Registry holds the queues and topic bindings, which SQL tables
	// do not: every transport that routes to these queues shares it.
	t, err := watermillbus.NewTransport(watermillbus.TransportOptions{
		Publisher: pub, Subscriber: sub, Registry: watermillbus.NewMemoryRegistry(), CloseBackend: true,
	})
	if err != nil {
		return err
	}
	defer t.Close()

	// No deferral on this transport: the bus retries at once, in process,
	// three times, then sends the message to the error queue.
	opts := func(o bus.Options) bus.Options {
		o.Retry = middleware.RetryOptions{Immediate: 3, MaxRetries: middleware.NoRetries}
		return o
	}
	orders, err := bus.New(t, "orders", opts(bus.Options{}))
	if err != nil {
		return err
	}
	if err := bus.Handle(orders, func(ctx context.Context, cmd PlaceOrder) error {
		fmt.Fprintln(out, "orders: placing order", cmd.ID)
		return orders.Publish(ctx, "orders.placed", OrderPlaced{ID: cmd.ID})
	}); err != nil {
		return err
	}
	billing, err := bus.New(t, "billing", opts(bus.Options{Subscriptions: []string{"orders.*"}}))
	if err != nil {
		return err
	}
	invoiced := make(chan string, 1)
	if err := bus.Handle(billing, func(ctx context.Context, ev OrderPlaced) error {
		fmt.Fprintln(out, "billing: invoicing order", ev.ID)
		invoiced <- ev.ID
		return nil
	}); err != nil {
		return err
	}
	for _, b := range []*bus.Bus{orders, billing} {
		if err := b.Start(ctx); err != nil {
			return err
		}
		defer b.Shutdown(context.WithoutCancel(ctx))
	}

	if err := orders.Send(ctx, "orders", PlaceOrder{ID: "42"}); err != nil {
		return err
	}
	select {
	case id := <-invoiced:
		fmt.Fprintln(out, "done: order", id, "invoiced")
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
