package invoices_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/invoices"
	"github.com/busline/busline/memory"
)

// mailbox is a fake Mailer; it fails while down is set.
type mailbox struct {
	mu   sync.Mutex
	down bool
	sent []string
}

func (m *mailbox) Mail(ctx context.Context, to, subject string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("mail server down")
	}
	m.sent = append(m.sent, to+": "+subject)
	return nil
}

func (m *mailbox) Sent() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.sent)
}

// start runs the service on a memory broker of its own. Call it inside the
// bubble: the broker's timers then run on the bubble's fake clock.
func start(t *testing.T, mail *mailbox) (*memory.Transport, *bus.Bus) {
	tr := memory.New(memory.Options{})
	t.Cleanup(func() { tr.Close() })
	b, err := bus.New(tr, invoices.Queue, invoices.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := invoices.Register(b, mail); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	return tr, b
}

func TestReminderAfterTwoWeeks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mail := &mailbox{}
		_, b := start(t, mail)
		ctx := t.Context()
		b.Send(ctx, invoices.Queue, invoices.SendInvoice{OrderID: "1", Email: "ann@example.com"})
		b.Send(ctx, invoices.Queue, invoices.SendInvoice{OrderID: "2", Email: "bob@example.com"})
		b.Publish(ctx, "payments.received", invoices.PaymentReceived{OrderID: "2"})
		synctest.Wait() // every handler is done
		if got := len(mail.Sent()); got != 2 {
			t.Fatalf("%d mails after sending the invoices, want 2", got)
		}

		time.Sleep(invoices.ReminderDelay - time.Second) // two weeks, in no time
		synctest.Wait()
		if got := len(mail.Sent()); got != 2 {
			t.Fatalf("a reminder came early: %q", mail.Sent())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		want := []string{
			"ann@example.com: Invoice for order 1",
			"bob@example.com: Invoice for order 2",
			"ann@example.com: Reminder: order 1 is unpaid", // order 2 was paid
		}
		if got := mail.Sent(); !slices.Equal(got, want) {
			t.Errorf("mails:\n%q\nwant\n%q", got, want)
		}
	})
}

func TestMailServerDownGoesToTheErrorQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mail := &mailbox{down: true}
		tr, b := start(t, mail)
		began := time.Now()
		b.Send(t.Context(), invoices.Queue, invoices.SendInvoice{OrderID: "1", Email: "ann@example.com"})

		// PikaBus's retries: 2 s, 4 s, 6 s, 8 s and 10 s apart.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		failed := tr.Broker().Messages(b.ErrorQueue())
		if len(failed) != 1 {
			t.Fatalf("%d messages in the error queue after %v, want 1", len(failed), time.Since(began))
		}
		h := b.HeaderNames()
		if got := failed[0].Headers[h.ErrorDetails]; got != "mail server down (gave up after 5 delayed retries)" {
			t.Errorf("ErrorDetails = %q", got)
		}
		if len(mail.Sent()) != 0 {
			t.Errorf("mails sent: %q", mail.Sent())
		}
	})
}
