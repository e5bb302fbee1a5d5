// Publish is PikaBus's publish example in Go: a publisher without a queue
// of its own publishes an event to a topic.
//
// # What it shows
//
// A send-only endpoint (bus.New with an empty queue name) publishes events
// and sends commands but receives nothing. An event reaches every queue
// subscribed under a matching pattern; a subscriber is a separate endpoint,
// in this program for the example's sake.
//
// Unlike PikaBus 2, which publishes mandatory messages and fails when no
// queue is subscribed, busline drops an event nobody subscribed to, as
// NServiceBus does: publishers do not depend on their subscribers.
// bus.WithRequireSubscriber (per call) or Options.RequireSubscriber (per
// endpoint, PikaBus's behaviour) makes it an error wrapping
// bus.ErrUnroutable.
//
// # Running it
//
//	go run ./examples/pikabus/publish
//	go run ./examples/pikabus/publish -amqp amqp://localhost/
package main
