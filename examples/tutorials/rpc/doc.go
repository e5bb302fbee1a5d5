// Rpc is RabbitMQ's sixth tutorial, "RPC": a client asks a server for
// Fibonacci numbers and waits for each answer.
//
// # What it shows
//
// [bus.Request] sends a command and waits for the reply correlated with it,
// bounded by its context. The server answers with [bus.Bus.Reply], which
// goes to the requester's reply address with the request's correlation id.
// The requester's replies come to a temporary queue private to its
// process, so several instances of a client never receive each other's
// replies; the tutorial's callback queue and correlation id are built in.
//
// # Running it
//
//	go run ./examples/tutorials/rpc
//	go run ./examples/tutorials/rpc -amqp amqp://localhost/
package main
