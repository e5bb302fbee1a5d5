package watermillbus_test

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/transport"
	"github.com/busline/busline/watermillbus"
	"github.com/busline/busline/watermillbus/wmsqlite"
)

// openSQLite opens a SQLite database in a file of dir, as wmsqlite asks:
// WAL, so that readers do not block the writer, and a busy timeout, so
// that writers wait for each other.
func openSQLite(dir string) (*sql.DB, error) {
	return sql.Open("sqlite", "file:"+filepath.Join(dir, "bus.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
}

// sqliteUnsupported adds to unsupported what SQLite cannot do: a consumer
// group's offset is locked by nobody (see package wmsqlite), so a queue
// has one consumer at a time.
var sqliteUnsupported = func() map[string]string {
	m := maps.Clone(unsupported)
	m["Consume/Competing"] = "on SQLite a queue has one consumer at a time: two would both read it"
	m["Consume/Concurrency"] = "on SQLite a consumer handles one message at a time, whatever the Concurrency"
	m["Lifecycle/Shutdown"] = "it runs two handlers at once (Concurrency 2); on SQLite a consumer handles one message at a time"
	m["Request/Instances"] = "two instances of one endpoint consume its queue; on SQLite a queue has one consumer at a time"
	m["Flow/MaxUnackedBytes"] = "it runs three handlers at once (Concurrency 3) to show the byte bound; on SQLite a consumer handles one message at a time"
	return m
}()

// sqliteHarness runs the Transport over watermill-sql on SQLite: one
// database file and Registry per subtest.
func sqliteHarness() conformance.Harness {
	type shared struct {
		dir string
		reg watermillbus.Registry
	}
	var mu sync.Mutex
	subtests := map[testing.TB]*shared{}
	return conformance.Harness{
		// Each transport opens the subtest's database file on its own, as
		// services in separate processes would.
		New: func(ctx context.Context, t testing.TB) (transport.Transport, error) {
			mu.Lock()
			sh, ok := subtests[t]
			if !ok {
				sh = &shared{dir: t.TempDir(), reg: watermillbus.NewMemoryRegistry()}
				subtests[t] = sh
				t.Cleanup(func() {
					mu.Lock()
					delete(subtests, t)
					mu.Unlock()
				})
			}
			mu.Unlock()
			db, err := openSQLite(sh.dir)
			if err != nil {
				return nil, err
			}
			pub, sub, err := wmsqlite.New(db, "busline", wmsqlite.Options{PollInterval: 50 * time.Millisecond})
			if err != nil {
				_ = db.Close()
				return nil, err
			}
			tr, err := watermillbus.NewTransport(watermillbus.TransportOptions{
				Publisher: pub, Subscriber: sub, Registry: sh.reg, CloseBackend: true,
			})
			if err != nil {
				_ = db.Close()
				return nil, err
			}
			return sqliteTransport{tr, db}, nil
		},
		Unsupported: sqliteUnsupported,
		// The suites run beside every other package's tests on two shared
		// cores in CI.
		Timeout: 30 * time.Second,
	}
}

// sqliteTransport closes its database with the transport.
type sqliteTransport struct {
	*watermillbus.Transport
	db *sql.DB
}

func (t sqliteTransport) Close() error { return errors.Join(t.Transport.Close(), t.db.Close()) }

func TestTransportSQLite(t *testing.T) {
	conformance.RunTransport(t, sqliteHarness())
}

func TestBusSQLite(t *testing.T) {
	conformance.RunBus(t, sqliteHarness())
}
