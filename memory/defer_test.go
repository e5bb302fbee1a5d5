package memory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestDeferredDelivery is the way to test deferred delivery: inside a
// synctest bubble the broker's timers run on the bubble's fake clock, so an
// hour passes at once and synctest.Wait tells when every handler is done.
func TestDeferredDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Create the broker inside the bubble, so that its timers use the
		// bubble's clock.
		tr := memory.New(memory.Options{})
		defer tr.Close()
		ctx := context.Background()
		must(t, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "reminders"}}))

		// The handler runs on another goroutine, woken by a timer the race
		// detector does not relate to this one: guard what it shares.
		var mu sync.Mutex
		var handled []string
		got := func() string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprint(handled)
		}
		_, err := tr.Consume(ctx, "reminders", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			mu.Lock()
			handled = append(handled, fmt.Sprintf("%s at +%v", d.ID, time.Since(start)))
			mu.Unlock()
			d.Ack()
		})
		must(t, err)

		must(t, tr.Dispatch(ctx,
			transport.Outgoing{RoutingKey: "reminders", NotBefore: time.Now().Add(time.Hour), Message: transport.Message{ID: "later"}},
			transport.Outgoing{RoutingKey: "reminders", NotBefore: time.Now().Add(time.Minute), Message: transport.Message{ID: "soon"}},
			transport.Outgoing{RoutingKey: "reminders", NotBefore: time.Now().Add(time.Minute), Message: transport.Message{ID: "soon too"}},
			transport.Outgoing{RoutingKey: "reminders", Message: transport.Message{ID: "now"}},
		))
		if p := tr.Broker().Deferred(); len(p) != 3 || p[0].Message.ID != "soon" || p[2].Message.ID != "later" {
			t.Fatalf("deferred %+v", p)
		}

		time.Sleep(59 * time.Minute)
		synctest.Wait()
		if got() != "[now at +0s soon at +1m0s soon too at +1m0s]" {
			t.Fatalf("after 59 minutes: %v", got())
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got() != "[now at +0s soon at +1m0s soon too at +1m0s later at +1h0m0s]" {
			t.Fatalf("after an hour: %v", got())
		}
		if p := tr.Broker().Deferred(); len(p) != 0 {
			t.Fatalf("still deferred: %+v", p)
		}
	})
}

// start is the time every bubble starts at.
var start = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDeferredRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{MaxDelay: 24 * time.Hour})
		b := tr.Broker()
		declare(t, tr, "q")
		later := time.Now().Add(time.Hour)
		// Mandatory is checked when the message is dispatched.
		mustIs(t, tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "nope", Mandatory: true, NotBefore: later}), transport.ErrUnroutable)
		mustIs(t, tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", NotBefore: time.Now().Add(25 * time.Hour)}), transport.ErrNotSupported)
		mustIs(t, tr.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "q", NotBefore: later}), transport.ErrNotSupported)
		if tr.MaxDelay() != 24*time.Hour || memory.New(memory.Options{Broker: b}).MaxDelay() != memory.DefaultMaxDelay {
			t.Fatal("MaxDelay")
		}
		must(t, tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Mandatory: true, NotBefore: later, Message: transport.Message{ID: "gone"}}))
		must(t, tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", NotBefore: time.Now().Add(-time.Hour), Message: transport.Message{ID: "past"}}))
		if got := msgIDs(b.Messages("q")); got != "past " {
			t.Fatalf("a NotBefore in the past is not a delay: %q", got)
		}
		// A message whose queue disappears before it is due is dropped.
		must(t, tr.DeleteQueue(ctxT(t), "q"))
		time.Sleep(time.Hour)
		synctest.Wait()
		var due []memory.Record
		for _, r := range b.Journal() {
			if r.Op == memory.Due {
				due = append(due, r)
			}
		}
		if len(due) != 1 || due[0].Message.ID != "gone" || len(due[0].Queues) != 0 || !due[0].NotBefore.Equal(later) {
			t.Fatalf("due records %+v", due)
		}
		if !due[0].Time.Equal(later) {
			t.Fatalf("due at %v, want %v (the bubble's clock)", due[0].Time, later)
		}
	})
}

func TestCloseStopsTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		must(t, b.DeclareQueue(transport.Queue{Name: "q"}))
		for i := range 10 {
			must(t, b.Publish("", "q", transport.Message{}, memory.PublishOptions{NotBefore: time.Now().Add(time.Duration(i+1) * time.Hour)}))
		}
		time.Sleep(90 * time.Minute)
		synctest.Wait()
		if b.Depth("q") != 1 {
			t.Fatalf("depth %d", b.Depth("q"))
		}
		must(t, b.Close())
		// The bubble ends only if no timer goroutine is left.
	})
}
