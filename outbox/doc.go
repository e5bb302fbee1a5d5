// Package outbox is a transactional outbox and inbox for busline over
// database/sql, with PostgreSQL and SQLite dialects: a handler's database
// writes, the record that it handled the message, and the messages it
// sends commit as one transaction, so that its effect happens once per
// message id however often the message is delivered, and no message it
// sent is lost.
//
//	db, _ := sql.Open("pgx", url) // or "sqlite": bring your driver
//	ob, err := outbox.New(ctx, db, outbox.Options{Dialect: outbox.Postgres})
//	b, err := bus.New(t, "orders", bus.Options{UnitOfWork: ob.UnitOfWork})
//	bus.Handle(b, func(ctx context.Context, o PlaceOrder) error {
//		tx, _ := outbox.Tx(ctx) // the handler's transaction
//		if _, err := tx.ExecContext(ctx, "INSERT INTO orders ...", o.ID); err != nil {
//			return err
//		}
//		return b.Publish(ctx, "orders.placed", OrderPlaced{ID: o.ID}) // stored, in tx
//	})
//	go ob.Relay(ctx, b.Sender(), outbox.RelayOptions{})
//
// The package imports no driver: a program that does not use it pulls no
// SQL driver, and one that does picks its own (the tests and examples use
// github.com/jackc/pgx/v5/stdlib and modernc.org/sqlite).
//
// # Inside handlers
//
// With bus.Options.UnitOfWork set to [Outbox.UnitOfWork], every handling of
// a message by the endpoint is one database transaction (see
// [Outbox.UnitOfWork] for the steps): the message's id is recorded in the
// inbox table for the endpoint, the handlers run with the transaction in
// their context ([Tx]), what they Send, Publish, Defer and Reply is stored
// in the outbox table, and the transaction commits; then the messages are
// dispatched and confirmed, marked dispatched, and the message is acked. A
// message whose id the inbox holds already skips the handlers: what they
// sent that is still pending is dispatched, and it is acked. Request is not
// part of it: it sends at once, since it waits for its reply.
//
// # Outside handlers
//
// With the same option, bus.Transaction outside handlers runs its function
// in a database transaction ([Tx] gives it), stores what it sends, commits,
// then dispatches: an HTTP handler that inserts an order and publishes
// OrderPlaced does both or neither. If the dispatch after the commit fails,
// Transaction still returns nil (the data is committed) and the relay
// dispatches the messages. Send and Publish outside a Transaction dispatch
// at once, as without the outbox.
//
// # The relay
//
// [Outbox.Relay] dispatches what was stored and not dispatched: the
// messages of a process that stopped between its commit and its dispatch,
// or whose dispatch failed. Run it in every process that uses the outbox;
// several relays share the work (PostgreSQL: leases taken with FOR UPDATE
// SKIP LOCKED; SQLite: one writer at a time), and a message is dispatched
// twice only when a lease runs out mid-dispatch. It also deletes, in
// bounded batches, the inbox records and dispatched messages older than
// [Options.Retention] (7 days by default): the deduplication window.
//
// # Guarantees
//
// The database effect of a handler happens exactly once per message id and
// endpoint within the deduplication window, if the handler writes only
// through [Tx]. Outgoing messages are at least once: a crash after the
// dispatch and before they are marked dispatches them again, with the same
// message ids, and a receiver that uses the outbox absorbs the duplicate
// in its inbox. Side effects outside the database (an e-mail, an HTTP
// call) are not covered: they may happen again. The message is acked only
// after its messages were dispatched, or found in the inbox.
//
// # Schema
//
// [New] creates the tables when they are missing, and upgrades them: plain
// SQL scripts embedded in the package, one per version, idempotent, the
// version recorded in a table of their own; on PostgreSQL an advisory lock
// keeps two processes starting at once from both migrating. Table names
// take [Options.TablePrefix] ("busline_" by default) and, on PostgreSQL,
// [Options.Schema]: busline_outbox, busline_inbox, busline_schema_versions.
// Times are stored as Unix microseconds. Another database is supported by
// a [Dialect] of its own.
package outbox
