package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// ChargeCard is the command that fails.
type ChargeCard struct {
	OrderID string
	Card    string
}

func main() { exampleutil.Main("errors", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	backoff := middleware.LinearBackoff(500 * time.Millisecond) // 0.5 s, then 1 s
	failed := make(chan bus.Notice, 2)
	opts := bus.Options{
		ErrorQueue: "payments-error", // this endpoint's own; the default, "error", is shared
		Retry:      middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: backoff},
		OnNotice: func(e bus.Notice) {
			if e.Kind == bus.SentToErrorQueue {
				failed <- e
			}
		},
	}
	b, err := bus.New(ex.Transport, "payments", ex.Options(opts))
	if err != nil {
		return err
	}
	var gatewayUp atomic.Bool
	charged := make(chan string, 1)
	if err := bus.Handle(b, func(ctx context.Context, c ChargeCard) error {
		in, _ := bus.IncomingFrom(ctx)
		switch {
		case c.Card == "":
			ex.Printf("%s: no card: a permanent failure", c.OrderID)
			return bus.Permanent(fmt.Errorf("order %s has no card", c.OrderID))
		case !gatewayUp.Load():
			ex.Printf("%s: attempt after %d retries: gateway down", c.OrderID, in.Retries)
			return errors.New("payment gateway unavailable")
		}
		ex.Printf("%s: charged", c.OrderID)
		charged <- c.OrderID
		return nil
	}); err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Shutdown(context.WithoutCancel(ctx))

	// Stable message ids, to pick the message to replay.
	if err := b.Send(ctx, "payments", ChargeCard{OrderID: "order-1", Card: "4242"}, bus.WithMessageID("charge-order-1")); err != nil {
		return err
	}
	if err := b.Send(ctx, "payments", ChargeCard{OrderID: "order-2"}, bus.WithMessageID("charge-order-2")); err != nil {
		return err
	}

	// Both end in the error queue: wait for the events that say so.
	if _, err := exampleutil.Receive(ctx, failed, 2, "two messages sent to the error queue"); err != nil {
		return err
	}
	if err := show(ctx, ex, b.ErrorQueue(), b.HeaderNames()); err != nil {
		return err
	}

	// show gave both back to the error queue (a nack, asynchronous on
	// RabbitMQ); ReplayErrors pulls until the queue yields nothing, so it
	// finds them all the same.
	ex.Printf("the gateway is back: replaying order-1")
	gatewayUp.Store(true)
	res, err := b.ReplayErrors(ctx, middleware.ReplayOptions{MessageIDs: []string{"charge-order-1"}})
	if err != nil {
		return err
	}
	if len(res.Replayed) != 1 {
		return fmt.Errorf("replay: %+v", res)
	}
	ex.Printf("replayed %s to %s", res.Replayed[0].ID, res.Replayed[0].SourceQueue)
	if _, err := exampleutil.Receive(ctx, charged, 1, "the replayed charge"); err != nil {
		return err
	}
	ex.Printf("order-2 stays in the error queue until its data is fixed")
	return nil
}

// show prints the messages of the error queue and leaves them there: it
// takes each with Get and gives them all back with Nack(requeue).
func show(ctx context.Context, ex *exampleutil.Env, queue string, h middleware.HeaderNames) error {
	var taken []*transport.Delivery
	defer func() {
		for _, d := range taken {
			d.Nack(true)
		}
	}()
	for {
		d, ok, err := ex.Transport.(transport.Getter).Get(ctx, queue)
		if err != nil || !ok {
			return err
		}
		taken = append(taken, d)
		ex.Printf("error queue: %s from %v after %v deliveries: %v",
			d.Body, d.Headers[h.SourceQueue], d.Headers[h.ErrorRetries], d.Headers[h.ErrorDetails])
	}
}
