// Package examples holds busline's example programs, one scenario each,
// and the test that runs them all.
//
// # The programs
//
// Each (but invoices, a package with tests) is a main package that plays
// its scenario, prints what happened and exits by itself: status 0 when
// the scenario completed, 1 with a message when it did not within -timeout
// (30 s by default).
//
//	demo                     the tour `make demo` runs: send, publish, defer, reply, request, retries, replay
//	pikabus/basic            send, defer, publish and reply on one endpoint (PikaBus's basic_example.py)
//	pikabus/consumer         a service that consumes until told to stop, then shuts down gracefully
//	pikabus/publish          a send-only publisher; events nobody subscribed to
//	pikabus/send             send and defer to a queue; a send to a missing queue fails
//	pikabus/transaction      messages held back until a transaction commits, dropped on rollback
//	pikabus/errors           delayed retries, a permanent error, the error queue, replay
//	pikabus/http             a net/http service that publishes from its handlers and consumes in the background
//	tutorials/helloworld     RabbitMQ tutorial 1: a queue, a producer, a consumer
//	tutorials/workqueues     RabbitMQ tutorial 2: competing workers, fair dispatch with prefetch 1
//	tutorials/pubsub         RabbitMQ tutorial 3: every subscriber gets every event
//	tutorials/routing        RabbitMQ tutorial 4: subscribing by exact key
//	tutorials/topics         RabbitMQ tutorial 5: topic patterns with * and #
//	tutorials/rpc            RabbitMQ tutorial 6: request and reply
//	quickstart               the README's quick start
//	invoices                 a service package and its testing/synctest tests (the README's testing section)
//	telemetry                OpenTelemetry: one order's trace across three services, metrics for Prometheus
//	                         (a module of its own, tested by its own TestExample: cd telemetry && go run .)
//
// # Running them
//
// On the in-memory broker, which needs nothing installed:
//
//	go run ./examples/tutorials/topics
//
// On RabbitMQ, with -amqp URL or the environment variable BUSLINE_AMQP_URL
// (the demo and the quick start run on the memory broker only):
//
//	go run ./examples/tutorials/topics -amqp amqp://guest:guest@localhost:5672/
//
// On RabbitMQ each run names its queues and topics with a prefix of its
// own, "busline-example.<name>.<random>.", and deletes its queues when it
// ends, so runs never see each other's messages. The flag -v logs what the
// bus does, retries and the error queue included.
//
// # Testing
//
// TestExamples builds every program once and runs each on the memory
// broker and, when BUSLINE_AMQP_URL is set (`make test` sets it), on
// RabbitMQ, checking the exit status and the lines that show the scenario
// happened. The TestReadme tests check that README.md's Go blocks are
// copies of compiled files, that its option tables list the options
// structs' fields, and that its sample headers are what the bus writes.
package examples
