package memory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

func ExampleNew() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()

	_ = tr.Declare(ctx, transport.Topology{
		Queue:  transport.Queue{Name: "billing"},
		Topics: []string{"orders.*.placed"},
	})
	_, _ = tr.Consume(ctx, "billing", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		fmt.Printf("%s via %s %q: %s\n", d.ID, d.Exchange, d.RoutingKey, d.Body)
		d.Ack()
	})
	_ = tr.Dispatch(ctx,
		transport.Outgoing{RoutingKey: "billing", Message: transport.Message{ID: "1", Body: []byte("charge")}},
		transport.Outgoing{Exchange: transport.Topic, RoutingKey: "orders.eu.placed", Message: transport.Message{ID: "2", Body: []byte("order")}},
	)
	_ = tr.Broker().WaitIdle(ctx)
	// Output:
	// 1 via direct "billing": charge
	// 2 via topic "orders.eu.placed": order
}

// Several transports on one broker are several services on one RabbitMQ.
func ExampleBroker() {
	ctx := context.Background()
	b := memory.NewBroker()
	defer b.Close()
	orders := memory.New(memory.Options{Broker: b, Name: "orders"})
	billing := memory.New(memory.Options{Broker: b, Name: "billing"})

	_ = billing.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "billing"}})
	err := orders.Dispatch(ctx, transport.Outgoing{RoutingKey: "shipping", Mandatory: true})
	fmt.Println(errors.Is(err, transport.ErrUnroutable))
	_ = orders.Dispatch(ctx, transport.Outgoing{RoutingKey: "billing", Message: transport.Message{ID: "invoice-1"}})
	fmt.Println(b.Depth("billing"), b.Messages("billing")[0].ID)
	// Output:
	// true
	// 1 invoice-1
}

func ExampleBroker_FailDispatches() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}})

	tr.Broker().FailDispatches(1, transport.ErrConnectionLost)
	err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q"})
	fmt.Println(errors.Is(err, transport.ErrConnectionLost))
	err = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q"})
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

func ExampleBroker_Journal() {
	ctx := context.Background()
	tr := memory.New(memory.Options{Name: "svc"})
	defer tr.Close()
	_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}})
	_, _ = tr.Consume(ctx, "q", transport.ConsumeOptions{Tag: "worker"}, func(ctx context.Context, d *transport.Delivery) {
		if d.Redelivered {
			d.Ack()
		} else {
			d.Nack(true)
		}
	})
	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "m1"}})
	_ = tr.Broker().WaitIdle(ctx)
	for _, r := range tr.Broker().Journal() {
		fmt.Println(r.Seq, r.Op, r.Message.ID, r.Queues, r.Queue, r.Redelivered)
	}
	// Output:
	// 1 dispatched m1 [q]  false
	// 2 delivered m1 [] q false
	// 3 nacked m1 [] q false
	// 4 delivered m1 [] q true
	// 5 acked m1 [] q true
}

// Recovery logic is tested by dropping the connections.
func ExampleBroker_DropConnections() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	events := make(chan transport.Event, 10)
	stop := tr.Watch(func(ev transport.Event) { events <- ev })
	defer stop()
	_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}})
	_, _ = tr.Consume(ctx, "q", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		d.Ack()
	})

	tr.Broker().DropConnections()
	for range 5 {
		ev := <-events
		fmt.Println(ev.Kind, "@"+ev.Queue)
	}
	// Output:
	// consumer started @q
	// disconnected @
	// consumer stopped @q
	// connected @
	// consumer started @q
}
