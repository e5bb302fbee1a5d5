-- busline outbox and inbox, version 1, SQLite. Idempotent.
-- Times are Unix microseconds (BIGINT), the same in every dialect.
CREATE TABLE IF NOT EXISTS {{.Outbox}} (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	endpoint      TEXT NOT NULL,
	source_id     TEXT NOT NULL,
	message_id    TEXT NOT NULL,
	exchange      INTEGER NOT NULL,
	routing_key   TEXT NOT NULL,
	mandatory     INTEGER NOT NULL,
	not_before    BIGINT NOT NULL,
	message       TEXT NOT NULL,
	body          BLOB NOT NULL,
	created_at    BIGINT NOT NULL,
	due_at        BIGINT NOT NULL,
	attempts      INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT NOT NULL DEFAULT '',
	dispatched_at BIGINT
);
-- The relay's query: pending rows by due time.
CREATE INDEX IF NOT EXISTS {{.Prefix}}outbox_due ON {{.Outbox}} (due_at) WHERE dispatched_at IS NULL;
-- A redelivered message's pending rows.
CREATE INDEX IF NOT EXISTS {{.Prefix}}outbox_source ON {{.Outbox}} (endpoint, source_id) WHERE dispatched_at IS NULL;
-- Cleanup: dispatched rows by age.
CREATE INDEX IF NOT EXISTS {{.Prefix}}outbox_dispatched ON {{.Outbox}} (dispatched_at) WHERE dispatched_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {{.Inbox}} (
	endpoint    TEXT NOT NULL,
	message_id  TEXT NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (endpoint, message_id)
);
-- Cleanup: inbox records by age.
CREATE INDEX IF NOT EXISTS {{.Prefix}}inbox_received ON {{.Inbox}} (received_at);
