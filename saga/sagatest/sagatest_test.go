package sagatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/saga"
	"github.com/busline/busline/saga/sagatest"
)

type (
	OrderPlaced     struct{ OrderID string }
	PaymentReceived struct{ OrderID string }
	PaymentOverdue  struct{ OrderID string }
	ShipOrder       struct{ OrderID string }
	Done            struct{ OrderID string }
)

type Order struct{ Paid, Cancelled bool }

func orders() *saga.Saga[Order] {
	sg := saga.New[Order]("Order", saga.Options{})
	saga.StartedBy(sg, func(m OrderPlaced) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m OrderPlaced) error {
			return s.RequestTimeout(30*time.Minute, PaymentOverdue(m))
		})
	saga.Handles(sg, func(m PaymentReceived) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m PaymentReceived) error {
			s.State.Paid = true
			s.Complete()
			if err := s.Send("shipping", ShipOrder(m)); err != nil {
				return err
			}
			return s.ReplyToOriginator(Done(m))
		})
	saga.Timeout(sg, func(ctx context.Context, s *saga.Instance[Order], m PaymentOverdue) error {
		s.State.Cancelled = true
		s.Complete()
		return nil
	})
	return sg
}

func TestHandle(t *testing.T) {
	sg := orders()
	res, err := sagatest.Handle(sg, nil, OrderPlaced{OrderID: "o1"})
	if err != nil || !res.Started || len(res.Timeouts) != 1 || res.Timeouts[0].Delay != 30*time.Minute ||
		res.Timeouts[0].Message != (PaymentOverdue{OrderID: "o1"}) || len(res.Sent) != 0 {
		t.Fatalf("OrderPlaced: %+v, %v", res, err)
	}
	res, err = sagatest.Handle(sg, &Order{}, PaymentReceived{OrderID: "o1"})
	if err != nil || !res.State.Paid || !res.Completed || len(res.Sent) != 2 ||
		res.Sent[0].Kind != saga.EffectSend || res.Sent[0].Destination != "shipping" ||
		res.Sent[1].Kind != saga.EffectReplyToOriginator || res.Sent[1].Destination != "originator" {
		t.Fatalf("PaymentReceived: %+v, %v", res, err)
	}
	if got := res.Messages(); got[0] != (ShipOrder{OrderID: "o1"}) || got[1] != (Done{OrderID: "o1"}) {
		t.Errorf("Messages: %v", got)
	}
	if _, err := sagatest.Handle(sg, nil, PaymentReceived{OrderID: "o1"}); err == nil {
		t.Error("a message that does not start the saga, with no state: no error")
	}
}

func TestFlow(t *testing.T) {
	f := sagatest.NewFlow(orders(), sagatest.Options{})
	if _, err := f.Handle(OrderPlaced{OrderID: "o1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Handle(PaymentReceived{OrderID: "other"}); err == nil {
		t.Error("a message for another instance: no error")
	}
	res, err := f.Handle(PaymentOverdue{OrderID: "o1"})
	if err != nil || !res.Completed || !res.State.Cancelled {
		t.Fatalf("timeout: %+v, %v", res, err)
	}
	res, err = f.Handle(PaymentReceived{OrderID: "o1"})
	if err != nil || len(res.Sent) != 0 {
		t.Errorf("a message after completion: %+v, %v", res, err)
	}
	if s, ok := f.State(); !ok || !s.Cancelled || s.Paid {
		t.Errorf("State: %+v %v", s, ok)
	}
}
