package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// The messages of the examples.
type (
	// ShipOrder is a command.
	ShipOrder struct {
		OrderID string
		Express bool
	}
	// OrderShipped is an event.
	OrderShipped struct{ OrderID string }
	// GetStock is a request; StockLevel its reply.
	GetStock   struct{ SKU string }
	StockLevel struct {
		SKU   string
		Units int
	}
)

// An endpoint that handles a command and publishes an event, which a second
// endpoint subscribed to.
func Example() {
	ctx := context.Background()
	t := memory.New(memory.Options{}) // RabbitMQ in production: amqp.Dial(...)
	defer t.Close()

	shipping, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(shipping, func(ctx context.Context, cmd ShipOrder) error {
		fmt.Println("shipping", cmd.OrderID)
		// Dispatched only if this handler succeeds, before the command is acked.
		return shipping.Publish(ctx, "orders.shipped", OrderShipped{OrderID: cmd.OrderID})
	}); err != nil {
		log.Fatal(err)
	}
	if err := shipping.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer shipping.Shutdown(ctx)

	billing, err := bus.New(t, "billing", bus.Options{Subscriptions: []string{"orders.*"}})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	if err := bus.Handle(billing, func(ctx context.Context, ev OrderShipped) error {
		fmt.Println("billing", ev.OrderID)
		close(done)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := billing.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer billing.Shutdown(ctx)

	if err := billing.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
		fmt.Println(err)
	}
	<-done
	// Output:
	// shipping o-1
	// billing o-1
}

// Send puts a command in a queue. The headers are PikaBus's.
func ExampleBus_Send() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan bus.Incoming, 1)
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		in, _ := bus.IncomingFrom(ctx)
		handled <- in
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	err = b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1", Express: true})
	fmt.Println("sent:", err)
	in := <-handled
	fmt.Println(in.MessageType, string(in.Message.Body))
	fmt.Println("intent:", in.Intent, "reply to:", in.ReplyTo, "content type:", in.Message.ContentType)

	// A command nobody consumes is an error, not a silent loss.
	err = b.Send(ctx, "no-such-queue", ShipOrder{})
	fmt.Println(errors.Is(err, bus.ErrUnroutable))
	// Output:
	// sent: <nil>
	// ShipOrder {"OrderID":"o-1","Express":true}
	// intent: command reply to: shipping content type: application/json
	// true
}

