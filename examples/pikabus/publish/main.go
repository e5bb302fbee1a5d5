package main

import (
	"context"
	"errors"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Greeting is the event.
type Greeting struct {
	Hello string `json:"hello"`
}

func main() { exampleutil.Main("publish", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	// The subscriber, as basic_example.py is in PikaBus's.
	subscriber, err := bus.New(ex.Transport, "myQueue", ex.Options(bus.Options{Subscriptions: []string{"myTopic"}}))
	if err != nil {
		return err
	}
	got := make(chan Greeting, 1)
	if err := bus.Handle(subscriber, func(ctx context.Context, g Greeting) error {
		ex.Printf("subscriber received %+v", g)
		got <- g
		return nil
	}); err != nil {
		return err
	}
	if err := subscriber.Start(ctx); err != nil {
		return err
	}
	defer subscriber.Shutdown(context.WithoutCancel(ctx))

	// The publisher has no queue.
	publisher, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	if err := publisher.Publish(ctx, "myTopic", Greeting{Hello: "world!"}); err != nil {
		return err
	}
	ex.Printf("payload published")
	if _, err := exampleutil.Receive(ctx, got, 1, "the event"); err != nil {
		return err
	}

	// Nobody subscribed to "otherTopic": dropped, or an error if asked.
	if err := publisher.Publish(ctx, "otherTopic", Greeting{Hello: "anyone?"}); err != nil {
		return err
	}
	ex.Printf("published to otherTopic, which nobody subscribed to: dropped")
	err = publisher.Publish(ctx, "otherTopic", Greeting{Hello: "anyone?"}, bus.WithRequireSubscriber(true))
	if !errors.Is(err, bus.ErrUnroutable) {
		return errors.New("publishing to nobody with a subscriber required did not fail")
	}
	ex.Printf("published to otherTopic with a subscriber required: ErrUnroutable")
	return nil
}
