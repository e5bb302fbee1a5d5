package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// consume runs pipeline on queue's messages as package bus does: ack on
// nil, nack with requeue on an error. It returns a func that stops it.
func consume(tr transport.Transport, queue string, h middleware.Handler) (stop func()) {
	ctx := context.Background()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: queue}}); err != nil {
		panic(err)
	}
	c, err := tr.Consume(ctx, queue, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		if err := h(ctx, &middleware.Message{Message: d.Message, Queue: d.Queue, Redelivered: d.Redelivered}); err != nil {
			_ = d.Nack(true)
			return
		}
		_ = d.Ack()
	})
	if err != nil {
		panic(err)
	}
	return func() { _ = c.Close() }
}

// The standard pipeline retries a failing handler with a delay, counting
// the retries in the ErrorRetries header. (The backoff is shortened here;
// the default is PikaBus's 2 s, 4 s, 6 s, 8 s, 10 s.)
func ExampleStandard() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "error", Shared: true}})

	backoff := middleware.LinearBackoff(10 * time.Millisecond)
	pipeline, err := middleware.Standard(tr, middleware.StandardOptions{
		Retry: middleware.RetryOptions{Backoff: backoff},
	})
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	stop := consume(tr, "orders", pipeline(func(ctx context.Context, m *middleware.Message) error {
		retries, _, _ := middleware.HeaderInt(m.Headers[middleware.DefaultHeaderNames.ErrorRetries])
		if retries < 2 {
			fmt.Printf("attempt after %d retries: failing\n", retries)
			return errors.New("database down")
		}
		fmt.Printf("attempt after %d retries: handled\n", retries)
		close(done)
		return nil
	}))
	defer stop()

	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{ID: "m1", Body: []byte("{}")}})
	<-done
	// Output:
	// attempt after 0 retries: failing
	// attempt after 1 retries: failing
	// attempt after 2 retries: handled
}

// A permanent error skips the retries: the message goes to the error queue
// with the error, its source queue and the retry count.
func ExampleErrorQueue() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "error", Shared: true}})

	pipeline, err := middleware.Standard(tr, middleware.StandardOptions{})
	if err != nil {
		panic(err)
	}
	stop := consume(tr, "orders", pipeline(func(ctx context.Context, m *middleware.Message) error {
		return middleware.Permanent(fmt.Errorf("order %s: no such customer", m.ID))
	}))
	defer stop()

	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{ID: "m1", Body: []byte("{}")}})
	for tr.Broker().Depth("error") == 0 {
		time.Sleep(time.Millisecond)
	}
	h := tr.Broker().Messages("error")[0].Headers
	names := middleware.DefaultHeaderNames
	fmt.Println(names.SourceQueue, "=", h[names.SourceQueue])
	fmt.Println(names.ErrorRetries, "=", h[names.ErrorRetries])
	fmt.Println(names.ErrorDetails, "=", h[names.ErrorDetails])
	// Output:
	// PikaBus.SourceQueue = orders
	// PikaBus.ErrorRetries = 1
	// PikaBus.ErrorDetails = order m1: no such customer
}

// A message whose DeferredTime is in the future is rescheduled through the
// transport and handled when it is due.
func ExampleDeferral() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()

	// No tolerance: the message is never handled a moment early.
	deferral, err := middleware.Deferral(tr, middleware.DeferralOptions{Tolerance: -1})
	if err != nil {
		panic(err)
	}
	sent := time.Now()
	due := sent.Add(300 * time.Millisecond)
	done := make(chan struct{})
	stop := consume(tr, "reminders", deferral(func(ctx context.Context, m *middleware.Message) error {
		fmt.Println("handled when due:", !time.Now().Before(due))
		close(done)
		return nil
	}))
	defer stop()

	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "reminders", Message: transport.Message{
		ID:      "m1",
		Headers: transport.Headers{middleware.DefaultHeaderNames.DeferredTime: middleware.FormatTime(due)},
	}})
	<-done
	// Output:
	// handled when due: true
}

// Replay moves messages from the error queue back to their source queues,
// with the retry count reset and the error headers removed.
func ExampleReplay() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	names := middleware.DefaultHeaderNames
	for _, q := range []string{"error", "orders"} {
		_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q}})
	}
	for _, m := range []transport.Message{
		{ID: "m1", Headers: transport.Headers{names.SourceQueue: "orders", names.ErrorRetries: 6, names.ErrorDetails: "boom"}},
		{ID: "m2", Headers: transport.Headers{names.ErrorDetails: "where from?"}},
	} {
		_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "error", Message: m})
	}

	res, err := middleware.Replay(ctx, tr, middleware.ReplayOptions{})
	if err != nil {
		panic(err)
	}
	for _, r := range res.Replayed {
		fmt.Println("replayed", r.ID, "to", r.SourceQueue)
	}
	for _, l := range res.Left {
		fmt.Println("left", l.ID, "on the error queue:", l.Reason)
	}
	back := tr.Broker().Messages("orders")[0]
	fmt.Println("headers after replay:", back.Headers)
	// Output:
	// replayed m1 to orders
	// left m2 on the error queue: no usable SourceQueue header
	// headers after replay: map[]
}

// Messages asked for by id that are not on the error queue are reported,
// and make an error: a replay that finds nothing does not pass unnoticed.
func ExampleReplay_notFound() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	for _, q := range []string{"error", "orders"} {
		_ = tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q}})
	}
	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "error", Message: transport.Message{
		ID: "m1", Headers: transport.Headers{middleware.DefaultHeaderNames.SourceQueue: "orders"},
	}})

	res, err := middleware.Replay(ctx, tr, middleware.ReplayOptions{MessageIDs: []string{"m1", "m9"}})
	fmt.Println("replayed:", len(res.Replayed), "not found:", res.NotFound)
	fmt.Println(errors.Is(err, transport.ErrNotFound))
	// Output:
	// replayed: 1 not found: [m9]
	// true
}

// Stamp sets headers on every message an endpoint sends, leaving those
// already set alone.
func ExampleStamp() {
	stamp, err := middleware.Stamp(middleware.StampOptions{
		Headers: transport.Headers{"App": "shop", "Version": "1.4"},
		Funcs: map[string]middleware.HeaderFunc{
			"Route": func(ctx context.Context, o *transport.Outgoing) (any, bool) { return o.RoutingKey, true },
		},
	})
	if err != nil {
		panic(err)
	}
	send := stamp(func(ctx context.Context, msgs ...transport.Outgoing) error {
		for _, o := range msgs {
			fmt.Println(o.RoutingKey, o.Message.Headers)
		}
		return nil
	})
	_ = send(context.Background(),
		transport.Outgoing{RoutingKey: "orders"},
		transport.Outgoing{RoutingKey: "billing", Message: transport.Message{Headers: transport.Headers{"Version": "2.0"}}},
	)
	// Output:
	// orders map[App:shop Route:orders Version:1.4]
	// billing map[App:shop Route:billing Version:2.0]
}