// Publish sends an event to every queue subscribed under a matching
// pattern: "*" matches one word, "#" any number.
func ExampleBus_Publish() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	var mu sync.Mutex
	var got []string
	for _, sub := range []struct{ queue, pattern string }{{"audit", "orders.#"}, {"eu-billing", "orders.*.eu"}} {
		b, err := bus.New(t, sub.queue, bus.Options{Subscriptions: []string{sub.pattern}})
		if err != nil {
			log.Fatal(err)
		}
		if err := bus.Handle(b, func(ctx context.Context, ev OrderShipped) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, sub.queue+" got "+ev.OrderID)
			return nil
		}); err != nil {
			log.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			log.Fatal(err)
		}
		defer b.Shutdown(ctx)
	}
	publisher, err := bus.New(t, "", bus.Options{}) // send-only
	if err != nil {
		log.Fatal(err)
	}
	if err := publisher.Publish(ctx, "orders.shipped.eu", OrderShipped{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	if err := publisher.Publish(ctx, "orders.shipped.us", OrderShipped{OrderID: "o-2"}); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	mu.Lock()
	slices.Sort(got)
	fmt.Println(strings.Join(got, "\n"))
	mu.Unlock()

	// An event nobody subscribed to is dropped, unless a subscriber is required.
	fmt.Println(publisher.Publish(ctx, "stock.low", OrderShipped{}))
	err = publisher.Publish(ctx, "stock.low", OrderShipped{}, bus.WithRequireSubscriber(true))
	fmt.Println(errors.Is(err, bus.ErrUnroutable))
	// Output:
	// audit got o-1
	// audit got o-2
	// eu-billing got o-1
	// <nil>
	// true
}

// Subscribe and Unsubscribe change an endpoint's subscriptions at run time.
func ExampleBus_Subscribe() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "audit", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, ev OrderShipped) error {
		fmt.Println("got", ev.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Subscribe(ctx, "orders.#"); err != nil {
		log.Fatal(err)
	}
	if err := b.Publish(ctx, "orders.shipped", OrderShipped{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	if err := b.Unsubscribe(ctx, "orders.#"); err != nil {
		log.Fatal(err)
	}
	if err := b.Publish(ctx, "orders.shipped", OrderShipped{OrderID: "o-2"}); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	fmt.Println(b.Subscriptions())
	// Output:
	// got o-1
	// []
}

// Defer delivers a command later, never earlier. WithDeliverAt does the
// same for a point in time.
func ExampleBus_Defer() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "reminders", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan time.Time, 2)
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		got <- time.Now()
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	start := time.Now()
	if err := b.Defer(ctx, 50*time.Millisecond, "reminders", ShipOrder{OrderID: "later"}); err != nil {
		log.Fatal(err)
	}
	if err := b.Send(ctx, "reminders", ShipOrder{OrderID: "at"}, bus.WithDeliverAt(start.Add(80*time.Millisecond))); err != nil {
		log.Fatal(err)
	}
	fmt.Println((<-got).Sub(start) >= 50*time.Millisecond)
	fmt.Println((<-got).Sub(start) >= 80*time.Millisecond)
	// Output:
	// true
	// true
}

// Reply answers the sender of the message being handled, with its
// correlation id.
func ExampleBus_Reply() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	stock, err := bus.New(t, "stock", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(stock, func(ctx context.Context, q GetStock) error {
		return stock.Reply(ctx, StockLevel{SKU: q.SKU, Units: 7})
	}); err != nil {
		log.Fatal(err)
	}
	if err := stock.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer stock.Shutdown(ctx)

	shop, err := bus.New(t, "shop", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	if err := bus.Handle(shop, func(ctx context.Context, r StockLevel) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(r.SKU, r.Units, "from", in.OriginatingAddress)
		close(done)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := shop.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer shop.Shutdown(ctx)
	if err := shop.Send(ctx, "stock", GetStock{SKU: "sku-1"}); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// sku-1 7 from stock
}

// Request sends and waits for the correlated reply, bounded by its context.
func ExampleRequest() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	stock, err := bus.New(t, "stock", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(stock, func(ctx context.Context, q GetStock) error {
		if q.SKU == "slow" {
			return nil // never replies
		}
		return stock.Reply(ctx, StockLevel{SKU: q.SKU, Units: 3})
	}); err != nil {
		log.Fatal(err)
	}
	if err := stock.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer stock.Shutdown(ctx)

	client, err := bus.New(t, "", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Shutdown(ctx)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	level, err := bus.Request[StockLevel](rctx, client, "stock", GetStock{SKU: "sku-1"})
	fmt.Println(level, err)

	rctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = bus.Request[StockLevel](rctx, client, "stock", GetStock{SKU: "slow"})
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// {sku-1 3} <nil>
	// true
}

// A transaction batches what is sent within it: all of it goes when the
// function returns nil, none of it when it fails.
func ExampleBus_Transaction() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		fmt.Println("shipping", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	err = b.Transaction(ctx, func(ctx context.Context) error {
		if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
			return err
		}
		if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-2"}); err != nil {
			return err
		}
		return nil
	})
	t.Broker().WaitIdle(ctx)
	fmt.Println("committed:", err)

	err = b.Transaction(ctx, func(ctx context.Context) error {
		if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-3"}); err != nil {
			return err
		}
		return errors.New("payment declined")
	})
	fmt.Println("rolled back:", err)
	t.Broker().WaitIdle(ctx)
	// Output:
	// shipping o-1
	// shipping o-2
	// committed: <nil>
	// rolled back: payment declined
}

// Handle registers typed handlers: the body is decoded into the handler's
// parameter type, chosen by the MessageType header.
func ExampleHandle() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Two handlers of one type both run; both must succeed.
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		fmt.Println("pack", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		fmt.Println("label", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	// A message type named by a Python peer.
	if err := bus.Handle(b, func(ctx context.Context, cmd map[string]any) error {
		fmt.Println("legacy", cmd["order_id"])
		return nil
	}, bus.WithMessageType("Shipping.ShipOrderV1")); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	if err := b.Send(ctx, "shipping", map[string]any{"order_id": "o-2"}, bus.WithMessageType("Shipping.ShipOrderV1")); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	name, _ := bus.TypeName(ShipOrder{})
	fmt.Println(name)
	// Output:
	// pack o-1
	// label o-1
	// legacy o-2
	// ShipOrder
}

// CancelOrder names its message type itself.
type CancelOrder struct{ OrderID string }

// MessageType implements bus.MessageTyper.
func (CancelOrder) MessageType() string { return "Sales.CancelOrder" }

func ExampleMessageTyper() {
	name, _ := bus.TypeName(CancelOrder{})
	fmt.Println(name)
	// Output: Sales.CancelOrder
}

// A raw handler sees the wire message: headers, properties, body.
func ExampleBus_HandleRaw() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "audit", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.HandleRaw("ShipOrder", func(ctx context.Context, m *transport.Message) error {
		fmt.Println(m.Type, m.Headers["PikaBus.Intent"], m.Headers["tenant"], string(m.Body))
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)
	if err := b.Send(ctx, "audit", ShipOrder{OrderID: "o-1"}, bus.WithHeaders(transport.Headers{"tenant": "acme"})); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	// Output:
	// ShipOrder command acme {"OrderID":"o-1","Express":false}
}

// A fallback handler takes the messages no other handler takes, whatever
// their type, and those that carry none: what a PikaBus handler does.
func ExampleBus_HandleFallback() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "audit", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		fmt.Println("ShipOrder handler:", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.HandleFallback(func(ctx context.Context, m *transport.Message) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Printf("fallback: type %q, body %s\n", in.MessageType, m.Body)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Send(ctx, "audit", ShipOrder{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	if err := b.Send(ctx, "audit", OrderShipped{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	// A message without a type, as a PikaBus service sends it by default.
	t.Dispatch(ctx, transport.Outgoing{RoutingKey: "audit", Mandatory: true, Message: transport.Message{
		ContentType: "application/json", Body: []byte(`{"order_id": "o-1"}`),
	}})
	t.Broker().WaitIdle(ctx)
	// Output:
	// ShipOrder handler: o-1
	// fallback: type "OrderShipped", body {"OrderID":"o-1"}
	// fallback: type "", body {"order_id": "o-1"}
}

// A Python PikaBus service sends no message type unless told one. An
// endpoint that receives one kind of message from it names that kind.
func ExampleOptions_defaultMessageType() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	type PlaceOrder struct {
		OrderID string `json:"order_id"`
	}
	b, err := bus.New(t, "orders", bus.Options{DefaultMessageType: "PlaceOrder"})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, o PlaceOrder) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println("placing", o.OrderID, "as", in.MessageType, "reply to", in.ReplyTo)
		return nil
	}, bus.WithMessageType("PlaceOrder")); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	// What `await bus.Send({'order_id': '42'}, queue='orders')` publishes
	// from a PikaBus service listening on "pyservice" (ids shortened).
	t.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
		ID: "6a3c1e2e", ContentType: "application/json", ContentEncoding: "utf-8", ReplyTo: "pyservice",
		Headers: transport.Headers{
			"PikaBus.MessageId": "6a3c1e2e", "PikaBus.CorrelationId": "6a3c1f46",
			"PikaBus.TimeSent":       "2026-08-07T16:32:19.123456+00:00",
			"PikaBus.ReplyToAddress": "pyservice", "PikaBus.OriginatingAddress": "pyservice",
			"PikaBus.Intent": "command", "PikaBus.ContentType": "application/json", "PikaBus.ContentEncoding": "utf-8",
		},
		Body: []byte(`{"order_id": "42"}`),
	}})
	t.Broker().WaitIdle(ctx)
	// Output:
	// placing 42 as PlaceOrder reply to pyservice
}

