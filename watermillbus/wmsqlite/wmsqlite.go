// Package wmsqlite runs watermill-sql (github.com/ThreeDotsLabs/watermill-sql/v4),
// which ships MySQL and PostgreSQL adapters, on SQLite through
// database/sql: a [Schema], an [Offsets] adapter and a [Beginner]. It
// imports no driver; open the database with one (modernc.org/sqlite is
// pure Go) and pass it to [New].
//
// # Transactions
//
// watermill-sql's subscriber keeps a transaction open from reading a
// message until it is acked, to lock its consumer group's offset. SQLite
// has one writer per database: a handler that publishes (the bus's
// handlers do: replies, retries, events) would wait for that lock and
// never get it. So [Beginner]'s transactions run each statement on its own
// (SQLite's autocommit), and the offset of a consumer group is locked by
// nobody: a consumer group must have one subscriber at a time (a busline
// queue, one consumer). Acks are written even when the subscription is
// being cancelled, so that an acked message is not delivered again.
//
// # Schema
//
// A topic T has a table "watermill_T" of messages (an autoincrement
// offset, the UUID, the payload, the metadata as JSON) and a table
// "watermill_offsets_T" with each consumer group's acked offset.
package wmsqlite

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Options configure [New].
type Options struct {
	// PollInterval is how long a subscriber with nothing to read waits
	// before it looks again. Zero means 100 milliseconds.
	PollInterval time.Duration
	// Logger is Watermill's logger. Nil discards.
	Logger watermill.LoggerAdapter
}

// New returns a watermill-sql Publisher and Subscriber on db, a SQLite
// database (open it with busy_timeout set and, for concurrent readers,
// journal_mode WAL). consumerGroup names the subscriber's consumer group.
func New(db *stdsql.DB, consumerGroup string, opts Options) (*wmsql.Publisher, *wmsql.Subscriber, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = watermill.NopLogger{}
	}
	b := Beginner(db)
	// No ack deadline: watermill-sql drops a message not acked within it
	// and reads it again, a duplicate under load for a handler that was
	// only slow.
	var noDeadline time.Duration
	pub, err := wmsql.NewPublisher(b, wmsql.PublisherConfig{SchemaAdapter: Schema{}}, opts.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("wmsqlite: publisher: %w", err)
	}
	sub, err := wmsql.NewSubscriber(b, wmsql.SubscriberConfig{
		ConsumerGroup:    consumerGroup,
		AckDeadline:      &noDeadline,
		PollInterval:     opts.PollInterval,
		ResendInterval:   opts.PollInterval,
		RetryInterval:    opts.PollInterval,
		SchemaAdapter:    Schema{},
		OffsetsAdapter:   Offsets{},
		InitializeSchema: true,
	}, opts.Logger)
	if err != nil {
		return nil, nil, fmt.Errorf("wmsqlite: subscriber: %w", err)
	}
	return pub, sub, nil
}

// Schema is watermill-sql's SchemaAdapter for SQLite.
type Schema struct {
	// SubscribeBatchSize is how many messages a subscriber reads at once.
	// Zero means 1: the offset is then written as each message is acked,
	// so that stopping a subscriber redelivers at most the message it
	// held.
	SubscribeBatchSize int
}

var _ wmsql.SchemaAdapter = Schema{}

func messagesTable(topic string) string { return `"watermill_` + topic + `"` }

func offsetsTable(topic string) string { return `"watermill_offsets_` + topic + `"` }

// SchemaInitializingQueries creates the topic's table of messages.
func (s Schema) SchemaInitializingQueries(p wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + messagesTable(p.Topic) + ` (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL,
		created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
		payload BLOB,
		metadata TEXT
	)`}}, nil
}

// InsertQuery inserts the messages in one statement.
func (s Schema) InsertQuery(p wmsql.InsertQueryParams) (wmsql.Query, error) {
	args := make([]any, 0, 3*len(p.Msgs))
	for _, m := range p.Msgs {
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return wmsql.Query{}, fmt.Errorf("wmsqlite: metadata of message %s: %w", m.UUID, err)
		}
		args = append(args, m.UUID, []byte(m.Payload), string(md))
	}
	return wmsql.Query{
		Query: `INSERT INTO ` + messagesTable(p.Topic) + ` (uuid, payload, metadata) VALUES ` +
			strings.TrimSuffix(strings.Repeat(`(?,?,?),`, len(p.Msgs)), ","),
		Args: args,
	}, nil
}

// SelectQuery reads the messages after the consumer group's acked offset.
func (s Schema) SelectQuery(p wmsql.SelectQueryParams) (wmsql.Query, error) {
	next, err := p.OffsetsAdapter.NextOffsetQuery(wmsql.NextOffsetQueryParams{Topic: p.Topic, ConsumerGroup: p.ConsumerGroup})
	if err != nil {
		return wmsql.Query{}, err
	}
	batch := s.SubscribeBatchSize
	if batch <= 0 {
		batch = 1
	}
	return wmsql.Query{
		Query: `SELECT "offset", uuid, payload, metadata FROM ` + messagesTable(p.Topic) +
			` WHERE "offset" > (` + next.Query + `) ORDER BY "offset" ASC LIMIT ` + fmt.Sprint(batch),
		Args: next.Args,
	}, nil
}

