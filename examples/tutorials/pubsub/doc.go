// Pubsub is RabbitMQ's third tutorial, "Publish/Subscribe": a logger
// publishes log lines and every subscriber gets each of them.
//
// # What it shows
//
// Publish sends an event under a topic to every queue subscribed to it,
// one copy per queue. RabbitMQ's tutorial uses a fanout exchange; busline
// publishes through its topic exchange (PikaBusTopic), where subscribing
// under the topic itself ("logs") is a fanout to the subscribers of that
// topic. Each subscriber is an endpoint with its own queue, so an event
// published while a subscriber is down waits for it in its queue.
//
// # Running it
//
//	go run ./examples/tutorials/pubsub
//	go run ./examples/tutorials/pubsub -amqp amqp://localhost/
package main
