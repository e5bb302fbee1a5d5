// Topics is RabbitMQ's fifth tutorial, "Topics": events about animals are
// routed by patterns with the wildcards "*" and "#".
//
// # What it shows
//
// A topic is words separated by dots, "<speed>.<colour>.<species>" here. In
// a subscription pattern "*" matches exactly one word and "#" zero or more.
// Q1 subscribes to "*.orange.*"; Q2 to "*.*.rabbit" and "lazy.#". A queue
// whose patterns match a topic twice ("lazy.pink.rabbit" for Q2) still
// gets one copy. An event no pattern matches is dropped, unless the
// publisher requires a subscriber: then Publish fails with
// bus.ErrUnroutable.
//
// # Running it
//
//	go run ./examples/tutorials/topics
//	go run ./examples/tutorials/topics -amqp amqp://localhost/
package main
