package protocodec_test

import (
	"context"
	"fmt"
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
		panic(err)
	}
	handled := make(chan string, 2)
	_ = bus.Handle(warehouse, func(ctx context.Context, e *orderspb.OrderPlaced) error {
		handled <- fmt.Sprintf("protobuf: %s placed, %d cents, %v", e.GetOrderId(), e.GetTotalCents(), e.GetSkus())
		return nil
	})
	_ = bus.Handle(warehouse, func(ctx context.Context, e OrderCancelled) error {
		handled <- fmt.Sprintf("JSON: %s cancelled", e.OrderID)
		return nil
	})
	if err := warehouse.Start(ctx); err != nil {
		panic(err)
	}
	defer warehouse.Close()

	shop, _ := bus.New(t, "", bus.Options{Codecs: []bus.Codec{protocodec.Codec{}}, Logger: opts.Logger})
	defer shop.Close()
	_ = shop.Publish(ctx, "orders.placed", &orderspb.OrderPlaced{OrderId: "o-1", TotalCents: 4200, Skus: []string{"tea"}})
	_ = shop.Publish(ctx, "orders.cancelled", OrderCancelled{OrderID: "o-2"})
	fmt.Println(<-handled)
	fmt.Println(<-handled)
	// Output:
	// protobuf: o-1 placed, 4200 cents, [tea]
	// JSON: o-2 cancelled
}
