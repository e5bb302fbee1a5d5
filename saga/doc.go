// Package saga coordinates a long-running business process across
// messages and time, as NServiceBus's sagas and MassTransit's state
// machines do: an order that waits for its payment and its stock, ships
// when both arrived, and is cancelled if the payment does not come within
// 30 minutes.
//
// A saga is a Go type of state S and a set of handlers. Each message type
// it takes says how a message finds its instance, by a correlation value
// read from the message (typed: func(PaymentReceived) string), and whether
// it may start a new instance:
//
//	sg := saga.New[Order]("OrderFulfilment", saga.Options{})
//	saga.StartedBy(sg, func(m OrderPlaced) string { return m.OrderID }, placed)
//	saga.Handles(sg, func(m PaymentReceived) string { return m.OrderID }, paid)
//	saga.Timeout(sg, paymentOverdue)
//	err := sg.Register(b, saga.NewMemoryStore()) // or a SQL store
//
// A handler gets the instance: its State to read and change, and the
// calls that send (Send, Publish, Reply, Defer, ReplyToOriginator), ask
// for a timeout (RequestTimeout) or end it (Complete). What it sends goes
// out only if the handling succeeds, after the state was saved; the
// handler may also use the bus itself with its context, as any handler.
//
// # Instances and correlation
//
// A message's correlation value names its instance: one value, one
// instance, for the life of the instance. A message of a type that starts
// the saga creates the instance when none has the value; a store never
// holds two instances with one value (a unique index), so two starting
// messages handled at once create one instance, and the loser is retried
// and then finds it. A message that finds no instance and does not start
// one is dropped, or sent to the error queue ([Options.NotFound]). When the
// messages of a process may arrive in any order, let every one of them
// start it.
//
// # Timeouts
//
// [Instance.RequestTimeout] defers a message to the endpoint itself (with
// bus.Bus.Defer) carrying the instance's id; its handler, registered with
// [Timeout], runs on the instance when it is due, never earlier (a timeout
// that arrives early, within the bus's deferral tolerance, is deferred
// again). A timeout whose instance completed is dropped.
//
// # Completion
//
// [Instance.Complete] ends the instance when the handler succeeds: its
// state is deleted, or, with [Options.KeepCompleted], kept as completed
// for that long, so that late messages for it are recognized and dropped
// instead of starting a new instance or being reported as not found.
// Expired records are removed by [Store.DeleteExpired].
//
// # Concurrency
//
// Several messages for one instance may be handled at once (a concurrent
// endpoint, competing consumers). Saves are optimistic: each instance has a
// version, and a save from a stale version fails with [ErrConflict]. The
// handling then fails and is retried by the bus's retry stage (configure
// immediate retries for a quick second try), on the fresh state; no update
// is lost.
//
// # Delivery semantics
//
// With an outbox (package outbox as bus.Options.UnitOfWork) and a SQL store
// on the outbox's database, the state change, the inbox record of the
// message and the messages the handler sent commit in one transaction: a
// message changes an instance once, and what it sent is never lost. Without
// it, the state is saved when the handler returns and its messages are
// dispatched after that: a failed dispatch or a crash before the ack hands
// the message to the handler again, on the new state. Write such handlers
// so that handling a message twice is harmless (set a flag, do not count),
// or use the outbox.
//
// # Testing
//
// Package sagatest runs one handler on a given state without a bus or a
// store and returns the new state, what it sent and the timeouts it asked
// for. Whole flows run on the memory broker with [NewMemoryStore]; under
// testing/synctest a 30-minute timeout takes no real time.
//
// # Stores
//
// [Store] is small: find an instance by correlation value or by id,
// insert, update and delete with a version check. [NewMemoryStore] keeps
// instances in memory (tests, examples); [NewSQLStore] keeps them in
// PostgreSQL or SQLite over database/sql, with the conventions of package
// outbox: no driver imported, the schema embedded, versioned, idempotent
// and created on start, table names configurable.
package saga
