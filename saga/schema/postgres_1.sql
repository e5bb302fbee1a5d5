-- busline saga instances, version 1, PostgreSQL. Idempotent.
-- Times are Unix microseconds (BIGINT), as in the outbox's tables.
CREATE TABLE IF NOT EXISTS {{.Sagas}} (
	saga                   TEXT NOT NULL,
	id                     TEXT NOT NULL,
	correlation            TEXT NOT NULL,
	version                BIGINT NOT NULL,
	state                  BYTEA NOT NULL,
	originator             TEXT NOT NULL DEFAULT '',
	originator_correlation TEXT NOT NULL DEFAULT '',
	completed              BOOLEAN NOT NULL DEFAULT FALSE,
	expires_at             BIGINT NOT NULL DEFAULT 0,
	created_at             BIGINT NOT NULL,
	updated_at             BIGINT NOT NULL,
	PRIMARY KEY (saga, id)
);
-- One correlation value, one instance: two starting messages handled at
-- once insert one row, the other waits and finds it taken.
CREATE UNIQUE INDEX IF NOT EXISTS {{.Prefix}}sagas_correlation ON {{.Sagas}} (saga, correlation);
-- DeleteExpired: completed records by expiry.
CREATE INDEX IF NOT EXISTS {{.Prefix}}sagas_expires ON {{.Sagas}} (expires_at) WHERE completed;
