package protocodec_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/protocodec"
	"github.com/busline/busline/protocodec/orderspb"
)

// OrderCancelled is a plain Go event, sent as JSON.
type OrderCancelled struct {
	OrderID string
}

// One endpoint handles a protobuf event and a JSON event side by side: the
// sender's codec is chosen by the value (protobuf for generated types, JSON
// for the rest), the receiver's by each message's content type.
func Example() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	opts := bus.Options{
		Codecs:        []bus.Codec{protocodec.Codec{}},
		Subscriptions: []string{"orders.#"},
		Logger:        slog.New(slog.DiscardHandler),
	}
	warehouse, err := bus.New(t, "warehouse", opts)
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan string, 2)
	if err := bus.Handle(warehouse, func(ctx context.Context, e *orderspb.OrderPlaced) error {
		handled <- fmt.Sprintf("protobuf: %s placed, %d cents, %v", e.GetOrderId(), e.GetTotalCents(), e.GetSkus())
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(warehouse, func(ctx context.Context, e OrderCancelled) error {
		handled <- fmt.Sprintf("JSON: %s cancelled", e.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := warehouse.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer warehouse.Close()

	shop, err := bus.New(t, "", bus.Options{Codecs: []bus.Codec{protocodec.Codec{}}, Logger: opts.Logger})
	if err != nil {
		log.Fatal(err)
	}
	defer shop.Close()
	// A generated type goes as protobuf, a Go struct as JSON.
	if err := shop.Publish(ctx, "orders.placed", &orderspb.OrderPlaced{OrderId: "o-1", TotalCents: 4200, Skus: []string{"tea"}}); err != nil {
		log.Fatal(err)
	}
	if err := shop.Publish(ctx, "orders.cancelled", OrderCancelled{OrderID: "o-2"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-handled)
	fmt.Println(<-handled)
	// Output:
	// protobuf: o-1 placed, 4200 cents, [tea]
	// JSON: o-2 cancelled
}
