package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Demo messages.
type (
	PlaceOrder struct {
		Order    int    `json:"order"`
		Customer string `json:"customer"`
	}
	ChargeCard struct {
		Order  int    `json:"order"`
		Amount string `json:"amount"`
		Card   string `json:"card"`
	}
	ShipOrder struct {
		Order   int    `json:"order"`
		Address string `json:"address"`
	}
)

// MessageType names the demo messages as a shop's services would.
func (PlaceOrder) MessageType() string { return "shop.PlaceOrder" }

// MessageType names the demo messages as a shop's services would.
func (ChargeCard) MessageType() string { return "shop.ChargeCard" }

// MessageType names the demo messages as a shop's services would.
func (ShipOrder) MessageType() string { return "shop.ShipOrder" }

// startDemo runs three services on t whose handlers fail the first time
// they see a message (without delayed retries, so that failures reach the
// error queue at once), and sends them some work.
func startDemo(ctx context.Context, t transport.Transport) (stop func(), queues []string, err error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	firstTime := func(ctx context.Context) bool {
		in, _ := bus.IncomingFrom(ctx)
		id := in.MessageID
		mu.Lock()
		defer mu.Unlock()
		if seen[id] {
			return false
		}
		seen[id] = true
		return true
	}
	opts := bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries}}
	var buses []*bus.Bus
	stop = func() {
		for _, b := range buses {
			b.Shutdown(context.Background())
		}
	}
	add := func(name string) (*bus.Bus, error) {
		b, err := bus.New(t, name, opts)
		if err == nil {
			buses = append(buses, b)
		}
		return b, err
	}
	orders, err := add("orders")
	if err != nil {
		return stop, nil, err
	}
	billing, err := add("billing")
	if err != nil {
		return stop, nil, err
	}
	shipping, err := add("shipping")
	if err != nil {
		return stop, nil, err
	}
	if err := bus.Handle(orders, func(ctx context.Context, m PlaceOrder) error {
		if m.Order%5 == 0 && firstTime(ctx) {
			return fmt.Errorf("place order %d: stock service returned 503", m.Order)
		}
		return nil
	}); err != nil {
		return stop, nil, err
	}
	if err := bus.Handle(billing, func(ctx context.Context, m ChargeCard) error {
		if firstTime(ctx) {
			if m.Order%3 == 0 {
				return fmt.Errorf("charge order %d: payment gateway timeout after %d ms", m.Order, 3000+m.Order)
			}
			return bus.Permanent(fmt.Errorf("charge order %d: card %q declined", m.Order, m.Card))
		}
		return nil
	}); err != nil {
		return stop, nil, err
	}
	if err := bus.Handle(shipping, func(ctx context.Context, m ShipOrder) error {
		if m.Address == "" && firstTime(ctx) {
			return errors.New("ship order: no address for customer")
		}
		return nil
	}); err != nil {
		return stop, nil, err
	}
	for _, b := range buses {
		if err := b.Start(ctx); err != nil {
			return stop, nil, err
		}
	}
	go func() {
		for i := 1; i <= 12; i++ {
			orders.Send(ctx, "orders", PlaceOrder{Order: 1000 + i, Customer: fmt.Sprintf("c-%d", i)})
			orders.Send(ctx, "billing", ChargeCard{Order: 1000 + i, Amount: "49.90 EUR", Card: fmt.Sprintf("4242-%04d", i)})
			if i%4 == 0 {
				orders.Send(ctx, "shipping", ShipOrder{Order: 1000 + i})
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return stop, []string{"orders", "billing", "shipping"}, nil
}
