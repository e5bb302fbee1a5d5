// Quickstart is the quick start of busline's README: an orders service
// that handles a command and publishes an event, and a billing service
// subscribed to it, on the in-memory broker.
//
// # Running it
//
//	go run ./examples/quickstart
//
// It prints "orders: placing order 42", then "billing: invoicing order 42".
// README.md shows main.go whole; examples/readme_test.go checks that the
// copy matches.
package main
