// Errors is PikaBus's error example in Go: a handler that fails is retried
// with a delay, then its message goes to the error queue, from which it is
// replayed once the handler is fixed.
//
// # What it shows
//
//   - a handler error is retried: Options.Retry sets the number of delayed
//     retries and their backoff (PikaBus's default is 5 retries, 2 s, 4 s,
//     ... 10 s; here 2 retries, half a second apart, which RabbitMQ rounds
//     up to a second); bus.IncomingFrom tells the handler how many retries
//     a message had;
//   - an error marked bus.Permanent skips the retries;
//   - on the error queue a message keeps its body and headers and gains
//     PikaBus.ErrorDetails, PikaBus.SourceQueue and PikaBus.ErrorRetries;
//   - middleware.Replay sends messages from the error queue back to the
//     queues they failed in, with a fresh set of retries.
//
// Each endpoint may have an error queue of its own (Options.ErrorQueue);
// the default, "error", is the one PikaBus services share.
//
// # Running it
//
//	go run ./examples/pikabus/errors
//	go run ./examples/pikabus/errors -amqp amqp://localhost/ -v
package main
