// Routing is RabbitMQ's fourth tutorial, "Routing": log lines are routed
// by severity, so that one subscriber gets only errors and another every
// severity.
//
// # What it shows
//
// Subscriptions select events by their topic. RabbitMQ's tutorial routes
// with a direct exchange; in busline the direct exchange (PikaBusDirect)
// addresses endpoint queues by name (Send), and routing by a key to any
// number of subscribers is Publish on the topic exchange, where a pattern
// without wildcards matches exactly one topic, as a direct binding does.
// One queue may be subscribed under several patterns.
//
// # Running it
//
//	go run ./examples/tutorials/routing
//	go run ./examples/tutorials/routing -amqp amqp://localhost/
package main
