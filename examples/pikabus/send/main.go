package main

import (
	"context"
	"errors"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Greeting is the command.
type Greeting struct {
	Hello string `json:"hello"`
}

func main() { exampleutil.Main("send", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	// The receiving endpoint: starting it declares its queue and binds it,
	// which is what makes it addressable.
	receiver, err := bus.New(ex.Transport, "myQueue", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	got := make(chan Greeting, 2)
	if err := bus.Handle(receiver, func(ctx context.Context, g Greeting) error {
		in, _ := bus.IncomingFrom(ctx)
		ex.Printf("received %q, %v after it was sent", g.Hello, time.Since(in.TimeSent).Round(100*time.Millisecond))
		got <- g
		return nil
	}); err != nil {
		return err
	}
	if err := receiver.Start(ctx); err != nil {
		return err
	}
	defer receiver.Shutdown(context.WithoutCancel(ctx))

	sender, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	if err := sender.Send(ctx, "myQueue", Greeting{Hello: "now"}); err != nil {
		return err
	}
	ex.Printf("payload sent")
	if err := sender.Defer(ctx, 2*time.Second, "myQueue", Greeting{Hello: "2 seconds later"}); err != nil {
		return err
	}
	ex.Printf("payload deferred 2 seconds")

	err = sender.Send(ctx, "noSuchQueue", Greeting{Hello: "lost?"})
	if !errors.Is(err, bus.ErrUnroutable) {
		return errors.New("a send to a missing queue did not fail")
	}
	ex.Printf("send to noSuchQueue: ErrUnroutable, nothing lost")

	_, err = exampleutil.Receive(ctx, got, 2, "both messages")
	return err
}
