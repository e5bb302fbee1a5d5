package outbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Message types of the tests.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
)

var ctx = context.Background()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randomName() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// world is a broker and a database for a test: the memory broker with
// SQLite, or RabbitMQ with PostgreSQL.
type world struct {
	t      testing.TB
	name   string
	db     *sql.DB
	opts   outbox.Options
	qual   string         // qualifies the test's own tables: "schema." or ""
	broker *memory.Broker // nil on RabbitMQ
	url    string         // RabbitMQ's
	prefix string         // of the queues and topics of the test
	proxy  *cutProxy      // between the clients and RabbitMQ, if cuttable
	sqlite *killableDB    // SQLite's connector; nil on PostgreSQL
	path   string         // SQLite's file
}

// worlds runs f on memory+SQLite and on RabbitMQ+PostgreSQL.
func worlds(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("memory+sqlite", func(t *testing.T) { f(t, memoryWorld(t)) })
	t.Run("rabbitmq+postgres", func(t *testing.T) { f(t, rabbitWorld(t)) })
}

func memoryWorld(t testing.TB) *world { return newWorld(t, "memory", "sqlite") }

func rabbitWorld(t testing.TB) *world { return newWorld(t, "rabbitmq", "postgres") }

// newWorld returns a world on broker ("memory" or "rabbitmq") and
// database ("sqlite" or "postgres"); the tests pair memory with SQLite and
// RabbitMQ with PostgreSQL, the benchmarks take every pair.
func newWorld(t testing.TB, broker, database string) *world {
	w := &world{t: t, name: broker + "+" + database, prefix: "t" + randomName() + "."}
	if database == "sqlite" {
		w.path = filepath.Join(t.TempDir(), "busline.db")
		w.db, w.sqlite, w.opts = openSQLite(t, w.path)
	} else {
		w.db, w.opts = openPostgres(t)
		w.qual = w.opts.Schema + "."
	}
	if broker == "memory" {
		w.broker = memory.NewBroker()
		t.Cleanup(func() { w.broker.Close() })
	} else {
		w.url = brokertest.URL(t)
	}
	w.effectsTable()
	return w
}

// openSQLite opens an SQLite database in the file path, as the outbox's
// documentation says to, through a connector whose connections a test can
// kill.
func openSQLite(t testing.TB, path string) (*sql.DB, *killableDB, outbox.Options) {
	db, k := openKillableSQLite(sqliteDSN(path))
	db.SetMaxOpenConns(1) // as the SQLite dialect advises
	t.Cleanup(func() { db.Close() })
	return db, k, outbox.Options{Dialect: outbox.SQLite, RelayAfter: 50 * time.Millisecond}
}

// sqliteDSN is the data source name of the SQLite database in the file
// path: in WAL mode, transactions that take the write lock when they
// begin (rather than fail to upgrade it later), waiting for it up to 30 s.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// openPostgres connects to BUSLINE_POSTGRES_URL and makes a schema of the
// test's own, dropped when it ends. It skips the test without a database,
// or fails it when CI=true.
func openPostgres(t testing.TB) (*sql.DB, outbox.Options) {
	url := os.Getenv("BUSLINE_POSTGRES_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_POSTGRES_URL is not set and CI=true: run the tests with `make test`, which starts PostgreSQL")
		}
		t.Skip("BUSLINE_POSTGRES_URL is not set: no PostgreSQL to test against (`make test` starts one)")
	}
	schema := "t_" + randomName()
	// Its connections carry the schema's name, so that a test that kills
	// connections kills its own only.
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", url+sep+"application_name="+schema)
	must(t, err)
	db.SetMaxOpenConns(20)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		t.Fatalf("PostgreSQL at BUSLINE_POSTGRES_URL: %v", err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	return db, outbox.Options{Dialect: outbox.Postgres, Schema: schema, RelayAfter: 50 * time.Millisecond}
}

// cuttable makes the world's connections to RabbitMQ go through a proxy
// that cutBroker cuts; call it before making transports.
func (w *world) cuttable() {
	if w.broker == nil {
		w.proxy, w.url = newCutProxy(w.t, w.url)
	}
}

// cutBroker drops every connection to the broker, which requeues the
// unacked deliveries; the transports reconnect.
func (w *world) cutBroker() {
	if w.broker != nil {
		w.broker.DropConnections()
		return
	}
	if w.proxy == nil {
		w.t.Fatal("cutBroker on a world that is not cuttable")
	}
	w.proxy.Cut()
}

// killDatabase kills every connection of the world's database: SQLite's
// through its connector, PostgreSQL's with pg_terminate_backend (the
// test's own connections only, known by their application name).
func (w *world) killDatabase() {
	if w.sqlite != nil {
		w.sqlite.KillAll()
		return
	}
	// Handlers inject the fault concurrently, so a kill may end the pooled
	// connection another kill is running on (SQLSTATE 57P01): that kill
	// happened anyway, and the next attempt gets a fresh connection.
	var err error
	for range 5 {
		_, err = w.db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()", w.opts.Schema)
		if err == nil || !strings.Contains(err.Error(), "57P01") {
			break
		}
	}
	if err != nil {
		w.t.Error(err)
	}
}

