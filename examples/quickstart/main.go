package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
)

// PlaceOrder is a command, OrderPlaced an event.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// In production: amqp.Dial(ctx, "amqp://...", amqp.Options{})
	t := memory.New(memory.Options{})
	defer t.Close()

	orders, err := bus.New(t, "orders", bus.Options{})
	if err != nil {
		return err
	}
	err = bus.Handle(orders, func(ctx context.Context, cmd PlaceOrder) error {
		fmt.Println("orders: placing order", cmd.ID)
		// Dispatched when this handler returns nil, before the command is acked.
		return orders.Publish(ctx, "orders.placed", OrderPlaced{ID: cmd.ID})
	})
	if err != nil {
		return err
	}

	billing, err := bus.New(t, "billing", bus.Options{Subscriptions: []string{"orders.*"}})
	if err != nil {
		return err
	}
	invoiced := make(chan string, 1)
	err = bus.Handle(billing, func(ctx context.Context, ev OrderPlaced) error {
		fmt.Println("billing: invoicing order", ev.ID)
		invoiced <- ev.ID
		return nil
	})
	if err != nil {
		return err
	}

	for _, b := range []*bus.Bus{orders, billing} {
		if err := b.Start(ctx); err != nil {
			return err
		}
		defer func() {
			if err := b.Shutdown(context.WithoutCancel(ctx)); err != nil {
				log.Print(err)
			}
		}()
	}

	if err := orders.Send(ctx, "orders", PlaceOrder{ID: "42"}); err != nil {
		return err
	}
	select {
	case <-invoiced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
