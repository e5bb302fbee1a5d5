package main

import (
	"context"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Greeting is the payload of PikaBus's example; Reply asks the receiver to
// answer it.
type Greeting struct {
	Hello string `json:"hello"`
	Reply bool   `json:"reply"`
}

func main() { exampleutil.Main("basic", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	b, err := bus.New(ex.Transport, "myQueue", ex.Options(bus.Options{Subscriptions: []string{"myTopic"}}))
	if err != nil {
		return err
	}
	handled := make(chan Greeting, 6)
	if err := bus.Handle(b, func(ctx context.Context, g Greeting) error {
		in, _ := bus.IncomingFrom(ctx)
		ex.Printf("received %s %+v", in.Intent, g)
		handled <- g
		if g.Reply {
			// Dispatched when this handler returns nil, not before.
			return b.Reply(ctx, Greeting{Hello: "back at you", Reply: false})
		}
		return nil
	}); err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Shutdown(context.WithoutCancel(ctx))

	g := Greeting{Hello: "world!", Reply: true}
	if err := b.Send(ctx, "myQueue", g); err != nil {
		return err
	}
	ex.Printf("sent")
	if err := b.Defer(ctx, time.Second, "myQueue", g); err != nil {
		return err
	}
	ex.Printf("deferred by 1s")
	if err := b.Publish(ctx, "myTopic", g); err != nil {
		return err
	}
	ex.Printf("published to myTopic")

	// Three greetings and their three replies.
	_, err = exampleutil.Receive(ctx, handled, 6, "the greetings and replies")
	return err
}
