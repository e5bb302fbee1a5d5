package amqp_test

import (
	"context"
	"log"
	"log/slog"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/transport"
)

// Dial a cluster of two nodes, declare an endpoint's queue and send it a
// command, then a deferred one. (Not run: it needs a broker.)
func ExampleDial() {
	ctx := context.Background()
	tr, err := amqp.Dial(ctx, []string{
		"amqps://orders:secret@rabbit-1.example.com/",
		"amqps://orders:secret@rabbit-2.example.com/",
	}, amqp.Options{Logger: slog.Default()})
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
