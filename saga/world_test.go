package saga_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/saga"
	"github.com/busline/busline/transport"
)

// world is a broker, a database, an outbox and a saga store on it for a
// test in real time: the memory broker with SQLite, or RabbitMQ with
// PostgreSQL.
type world struct {
	t      testing.TB
	name   string
	db     *sql.DB
	store  *saga.SQLStore
	ob     *outbox.Outbox
	broker *memory.Broker // nil on RabbitMQ
	url    string         // RabbitMQ's
	prefix string         // of the queues and topics of the test
}

// worlds runs f on memory+SQLite and on RabbitMQ+PostgreSQL.
func worlds(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("memory+sqlite", func(t *testing.T) { f(t, memoryWorld(t)) })
	t.Run("rabbitmq+postgres", func(t *testing.T) { f(t, rabbitWorld(t)) })
}

func randomName() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func memoryWorld(t testing.TB) *world {
	w := &world{t: t, name: "memory+sqlite", prefix: "t" + randomName() + "."}
	w.db = openSQLite(t)
	w.store = sqliteStore(t, w.db)
	var err error
	w.ob, err = outbox.New(ctx, w.db, outbox.Options{Dialect: outbox.SQLite, RelayAfter: 50 * time.Millisecond})
	must(t, err)
	w.broker = memory.NewBroker()
	t.Cleanup(func() { w.broker.Close() })
	return w
}

func rabbitWorld(t testing.TB) *world {
	w := &world{t: t, name: "rabbitmq+postgres", prefix: "t" + randomName() + "."}
	var schema string
	w.db, schema = openPostgres(t)
	w.url = brokertest.URL(t)
	w.store = postgresStore(t, w.db, schema)
	var err error
	w.ob, err = outbox.New(ctx, w.db, outbox.Options{Dialect: outbox.Postgres, Schema: schema, RelayAfter: 50 * time.Millisecond})
	must(t, err)
	return w
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

// bus returns an endpoint on a new connection, with the outbox unless
// opts says otherwise, closed when the test ends.
func (w *world) bus(queue string, opts bus.Options) *bus.Bus {
	w.t.Helper()
	tr := w.transport(queue)
	opts.QueuePrefix, opts.TopicPrefix = w.prefix, w.prefix
	if opts.QueueType == "" {
		opts.QueueType = transport.Classic
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	b, err := bus.New(tr, queue, opts)
	must(w.t, err)
	w.t.Cleanup(func() {
		b.Close()
		if d, ok := tr.(transport.QueueDeleter); ok && w.broker == nil {
			d.DeleteQueue(ctx, b.Queue())
		}
	})
	return b
}

// errorQueueDepth returns how many messages the test's error queue holds
// (memory only; -1 on RabbitMQ, where the test's error queue is checked
// by consuming it).
func (w *world) errorQueueDepth() int {
	if w.broker == nil {
		return -1
	}
	return w.broker.Depth(w.prefix + "error")
}

// waitFor polls cond until it holds, failing the test after five
// minutes (a guard against a hang on a loaded machine, not a timing
// assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newOutbox returns an outbox on db, in schema on PostgreSQL ("" for
// SQLite).
func newOutbox(db *sql.DB, schema string) (*outbox.Outbox, error) {
	if schema == "" {
		return outbox.New(ctx, db, outbox.Options{Dialect: outbox.SQLite})
	}
	return outbox.New(ctx, db, outbox.Options{Dialect: outbox.Postgres, Schema: schema})
}
