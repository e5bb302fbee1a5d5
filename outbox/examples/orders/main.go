// Command orders is the outbox's example: an orders service whose HTTP
// endpoint stores an order and publishes OrderPlaced atomically, and a
// billing service that bills each order exactly once, however often
// OrderPlaced arrives. Both run in this process, each with its own tables.
//
//	go run ./examples/orders                   # SQLite in a temporary file, the memory broker
//	go run ./examples/orders -sqlite shop.db   # SQLite in shop.db
//	go run ./examples/orders -postgres postgres://user@localhost/shop -amqp amqp://guest:guest@localhost:5672/
//
// Then:
//
//	curl -X POST localhost:8080/orders -d '{"id":"o1","amount":42}'
//	curl localhost:8080/bills
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// OrderPlaced is the event the orders service publishes.
type OrderPlaced struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

// Config is what the command line chooses.
type Config struct {
	Addr     string // HTTP listen address
	SQLite   string // SQLite file; empty: one in a temporary directory
	Postgres string // PostgreSQL URL; wins over SQLite
	AMQP     string // RabbitMQ URL; empty: the memory broker
	// Prefix begins the queue and topic names (tests use one of their
	// own), and Schema the PostgreSQL schema of the tables.
	Prefix, Schema string
	// Transport, if set, is used instead of AMQP or a memory broker of
	// its own (tests share it).
	Transport transport.Transport
}

func main() {
	var c Config
	flag.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	flag.StringVar(&c.SQLite, "sqlite", "", "SQLite database file (default: a temporary one)")
	flag.StringVar(&c.Postgres, "postgres", "", "PostgreSQL URL (instead of SQLite)")
	flag.StringVar(&c.AMQP, "amqp", "", "RabbitMQ URL (instead of the in-memory broker)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("orders: listening on http://%s (POST /orders, GET /bills)", ln.Addr())
	if err := Run(ctx, c, ln); err != nil {
		log.Fatal(err)
	}
}

// Run runs both services and the HTTP endpoint on ln until ctx is done.
func Run(ctx context.Context, c Config, ln net.Listener) error {
	db, dialect, err := openDB(c)
	if err != nil {
		return err
	}
	defer db.Close()
	q := ""
	if c.Schema != "" {
		q = c.Schema + "."
	}
	shop := &shop{db: db, q: q, dialect: dialect}
	if err := shop.createTables(ctx); err != nil {
		return err
	}
	ob, err := outbox.New(ctx, db, outbox.Options{Dialect: dialect, Schema: c.Schema, Logger: slog.Default()})
	if err != nil {
		return err
	}

	t := c.Transport
	switch {
	case t != nil:
	case c.AMQP != "":
		t, err = amqp.Dial(ctx, c.AMQP, amqp.Options{ConnectionName: "orders-example"})
		if err != nil {
			return err
		}
		defer t.Close()
	default:
		t = memory.New(memory.Options{})
		defer t.Close()
	}
	opts := bus.Options{UnitOfWork: ob.UnitOfWork, QueuePrefix: c.Prefix, TopicPrefix: c.Prefix}

	// The orders service: a send-only endpoint whose Transactions store
	// what they publish with the order.
	orders, err := bus.New(t, "", opts)
	if err != nil {
		return err
	}
	defer orders.Close()
	shop.orders = orders

	// The billing service: one bill per order, whatever the duplicates.
	billingOpts := opts
	billingOpts.Subscriptions = []string{"orders.placed"}
	billing, err := bus.New(t, "billing", billingOpts)
	if err != nil {
		return err
	}
	defer billing.Close()
	if err := bus.Handle(billing, shop.bill); err != nil {
		return err
	}
	if err := billing.Start(ctx); err != nil {
		return err
	}

	// The relay dispatches what a crash (or the broker) left in the outbox.
	relayDone := make(chan struct{})
	rctx, stopRelay := context.WithCancel(ctx)
	go func() {
		defer close(relayDone)
		ob.Relay(rctx, orders.Sender(), outbox.RelayOptions{})
	}()
	defer func() { stopRelay(); <-relayDone }()

	srv := &http.Server{Handler: shop.routes(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return billing.Shutdown(sctx)
}

func openDB(c Config) (*sql.DB, outbox.Dialect, error) {
	if c.Postgres != "" {
		db, err := sql.Open("pgx", c.Postgres)
		return db, outbox.Postgres, err
	}
	path := c.SQLite
	if path == "" {
		dir, err := os.MkdirTemp("", "orders-example")
		if err != nil {
			return nil, nil, err
		}
		path = filepath.Join(dir, "shop.db")
	}
	// One writer at a time: wait for the lock rather than fail, and queue
	// for the one connection rather than poll the lock (see outbox.SQLite).
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	return db, outbox.SQLite, nil
}

type shop struct {
	db      *sql.DB
	q       string // schema qualifier
	dialect outbox.Dialect
	orders  *bus.Bus
}

func (s *shop) createTables(ctx context.Context) error {
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS " + s.q + "orders (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + s.q + "bills (order_id TEXT NOT NULL, amount INTEGER NOT NULL)",
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// sql rewrites ? placeholders for PostgreSQL.
func (s *shop) sql(q string) string {
	if s.dialect != outbox.Postgres {
		return q
	}
	for n := 1; strings.Contains(q, "?"); n++ {
		q = strings.Replace(q, "?", fmt.Sprintf("$%d", n), 1)
	}
	return q
}

func (s *shop) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", s.placeOrder)
	mux.HandleFunc("GET /bills", s.listBills)
	return mux
}

// placeOrder stores the order and publishes OrderPlaced: both or neither.
func (s *shop) placeOrder(w http.ResponseWriter, r *http.Request) {
	var o OrderPlaced
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil || o.ID == "" || o.Amount <= 0 {
		http.Error(w, `want {"id": "...", "amount": n > 0}`, http.StatusBadRequest)
		return
	}
	var exists bool
	err := s.orders.Transaction(r.Context(), func(ctx context.Context) error {
		tx, _ := outbox.Tx(ctx)
		var n int
		if err := tx.QueryRowContext(ctx, s.sql("SELECT count(*) FROM "+s.q+"orders WHERE id = ?"), o.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			exists = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.sql("INSERT INTO "+s.q+"orders (id, amount) VALUES (?, ?)"), o.ID, o.Amount); err != nil {
			return err
		}
		return s.orders.Publish(ctx, "orders.placed", o)
	})
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case exists:
		http.Error(w, "order "+o.ID+" exists", http.StatusConflict)
	default:
		w.WriteHeader(http.StatusCreated)
	}
}

// bill is billing's handler: its insert commits with the inbox record of
// the message, so a duplicate OrderPlaced never bills twice.
func (s *shop) bill(ctx context.Context, o OrderPlaced) error {
	tx, ok := outbox.Tx(ctx)
	if !ok {
		return errors.New("billing runs without the outbox")
	}
	_, err := tx.ExecContext(ctx, s.sql("INSERT INTO "+s.q+"bills (order_id, amount) VALUES (?, ?)"), o.ID, o.Amount)
	return err
}

// Bill is one line of GET /bills.
type Bill struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

func (s *shop) listBills(w http.ResponseWriter, r *http.Request) {
	rows, err := s.db.QueryContext(r.Context(), "SELECT order_id, amount FROM "+s.q+"bills ORDER BY order_id")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rows.Close()
	bills := []Bill{}
	for rows.Next() {
		var b Bill
		if err := rows.Scan(&b.OrderID, &b.Amount); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		bills = append(bills, b)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(bills)
}
