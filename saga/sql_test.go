package saga_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/busline/busline/outbox"
	"github.com/busline/busline/saga"
)

// openSQLite opens a new SQLite database in a file, as package outbox
// says to.
func openSQLite(t testing.TB) *sql.DB {
	path := filepath.Join(t.TempDir(), "sagas.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	must(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// openPostgres connects to BUSLINE_POSTGRES_URL and makes a schema of the
// test's own, dropped when it ends. It skips the test without a database,
// or fails it when CI=true.
func openPostgres(t testing.TB) (*sql.DB, string) {
	url := os.Getenv("BUSLINE_POSTGRES_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_POSTGRES_URL is not set and CI=true: run the tests with `make test`, which starts PostgreSQL")
		}
		t.Skip("BUSLINE_POSTGRES_URL is not set: no PostgreSQL to test against (`make test` starts one)")
	}
	schema := "saga_" + randomName()
	db, err := sql.Open("pgx", url)
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
	return db, schema
}

func sqliteStore(t testing.TB, db *sql.DB) *saga.SQLStore {
	s, err := saga.NewSQLStore(ctx, db, saga.SQLOptions{Dialect: saga.SQLite})
	must(t, err)
	return s
}

func postgresStore(t testing.TB, db *sql.DB, schema string) *saga.SQLStore {
	s, err := saga.NewSQLStore(ctx, db, saga.SQLOptions{Dialect: saga.Postgres, Schema: schema})
	must(t, err)
	return s
}

func TestSQLStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		db := openSQLite(t)
		s := sqliteStore(t, db)
		// Created on start, idempotently, next to the outbox's tables.
		sqliteStore(t, db)
		_, err := outbox.New(ctx, db, outbox.Options{Dialect: outbox.SQLite})
		must(t, err)
		testStore(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		db, schema := openPostgres(t)
		s := postgresStore(t, db, schema)
		postgresStore(t, db, schema)
		_, err := outbox.New(ctx, db, outbox.Options{Dialect: outbox.Postgres, Schema: schema})
		must(t, err)
		testStore(t, s)
	})
}

func TestSQLStoreOptions(t *testing.T) {
	db := openSQLite(t)
	for _, c := range []struct {
		opts saga.SQLOptions
		want string
	}{
		{saga.SQLOptions{}, "no Dialect"},
		{saga.SQLOptions{Dialect: saga.SQLite, Schema: "x"}, "Schema is for PostgreSQL"},
		{saga.SQLOptions{Dialect: saga.Postgres, Schema: "x;drop"}, "not an SQL identifier"},
		{saga.SQLOptions{Dialect: saga.SQLite, TablePrefix: "a-b"}, "not an SQL identifier"},
	} {
		if _, err := saga.NewSQLStore(ctx, db, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opts, err, c.want)
		}
	}
	s, err := saga.NewSQLStore(ctx, db, saga.SQLOptions{Dialect: saga.SQLite, TablePrefix: "shop_"})
	must(t, err)
	if s.Table() != "shop_sagas" {
		t.Errorf("Table: %q", s.Table())
	}
}
