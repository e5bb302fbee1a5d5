package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
)

// SendAsync returns once the message is handed to the transport; its
// receipt, and the WithOnAck callback, report the broker's verdict later.
// One caller keeps up to Options.PostWindow confirms in flight.
func ExampleBus_SendAsync() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	shipping, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := shipping.Start(ctx); err != nil { // its queue exists from now on
		log.Fatal(err)
	}
	defer shipping.Shutdown(ctx)

	sender, err := bus.New(t, "", bus.Options{PostWindow: 256})
	if err != nil {
		log.Fatal(err)
	}
	defer sender.Close()
	var receipts []*bus.Receipt
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		r, err := sender.SendAsync(ctx, "shipping", ShipOrder{OrderID: id},
			bus.WithOnAck(func(r *bus.Receipt) {
				// On the Bus's callback goroutine, one at a time.
				if r.Err() != nil {
					fmt.Println("not delivered:", r.MessageID(), r.Err())
				}
			}))
		if err != nil { // nothing was sent
			log.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	lost, err := sender.SendAsync(ctx, "no-such-queue", ShipOrder{OrderID: "o-4"})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range receipts {
		fmt.Println(r.Wait(ctx))
	}
	fmt.Println(errors.Is(lost.Wait(ctx), bus.ErrUnroutable))
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// true
}

// A HealthMonitor suspends an endpoint's consumption while the host is
// unhealthy; BasicHealthMonitor is set by hand, by a program's own checks
// or by a test.
func ExampleBasicHealthMonitor() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	var health bus.BasicHealthMonitor // healthy
	lifecycle := make(chan bus.NoticeKind, 8)
	shipping, err := bus.New(t, "shipping", bus.Options{
		HealthMonitor: &health,
		OnNotice: func(n bus.Notice) {
			if n.Kind == bus.Suspended || n.Kind == bus.Unsuspended {
				lifecycle <- n.Kind
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan string, 1)
	if err := bus.Handle(shipping, func(ctx context.Context, cmd ShipOrder) error {
		handled <- cmd.OrderID
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := shipping.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer shipping.Shutdown(ctx)

	health.SetUnhealthy() // say, the disk is full
	fmt.Println(<-lifecycle)
	// Sends keep working.
	if err := shipping.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	health.SetHealthy()
	fmt.Println(<-lifecycle)
	fmt.Println("shipped", <-handled)
	// Output:
	// suspended
	// unsuspended
	// shipped o-1
}

// Flow control per endpoint, BlazingMQ's queue options: a prefetch window,
// a bound on the bytes being handled, a consumer priority among the
// instances of the endpoint; SetFlowControl changes them on a running
// endpoint (the handlers under way finish first).
func ExampleBus_SetFlowControl() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	shipping, err := bus.New(t, "shipping", bus.Options{
		Concurrency:      4,
		Prefetch:         16,
		MaxUnackedBytes:  1 << 20, // at most 1 MiB of bodies in handling
		ConsumerPriority: 10,      // the other instances get messages when this one is full
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(shipping, func(ctx context.Context, cmd ShipOrder) error { return nil }); err != nil {
		log.Fatal(err)
	}
	if err := shipping.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer shipping.Shutdown(ctx)
	fmt.Printf("%+v\n", shipping.FlowControl())

	// Draining the node: the other instances first, a small window.
	err = shipping.SetFlowControl(ctx, bus.FlowControl{Prefetch: 4, MaxUnackedBytes: 64 << 10, Priority: -10})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", shipping.FlowControl())
	// Output:
	// {Prefetch:16 MaxUnackedBytes:1048576 Priority:10}
	// {Prefetch:4 MaxUnackedBytes:65536 Priority:-10}
}
