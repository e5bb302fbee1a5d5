// Http is PikaBus's Flask and FastAPI examples in Go, on net/http: a web
// service publishes an event from a request handler while the same
// process consumes its queue in the background.
//
// # What it shows
//
// A Bus is safe for concurrent use: HTTP handlers, each on its own
// goroutine, publish through one endpoint. Outside a message handler,
// Publish and Send dispatch at once and return when the broker has
// confirmed the message, so a 202 Accepted is honest; the request's
// context bounds the call. The consumer runs on the Bus's own goroutines
// from Start to Shutdown; the program stops the HTTP server first, then
// the Bus, so that no request publishes through a stopped endpoint.
//
// So that it ends by itself, the program requests its own URL -requests
// times and stops once it handled the events. Run it with -requests 0
// -timeout 0 -listen :8080 to serve until Ctrl-C, and try
// curl -X POST 'localhost:8080/greetings?hello=you'.
//
// # Running it
//
//	go run ./examples/pikabus/http
//	go run ./examples/pikabus/http -amqp amqp://localhost/
package main