// ReplayErrors sends messages from the error queue back to the queues they
// failed in. An operations tool can be a send-only Bus with the services'
// prefixes.
func ExampleBus_ReplayErrors() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	opts := bus.Options{QueuePrefix: "staging."}
	fixed := false
	shipping, err := bus.New(t, "shipping", opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(shipping, func(ctx context.Context, cmd ShipOrder) error {
		if !fixed {
			return bus.Permanent(fmt.Errorf("no address for %s", cmd.OrderID))
		}
		fmt.Println("shipped", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := shipping.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer shipping.Shutdown(ctx)
	if err := shipping.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}, bus.WithMessageID("ship-o-1")); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)

	fixed = true
	ops, err := bus.New(t, "", opts)
	if err != nil {
		log.Fatal(err)
	}
	res, err := ops.ReplayErrors(ctx, middleware.ReplayOptions{MessageIDs: []string{"ship-o-1", "ship-o-2"}})
	t.Broker().WaitIdle(ctx)
	for _, r := range res.Replayed {
		fmt.Println("replayed", r.ID, "to", r.SourceQueue)
	}
	fmt.Println("not found:", res.NotFound, errors.Is(err, bus.ErrNotFound))
	// Output:
	// shipped o-1
	// replayed ship-o-1 to staging.shipping
	// not found: [ship-o-2] true
}

