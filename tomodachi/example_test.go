package tomodachi_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/tomodachi"
	"github.com/busline/busline/transport"
)

// OrderCreated is the event a tomodachi service publishes under
// "order.created", in its JSON envelope's data.
type OrderCreated struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
}

// StockReserved is the event the busline endpoint publishes back.
type StockReserved struct {
	OrderID string `json:"order_id"`
}

// A busline endpoint and a tomodachi service talk on amq.topic, in
// tomodachi's JSON envelope. The tomodachi side is played here by its queue
// and its wire form, on the memory broker; on RabbitMQ it is the service.
func Example() {
	ctx := context.Background()
	broker := memory.NewBroker()
	defer broker.Close()
	t := memory.New(memory.Options{Broker: broker})
	defer t.Close()

	envelope := tomodachi.JSONEnvelope{Service: tomodachi.NewService("inventory")}
	inventory, err := bus.New(t, "inventory", bus.Options{
		Exchanges: []bus.Exchange{{
			Name:          tomodachi.DefaultExchange, // amq.topic
			Codec:         envelope,
			Subscriptions: []string{"order.created"},
		}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	// A tomodachi message carries no message type: its routing key is one.
	err = bus.Handle(inventory, func(ctx context.Context, o OrderCreated) error {
		fmt.Println("inventory: reserving", o.SKU, "for", o.OrderID)
		return inventory.Publish(ctx, "stock.reserved", StockReserved{OrderID: o.OrderID},
			bus.WithExchange(tomodachi.DefaultExchange))
	}, bus.WithMessageType("order.created"))
	if err != nil {
		log.Fatal(err)
	}
	if err := inventory.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer inventory.Close()

	// The tomodachi service: its handler's queue, bound on amq.topic as
	// tomodachi names and binds it, and an event as it publishes one.
	shop := tomodachi.Service{Name: "shop", UUID: "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"}
	q := tomodachi.QueueName("stock.reserved", "on_stock_reserved", shop.UUID, true, "")
	if err := broker.DeclareQueue(transport.Queue{Name: q, Type: transport.Classic, Arguments: transport.Headers{"x-expires": int32(86400000)}}); err != nil {
		log.Fatal(err)
	}
	if err := broker.Bind(tomodachi.DefaultExchange, q, tomodachi.EncodeRoutingKey("stock.reserved")); err != nil {
		log.Fatal(err)
	}
	body := `{"service": {"name": "shop", "uuid": "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"}, "metadata": {"message_uuid": "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e.0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d", "protocol_version": "tomodachi-json-base--1.0.0", "compatible_protocol_versions": ["json_base-wip"], "timestamp": 1764768000.25, "topic": "order.created", "data_encoding": "raw"}, "data": {"order_id": "o-1", "sku": "tea"}}`
	if err := broker.Publish(tomodachi.DefaultExchange, "order.created", transport.Message{Body: []byte(body)}, memory.PublishOptions{}); err != nil {
		log.Fatal(err)
	}

	if err := broker.WaitIdle(ctx); err != nil {
		log.Fatal(err)
	}
	for _, m := range broker.Messages(q) {
		// What tomodachi's JsonBase.parse_message reads.
		var e tomodachi.Envelope
		if err := (tomodachi.JSONEnvelope{}).Decode(&m, &e); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("shop: %s from %s: %s\n", e.Metadata.Topic, e.Service.Name, e.Data)
	}
	// Output:
	// inventory: reserving tea for o-1
	// shop: stock.reserved from inventory: {"order_id":"o-1"}
}
