package amqp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// Dial a cluster of two nodes, declare an endpoint's queue and send it a
// command, then a deferred one. (Not run: it needs a broker.)
func ExampleDial() {
	ctx := context.Background()
	tr, err := amqp.Dial(ctx, "amqps://orders:secret@rabbit-1.example.com/", amqp.Options{
		ClusterURLs: []string{"amqps://orders:secret@rabbit-2.example.com/"},
		Logger:      slog.Default(),
	})
	if err != nil {
		log.Fatal(err) // the error shows amqps://orders:xxxxx@...
	}
	defer tr.Close()

	if err := tr.Declare(ctx, transport.Topology{
		Queue:  transport.Queue{Name: "orders"}, // a quorum queue
		Topics: []string{"payments.*"},
	}); err != nil {
		log.Fatal(err)
	}
	err = tr.Dispatch(ctx,
		transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{ID: "1", Body: []byte(`{}`)}},
		transport.Outgoing{RoutingKey: "orders", Mandatory: true, NotBefore: time.Now().Add(time.Minute),
			Message: transport.Message{ID: "2", Body: []byte(`{}`)}},
	)
	if err != nil {
		log.Fatal(err)
	}
}

// PlaceOrder is the command of Example_bus.
type PlaceOrder struct{ OrderID string }

// An endpoint of package bus on RabbitMQ: the same code as on the memory
// transport in tests, with the transport from Dial. (Not run: it needs a
// broker.)
func Example_bus() {
	ctx := context.Background()
	t, err := amqp.Dial(ctx, "amqp://guest:guest@localhost:5672/", amqp.Options{ConnectionName: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close() // after the endpoint's Shutdown, which runs first

	orders, err := bus.New(t, "orders", bus.Options{Subscriptions: []string{"payments.*"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(orders, func(ctx context.Context, cmd PlaceOrder) error {
		return orders.Publish(ctx, "orders.placed", cmd)
	}); err != nil {
		log.Fatal(err)
	}
	if err := orders.Start(ctx); err != nil { // declares the quorum queue "orders" and its bindings
		log.Fatal(err)
	}
	defer orders.Shutdown(context.WithoutCancel(ctx))

	if err := orders.Defer(ctx, time.Minute, "orders", PlaceOrder{OrderID: "42"}); err != nil {
		log.Fatal(err)
	}
}

// An endpoint on an account that may not configure the delay levels'
// exchanges and queues: DialNoDelay declares none, and the bus runs the
// standard stages without deferral and without delayed retries (a failed
// message goes to the error queue after one immediate retry). (Not run: it
// needs a broker.)
func ExampleDialNoDelay() {
	ctx := context.Background()
	t, err := amqp.DialNoDelay(ctx, "amqp://orders:secret@localhost:5672/", amqp.Options{ConnectionName: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()

	// The transport is no transport.Delayer: the endpoint retries failed
	// handlings at once, in process, then sends them to the error queue.
	orders, err := bus.New(t, "orders", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := orders.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer orders.Shutdown(context.WithoutCancel(ctx))
}

// Options choose classic queues and TLS; the zero value is PikaBus's
// exchanges, quorum queues and 28 delay levels. (Not run: it needs a
// broker.)
func ExampleOptions() {
	ctx := context.Background()
	t, err := amqp.Dial(ctx, "amqps://orders:secret@rabbit.example.com/", amqp.Options{
		QueueType:      transport.Classic,
		TLS:            &tls.Config{MinVersion: tls.VersionTLS12},
		ConnectionName: "orders",
		Logger:         slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
}

// RedactURL hides a URL's password, as every error and log line of the
// package does.
func ExampleRedactURL() {
	fmt.Println(amqp.RedactURL("amqps://orders:secret@rabbit.example.com:5671/prod"))
	// Output: amqps://orders:xxxxx@rabbit.example.com:5671/prod
}

// A transport reports its queues' depth and consumers (transport.Inspector)
// and deletes queues (transport.QueueDeleter). (Not run: it needs a broker.)
func ExampleTransport_Inspect() {
	ctx := context.Background()
	t, err := amqp.Dial(ctx, "amqp://guest:guest@localhost:5672/", amqp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	info, err := t.Inspect(ctx, "error")
	if errors.Is(err, transport.ErrNotFound) {
		fmt.Println("no error queue")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d messages in the error queue, %d consumers\n", info.Messages, info.Consumers)
}