// UnmarshalMessage reads a row of SelectQuery.
func (s Schema) UnmarshalMessage(p wmsql.UnmarshalMessageParams) (wmsql.Row, error) {
	var r wmsql.Row
	var md stdsql.NullString
	if err := p.Row.Scan(&r.Offset, &r.UUID, &r.Payload, &md); err != nil {
		return wmsql.Row{}, fmt.Errorf("wmsqlite: scanning a message: %w", err)
	}
	r.Msg = message.NewMessage(string(r.UUID), r.Payload)
	if md.Valid {
		r.Metadata = []byte(md.String)
		if err := json.Unmarshal(r.Metadata, &r.Msg.Metadata); err != nil {
			return wmsql.Row{}, fmt.Errorf("wmsqlite: metadata of message %s: %w", r.UUID, err)
		}
	}
	return r, nil
}

// SubscribeIsolationLevel is SQLite's only one.
func (s Schema) SubscribeIsolationLevel() stdsql.IsolationLevel { return stdsql.LevelDefault }

// Offsets is watermill-sql's OffsetsAdapter for SQLite.
type Offsets struct{}

var _ wmsql.OffsetsAdapter = Offsets{}

// SchemaInitializingQueries creates the topic's table of offsets.
func (Offsets) SchemaInitializingQueries(p wmsql.OffsetsSchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + offsetsTable(p.Topic) + ` (
		consumer_group TEXT NOT NULL PRIMARY KEY,
		offset_acked INTEGER,
		offset_consumed INTEGER NOT NULL
	)`}}, nil
}

// AckMessageQuery records the last acked offset of the consumer group.
func (Offsets) AckMessageQuery(p wmsql.AckMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{
		Query: `INSERT INTO ` + offsetsTable(p.Topic) + ` (offset_consumed, offset_acked, consumer_group) VALUES (?, ?, ?)
			ON CONFLICT(consumer_group) DO UPDATE SET offset_consumed = excluded.offset_consumed, offset_acked = excluded.offset_acked`,
		Args: []any{p.LastRow.Offset, p.LastRow.Offset, p.ConsumerGroup},
	}, nil
}

// NextOffsetQuery is the consumer group's acked offset, 0 before any.
func (Offsets) NextOffsetQuery(p wmsql.NextOffsetQueryParams) (wmsql.Query, error) {
	return wmsql.Query{
		Query: `SELECT COALESCE((SELECT offset_acked FROM ` + offsetsTable(p.Topic) + ` WHERE consumer_group = ?), 0)`,
		Args:  []any{p.ConsumerGroup},
	}, nil
}

// ConsumedMessageQuery writes nothing: a write while the handler runs
// would hold SQLite's one write lock against the handler's own publishes.
func (Offsets) ConsumedMessageQuery(wmsql.ConsumedMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{}, nil
}

// BeforeSubscribingQueries has nothing to do.
func (Offsets) BeforeSubscribingQueries(wmsql.BeforeSubscribingQueriesParams) ([]wmsql.Query, error) {
	return nil, nil
}

// Beginner returns watermill-sql's database handle on db, whose
// transactions run each statement on its own (see the package
// documentation).
func Beginner(db *stdsql.DB) wmsql.Beginner { return autocommit{db} }

type autocommit struct{ db *stdsql.DB }

func (a autocommit) BeginTx(context.Context, *stdsql.TxOptions) (wmsql.Tx, error) {
	return statements(a), nil
}

func (a autocommit) ExecContext(ctx context.Context, query string, args ...any) (wmsql.Result, error) {
	return a.db.ExecContext(ctx, query, args...)
}

func (a autocommit) QueryContext(ctx context.Context, query string, args ...any) (wmsql.Rows, error) {
	return a.db.QueryContext(ctx, query, args...)
}

// statements is a "transaction" of statements each committed on its own.
type statements struct{ db *stdsql.DB }

// ExecContext runs even when ctx was cancelled: the subscriber writes its
// acked offset with the context of a subscription that may be ending, and
// an ack that is not written delivers the message again.
// A write that still finds the database locked after the busy timeout is
// tried again, so that an ack is not lost to contention.
func (s statements) ExecContext(ctx context.Context, query string, args ...any) (wmsql.Result, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for {
		r, err := s.db.ExecContext(ctx, query, args...)
		if err == nil || !strings.Contains(err.Error(), "SQLITE_BUSY") && !strings.Contains(err.Error(), "database is locked") {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s statements) QueryContext(ctx context.Context, query string, args ...any) (wmsql.Rows, error) {
	return s.db.QueryContext(ctx, query, args...)
}

func (statements) Commit() error   { return nil }
func (statements) Rollback() error { return nil }
