package outbox_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
)

func bothDatabases(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("sqlite", func(t *testing.T) {
		w := &world{t: t, prefix: "t" + randomName() + "."}
		w.db, w.sqlite, w.opts = openSQLite(t, filepath.Join(t.TempDir(), "busline.db"))
		w.broker = nil
		f(t, w)
	})
	t.Run("postgres", func(t *testing.T) {
		w := &world{t: t, prefix: "t" + randomName() + "."}
		w.db, w.opts = openPostgres(t)
		w.qual = w.opts.Schema + "."
		f(t, w)
	})
}

func (w *world) exec(q string, args ...any) {
	w.t.Helper()
	if w.opts.Dialect == outbox.Postgres {
		n := 0
		var b strings.Builder
		for _, r := range q {
			if r == '?' {
				n++
				b.WriteString("$" + string(rune('0'+n)))
				continue
			}
			b.WriteRune(r)
		}
		q = b.String()
	}
	_, err := w.db.Exec(q, args...)
	must(w.t, err)
}

// The schema is created once, in the tables named by the options, and New
// again (another process, a restart) changes nothing; a database with a
// newer schema is refused, and so are names that are not identifiers.
func TestSchema(t *testing.T) {
	bothDatabases(t, func(t *testing.T, w *world) {
		w.opts.TablePrefix = "shop_"
		ob := w.outbox()
		tb := ob.Tables()
		if !strings.HasSuffix(tb.Outbox, "shop_outbox") || !strings.HasSuffix(tb.Inbox, "shop_inbox") {
			t.Errorf("tables %+v", tb)
		}
		w.exec("INSERT INTO "+tb.Inbox+" (endpoint, message_id, received_at) VALUES (?, ?, ?)", "e", "m", 1)
		w.outbox()
		var n int
		must(t, w.db.QueryRow("SELECT count(*) FROM "+tb.Inbox).Scan(&n))
		if n != 1 {
			t.Errorf("the inbox has %d rows after New again, want 1", n)
		}
		w.exec("UPDATE " + tb.Versions + " SET version = 99")
		if _, err := outbox.New(ctx, w.db, w.opts); err == nil || !strings.Contains(err.Error(), "99") {
			t.Errorf("New on a newer schema: %v", err)
		}
		for _, o := range []outbox.Options{
			{Dialect: w.opts.Dialect, TablePrefix: "x; DROP TABLE y"},
			{Dialect: w.opts.Dialect, Schema: "a.b"},
			{Dialect: outbox.SQLite, Schema: "main"},
			{},
		} {
			if _, err := outbox.New(ctx, w.db, o); err == nil {
				t.Errorf("New(%+v): no error", o)
			}
		}
	})
}

// Cleanup deletes the inbox records and dispatched messages older than
// the retention, in batches, and keeps the rest: pending messages at any
// age.
func TestCleanup(t *testing.T) {
	bothDatabases(t, func(t *testing.T, w *world) {
		w.opts.Retention = time.Hour
		ob := w.outbox()
		tb := ob.Tables()
		old := time.Now().Add(-2 * time.Hour).UnixMicro()
		recent := time.Now().UnixMicro()
		for i := range 25 {
			w.exec("INSERT INTO "+tb.Inbox+" (endpoint, message_id, received_at) VALUES (?, ?, ?)", "e", "old"+string(rune('a'+i)), old)
		}
		w.exec("INSERT INTO "+tb.Inbox+" (endpoint, message_id, received_at) VALUES (?, ?, ?)", "e", "new", recent)
		row := "INSERT INTO " + tb.Outbox + " (endpoint, source_id, message_id, exchange, routing_key, mandatory, not_before, message, body, created_at, due_at, dispatched_at) VALUES ('e', 's', ?, 0, 'q', true, 0, '{}', ?, ?, ?, ?)"
		for i := range 12 {
			w.exec(row, "d"+string(rune('a'+i)), []byte{}, old, old, old)
		}
		w.exec(row, "pending-old", []byte{}, old, old, nil)
		w.exec(row, "dispatched-new", []byte{}, recent, recent, recent)
		n, err := ob.Cleanup(ctx, 5)
		if err != nil || n != 37 {
			t.Fatalf("Cleanup: %d, %v; want 37 rows", n, err)
		}
		var left int
		must(t, w.db.QueryRow("SELECT count(*) FROM "+tb.Inbox).Scan(&left))
		if left != 1 {
			t.Errorf("%d inbox records left, want 1", left)
		}
		must(t, w.db.QueryRow("SELECT count(*) FROM "+tb.Outbox).Scan(&left))
		if left != 2 {
			t.Errorf("%d outbox rows left, want the pending one and the recent one", left)
		}
	})
}

// Tx is only found in a unit of work's context.
func TestTxOutsideUnit(t *testing.T) {
	if _, ok := outbox.Tx(context.Background()); ok {
		t.Error("Tx found a transaction in a plain context")
	}
	var _ bus.UnitOfWork = (&outbox.Outbox{}).UnitOfWork
}
