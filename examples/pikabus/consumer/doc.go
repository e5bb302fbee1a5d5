// Consumer is PikaBus's consumer example in Go: a service that consumes
// its queue until it is told to stop, then stops gracefully.
//
// # What it shows
//
// The shape of a long-running service: make the endpoint, register its
// handlers, Start, wait for SIGINT or SIGTERM, then Shutdown, which stops
// taking messages, lets the handlers under way finish (and dispatch what
// they sent) before their messages are acked, and gives whatever was
// prefetched but not started back to the queue. Options.Concurrency handles
// several messages at once.
//
// So that it ends by itself, the program also plays a client that sends
// -messages commands, and stops once it handled them all. Run it with
// -messages 0 -timeout 0 to have a service that runs until Ctrl-C.
//
// # Running it
//
//	go run ./examples/pikabus/consumer
//	go run ./examples/pikabus/consumer -amqp amqp://localhost/ -messages 0 -timeout 0
package main
