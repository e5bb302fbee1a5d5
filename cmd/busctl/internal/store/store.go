package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite", pure Go
)

// ErrNotFound is returned by [Store.Get] for a message the store does not
// hold.
var ErrNotFound = errors.New("no such failed message")

const schema = `
CREATE TABLE IF NOT EXISTS failed (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	key          TEXT NOT NULL UNIQUE,
	id           TEXT NOT NULL,
	type         TEXT NOT NULL,
	source_queue TEXT NOT NULL,
	error_queue  TEXT NOT NULL,
	retries      INTEGER NOT NULL,
	error        TEXT NOT NULL,
	kind         TEXT NOT NULL,
	grp          TEXT NOT NULL,
	sent_at      INTEGER NOT NULL,
	failed_at    INTEGER NOT NULL,
	msg          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failed_grp ON failed (grp);
CREATE INDEX IF NOT EXISTS failed_id ON failed (id);
CREATE INDEX IF NOT EXISTS failed_source ON failed (source_queue);
CREATE INDEX IF NOT EXISTS failed_time ON failed (failed_at);
PRAGMA user_version = 1;
`

// Store holds failed messages taken from error queues, in an SQLite file.
// Its methods are safe for concurrent use, also by several processes on
// one file (SQLite's locking; writers wait up to 10 s for each other).
type Store struct {
	db    *sql.DB
	names middleware.HeaderNames
	// mu orders the writers of this process: an ingest does not slip between
	// a retry's confirmed dispatch and its delete (see Retry).
	mu    sync.Mutex
	now   func() time.Time
	batch int
}

// Options configure a [Store]. The zero value uses PikaBus's header names.
type Options struct {
	// Headers are the header names of the services; zero means
	// middleware.DefaultHeaderNames.
	Headers middleware.HeaderNames
	// RetryBatch is how many messages [Store.Retry] sends and confirms at
	// a time; zero means [RetryBatch].
	RetryBatch int
}

// Open opens (creating if needed) the store in the file path; ":memory:"
// is a store in memory, for tests.
func Open(path string, opts Options) (*Store, error) {
	dsn := ":memory:"
	if path != ":memory:" {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
		}
		// synchronous FULL: a commit is on disk before Ingest acks its
		// messages on the broker, so not even a power cut loses one.
		dsn = "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	if path == ":memory:" {
		db.SetMaxOpenConns(1) // each connection would be a database of its own
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: creating the schema: %w", path, err)
	}
	names := opts.Headers
	if names == (middleware.HeaderNames{}) {
		names = middleware.DefaultHeaderNames
	}
	batch := opts.RetryBatch
	if batch <= 0 {
		batch = RetryBatch
	}
	return &Store{db: db, names: names, now: time.Now, batch: batch}, nil
}

// Close closes the store's file.
func (s *Store) Close() error { return s.db.Close() }

// Failed is a failed message as the store lists it.
type Failed struct {
	// Seq is the store's number for the message, unique within the store.
	Seq int64 `json:"seq"`
	// ID is the message's id (the MessageId header, else the message_id
	// property); it may be empty.
	ID string `json:"id"`
	// Type is the message type (the MessageType header, else the type
	// property).
	Type string `json:"type"`
	// SourceQueue is the queue it failed in, where a retry sends it.
	SourceQueue string `json:"source_queue"`
	// ErrorQueue is the queue it was taken from.
	ErrorQueue string `json:"error_queue"`
	// Retries is its ErrorRetries header: the failed deliveries.
	Retries int `json:"retries"`
	// Error is its ErrorDetails header, whole.
	Error string `json:"error"`
	// Kind is the first line of Error with its variable parts (numbers,
	// quoted text, ids) replaced, so that failures of one cause share it.
	Kind string `json:"kind"`
	// Group identifies SourceQueue and Kind together.
	Group string `json:"group"`
	// Sent is its TimeSent header, zero if it has none.
	Sent time.Time `json:"sent,omitzero"`
	// FailedAt is when busctl took it from the error queue (the failure
	// itself carries no time of its own).
	FailedAt time.Time `json:"failed_at"`
	// Message is the message itself; only Get fills it in.
	Message *WireMessage `json:"message,omitempty"`
}

