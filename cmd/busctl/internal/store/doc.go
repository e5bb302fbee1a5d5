// Package store is busctl's store of failed messages: an SQLite file
// (modernc.org/sqlite, pure Go) into which the messages of an error queue
// are moved, as NServiceBus's ServiceControl does, to be listed, grouped,
// filtered, shown, retried, deleted, exported and imported there.
//
// # Ingest
//
// [Store.Ingest] consumes the error queue, stores each batch in one
// transaction and acks its messages only after the commit. A crash in
// between leaves them on the queue; the store keeps a message once (by its
// id, or its body when it has none), so the redelivery is not stored twice.
//
// # Retry
//
// [Store.Retry] sends messages back to their source queues with
// middleware.Replay's semantics (a fresh set of retries), in batches, each
// confirmed by the broker before it leaves the store; when its context
// ends it finishes the batch under way and stops, so an interrupted retry
// loses and duplicates nothing.
//
// # Groups
//
// A group is the failed messages of one source queue whose errors are of
// one kind ([ErrorKind]: the first line with numbers, quoted text and ids
// masked), as ServicePulse's failed-message groups.
//
// # Concurrency
//
// A Store is safe for concurrent use; several processes may share its file
// (SQLite's locks, WAL journal).
package store
