package bus_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"strings"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// PriceChanged is the event of the per-instance example.
type PriceChanged struct{ SKU string }

// Two instances of a service each keep a cache, so each needs every
// PriceChanged event: with PerInstance, each has a queue of its own, which
// goes when the instance stops.
func ExampleOptions_perInstance() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	quiet := slog.New(slog.DiscardHandler)

	handled := make(chan string, 4)
	var instances []*bus.Bus
	for _, id := range []string{"a", "b"} {
		b, err := bus.New(t, "catalog", bus.Options{PerInstance: true, InstanceID: id,
			Subscriptions: []string{"prices.#"}, Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		if err := bus.Handle(b, func(ctx context.Context, e PriceChanged) error {
			handled <- id + " drops " + e.SKU
			return nil
		}); err != nil {
			log.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			log.Fatal(err)
		}
		instances = append(instances, b)
		fmt.Println(b.Queue())
	}
	pricing, err := bus.New(t, "", bus.Options{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	if err := pricing.Publish(ctx, "prices.changed", PriceChanged{SKU: "tea"}); err != nil {
		log.Fatal(err)
	}
	seen := []string{<-handled, <-handled}
	slices.Sort(seen)
	fmt.Println(strings.Join(seen, ", "))

	if err := instances[0].Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = t.Inspect(ctx, instances[0].Queue())
	fmt.Println("after Shutdown:", err != nil)
	if err := instances[1].Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// catalog.instance-a
	// catalog.instance-b
	// a drops tea, b drops tea
	// after Shutdown: true
}

// A message from another system on RabbitMQ's amq.topic, with no headers at
// all: the endpoint binds its queue there, decodes it with the exchange's
// codec and types it by its routing key.
func ExampleExchange() {
	ctx := context.Background()
	broker := memory.NewBroker()
	defer broker.Close()
	t := memory.New(memory.Options{Broker: broker})
	defer t.Close()

	b, err := bus.New(t, "catalog", bus.Options{
		Exchanges: []bus.Exchange{{Name: "amq.topic", Subscriptions: []string{"legacy.price.*"}}},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	if err := bus.Handle(b, func(ctx context.Context, e PriceChanged) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(in.MessageType, e.SKU)
		close(done)
		return nil
	}, bus.WithMessageType("legacy.price.changed")); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	err = broker.Publish("amq.topic", "legacy.price.changed", transport.Message{Body: []byte(`{"SKU":"tea"}`)}, memory.PublishOptions{})
	if err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// legacy.price.changed tea
}
