package outbox

import (
	"embed"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// A Dialect is what the outbox needs to know of a database: its schema and
// the SQL of its queries. [Postgres] and [SQLite] are provided; another
// database is supported by a Dialect of its own (see [Statements] for what
// each query must do).
type Dialect interface {
	// Name names the dialect in errors: "postgres", "sqlite".
	Name() string
	// Migrations returns the schema's scripts for the tables t, one per
	// version, the first for version 1. Each script holds statements
	// separated by ";" at the end of a line, and must be idempotent: a
	// script may run again on a database that has it.
	Migrations(t Tables) ([]string, error)
	// Statements returns the queries on the tables t.
	Statements(t Tables) Statements
}

// Tables names the tables of an outbox, as a Dialect writes them in SQL:
// qualified with the schema if there is one.
type Tables struct {
	// Outbox holds the outgoing messages, Inbox the ids of the messages
	// handled, Versions the schema version.
	Outbox, Inbox, Versions string
	// Prefix is [Options.TablePrefix], for index names.
	Prefix string
}

// Statements are the queries of a [Dialect]. Times are Unix microseconds.
// The columns the claim queries return are, in order: seq, message_id,
// exchange, routing_key, mandatory, not_before, message, body, attempts.
type Statements struct {
	// CreateVersions creates the table of schema versions if it is
	// missing: columns component (text, the key) and version (integer).
	CreateVersions string
	// Version reads the schema version: no argument; one row, one
	// column, no row when there is none.
	Version string
	// SetVersion records it: the version. Replaces what Version reads.
	SetVersion string
	// LockSchema, if not empty, runs first in the transaction that
	// migrates the schema, so that two processes starting at once do not
	// both migrate it.
	LockSchema string
	// ClaimInbox records that an endpoint handles a message: endpoint,
	// message id, now. It must affect one row when the record is new and
	// none when it exists (INSERT ... ON CONFLICT DO NOTHING), waiting for
	// a concurrent transaction that inserted the same record to end.
	ClaimInbox string
	// InsertOutgoing stores a message: endpoint, source id, message id,
	// exchange, routing key, mandatory, not before, message, body,
	// created at, due at.
	InsertOutgoing string
	// MarkSource marks the pending rows of one source dispatched: now,
	// endpoint, source id.
	MarkSource string
	// ClaimSource leases the pending rows of one source and returns them:
	// lease end, endpoint, source id.
	ClaimSource string
	// ClaimDue leases up to a number of pending rows due now, skipping
	// rows other transactions hold, and returns them: lease end, now,
	// limit. Leasing sets due_at to the lease end and counts an attempt.
	ClaimDue string
	// MarkDispatched marks one row dispatched: now, seq.
	MarkDispatched string
	// Reschedule puts a row back to wait: due at, last error, seq.
	Reschedule string
	// DeleteInbox deletes up to a number of inbox records received
	// before a time: before, limit.
	DeleteInbox string
	// DeleteDispatched deletes up to a number of rows dispatched before a
	// time: before, limit.
	DeleteDispatched string
	// Pending counts the rows not dispatched: no argument.
	Pending string
}

//go:embed schema/*.sql
var schemas embed.FS

// Postgres is the dialect of PostgreSQL (11 and later), with drivers such
// as github.com/jackc/pgx/v5/stdlib. The relay leases rows with FOR UPDATE
// SKIP LOCKED, so that several relays share the work.
var Postgres Dialect = sqlDialect{name: "postgres", dollar: true, skipLocked: true,
	lock: "SELECT pg_advisory_xact_lock(7215392640019) "}

// SQLite is the dialect of SQLite (3.35 and later), with drivers such as
// modernc.org/sqlite. SQLite has one writer at a time: open the database
// with a busy timeout, in WAL mode, and with immediate transactions
// (modernc.org/sqlite: "file:x.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"),
// so that concurrent transactions wait for each other instead of failing;
// and give the *sql.DB one connection (db.SetMaxOpenConns(1)), so that the
// handlers of a process queue for it in order rather than poll SQLite's
// lock with the busy timeout's sleeps (with four handlers at once on
// modernc.org/sqlite, the outbox handled about three times as many
// messages a second so). With one connection, code that holds the
// handler's transaction must not wait for another connection of the same
// *sql.DB: write through [Tx].
var SQLite Dialect = sqlDialect{name: "sqlite"}

// sqlDialect is the SQL both provided dialects share, with their
// differences as fields.
type sqlDialect struct {
	name       string
	dollar     bool // $1 placeholders, else ?
	skipLocked bool
	lock       string
}

func (d sqlDialect) Name() string { return d.name }

func (d sqlDialect) Migrations(t Tables) ([]string, error) {
	var out []string
	for v := 1; ; v++ {
		text, err := schemas.ReadFile(fmt.Sprintf("schema/%s_%d.sql", d.name, v))
		if err != nil {
			break
		}
		tpl, err := template.New("").Parse(string(text))
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		if err := tpl.Execute(&b, t); err != nil {
			return nil, err
		}
		out = append(out, b.String())
	}
	return out, nil
}

// bind rewrites the ? placeholders of q as $1, $2... for PostgreSQL.
func (d sqlDialect) bind(q string) string {
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

const claimedColumns = "seq, message_id, exchange, routing_key, mandatory, not_before, message, body, attempts"

func (d sqlDialect) Statements(t Tables) Statements {
	o, i := t.Outbox, t.Inbox
	lock := ""
	if d.skipLocked {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	s := Statements{
		CreateVersions: "CREATE TABLE IF NOT EXISTS " + t.Versions + " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
		Version:        "SELECT version FROM " + t.Versions + " WHERE component = 'outbox'",
		SetVersion:     "INSERT INTO " + t.Versions + " (component, version) VALUES ('outbox', ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version",
		LockSchema:     d.lock,
		ClaimInbox:     "INSERT INTO " + i + " (endpoint, message_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		InsertOutgoing: "INSERT INTO " + o + " (endpoint, source_id, message_id, exchange, routing_key, mandatory, not_before, message, body, created_at, due_at)" +
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		MarkSource: "UPDATE " + o + " SET dispatched_at = ? WHERE endpoint = ? AND source_id = ? AND dispatched_at IS NULL",
		ClaimSource: "UPDATE " + o + " SET due_at = ?, attempts = attempts + 1 WHERE seq IN (SELECT seq FROM " + o +
			" WHERE endpoint = ? AND source_id = ? AND dispatched_at IS NULL" + lock + ") RETURNING " + claimedColumns,
		ClaimDue: "UPDATE " + o + " SET due_at = ?, attempts = attempts + 1 WHERE seq IN (SELECT seq FROM " + o +
			" WHERE dispatched_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT ?" + lock + ") RETURNING " + claimedColumns,
		MarkDispatched:   "UPDATE " + o + " SET dispatched_at = ? WHERE seq = ?",
		Reschedule:       "UPDATE " + o + " SET due_at = ?, last_error = ? WHERE seq = ?",
		DeleteInbox:      "DELETE FROM " + i + " WHERE (endpoint, message_id) IN (SELECT endpoint, message_id FROM " + i + " WHERE received_at < ? LIMIT ?)",
		DeleteDispatched: "DELETE FROM " + o + " WHERE seq IN (SELECT seq FROM " + o + " WHERE dispatched_at IS NOT NULL AND dispatched_at < ? LIMIT ?)",
		Pending:          "SELECT count(*) FROM " + o + " WHERE dispatched_at IS NULL",
	}
	for _, p := range []*string{&s.Version, &s.SetVersion, &s.ClaimInbox, &s.InsertOutgoing, &s.MarkSource, &s.ClaimSource,
		&s.ClaimDue, &s.MarkDispatched, &s.Reschedule, &s.DeleteInbox, &s.DeleteDispatched, &s.Pending} {
		*p = d.bind(*p)
	}
	return s
}
