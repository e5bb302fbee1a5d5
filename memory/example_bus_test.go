package memory_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
)

// Reminder is the command of ExampleBroker_Deferred.
type Reminder struct{ OrderID string }

// A test of a service built on package bus looks into the broker: what is
// waiting for its time, what is in a queue, and when every handler is done.
func ExampleBroker_Deferred() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	b, err := bus.New(tr, "orders", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Defer(ctx, time.Hour, "orders", Reminder{OrderID: "42"}); err != nil {
		log.Fatal(err)
	}
	for _, p := range tr.Broker().Deferred() {
		fmt.Println(p.RoutingKey, p.Message.Type, string(p.Message.Body), time.Until(p.NotBefore).Round(time.Minute))
	}
	tr.Broker().WaitIdle(ctx) // deferred messages do not count
	stats, _ := tr.Broker().Stats("orders")
	fmt.Printf("ready %d, unacked %d, consumers %d, %s\n", stats.Ready, stats.Unacked, stats.Consumers, stats.Type)
	// Output:
	// orders Reminder {"OrderID":"42"} 1h0m0s
	// ready 0, unacked 0, consumers 1, quorum
}
