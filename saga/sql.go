package saga

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/busline/busline/outbox"
)

// Dialect is the SQL of one database for [SQLStore]: [Postgres] or
// [SQLite].
type Dialect struct {
	name   string
	dollar bool   // $1 placeholders, else ?
	lock   string // run first when migrating, so that two processes do not both migrate
}

// Postgres is the dialect of PostgreSQL (11 and later), with drivers such
// as github.com/jackc/pgx/v5/stdlib.
var Postgres = Dialect{name: "postgres", dollar: true, lock: "SELECT pg_advisory_xact_lock(7215392640020)"}

// SQLite is the dialect of SQLite (3.35 and later), with drivers such as
// modernc.org/sqlite. Open the database as package outbox says: a busy
// timeout, WAL mode, immediate transactions.
var SQLite = Dialect{name: "sqlite"}

// Name returns the dialect's name: "postgres" or "sqlite".
func (d Dialect) Name() string { return d.name }

// SQLOptions configure a [SQLStore]. Only Dialect is required.
type SQLOptions struct {
	// Dialect is the database's: [Postgres] or [SQLite].
	Dialect Dialect

	// Schema qualifies the table's name on PostgreSQL: a schema, which
	// must exist. Empty means none: the connection's search path. SQLite
	// refuses it.
	Schema string

	// TablePrefix begins the names of the tables (sagas, and
	// schema_versions, which the outbox's tables share) and of their
	// indexes. Empty means "busline_", as for the outbox.
	TablePrefix string
}

// SQLStore is a [Store] in PostgreSQL or SQLite, over database/sql; it
// imports no driver. Instances live in one table (busline_sagas by
// default) keyed by saga name and id, with a unique index on saga name
// and correlation value and a version column for optimistic concurrency.
//
// When the context of a call carries a transaction of package outbox
// (outbox.Tx: a handler running under Outbox.UnitOfWork), the store works
// in it, so that the instance's change commits with the inbox record and
// the messages sent, or not at all: give the store the outbox's database.
// Otherwise each call is a statement of its own on db.
type SQLStore struct {
	db    *sql.DB
	table string
	q     statements
}

type statements struct {
	find, get, insert, purgeOne, update, delete, deleteExpired string
}

//go:embed schema/*.sql
var schemas embed.FS

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NewSQLStore returns a SQLStore on db, creating or upgrading its table
// first (an idempotent migration, safe when several processes start at
// once). db stays the caller's: close it after the store's users stopped.
func NewSQLStore(ctx context.Context, db *sql.DB, opts SQLOptions) (*SQLStore, error) {
	d := opts.Dialect
	switch {
	case db == nil:
		return nil, errors.New("saga.NewSQLStore: nil *sql.DB")
	case d.name == "":
		return nil, errors.New("saga.NewSQLStore: no Dialect (saga.Postgres or saga.SQLite)")
	case opts.Schema != "" && d.name == SQLite.name:
		return nil, errors.New("saga.NewSQLStore: Schema is for PostgreSQL; SQLite takes a TablePrefix")
	case opts.Schema != "" && !ident.MatchString(opts.Schema):
		return nil, fmt.Errorf("saga.NewSQLStore: Schema %q is not an SQL identifier (letters, digits, _)", opts.Schema)
	}
	if opts.TablePrefix == "" {
		opts.TablePrefix = "busline_"
	}
	if !ident.MatchString(opts.TablePrefix) {
		return nil, fmt.Errorf("saga.NewSQLStore: TablePrefix %q is not an SQL identifier (letters, digits, _)", opts.TablePrefix)
	}
	qual := ""
	if opts.Schema != "" {
		qual = opts.Schema + "."
	}
	t := qual + opts.TablePrefix + "sagas"
	s := &SQLStore{db: db, table: t, q: d.statements(t)}
	if err := s.migrate(ctx, d, qual+opts.TablePrefix+"schema_versions", opts.TablePrefix); err != nil {
		return nil, fmt.Errorf("saga.NewSQLStore: %s schema of %s: %w", d.name, t, err)
	}
	return s, nil
}

// Table returns the qualified name of the store's table.
func (s *SQLStore) Table() string { return s.table }

// migrate brings the schema to the dialect's latest version, recorded
// under the component "saga" in the versions table (which the outbox's
// tables of the same prefix share).
func (s *SQLStore) migrate(ctx context.Context, d Dialect, versions, prefix string) error {
	var scripts []string
	for v := 1; ; v++ {
		text, err := schemas.ReadFile(fmt.Sprintf("schema/%s_%d.sql", d.name, v))
		if err != nil {
			break
		}
		var b strings.Builder
		err = template.Must(template.New("").Parse(string(text))).Execute(&b, struct{ Sagas, Prefix string }{s.table, prefix})
		if err != nil {
			return err
		}
		scripts = append(scripts, b.String())
	}
	return outbox.Migrate(ctx, s.db, outbox.Migration{
		Scripts:        scripts,
		CreateVersions: "CREATE TABLE IF NOT EXISTS " + versions + " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
		Version:        "SELECT version FROM " + versions + " WHERE component = 'saga'",
		SetVersion:     d.bind("INSERT INTO " + versions + " (component, version) VALUES ('saga', ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version"),
		Lock:           d.lock,
	})
}

