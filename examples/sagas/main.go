// Command sagas is the saga example: an order fulfilment. Placing an order
// charges the card and reserves the stock in parallel; the order ships
// once both are done; if the payment does not come in time, the order is
// cancelled and its stock released. The orders, payments, stock and
// shipping services and a shop that places two orders (one paid, one
// whose card never answers) run in this process.
//
//	go run .                                   # the memory broker, instances in memory
//	go run . -amqp amqp://guest:guest@localhost:5672/ -postgres postgres://user@localhost/shop
//
// With -postgres the instances live in PostgreSQL, and the orders
// service's state changes and messages commit together through the
// outbox.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/saga"
	"github.com/busline/busline/transport"
)

// Config is what the command line chooses.
type Config struct {
	AMQP     string // RabbitMQ URL; empty: the memory broker
	Postgres string // PostgreSQL URL; empty: instances in memory
	// PaymentTimeout is how long an order waits for its payment.
	PaymentTimeout time.Duration
	// Prefix begins the queue names, and Schema is the PostgreSQL schema
	// of the tables (created if missing): tests use their own.
	Prefix, Schema string
	// Transport, if set, is used instead of AMQP or a memory broker of
	// its own (tests share it).
	Transport transport.Transport
}

func main() {
	var c Config
	flag.StringVar(&c.AMQP, "amqp", "", "RabbitMQ URL (instead of the in-memory broker)")
	flag.StringVar(&c.Postgres, "postgres", "", "PostgreSQL URL (instead of keeping the instances in memory)")
	flag.DurationVar(&c.PaymentTimeout, "payment-timeout", 2*time.Second, "how long an order waits for its payment (30m in a shop)")
	flag.StringVar(&c.Prefix, "prefix", "", "prefix of the queue names")
	flag.StringVar(&c.Schema, "schema", "", "PostgreSQL schema of the tables")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, c, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// Run starts the services, places two orders, prints what happens and
// returns when both orders ended.
func Run(ctx context.Context, c Config, w io.Writer) error {
	out := &printer{w: w}
	t := c.Transport
	var err error
	switch {
	case t != nil:
	case c.AMQP != "":
		if t, err = amqp.Dial(ctx, c.AMQP, amqp.Options{ConnectionName: "sagas-example"}); err != nil {
			return err
		}
		defer t.Close()
	default:
		t = memory.New(memory.Options{})
		defer t.Close()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := bus.Options{QueuePrefix: c.Prefix, TopicPrefix: c.Prefix, QueueType: transport.Classic, Logger: logger}
	var endpoints []*bus.Bus
	defer func() {
		for _, b := range endpoints {
			b.Close()
		}
	}()
	endpoint := func(name string, opts bus.Options) (*bus.Bus, error) {
		b, err := bus.New(t, name, opts)
		if err == nil {
			endpoints = append(endpoints, b)
		}
		return b, err
	}

	// The orders service runs the saga, on PostgreSQL with the outbox, or
	// in memory.
	ordersOpts := opts
	var store saga.Store = saga.NewMemoryStore()
	where := "in memory"
	if c.Postgres != "" {
		db, ob, err := openPostgres(ctx, c)
		if err != nil {
			return err
		}
		defer db.Close()
		if store, err = saga.NewSQLStore(ctx, db, saga.SQLOptions{Dialect: saga.Postgres, Schema: c.Schema}); err != nil {
			return err
		}
		ordersOpts.UnitOfWork = ob.UnitOfWork
		where = "in PostgreSQL, through the outbox"
		defer startRelay(ctx, ob, t)()
	}
	orders, err := endpoint("orders", ordersOpts)
	if err != nil {
		return err
	}
	if err := Fulfilments(c.PaymentTimeout, saga.Options{}).Register(orders, store); err != nil {
		return err
	}

	// The other services answer the saga.
	payments, err := endpoint("payments", opts)
	if err != nil {
		return err
	}
	stock, err := endpoint("stock", opts)
	if err != nil {
		return err
	}
	shipping, err := endpoint("shipping", opts)
	if err != nil {
		return err
	}
	released := make(chan string, 2)
	for _, err := range []error{
		bus.Handle(payments, func(ctx context.Context, m ChargeCard) error {
			if m.Card == "declined" {
				out.say("payments", "card of %s does not answer", m.OrderID)
				return nil
			}
			out.say("payments", "charged %s", m.OrderID)
			return payments.Reply(ctx, PaymentReceived{OrderID: m.OrderID})
		}),
		bus.Handle(stock, func(ctx context.Context, m ReserveStock) error {
			out.say("stock", "reserved %s", m.OrderID)
			return stock.Reply(ctx, StockReserved{OrderID: m.OrderID})
		}),
		bus.Handle(stock, func(ctx context.Context, m ReleaseStock) error {
			out.say("stock", "released %s", m.OrderID)
			select {
			case released <- m.OrderID:
			default:
			}
			return nil
		}),
		bus.Handle(shipping, func(ctx context.Context, m ShipOrder) error {
			out.say("shipping", "shipped %s", m.OrderID)
			return shipping.Reply(ctx, OrderShipped{OrderID: m.OrderID})
		}),
	} {
		if err != nil {
			return err
		}
	}
	shop, err := endpoint("shop", opts)
	if err != nil {
		return err
	}
	for _, b := range endpoints {
		if err := b.Start(ctx); err != nil {
			return err
		}
	}
	broker := "memory"
	if c.AMQP != "" {
		broker = "rabbitmq"
	}
	out.say("shop", "sagas on the %s broker, instances %s; payment timeout %v", broker, where, c.PaymentTimeout)

	// The shop places two orders and waits for their outcome: the saga
	// replies to it from a later message.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, o := range []PlaceOrder{{OrderID: "order-1", Card: "4242"}, {OrderID: "order-2", Card: "declined"}} {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, c.PaymentTimeout+time.Minute)
			defer cancel()
			start := time.Now()
			res, err := bus.Request[OrderResult](rctx, shop, "orders", o)
			if err != nil {
				errs[i] = fmt.Errorf("placing %s: %w", o.OrderID, err)
				return
			}
			out.say("shop", "%s %s (after %v)", res.OrderID, res.Status, time.Since(start).Round(time.Second))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	// The cancelled order's stock release comes after its answer.
	select {
	case <-released:
	case <-time.After(time.Minute):
		return errors.New("the stock of the cancelled order was not released")
	case <-ctx.Done():
		return ctx.Err()
	}
	out.say("shop", "done")
	return nil
}

// openPostgres opens the database and its outbox.
func openPostgres(ctx context.Context, c Config) (*sql.DB, *outbox.Outbox, error) {
	db, err := sql.Open("pgx", c.Postgres)
	if err != nil {
		return nil, nil, err
	}
	if c.Schema != "" {
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+c.Schema); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	ob, err := outbox.New(ctx, db, outbox.Options{Dialect: outbox.Postgres, Schema: c.Schema})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, ob, nil
}

// startRelay runs the outbox's relay, which dispatches what a crash (or
// the broker) left in the outbox, and returns the function that stops it.
func startRelay(ctx context.Context, ob *outbox.Outbox, t transport.Transport) (stop func()) {
	b, err := bus.New(t, "", bus.Options{})
	if err != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Relay(ctx, b.Sender(), outbox.RelayOptions{})
	}()
	return func() { cancel(); <-done; b.Close() }
}

// printer prints the services' lines, one at a time.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) say(service, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%-9s %s\n", service, fmt.Sprintf(format, args...))
}
