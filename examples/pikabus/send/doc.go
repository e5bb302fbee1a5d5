// Send is PikaBus's send example in Go: a command sent now and one
// deferred, to an endpoint's queue.
//
// # What it shows
//
// Send puts a command in the queue of that name through the direct
// exchange (PikaBusDirect), where every endpoint's queue is bound under its
// own name when the endpoint starts. Sends are mandatory: a queue that does
// not exist makes Send fail with an error wrapping bus.ErrUnroutable
// rather than lose the message. Defer (or Send with bus.WithDelay or
// bus.WithDeliverAt) delivers a command no earlier than its time; on
// RabbitMQ delays are rounded up to whole seconds and need no plugin.
//
// # Running it
//
//	go run ./examples/pikabus/send
//	go run ./examples/pikabus/send -amqp amqp://localhost/
package main