// effectsTable creates the table in which the tests' handlers record
// their business effects.
func (w *world) effectsTable() {
	_, err := w.db.Exec("CREATE TABLE " + w.qual + "effects (endpoint TEXT NOT NULL, id TEXT NOT NULL)")
	must(w.t, err)
}

// effect records one business effect in the handler's transaction.
func (w *world) effect(ctx context.Context, endpoint, id string) error {
	tx, ok := outbox.Tx(ctx)
	if !ok {
		return fmt.Errorf("no transaction in the handler's context")
	}
	_, err := tx.ExecContext(ctx, w.bind("INSERT INTO "+w.qual+"effects (endpoint, id) VALUES (?, ?)"), w.prefix+endpoint, id)
	return err
}

func (w *world) bind(q string) string {
	if w.opts.Dialect != outbox.Postgres {
		return q
	}
	n := 0
	out := ""
	for _, r := range q {
		if r == '?' {
			n++
			out += fmt.Sprintf("$%d", n)
			continue
		}
		out += string(r)
	}
	return out
}

// effects returns how many times each id had an effect on endpoint.
func (w *world) effects(endpoint string) map[string]int {
	w.t.Helper()
	// Tries again on an error: a test may have killed the connection.
	for try := 0; ; try++ {
		m, err := w.tryEffects(endpoint)
		if err == nil || try == 3 {
			must(w.t, err)
			return m
		}
	}
}

// distinctEffects returns how many ids had an effect on endpoint: a
// cheaper query than effects, for polling. An error (a test may have
// killed the connection) counts as none.
func (w *world) distinctEffects(endpoint string) int {
	var n int
	if err := w.db.QueryRow(w.bind("SELECT count(DISTINCT id) FROM "+w.qual+"effects WHERE endpoint = ?"), w.prefix+endpoint).Scan(&n); err != nil {
		return 0
	}
	return n
}

func (w *world) tryEffects(endpoint string) (map[string]int, error) {
	rows, err := w.db.Query(w.bind("SELECT id, count(*) FROM "+w.qual+"effects WHERE endpoint = ? GROUP BY id"), w.prefix+endpoint)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// outbox returns a new Outbox on the world's database (another process's,
// as far as the database is concerned).
func (w *world) outbox() *outbox.Outbox {
	w.t.Helper()
	ob, err := outbox.New(ctx, w.db, w.opts)
	must(w.t, err)
	return ob
}

// transport returns a new connection to the world's broker, closed when
// the test ends.
func (w *world) transport(name string) transport.Transport {
	w.t.Helper()
	var tr transport.Transport
	if w.broker != nil {
		tr = memory.New(memory.Options{Broker: w.broker, Name: name})
	} else {
		var err error
		tr, err = amqp.Dial(ctx, w.url, amqp.Options{
			DirectExchange: w.prefix + "direct", TopicExchange: w.prefix + "topic", DelayPrefix: w.prefix + "delay",
			ConnectionName: name,
		})
		must(w.t, err)
	}
	w.t.Cleanup(func() { tr.Close() })
	return tr
}

// bus returns an endpoint on tr, closed when the test ends. Failed
// handlings are retried at once, once, then after 100 ms, up to 20 times.
func (w *world) bus(tr transport.Transport, queue string, opts bus.Options) *bus.Bus {
	w.t.Helper()
	opts.QueuePrefix, opts.TopicPrefix = w.prefix, w.prefix
	if opts.QueueType == "" {
		opts.QueueType = transport.Classic
	}
	if opts.Retry.MaxRetries == (middleware.RetryLimit{}) {
		opts.Retry = middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.Retries(20), Backoff: func(int) time.Duration { return 100 * time.Millisecond }}
	}
	if os.Getenv("OUTBOX_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	b, err := bus.New(tr, queue, opts)
	must(w.t, err)
	w.t.Cleanup(func() {
		b.Close()
		if d, ok := tr.(transport.QueueDeleter); ok && w.broker == nil {
			d.DeleteQueue(context.Background(), b.Queue())
		}
	})
	return b
}

// waitFor polls cond until it holds, failing the test after three
// minutes (a guard against a hang, on a loaded machine).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitProgress polls count every 50 ms until it reaches want. It fails the
// test when count has not moved for three minutes: a guard against a hang
// that lets a large test take as long as a loaded machine needs.
func waitProgress(t testing.TB, what string, want int, count func() int) {
	t.Helper()
	last, since := -1, time.Now()
	for {
		n := count()
		if n >= want {
			return
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 3*time.Minute {
			t.Fatalf("timed out waiting for %s: %d of %d, no progress for 3 minutes", what, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counter counts calls, safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	return c.n[k]
}
