package main

import (
	"context"
	"time"

	"github.com/busline/busline/saga"
)

// The messages of the order fulfilment.
type (
	// PlaceOrder asks the orders service for an order; its sender gets an
	// OrderResult when the order shipped or was cancelled.
	PlaceOrder struct {
		OrderID string
		Card    string
	}
	// OrderResult is the answer to PlaceOrder.
	OrderResult struct {
		OrderID string
		Status  string // "shipped" or "cancelled"
	}

	ChargeCard      struct{ OrderID, Card string }
	PaymentReceived struct{ OrderID string }
	ReserveStock    struct{ OrderID string }
	StockReserved   struct{ OrderID string }
	ReleaseStock    struct{ OrderID string }
	ShipOrder       struct{ OrderID string }
	OrderShipped    struct{ OrderID string }

	// PaymentOverdue is the saga's timeout: the payment did not come in
	// time.
	PaymentOverdue struct{ OrderID string }
)

// Fulfilment is the state of one order's fulfilment.
type Fulfilment struct {
	Paid, Reserved, Shipping bool
}

// Fulfilments returns the order fulfilment saga: an order charges the card
// and reserves the stock in parallel, ships once both are done, and is
// cancelled (its stock released) if the payment does not come within
// paymentTimeout.
func Fulfilments(paymentTimeout time.Duration, opts saga.Options) *saga.Saga[Fulfilment] {
	sg := saga.New[Fulfilment]("OrderFulfilment", opts)
	saga.StartedBy(sg, func(m PlaceOrder) string { return m.OrderID }, func(ctx context.Context, s *saga.Instance[Fulfilment], m PlaceOrder) error {
		if err := s.Send("payments", ChargeCard{OrderID: m.OrderID, Card: m.Card}); err != nil {
			return err
		}
		if err := s.Send("stock", ReserveStock{OrderID: m.OrderID}); err != nil {
			return err
		}
		return s.RequestTimeout(paymentTimeout, PaymentOverdue{OrderID: m.OrderID})
	})
	saga.Handles(sg, func(m PaymentReceived) string { return m.OrderID }, func(ctx context.Context, s *saga.Instance[Fulfilment], m PaymentReceived) error {
		s.State.Paid = true
		return shipWhenReady(s)
	})
	saga.Handles(sg, func(m StockReserved) string { return m.OrderID }, func(ctx context.Context, s *saga.Instance[Fulfilment], m StockReserved) error {
		s.State.Reserved = true
		return shipWhenReady(s)
	})
	saga.Handles(sg, func(m OrderShipped) string { return m.OrderID }, func(ctx context.Context, s *saga.Instance[Fulfilment], m OrderShipped) error {
		s.Complete()
		return s.ReplyToOriginator(OrderResult{OrderID: m.OrderID, Status: "shipped"})
	})
	saga.Timeout(sg, func(ctx context.Context, s *saga.Instance[Fulfilment], m PaymentOverdue) error {
		if s.State.Paid {
			return nil
		}
		s.Complete()
		if err := s.Send("stock", ReleaseStock{OrderID: m.OrderID}); err != nil {
			return err
		}
		return s.ReplyToOriginator(OrderResult{OrderID: m.OrderID, Status: "cancelled"})
	})
	return sg
}

// shipWhenReady ships the order once it is paid and its stock reserved.
// Setting flags, not counting, makes a handling twice harmless.
func shipWhenReady(s *saga.Instance[Fulfilment]) error {
	if !s.State.Paid || !s.State.Reserved || s.State.Shipping {
		return nil
	}
	s.State.Shipping = true
	return s.Send("shipping", ShipOrder{OrderID: s.Correlation()})
}
