// Transaction is PikaBus's transaction example in Go: messages sent within
// a transaction are held back until it succeeds, and dropped if it fails.
//
// # What it shows
//
// [bus.Bus.Transaction] runs a function with a context in which Send,
// Defer, Publish and Reply only collect their messages. They are dispatched
// as one batch when the function returns nil, and dropped when it returns
// an error or panics. Every handler runs in such a transaction by itself:
// what a handler sends goes out only if it (and every other handler of the
// message) succeeds, before the message is acked.
//
// This is an outbox in memory, not an AMQP transaction: once committed,
// the batch is dispatched message by message, each confirmed by the
// broker, and a failure midway is reported with the messages that failed.
//
// # Running it
//
//	go run ./examples/pikabus/transaction
//	go run ./examples/pikabus/transaction -amqp amqp://localhost/
package main
