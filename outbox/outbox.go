package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Options configure an [Outbox]. Only Dialect is required.
type Options struct {
	// Dialect is the database's: [Postgres] or [SQLite], or one of your
	// own.
	Dialect Dialect

	// Schema qualifies the tables' names on PostgreSQL: a schema, which
	// must exist. Empty means none: the connection's search path. SQLite
	// refuses it.
	Schema string

	// TablePrefix begins the names of the tables (outbox, inbox,
	// schema_versions) and of their indexes. Empty means "busline_".
	TablePrefix string

	// Retention is how long inbox records and dispatched messages are
	// kept: the deduplication window. A message delivered again after it
	// is handled again. Zero means 7 days (NServiceBus's default).
	Retention time.Duration

	// RelayAfter is how long the relay leaves a stored message to the
	// handler or transaction that stored it, which dispatches it right
	// after its commit, before dispatching it itself. Zero means 10 s.
	RelayAfter time.Duration

	// Lease is how long a relay (or a redelivered message) holds the
	// messages it is dispatching before another may take them. Zero means
	// 30 s.
	Lease time.Duration

	// TxOptions are the options of the transactions the outbox begins;
	// nil means the driver's defaults (PostgreSQL: read committed).
	TxOptions *sql.TxOptions

	// Logger receives the outbox's log records: failed dispatches after a
	// commit, the relay's failures. Nil means silent.
	Logger *slog.Logger
}

