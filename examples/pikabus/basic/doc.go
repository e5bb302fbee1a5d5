// Basic is PikaBus's basic example in Go: one endpoint sends a message to
// itself, defers one, publishes one, and answers each with a reply.
//
// # What it shows
//
//   - Send: a command to one queue, by name;
//   - Defer: a command delivered no earlier than a delay from now (1 s
//     here; RabbitMQ's resolution is one second);
//   - Publish: an event to every queue subscribed to its topic;
//   - Reply: from a handler, a message back to the sender of the message
//     being handled (its ReplyToAddress header), carrying its correlation
//     id;
//   - bus.IncomingFrom: a handler's view of the message's metadata, such as
//     its intent ("command" or "event").
//
// # Running it
//
//	go run ./examples/pikabus/basic
//	go run ./examples/pikabus/basic -amqp amqp://localhost/
package main