// A message that fails for good, or that no handler takes, goes to the
// error queue with the reason; once the bug is fixed, Replay sends it back.
func Example_errorQueue() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	fixed := false
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		if !fixed {
			// Permanent: no retries. Other errors are retried 5 times first.
			return bus.Permanent(fmt.Errorf("no address for %s", cmd.OrderID))
		}
		fmt.Println("shipped", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	if err := b.Send(ctx, "shipping", OrderShipped{OrderID: "o-1"}); err != nil { // no handler takes it
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	for _, m := range t.Broker().Messages(b.ErrorQueue()) {
		fmt.Println(m.Headers["PikaBus.SourceQueue"], m.Headers["PikaBus.ErrorRetries"], m.Headers["PikaBus.ErrorDetails"])
	}

	fixed = true
	res, _ := b.ReplayErrors(ctx, middleware.ReplayOptions{MessageIDs: []string{
		t.Broker().Messages(b.ErrorQueue())[0].ID,
	}})
	t.Broker().WaitIdle(ctx)
	fmt.Println("replayed", len(res.Replayed))
	// Output:
	// shipping 1 no address for o-1
	// shipping 1 no handler for message: permanent failure: endpoint "shipping" has no handler for message type "OrderShipped"; it handles ["ShipOrder"]
	// shipped o-1
	// replayed 1
}

// Events report the endpoint's state; Health and Pause serve operations.
func ExampleOptions_onEvent() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	events := make(chan bus.Notice, 10)
	b, err := bus.New(t, "shipping", bus.Options{OnNotice: func(e bus.Notice) { events <- e }})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", b.Health(ctx))
	b.Pause(ctx)
	b.Resume(ctx)
	b.Shutdown(ctx)
	fmt.Println("health:", errors.Is(b.Health(ctx), bus.ErrClosed))
	close(events)
	for e := range events {
		fmt.Println(e.Kind)
	}
	// Output:
	// health: <nil>
	// health: true
	// started
	// paused
	// resumed
	// stopping
	// stopped
}

// Events report retries and messages sent to the error queue, so that a
// program or a test can wait for them, count them or alert on them.
func ExampleOptions_errorEvents() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	failed := make(chan bus.Notice, 1)
	backoff := middleware.LinearBackoff(10 * time.Millisecond)
	b, _ := bus.New(t, "payments", bus.Options{
		Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: backoff},
		OnNotice: func(e bus.Notice) {
			switch e.Kind {
			case bus.Retried:
				fmt.Printf("%s: retry %d in %v: %v\n", e.MessageID, e.Retries, e.Delay, e.Err)
			case bus.SentToErrorQueue:
				failed <- e
			}
		},
	})
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		return errors.New("gateway down")
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	if err := b.Send(ctx, "payments", ShipOrder{OrderID: "o-1"}, bus.WithMessageID("charge-o-1")); err != nil {
		log.Fatal(err)
	}
	e := <-failed
	fmt.Printf("%s (%s) sent to the error queue after %d retries: %v\n", e.MessageID, e.MessageType, e.Retries, e.Err)
	// Output:
	// charge-o-1: retry 1 in 10ms: gateway down
	// charge-o-1: retry 2 in 20ms: gateway down
	// charge-o-1 (ShipOrder) sent to the error queue after 2 retries: gateway down (gave up after 2 delayed retries)
}

