package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// RenderReport is the command of the queue-argument examples.
type RenderReport struct{ Name string }

// A priority queue (classic queues only) hands over urgent messages first,
// those of one priority in the order they came.
func ExampleWithPriority() {
	ctx := context.Background()
	br := memory.NewBroker()
	defer br.Close()
	t := memory.New(memory.Options{Broker: br})
	defer t.Close()

	opts := bus.Options{QueueType: transport.Classic, QueueOptions: transport.QueueOptions{MaxPriority: 9}}
	reports, _ := bus.New(t, "reports", opts)
	done := make(chan struct{})
	n := 0
	bus.Handle(reports, func(ctx context.Context, r RenderReport) error {
		fmt.Println("rendering", r.Name)
		if n++; n == 3 {
			close(done)
		}
		return nil
	})
	// Declare the queue first, so that the three wait in it together.
	br.DeclareQueue(transport.Queue{Name: "reports", Type: transport.Classic, Options: opts.QueueOptions})

	sender, _ := bus.New(t, "", bus.Options{})
	sender.Send(ctx, "reports", RenderReport{Name: "monthly"})
	sender.Send(ctx, "reports", RenderReport{Name: "yearly"})
	sender.Send(ctx, "reports", RenderReport{Name: "incident"}, bus.WithPriority(9))

	reports.Start(ctx)
	defer reports.Shutdown(ctx)
	<-done
	// Output:
	// rendering incident
	// rendering monthly
	// rendering yearly
}

// A delivery limit (quorum queues only) stops a message that never
// completes from coming back for ever: once it has gone back to the queue
// DeliveryLimit times (a crash of the process handling it, or, as here, a
// pipeline without retries that gives failures back to the broker), it is
// dead-lettered to the error queue, with RabbitMQ's x-death header saying
// why.
func ExampleOptions_deliveryLimit() {
	ctx := context.Background()
	br := memory.NewBroker()
	defer br.Close()
	t := memory.New(memory.Options{Broker: br})
	defer t.Close()

	payments, _ := bus.New(t, "payments", bus.Options{
		QueueOptions: transport.QueueOptions{DeliveryLimit: 2}, // dead-letters to "error"
		Pipeline: func(bus.Plumbing) (middleware.Middleware, error) {
			return func(next middleware.Handler) middleware.Handler { return next }, nil
		},
	})
	deliveries := 0
	bus.Handle(payments, func(ctx context.Context, r RenderReport) error {
		deliveries++
		return errors.New("the payment provider crashed")
	})
	payments.Start(ctx)
	defer payments.Shutdown(ctx)

	payments.Send(ctx, "payments", RenderReport{Name: "p-1"})
	br.WaitIdle(ctx)
	fmt.Println("deliveries:", deliveries)
	for _, m := range br.Messages("error") {
		fmt.Println("in the error queue:", m.Headers["x-first-death-reason"], "from", m.Headers["x-first-death-queue"])
	}
	// Output:
	// deliveries: 3
	// in the error queue: delivery_limit from payments
}

// A queue with a length limit and RejectPublish refuses what does not fit:
// Send waits for room within its context, then fails with an error
// wrapping ErrRejected, and the message was not sent. DropHead, the
// default overflow, drops the oldest message instead.
func ExampleOptions_maxLength() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()

	thumbnails, _ := bus.New(t, "thumbnails", bus.Options{QueueType: transport.Classic,
		QueueOptions: transport.QueueOptions{MaxLength: 2, Overflow: transport.RejectPublish}})
	thumbnails.Start(ctx)
	thumbnails.Pause(ctx) // nobody takes the messages: the queue fills up
	defer thumbnails.Shutdown(ctx)

	for _, name := range []string{"a.png", "b.png", "c.png"} {
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := thumbnails.Send(sctx, "thumbnails", RenderReport{Name: name})
		cancel()
		fmt.Println(name, "rejected:", errors.Is(err, bus.ErrRejected))
	}
	// Output:
	// a.png rejected: false
	// b.png rejected: false
	// c.png rejected: true
}

// A message TTL drops what waited too long; with a dead-letter queue the
// expired messages go there, with RabbitMQ's x-death header, even when
// nobody consumes the queue.
func ExampleOptions_messageTTL() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()

	quotes, _ := bus.New(t, "quotes", bus.Options{QueueOptions: transport.QueueOptions{
		MessageTTL: 10 * time.Millisecond, DeadLetterQueue: "quotes-expired"}})
	expired, _ := bus.New(t, "quotes-expired", bus.Options{})
	done := make(chan struct{})
	bus.Handle(expired, func(ctx context.Context, r RenderReport) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(r.Name, in.Message.Headers["x-first-death-reason"])
		close(done)
		return nil
	})
	expired.Start(ctx)
	defer expired.Shutdown(ctx)
	quotes.Start(ctx)
	quotes.Pause(ctx) // nobody takes the quotes in time
	defer quotes.Shutdown(ctx)

	quotes.Send(ctx, "quotes", RenderReport{Name: "EUR/USD 1.08"})
	<-done
	// Output:
	// EUR/USD 1.08 expired
}

// A byte limit counts the bodies of the waiting messages; with DropHead,
// the default overflow, the oldest make room for the newest.
func ExampleOptions_maxLengthBytes() {
	ctx := context.Background()
	br := memory.NewBroker()
	defer br.Close()
	t := memory.New(memory.Options{Broker: br})
	defer t.Close()

	latest, _ := bus.New(t, "prices", bus.Options{QueueOptions: transport.QueueOptions{MaxLengthBytes: 30}})
	latest.Start(ctx)
	latest.Pause(ctx)
	defer latest.Shutdown(ctx)
	for _, name := range []string{"a", "b", "c"} {
		latest.Send(ctx, "prices", RenderReport{Name: name}) // {"Name":"a"}: 12 bytes
	}
	for _, m := range br.Messages("prices") {
		fmt.Println(string(m.Body))
	}
	// Output:
	// {"Name":"b"}
	// {"Name":"c"}
}
