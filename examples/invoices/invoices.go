package invoices

import (
	"context"
	"sync"
	"time"

	"github.com/busline/busline/bus"
)

// Queue is the service's queue.
const Queue = "invoices"

// ReminderDelay is how long after the invoice an unpaid order is reminded.
const ReminderDelay = 14 * 24 * time.Hour

// The service's messages.
type (
	// SendInvoice asks for an order's invoice to be mailed.
	SendInvoice struct{ OrderID, Email string }
	// PaymentReceived is published by the payments service.
	PaymentReceived struct{ OrderID string }
	// RemindUnpaid is the reminder the service defers to itself.
	RemindUnpaid struct{ OrderID, Email string }
)

// Mailer sends mail.
type Mailer interface {
	Mail(ctx context.Context, to, subject string) error
}

// Options are the endpoint options the service needs.
func Options() bus.Options {
	return bus.Options{Subscriptions: []string{"payments.received"}}
}

// Register installs the service's handlers on b, an endpoint for Queue made
// with Options.
func Register(b *bus.Bus, m Mailer) error {
	var mu sync.Mutex
	paid := map[string]bool{}
	if err := bus.Handle(b, func(ctx context.Context, c SendInvoice) error {
		if err := m.Mail(ctx, c.Email, "Invoice for order "+c.OrderID); err != nil {
			return err // retried; the reminder below is not sent
		}
		return b.Defer(ctx, ReminderDelay, Queue, RemindUnpaid(c))
	}); err != nil {
		return err
	}
	if err := bus.Handle(b, func(ctx context.Context, e PaymentReceived) error {
		mu.Lock()
		defer mu.Unlock()
		paid[e.OrderID] = true
		return nil
	}); err != nil {
		return err
	}
	return bus.Handle(b, func(ctx context.Context, r RemindUnpaid) error {
		mu.Lock()
		isPaid := paid[r.OrderID]
		mu.Unlock()
		if isPaid {
			return nil
		}
		return m.Mail(ctx, r.Email, "Reminder: order "+r.OrderID+" is unpaid")
	})
}
