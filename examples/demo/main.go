package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
)

// The shop's messages.
type (
	PlaceOrder      struct{ OrderID, Item string }
	OrderAccepted   struct{ OrderID string }
	OrderPlaced     struct{ OrderID, Item string }
	PaymentReminder struct{ OrderID string }
	GetStock        struct{ Item string }
	StockLevel      struct {
		Item  string
		Units int
	}
)

var start = time.Now()

// say prints a line of the story with the time since the demo started.
func say(format string, args ...any) {
	fmt.Printf("%5.2fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func step(title string) {
	time.Sleep(400 * time.Millisecond) // time to read
	fmt.Printf("\n%s\n", title)
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
	fmt.Printf("\nThe whole story took %.1fs.\n", time.Since(start).Seconds())
}

func run(ctx context.Context) error {
	// One broker, as one RabbitMQ; each service has its own connection.
	broker := memory.NewBroker()
	defer broker.Close()
	var transports []*memory.Transport
	defer func() {
		for _, t := range transports {
			t.Close()
		}
	}()
	connect := func(name string) *memory.Transport {
		t := memory.New(memory.Options{Broker: broker, Name: name})
		transports = append(transports, t)
		return t
	}
	seen := make(chan string, 16) // what the handlers did, for the story to wait on

	newService := func(queue string, opts bus.Options) *bus.Bus {
		t := connect(queue)
		backoff := middleware.LinearBackoff(500 * time.Millisecond)
		opts.Retry = middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: backoff}
		b, err := bus.New(t, queue, opts)
		if err != nil {
			panic(err) // invalid options: a bug in this program
		}
		return b
	}

	orders := newService("orders", bus.Options{})
	if err := bus.Handle(orders, func(ctx context.Context, o PlaceOrder) error {
		in, _ := bus.IncomingFrom(ctx)
		say("orders    got %s %s from %s (intent %q)", in.MessageType, o.OrderID, in.OriginatingAddress, in.Intent)
		// Both go out only if this handler succeeds.
		if err := orders.Reply(ctx, OrderAccepted{OrderID: o.OrderID}); err != nil {
			return err
		}
		return orders.Publish(ctx, "orders.placed.eu", OrderPlaced(o))
	}); err != nil {
		return err
	}
	if err := bus.Handle(orders, func(ctx context.Context, r PaymentReminder) error {
		in, _ := bus.IncomingFrom(ctx)
		say("orders    got PaymentReminder %s, %.1fs after it was sent", r.OrderID, time.Since(in.TimeSent).Seconds())
		seen <- "reminder"
		return nil
	}); err != nil {
		return err
	}

	shipping := newService("shipping", bus.Options{Subscriptions: []string{"orders.#"}})
	if err := bus.Handle(shipping, func(ctx context.Context, e OrderPlaced) error {
		say("shipping  [orders.#]    got OrderPlaced %s: packing the %s", e.OrderID, e.Item)
		seen <- "shipping " + e.OrderID
		return nil
	}); err != nil {
		return err
	}

	var gatewayDown atomic.Bool
	billing := newService("billing", bus.Options{
		Subscriptions: []string{"orders.*.eu"},
		OnNotice: func(e bus.Notice) {
			if e.Kind == bus.SentToErrorQueue {
				seen <- "error queue"
			}
		},
	})
	if err := bus.Handle(billing, func(ctx context.Context, e OrderPlaced) error {
		in, _ := bus.IncomingFrom(ctx)
		if gatewayDown.Load() {
			say("billing   [orders.*.eu] FAILED to charge %s, attempt %d: payment gateway down", e.OrderID, in.Retries+1)
			return errors.New("payment gateway down")
		}
		say("billing   [orders.*.eu] got OrderPlaced %s: card charged", e.OrderID)
		seen <- "billing " + e.OrderID
		return nil
	}); err != nil {
		return err
	}

	stock := newService("stock", bus.Options{})
	if err := bus.Handle(stock, func(ctx context.Context, q GetStock) error {
		say("stock     got GetStock %s, replying", q.Item)
		return stock.Reply(ctx, StockLevel{Item: q.Item, Units: 7})
	}); err != nil {
		return err
	}

	shop := newService("shop", bus.Options{})
	if err := bus.Handle(shop, func(ctx context.Context, a OrderAccepted) error {
		in, _ := bus.IncomingFrom(ctx)
		say("shop      got the reply OrderAccepted %s (correlation id …%s)", a.OrderID, in.CorrelationID[len(in.CorrelationID)-12:])
		seen <- "accepted " + a.OrderID
		return nil
	}); err != nil {
		return err
	}

	for _, b := range []*bus.Bus{orders, shipping, billing, stock, shop} {
		if err := b.Start(ctx); err != nil {
			return err
		}
		defer b.Shutdown(context.WithoutCancel(ctx))
	}
	fmt.Println("Five services on one in-memory broker: shop, orders, shipping, billing, stock.")

	wait := func(want ...string) error {
		missing := map[string]bool{}
		for _, w := range want {
			missing[w] = true
		}
		for len(missing) > 0 {
			select {
			case s := <-seen:
				delete(missing, s)
			case <-ctx.Done():
				return fmt.Errorf("still waiting for %v: %w", keys(missing), ctx.Err())
			}
		}
		return nil
	}

	step("1-3. Send, Reply, Publish to two wildcard subscribers")
	say("shop      sends PlaceOrder order-1 to the queue orders")
	if err := shop.Send(ctx, "orders", PlaceOrder{OrderID: "order-1", Item: "teapot"}); err != nil {
		return err
	}
	if err := wait("accepted order-1", "shipping order-1", "billing order-1"); err != nil {
		return err
	}

	step("4. Defer")
	say("shop      defers PaymentReminder order-1 by 2s")
	if err := shop.Defer(ctx, 2*time.Second, "orders", PaymentReminder{OrderID: "order-1"}); err != nil {
		return err
	}
	if err := wait("reminder"); err != nil {
		return err
	}

	step("5. Request and response")
	say("shop      requests GetStock teapot from stock and waits")
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	level, err := bus.Request[StockLevel](rctx, shop, "stock", GetStock{Item: "teapot"})
	rcancel()
	if err != nil {
		return err
	}
	say("shop      got StockLevel: %d %ss", level.Units, level.Item)

	step("6. A failing handler: delayed retries, then the error queue")
	gatewayDown.Store(true)
	say("(the payment gateway goes down)")
	say("shop      sends PlaceOrder order-2")
	if err := shop.Send(ctx, "orders", PlaceOrder{OrderID: "order-2", Item: "kettle"}); err != nil {
		return err
	}
	if err := wait("accepted order-2", "shipping order-2"); err != nil {
		return err
	}
	if err := wait("error queue"); err != nil { // billing's SentToErrorQueue event
		return err
	}
	h := billing.HeaderNames()
	for _, m := range broker.Messages(billing.ErrorQueue()) {
		say("error queue holds %s from %v after %v deliveries: %v", m.Type,
			m.Headers[h.SourceQueue], m.Headers[h.ErrorRetries], m.Headers[h.ErrorDetails])
	}

	step("7. Replay from the error queue")
	gatewayDown.Store(false)
	say("(the payment gateway is back)")
	// An operations tool: a send-only endpoint of its own.
	ops, err := bus.New(connect("ops"), "", bus.Options{})
	if err != nil {
		return err
	}
	defer ops.Shutdown(context.WithoutCancel(ctx))
	res, err := ops.ReplayErrors(ctx, middleware.ReplayOptions{Queue: billing.ErrorQueue()})
	if err != nil {
		return err
	}
	say("replayed %d message(s) to %s", len(res.Replayed), res.Replayed[0].SourceQueue)
	return wait("billing order-2")
}

func keys(m map[string]bool) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return strings.Join(s, ", ")
}