const columns = "id, correlation, version, state, originator, originator_correlation, completed, expires_at"

func (d Dialect) statements(t string) statements {
	q := statements{
		find: "SELECT " + columns + " FROM " + t + " WHERE saga = ? AND correlation = ?",
		get:  "SELECT " + columns + " FROM " + t + " WHERE saga = ? AND id = ?",
		insert: "INSERT INTO " + t + " (saga, " + columns + ", created_at, updated_at)" +
			" VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
		purgeOne: "DELETE FROM " + t + " WHERE saga = ? AND correlation = ? AND completed = ? AND expires_at > 0 AND expires_at <= ?",
		update: "UPDATE " + t + " SET version = version + 1, state = ?, completed = ?, expires_at = ?, updated_at = ?" +
			" WHERE saga = ? AND id = ? AND version = ?",
		delete:        "DELETE FROM " + t + " WHERE saga = ? AND id = ? AND version = ?",
		deleteExpired: "DELETE FROM " + t + " WHERE (saga, id) IN (SELECT saga, id FROM " + t + " WHERE completed = ? AND expires_at > 0 AND expires_at <= ? LIMIT ?)",
	}
	for _, p := range []*string{&q.find, &q.get, &q.insert, &q.purgeOne, &q.update, &q.delete, &q.deleteExpired} {
		*p = d.bind(*p)
	}
	return q
}

// bind rewrites the ? placeholders of q as $1, $2... for PostgreSQL.
func (d Dialect) bind(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// execer is what *sql.DB and *sql.Tx share.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn returns the outbox's transaction of ctx if there is one, else db.
func (s *SQLStore) conn(ctx context.Context) execer {
	if tx, ok := outbox.Tx(ctx); ok {
		return tx
	}
	return s.db
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func (s *SQLStore) load(ctx context.Context, query, saga, key string) (Record, error) {
	r := Record{Saga: saga}
	var expires int64
	err := s.conn(ctx).QueryRowContext(ctx, query, saga, key).Scan(&r.ID, &r.Correlation, &r.Version, &r.State,
		&r.Originator, &r.OriginatorCorrelationID, &r.Completed, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, err
	}
	if expires != 0 {
		r.ExpiresAt = time.UnixMicro(expires)
	}
	if expired(&r, time.Now()) {
		return Record{}, ErrNotFound
	}
	return r, nil
}

// Find implements [Store].
func (s *SQLStore) Find(ctx context.Context, saga, correlation string) (Record, error) {
	return s.load(ctx, s.q.find, saga, correlation)
}

// Get implements [Store].
func (s *SQLStore) Get(ctx context.Context, saga, id string) (Record, error) {
	return s.load(ctx, s.q.get, saga, id)
}

// Insert implements [Store]. On PostgreSQL, an insert of a value another
// transaction is inserting waits for it to end, then fails if it
// committed.
func (s *SQLStore) Insert(ctx context.Context, r Record) error {
	c := s.conn(ctx)
	now := time.Now()
	insert := func() (bool, error) {
		res, err := c.ExecContext(ctx, s.q.insert, r.Saga, r.ID, r.Correlation, r.State, r.Originator, r.OriginatorCorrelationID,
			r.Completed, micros(r.ExpiresAt), now.UnixMicro(), now.UnixMicro())
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	ok, err := insert()
	if err != nil || ok {
		return err
	}
	// Taken: by an expired completed record, which gives way, or not.
	res, err := c.ExecContext(ctx, s.q.purgeOne, r.Saga, r.Correlation, true, now.UnixMicro())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errors.Join(ErrConflict, err)
	}
	if ok, err = insert(); err != nil || ok {
		return err
	}
	return ErrConflict
}

// Update implements [Store].
func (s *SQLStore) Update(ctx context.Context, r Record) error {
	return s.affectOne(ctx, s.q.update, r.State, r.Completed, micros(r.ExpiresAt), time.Now().UnixMicro(), r.Saga, r.ID, r.Version)
}

// Delete implements [Store].
func (s *SQLStore) Delete(ctx context.Context, r Record) error {
	return s.affectOne(ctx, s.q.delete, r.Saga, r.ID, r.Version)
}

// affectOne runs a statement that must affect one row, and fails with
// ErrConflict when it affects none.
func (s *SQLStore) affectOne(ctx context.Context, query string, args ...any) error {
	res, err := s.conn(ctx).ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrConflict
	}
	return nil
}

// DeleteExpired implements [Store].
func (s *SQLStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	res, err := s.conn(ctx).ExecContext(ctx, s.q.deleteExpired, true, now.UnixMicro(), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