// Outbox is a transactional outbox and inbox on one database. Give its
// [Outbox.UnitOfWork] to an endpoint's bus.Options.UnitOfWork; run
// [Outbox.Relay] in every service that uses it. It is safe for concurrent
// use, by several endpoints and several processes.
type Outbox struct {
	db     *sql.DB
	opts   Options
	tables Tables
	q      Statements
	log    *slog.Logger

	// crash, set by tests, is called at each step of a unit of work; an
	// error it returns stops the unit there, as a crash would.
	crash func(step, source string) error
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// New returns an Outbox on db, creating or upgrading its tables first (an
// idempotent migration, safe when several processes start at once). db
// stays the caller's: close it after the Outbox's users stopped.
func New(ctx context.Context, db *sql.DB, opts Options) (*Outbox, error) {
	if db == nil {
		return nil, errors.New("outbox.New: nil *sql.DB")
	}
	if opts.Dialect == nil {
		return nil, errors.New("outbox.New: no Dialect (outbox.Postgres or outbox.SQLite)")
	}
	if opts.TablePrefix == "" {
		opts.TablePrefix = "busline_"
	}
	if !ident.MatchString(opts.TablePrefix) {
		return nil, fmt.Errorf("outbox.New: TablePrefix %q is not an SQL identifier (letters, digits, _)", opts.TablePrefix)
	}
	if opts.Schema != "" && !ident.MatchString(opts.Schema) {
		return nil, fmt.Errorf("outbox.New: Schema %q is not an SQL identifier (letters, digits, _)", opts.Schema)
	}
	if opts.Schema != "" && opts.Dialect == SQLite {
		return nil, errors.New("outbox.New: Schema is for PostgreSQL; SQLite takes a TablePrefix")
	}
	if opts.Retention < 0 || opts.RelayAfter < 0 || opts.Lease < 0 {
		return nil, errors.New("outbox.New: negative Retention, RelayAfter or Lease")
	}
	if opts.Retention == 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.RelayAfter == 0 {
		opts.RelayAfter = 10 * time.Second
	}
	if opts.Lease == 0 {
		opts.Lease = 30 * time.Second
	}
	o := &Outbox{db: db, opts: opts, log: opts.Logger}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	q := ""
	if opts.Schema != "" {
		q = opts.Schema + "."
	}
	p := opts.TablePrefix
	o.tables = Tables{Outbox: q + p + "outbox", Inbox: q + p + "inbox", Versions: q + p + "schema_versions", Prefix: p}
	o.q = opts.Dialect.Statements(o.tables)
	if err := o.migrate(ctx); err != nil {
		return nil, fmt.Errorf("outbox.New: %s schema of %s: %w", opts.Dialect.Name(), o.tables.Outbox, err)
	}
	return o, nil
}

// migrate brings the schema to the dialect's latest version.
func (o *Outbox) migrate(ctx context.Context) error {
	scripts, err := o.opts.Dialect.Migrations(o.tables)
	if err != nil {
		return err
	}
	return Migrate(ctx, o.db, Migration{Scripts: scripts, CreateVersions: o.q.CreateVersions,
		Version: o.q.Version, SetVersion: o.q.SetVersion, Lock: o.q.LockSchema})
}

// Migration is a component's schema, for [Migrate]: the scripts of its
// versions and the SQL that records which version a database has. The
// outbox migrates its tables with it, and package saga its store's, both
// recording their versions in one table of versions.
type Migration struct {
	// Scripts are the versions' scripts, version 1 first: statements
	// ending with ";" at the end of a line, comment lines starting with
	// "--". A script must be idempotent.
	Scripts []string
	// CreateVersions, Version and SetVersion are as in [Statements], for
	// the component migrated; Lock as Statements.LockSchema.
	CreateVersions, Version, SetVersion, Lock string
}

// Migrate brings db to m's latest version in one transaction: it runs the
// scripts of the versions after the one recorded, and records the last. It
// refuses a database whose recorded version is newer than m's latest.
func Migrate(ctx context.Context, db *sql.DB, m Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if m.Lock != "" {
		if _, err := tx.ExecContext(ctx, m.Lock); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, m.CreateVersions); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRowContext(ctx, m.Version).Scan(&version); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if version > len(m.Scripts) {
		return fmt.Errorf("the database has schema version %d, newer than this program's %d", version, len(m.Scripts))
	}
	for v := version + 1; v <= len(m.Scripts); v++ {
		for _, stmt := range splitStatements(m.Scripts[v-1]) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, m.SetVersion, v); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// splitStatements splits a script at the ";" that end lines, and drops
// comment lines.
func splitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(script) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Tables returns the names of the outbox's tables.
func (o *Outbox) Tables() Tables { return o.tables }

type txKey struct{}

// Tx returns the database transaction of the handler or transaction whose
// context ctx is (or derives from), if it runs under an Outbox's
// UnitOfWork: do the handler's own writes in it, so that they commit with
// the inbox record and the messages sent, or not at all. Do not commit or
// roll it back: the Outbox does.
func Tx(ctx context.Context) (*sql.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	return tx, ok
}

// Steps of a unit of work, at which tests inject crashes.
const (
	stepCommitted  = "committed"  // the transaction committed, nothing dispatched
	stepDispatched = "dispatched" // the messages confirmed, not marked
	stepMarked     = "marked"     // marked dispatched, the message not acked
)

func (o *Outbox) step(name, source string) error {
	if o.crash == nil {
		return nil
	}
	return o.crash(name, source)
}

// UnitOfWork is the [bus.UnitOfWork] of the outbox; install it with
// bus.Options{UnitOfWork: ob.UnitOfWork}.
//
// For a message being handled it begins a transaction and records the
// message's id in the inbox table (for this endpoint). If the record was
// there already, the message was handled before: the handlers are skipped,
// and what they sent that is still pending is dispatched. Otherwise the
// handlers run, their context carrying the transaction ([Tx]); what they
// sent is stored in the outbox table in the same transaction, which then
// commits; then the messages are dispatched (confirmed by the broker) and
// marked dispatched, and the message is acked when UnitOfWork returns nil.
// A failing handler rolls everything back. A failed dispatch after the
// commit fails the handling (it is retried, and the retry dispatches what
// is pending) and leaves the messages to the relay.
//
// For a bus.Transaction outside handlers it does the same without an
// inbox record; a failed dispatch after the commit is logged, not
// returned, since the transaction's work is done: the relay dispatches
// the messages.
func (o *Outbox) UnitOfWork(ctx context.Context, u *bus.Unit) (err error) {
	endpoint := u.Bus.Queue()
	what := "transaction"
	if u.Incoming != nil {
		what = fmt.Sprintf("handling message %q", u.Incoming.MessageID)
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("outbox: %s of %s on %q: %s: %w", o.opts.Dialect.Name(), what, endpoint, step, err)
	}
	tx, err := o.db.BeginTx(ctx, o.opts.TxOptions)
	if err != nil {
		return fail("begin", err)
	}
	done := false
	defer func() {
		if !done {
			tx.Rollback()
		}
	}()
	now := time.Now()
	var source string
	if u.Incoming != nil {
		source = u.Incoming.MessageID
		if source == "" {
			return bus.Permanent(fail("inbox", errors.New("the message has no id: it cannot be deduplicated")))
		}
		res, err := tx.ExecContext(ctx, o.q.ClaimInbox, endpoint, source, now.UnixMicro())
		if err != nil {
			return fail("recording the message in the inbox", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fail("recording the message in the inbox", err)
		}
		if n == 0 {
			done = true
			tx.Rollback()
			if err := o.dispatchSource(ctx, u.Bus.Sender(), endpoint, source); err != nil {
				return fail("dispatching the pending messages of a message handled before", err)
			}
			return nil
		}
	} else {
		source = "tx:" + bus.NewMessageID()
	}
	out, err := u.Run(context.WithValue(ctx, txKey{}, tx))
	if err != nil {
		return err
	}
	if len(out) > 0 {
		if err := o.store(ctx, tx, endpoint, source, now, out); err != nil {
			return fail("storing the messages sent", err)
		}
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fail("commit", err)
	}
	if err := o.step(stepCommitted, source); err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	if err := u.Bus.Sender().Dispatch(ctx, out...); err != nil {
		err = fail(fmt.Sprintf("dispatching the %d messages stored", len(out)), err)
		if u.Incoming == nil {
			o.log.WarnContext(ctx, "the transaction committed but its messages could not be dispatched: the relay will", "error", err)
			return nil
		}
		return err
	}
	if err := o.step(stepDispatched, source); err != nil {
		return err
	}
	if _, err := o.db.ExecContext(ctx, o.q.MarkSource, time.Now().UnixMicro(), endpoint, source); err != nil {
		// They were confirmed: the relay will dispatch them again later,
		// with the same ids, which their receivers' inboxes absorb.
		o.log.WarnContext(ctx, "outbox: messages dispatched but not marked so", "endpoint", endpoint, "source", source, "error", err)
	}
	return o.step(stepMarked, source)
}

// store inserts out in the outbox table within tx.
func (o *Outbox) store(ctx context.Context, tx *sql.Tx, endpoint, source string, now time.Time, out []transport.Outgoing) error {
	due := now.Add(o.opts.RelayAfter).UnixMicro()
	for i := range out {
		m := &out[i]
		text, err := encodeMessage(&m.Message)
		if err != nil {
			return fmt.Errorf("message %q: %w", m.Message.ID, err)
		}
		var notBefore int64
		if !m.NotBefore.IsZero() {
			notBefore = m.NotBefore.UnixMicro()
		}
		body := m.Message.Body
		if body == nil {
			body = []byte{}
		}
		if _, err := tx.ExecContext(ctx, o.q.InsertOutgoing, endpoint, source, m.Message.ID, int(m.Exchange), m.RoutingKey, m.Mandatory,
			notBefore, text, body, now.UnixMicro(), due); err != nil {
			return fmt.Errorf("message %q: %w", m.Message.ID, err)
		}
	}
	return nil
}

// row is a stored message leased for dispatch.
type row struct {
	seq      int64
	attempts int
	out      transport.Outgoing
	err      error // it could not be decoded
}

// claim runs a claim query and returns its rows in the order they were
// stored.
func (o *Outbox) claim(ctx context.Context, query string, args ...any) ([]row, error) {
	rs, err := o.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var (
			r             row
			id, key, text string
			exchange      int
			mandatory     bool
			notBefore     int64
			body          []byte
		)
		if err := rs.Scan(&r.seq, &id, &exchange, &key, &mandatory, &notBefore, &text, &body, &r.attempts); err != nil {
			return nil, err
		}
		r.out = transport.Outgoing{Exchange: transport.Exchange(exchange), RoutingKey: key, Mandatory: mandatory}
		if notBefore != 0 {
			r.out.NotBefore = time.UnixMicro(notBefore)
		}
		r.out.Message, r.err = decodeMessage(text, body)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b row) int { return int(a.seq - b.seq) })
	return out, nil
}

// dispatchSource leases and dispatches the pending messages stored while
// handling source.
func (o *Outbox) dispatchSource(ctx context.Context, s middleware.Sender, endpoint, source string) error {
	rows, err := o.claim(ctx, o.q.ClaimSource, time.Now().Add(o.opts.Lease).UnixMicro(), endpoint, source)
	if err != nil {
		return err
	}
	_, err = o.dispatchRows(ctx, s, rows)
	return err
}

// dispatchRows dispatches rows as one batch, marks those confirmed
// dispatched and reschedules the others with a backoff. It returns how
// many were dispatched, and the dispatch's error.
func (o *Outbox) dispatchRows(ctx context.Context, s middleware.Sender, rows []row) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	failed := make(map[int]error)
	var batch []transport.Outgoing
	var index []int // batch position -> rows position
	for i, r := range rows {
		if r.err != nil {
			failed[i] = r.err
			continue
		}
		batch = append(batch, r.out)
		index = append(index, i)
	}
	var derr error
	if len(batch) > 0 {
		derr = s.Dispatch(ctx, batch...)
	}
	if derr != nil {
		var des []*transport.DispatchError
		collectDispatchErrors(derr, &des)
		if len(des) == 0 {
			// No message named: take them all as failed.
			for _, i := range index {
				failed[i] = derr
			}
		}
		for _, de := range des {
			if de.Index >= 0 && de.Index < len(index) {
				failed[index[de.Index]] = de
			}
		}
	}
	now := time.Now()
	tx, err := o.db.BeginTx(context.WithoutCancel(ctx), o.opts.TxOptions)
	if err != nil {
		return 0, errors.Join(derr, err)
	}
	defer tx.Rollback()
	n := 0
	for i, r := range rows {
		if ferr, ok := failed[i]; ok {
			due := now.Add(backoff(r.attempts)).UnixMicro()
			if _, err := tx.ExecContext(ctx, o.q.Reschedule, due, truncate(ferr.Error(), 1000), r.seq); err != nil {
				return 0, errors.Join(derr, err)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, o.q.MarkDispatched, now.UnixMicro(), r.seq); err != nil {
			return 0, errors.Join(derr, err)
		}
		n++
	}
	if err := tx.Commit(); err != nil {
		return 0, errors.Join(derr, err)
	}
	if len(failed) > 0 && derr == nil {
		for _, e := range failed {
			derr = e
			break
		}
	}
	return n, derr
}

// collectDispatchErrors finds the DispatchErrors in the tree of err.
func collectDispatchErrors(err error, out *[]*transport.DispatchError) {
	if de, ok := err.(*transport.DispatchError); ok {
		*out = append(*out, de)
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			collectDispatchErrors(e, out)
		}
		return
	}
	if e := errors.Unwrap(err); e != nil {
		collectDispatchErrors(e, out)
	}
}

// backoff is the wait before another dispatch of a row that failed
// attempts times: 1 s doubling, at most 5 minutes.
func backoff(attempts int) time.Duration {
	d := time.Second
	for i := 1; i < attempts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