// ErrorLine is the first line of the error.
func (f *Failed) ErrorLine() string {
	line, _, _ := strings.Cut(f.Error, "\n")
	return line
}

// Filter selects failed messages. The zero value selects all of them.
type Filter struct {
	// Refs are message ids or store numbers (Seq); any of them matches.
	Refs []string `json:"refs,omitempty"`
	// Group is a group id.
	Group string `json:"group,omitempty"`
	// SourceQueue is the queue the messages failed in.
	SourceQueue string `json:"source_queue,omitempty"`
	// Type is the message type.
	Type string `json:"type,omitempty"`
	// Error is text the error must contain (case-insensitive).
	Error string `json:"error,omitempty"`
	// Since and Until bound FailedAt (Since inclusive, Until exclusive).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// IsZero reports whether f selects every message.
func (f *Filter) IsZero() bool {
	return len(f.Refs) == 0 && f.Group == "" && f.SourceQueue == "" && f.Type == "" && f.Error == "" && f.Since.IsZero() && f.Until.IsZero()
}

func (f *Filter) where() (string, []any) {
	var conds []string
	var args []any
	if len(f.Refs) > 0 {
		var ors []string
		for _, r := range f.Refs {
			ors = append(ors, "id = ?")
			args = append(args, r)
			if n, err := strconv.ParseInt(r, 10, 64); err == nil {
				ors = append(ors, "seq = ?")
				args = append(args, n)
			}
		}
		conds = append(conds, "("+strings.Join(ors, " OR ")+")")
	}
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if f.Group != "" {
		add("grp = ?", f.Group)
	}
	if f.SourceQueue != "" {
		add("source_queue = ?", f.SourceQueue)
	}
	if f.Type != "" {
		add("type = ?", f.Type)
	}
	if f.Error != "" {
		add("instr(lower(error), ?) > 0", strings.ToLower(f.Error))
	}
	if !f.Since.IsZero() {
		add("failed_at >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("failed_at < ?", f.Until.UnixMilli())
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const listColumns = "seq, id, type, source_queue, error_queue, retries, error, kind, grp, sent_at, failed_at"

func scanFailed(sc interface{ Scan(...any) error }, withMsg bool) (Failed, error) {
	var f Failed
	var sent, failed int64
	dest := []any{&f.Seq, &f.ID, &f.Type, &f.SourceQueue, &f.ErrorQueue, &f.Retries, &f.Error, &f.Kind, &f.Group, &sent, &failed}
	var msg string
	if withMsg {
		dest = append(dest, &msg)
	}
	if err := sc.Scan(dest...); err != nil {
		return f, err
	}
	if sent != 0 {
		f.Sent = time.UnixMilli(sent).UTC()
	}
	f.FailedAt = time.UnixMilli(failed).UTC()
	if withMsg {
		f.Message = new(WireMessage)
		if err := json.Unmarshal([]byte(msg), f.Message); err != nil {
			return f, fmt.Errorf("message %d: %w", f.Seq, err)
		}
	}
	return f, nil
}

// List returns the messages f selects, oldest failure first, at most limit
// of them (all for limit <= 0) from offset on. Messages come without their
// bodies; [Store.Get] reads one whole.
func (s *Store) List(ctx context.Context, f Filter, offset, limit int) ([]Failed, error) {
	where, args := f.where()
	q := "SELECT " + listColumns + " FROM failed" + where + " ORDER BY seq"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d OFFSET %d", limit, max(offset, 0))
	} else if offset > 0 {
		q += fmt.Sprintf(" LIMIT -1 OFFSET %d", offset)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	defer rows.Close()
	var out []Failed
	for rows.Next() {
		m, err := scanFailed(rows, false)
		if err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Each calls fn for each message f selects, oldest first, without bodies,
// without holding them all in memory.
func (s *Store) Each(ctx context.Context, f Filter, withMsg bool, fn func(*Failed) error) error {
	where, args := f.where()
	cols := listColumns
	if withMsg {
		cols += ", msg"
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+cols+" FROM failed"+where+" ORDER BY seq", args...)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanFailed(rows, withMsg)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if err := fn(&m); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Count returns how many messages f selects.
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	where, args := f.where()
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM failed"+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// Get returns one message whole, by message id or store number; the error
// wraps [ErrNotFound] when the store has none such.
func (s *Store) Get(ctx context.Context, ref string) (Failed, error) {
	f := Filter{Refs: []string{ref}}
	where, args := f.where()
	row := s.db.QueryRowContext(ctx, "SELECT "+listColumns+", msg FROM failed"+where+" ORDER BY seq LIMIT 1", args...)
	m, err := scanFailed(row, true)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	if err != nil {
		return m, fmt.Errorf("store: get %q: %w", ref, err)
	}
	return m, nil
}

// Group is the failed messages of one source queue that failed for the same
// kind of error, as ServicePulse groups them.
type Group struct {
	ID          string    `json:"id"`
	SourceQueue string    `json:"source_queue"`
	Kind        string    `json:"kind"`
	Count       int       `json:"count"`
	Types       string    `json:"types"`
	First       time.Time `json:"first"`
	Last        time.Time `json:"last"`
}

// Groups returns the groups of the messages f selects, largest first.
func (s *Store) Groups(ctx context.Context, f Filter) ([]Group, error) {
	where, args := f.where()
	rows, err := s.db.QueryContext(ctx, `SELECT grp, source_queue, kind, count(*), group_concat(DISTINCT type), min(failed_at), max(failed_at)
		FROM failed`+where+` GROUP BY grp ORDER BY count(*) DESC, min(seq)`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g Group
		var first, last int64
		var types sql.NullString
		if err := rows.Scan(&g.ID, &g.SourceQueue, &g.Kind, &g.Count, &types, &first, &last); err != nil {
			return nil, fmt.Errorf("store: groups: %w", err)
		}
		g.Types = strings.ReplaceAll(types.String, ",", ", ")
		g.First, g.Last = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		out = append(out, g)
	}
	return out, rows.Err()
}

// Sources returns the distinct source queues of the stored messages with
// their counts.
func (s *Store) Sources(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT source_queue, count(*) FROM failed GROUP BY source_queue")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var q string
		var n int
		if err := rows.Scan(&q, &n); err != nil {
			return nil, err
		}
		out[q] = n
	}
	return out, rows.Err()
}

// Add stores messages taken from errorQueue, failed at failedAt. A message
// the store holds already (same id, or same body when it has none) is not
// stored twice; Add returns how many it stored.
func (s *Store) Add(ctx context.Context, errorQueue string, failedAt time.Time, msgs ...*transport.Message) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: add: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO failed
		(key, id, type, source_queue, error_queue, retries, error, kind, grp, sent_at, failed_at, msg)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("store: add: %w", err)
	}
	defer stmt.Close()
	n := 0
	for _, m := range msgs {
		f := s.describe(m)
		w, err := EncodeMessage(m)
		if err != nil {
			return 0, fmt.Errorf("store: add message %q: %w", f.ID, err)
		}
		raw, err := json.Marshal(&w)
		if err != nil {
			return 0, fmt.Errorf("store: add message %q: %w", f.ID, err)
		}
		var sent int64
		if !f.Sent.IsZero() {
			sent = f.Sent.UnixMilli()
		}
		res, err := stmt.ExecContext(ctx, messageKey(m, f.ID), f.ID, f.Type, f.SourceQueue, errorQueue, f.Retries,
			f.Error, f.Kind, f.Group, sent, failedAt.UnixMilli(), string(raw))
		if err != nil {
			return 0, fmt.Errorf("store: add message %q: %w", f.ID, err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: add: %w", err)
	}
	return n, nil
}

// describe reads what the store indexes from m's headers and properties.
func (s *Store) describe(m *transport.Message) Failed {
	str := func(name, fallback string) string {
		if v, ok := middleware.HeaderString(m.Headers[name]); ok && v != "" {
			return v
		}
		return fallback
	}
	f := Failed{
		ID:          str(s.names.MessageID, m.ID),
		Type:        str(s.names.MessageType, m.Type),
		SourceQueue: str(s.names.SourceQueue, ""),
		Error:       str(s.names.ErrorDetails, ""),
	}
	if n, ok, _ := middleware.HeaderInt(m.Headers[s.names.ErrorRetries]); ok {
		f.Retries = int(min(max(n, 0), 1<<31-1))
	}
	if t, ok, _ := middleware.HeaderTime(m.Headers[s.names.TimeSent]); ok {
		f.Sent = t.UTC()
	}
	f.Kind = ErrorKind(f.Error)
	f.Group = GroupID(f.SourceQueue, f.Kind)
	return f
}

func messageKey(m *transport.Message, id string) string {
	if id != "" {
		return "id:" + id
	}
	h := sha256.Sum256(m.Body)
	return "body:" + hex.EncodeToString(h[:])
}

var (
	quoted  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'|` + "`[^`]*`")
	idLike  = regexp.MustCompile(`\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}\b|\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\b`)
	numbers = regexp.MustCompile(`[0-9]+(?:\.[0-9]+)?`)
)

// ErrorKind is the first line of an error with what varies from one
// message to the next replaced: quoted text by "…", hexadecimal ids and
// numbers by #, so that `charge order 42: card "4242" declined` and
// `charge order 7: card "1234" declined` are of one kind.
func ErrorKind(details string) string {
	line, _, _ := strings.Cut(details, "\n")
	line = strings.TrimSpace(line)
	line = quoted.ReplaceAllString(line, `"…"`)
	line = idLike.ReplaceAllStringFunc(line, func(s string) string {
		if len(s) < 6 {
			return s
		}
		return "#"
	})
	line = numbers.ReplaceAllString(line, "#")
	if len(line) > 200 {
		line = strings.ToValidUTF8(line[:200], "") + "…"
	}
	if line == "" {
		line = "(no error details)"
	}
	return line
}

// GroupID is the id of the group of a source queue and an error kind.
func GroupID(sourceQueue, kind string) string {
	h := sha256.Sum256([]byte(sourceQueue + "\x00" + kind))
	return hex.EncodeToString(h[:6])
}

// Delete removes the messages f selects; it returns how many. progress, if
// not nil, is called after each batch with the count so far and the total.
func (s *Store) Delete(ctx context.Context, f Filter, progress func(done, total int)) (int, error) {
	seqs, err := s.seqs(ctx, f)
	if err != nil {
		return 0, err
	}
	done := 0
	for len(seqs) > 0 {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		batch := seqs[:min(len(seqs), 1000)]
		seqs = seqs[len(batch):]
		if err := s.deleteSeqs(ctx, batch); err != nil {
			return done, err
		}
		done += len(batch)
		if progress != nil {
			progress(done, done+len(seqs))
		}
	}
	return done, nil
}

func (s *Store) seqs(ctx context.Context, f Filter) ([]int64, error) {
	where, args := f.where()
	rows, err := s.db.QueryContext(ctx, "SELECT seq FROM failed"+where+" ORDER BY seq", args...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *Store) deleteSeqs(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteSeqsLocked(ctx, seqs)
}

func (s *Store) deleteSeqsLocked(ctx context.Context, seqs []int64) error {
	var b strings.Builder
	args := make([]any, len(seqs))
	for i, n := range seqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
		args[i] = n
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM failed WHERE seq IN ("+b.String()+")", args...); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	return nil
}

// ParseTime reads a time as busctl's filters take it: RFC 3339, a date and
// time or a date (UTC), or a duration meaning that long ago (2h, 30m).
func ParseTime(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read the time %q: give RFC 3339 (2026-12-03T09:00:00Z), a date (2026-12-03) or a duration ago (2h)", s)
}
