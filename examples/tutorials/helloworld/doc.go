// Helloworld is RabbitMQ's first tutorial, "Hello World!", on busline: a
// producer sends a message to a named queue and a consumer prints it.
//
// # What it shows
//
// An endpoint (a [bus.Bus]) owns one queue, declared by Start; Send puts a
// command in a queue by name, and fails if that queue does not exist. A
// send-only endpoint, made with an empty queue name, sends without owning a
// queue.
//
// # Running it
//
//	go run ./examples/tutorials/helloworld                        # in-memory broker
//	go run ./examples/tutorials/helloworld -amqp amqp://localhost/ # RabbitMQ
package main
