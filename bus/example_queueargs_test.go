package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
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
	reports, err := bus.New(t, "reports", opts)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	n := 0
	if err := bus.Handle(reports, func(ctx context.Context, r RenderReport) error {
		fmt.Println("rendering", r.Name)
		if n++; n == 3 {
			close(done)
		}
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	// Declare the queue first, so that the three wait in it together.
	if err := br.DeclareQueue(transport.Queue{Name: "reports", Type: transport.Classic, Options: opts.QueueOptions}); err != nil {
		log.Fatal(err)
	}

	sender, err := bus.New(t, "", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range []struct {
		name     string
		priority uint8
	}{{"monthly", 0}, {"yearly", 0}, {"incident", 9}} {
		if err := sender.Send(ctx, "reports", RenderReport{Name: s.name}, bus.WithPriority(s.priority)); err != nil {
			log.Fatal(err)
		}
	}

	if err := reports.Start(ctx); err != nil {
		log.Fatal(err)
	}
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

	payments, err := bus.New(t, "payments", bus.Options{
		QueueOptions: transport.QueueOptions{DeliveryLimit: 2}, // dead-letters to "error"
		Pipeline: func(bus.Plumbing) (middleware.Middleware, error) {
			return func(next middleware.Handler) middleware.Handler { return next }, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	deliveries := 0
	if err := bus.Handle(payments, func(ctx context.Context, r RenderReport) error {
		deliveries++
		return errors.New("the payment provider crashed")
	}); err != nil {
		log.Fatal(err)
	}
	if err := payments.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer payments.Shutdown(ctx)

	if err := payments.Send(ctx, "payments", RenderReport{Name: "p-1"}); err != nil {
		log.Fatal(err)
	}
	if err := br.WaitIdle(ctx); err != nil {
		log.Fatal(err)
	}
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

	thumbnails, err := bus.New(t, "thumbnails", bus.Options{QueueType: transport.Classic,
		QueueOptions: transport.QueueOptions{MaxLength: 2, Overflow: transport.RejectPublish}})
	if err != nil {
		log.Fatal(err)
	}
	if err := thumbnails.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer thumbnails.Shutdown(ctx)
	if err := thumbnails.Pause(ctx); err != nil { // nobody takes the messages: the queue fills up
		log.Fatal(err)
	}

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

// A byte limit counts the bodies of the waiting messages; with DropHead,
// the default overflow, the oldest make room for the newest.
func ExampleOptions_maxLengthBytes() {
	ctx := context.Background()
	br := memory.NewBroker()
	defer br.Close()
	t := memory.New(memory.Options{Broker: br})
	defer t.Close()

	prices, err := bus.New(t, "prices", bus.Options{QueueOptions: transport.QueueOptions{MaxLengthBytes: 30}})
	if err != nil {
		log.Fatal(err)
	}
	if err := prices.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer prices.Shutdown(ctx)
	if err := prices.Pause(ctx); err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := prices.Send(ctx, "prices", RenderReport{Name: name}); err != nil { // {"Name":"a"}: 12 bytes
			log.Fatal(err)
		}
	}
	for _, m := range br.Messages("prices") {
		fmt.Println(string(m.Body))
	}
	// Output:
	// {"Name":"b"}
	// {"Name":"c"}
}

// A message TTL drops what waited too long; with a dead-letter queue the
// expired messages go there, with RabbitMQ's x-death header, even when
// nobody consumes the queue.
func ExampleOptions_messageTTL() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()

	quotes, err := bus.New(t, "quotes", bus.Options{QueueOptions: transport.QueueOptions{
		MessageTTL: 10 * time.Millisecond, DeadLetterQueue: "quotes-expired"}})
	if err != nil {
		log.Fatal(err)
	}
	expired, err := bus.New(t, "quotes-expired", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	if err := bus.Handle(expired, func(ctx context.Context, r RenderReport) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(r.Name, in.Message.Headers["x-first-death-reason"])
		close(done)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := expired.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer expired.Shutdown(ctx)
	if err := quotes.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer quotes.Shutdown(ctx)
	if err := quotes.Pause(ctx); err != nil { // nobody takes the quotes in time
		log.Fatal(err)
	}

	if err := quotes.Send(ctx, "quotes", RenderReport{Name: "EUR/USD 1.08"}); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// EUR/USD 1.08 expired
}