// Prefixes let environments or tenants share a broker.
func ExampleOptions_prefixes() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, _ := bus.New(t, "shipping", bus.Options{
		QueuePrefix:   "staging.",
		TopicPrefix:   "staging.",
		Subscriptions: []string{"orders.*"},
	})
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)
	fmt.Println(b.Queue(), b.ErrorQueue(), b.Subscriptions())
	// Output: staging.shipping staging.error [staging.orders.*]
}

// textCodec is a codec of its own: it plugs in without changing package bus.
type textCodec struct{}

func (textCodec) ContentType() string { return "text/plain" }

func (textCodec) Encode(v any, m *transport.Message) error {
	m.Body, m.ContentType, m.ContentEncoding = []byte(fmt.Sprint(v)), "text/plain", "utf-8"
	return nil
}

func (textCodec) Decode(m *transport.Message, v any) error {
	p, ok := v.(*Note)
	if !ok {
		return fmt.Errorf("text decodes into *Note, not %T", v)
	}
	*p = Note(m.Body)
	return nil
}

// Note is a plain text message.
type Note string

func ExampleCodec() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	// The receiver reads JSON and text; the sender writes text.
	receiver, err := bus.New(t, "notes", bus.Options{Codecs: []bus.Codec{textCodec{}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Handle(receiver, func(ctx context.Context, n Note) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(n, "as", in.Message.ContentType)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := receiver.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer receiver.Shutdown(ctx)
	sender, err := bus.New(t, "", bus.Options{Codec: textCodec{}})
	if err != nil {
		log.Fatal(err)
	}
	if err := sender.Send(ctx, "notes", Note("hello")); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	// Output: hello as text/plain
}

// Per-call options set headers, ids and the message type.
func ExampleWithHeaders() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.HandleRaw("Shipping.Ship", func(ctx context.Context, m *transport.Message) error {
		in, _ := bus.IncomingFrom(ctx)
		fmt.Println(in.MessageID, in.CorrelationID, m.Headers["tenant"])
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)
	if err := b.Send(ctx, "shipping", ShipOrder{},
		bus.WithMessageType("Shipping.Ship"),
		bus.WithMessageID("order-o-1-ship"), // a stable id lets receivers spot duplicates
		bus.WithCorrelationID("checkout-42"),
		bus.WithHeaders(transport.Headers{"tenant": "acme"})); err != nil {
		log.Fatal(err)
	}
	t.Broker().WaitIdle(ctx)
	// Output: order-o-1-ship checkout-42 acme
}

// Shutdown stops consuming and waits for the handlers under way, which
// finish and dispatch what they sent; afterwards calls fail with ErrClosed.
func ExampleBus_Shutdown() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		close(started)
		<-release
		fmt.Println("handler finished", cmd.OrderID)
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	<-started

	done := make(chan error)
	go func() { done <- b.Shutdown(ctx) }()
	close(release)
	fmt.Println("shutdown:", <-done)
	fmt.Println(errors.Is(b.Send(ctx, "shipping", ShipOrder{}), bus.ErrClosed))
	// Output:
	// handler finished o-1
	// shutdown: <nil>
	// true
}

// Every message gets a new id. To know the id of a message you send, say
// to find it in a log or on the error queue later, choose it.
func ExampleNewMessageID() {
	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "shipping", bus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan string, 1)
	if err := bus.Handle(b, func(ctx context.Context, cmd ShipOrder) error {
		in, _ := bus.IncomingFrom(ctx)
		handled <- in.MessageID
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	id := bus.NewMessageID()
	if err := b.Send(ctx, "shipping", ShipOrder{OrderID: "o-1"}, bus.WithMessageID(id)); err != nil {
		fmt.Println(err)
	}
	fmt.Println("handled the message sent:", <-handled == id)
	fmt.Println("id length:", len(id), "version:", id[14:15])
	// Output:
	// handled the message sent: true
	// id length: 36 version: 7
}
