package main

import (
	"context"
	"errors"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
	"github.com/busline/busline/transport"
)

// Note is the message.
type Note struct{ Text string }

func main() { exampleutil.Main("transaction", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	b, err := bus.New(ex.Transport, "myQueue", ex.Options(bus.Options{Subscriptions: []string{"myTopic"}}))
	if err != nil {
		return err
	}
	got := make(chan string, 4)
	if err := bus.Handle(b, func(ctx context.Context, n Note) error {
		ex.Printf("received %q", n.Text)
		got <- n.Text
		return nil
	}); err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Shutdown(context.WithoutCancel(ctx))

	// Inspect the queue while the transaction is open (an optional capability
	// of the transport, which both the memory and the RabbitMQ one have).
	inspector := ex.Transport.(transport.Inspector)
	err = b.Transaction(ctx, func(ctx context.Context) error {
		if err := b.Send(ctx, "myQueue", Note{"sent"}); err != nil {
			return err
		}
		if err := b.Defer(ctx, time.Second, "myQueue", Note{"deferred 1s"}); err != nil {
			return err
		}
		if err := b.Publish(ctx, "myTopic", Note{"published"}); err != nil {
			return err
		}
		info, err := inspector.Inspect(ctx, b.Queue())
		if err != nil {
			return err
		}
		ex.Printf("inside the transaction: %d messages in the queue, nothing sent yet", info.Messages)
		return nil
	})
	if err != nil {
		return err
	}
	ex.Printf("committed")
	if _, err := exampleutil.Receive(ctx, got, 3, "the committed messages"); err != nil {
		return err
	}

	err = b.Transaction(ctx, func(ctx context.Context) error {
		if err := b.Send(ctx, "myQueue", Note{"never sent"}); err != nil {
			return err
		}
		return errors.New("payment declined")
	})
	ex.Printf("rolled back: %v", err)
	// Queues are FIFO: had the rolled-back message been sent, it would
	// arrive before this one.
	if err := b.Send(ctx, "myQueue", Note{"after the rollback"}); err != nil {
		return err
	}
	texts, err := exampleutil.Receive(ctx, got, 1, "the message after the rollback")
	if err != nil {
		return err
	}
	if texts[0] != "after the rollback" {
		return errors.New("the rolled-back message was sent")
	}
	return nil
}
