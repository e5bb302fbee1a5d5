package watermillbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/watermillbus"
)

// A bus runs over Watermill's GoChannel, within its limits: GoChannel is
// not a queue (a message published while nobody subscribes to its topic
// is dropped, and every subscription gets every message), so endpoints
// start before anything is sent to them, with one consumer each. The
// conformance suites, which send before consuming, do not run on it.
func TestBusGoChannel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	tr, err := watermillbus.NewTransport(watermillbus.TransportOptions{Publisher: ch, Subscriber: ch, CloseBackend: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	type Ping struct{ N int }
	type Pong struct{ N int }
	server, err := bus.New(tr, "server", bus.Options{Retry: middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.NoRetries}, Subscriptions: []string{"pings.#"}})
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan int, 1)
	if err := bus.Handle(server, func(ctx context.Context, p Ping) error {
		if p.N < 0 {
			published <- p.N
			return nil
		}
		return server.Reply(ctx, Pong{N: p.N + 1})
	}); err != nil {
		t.Fatal(err)
	}
	client, err := bus.New(tr, "client", bus.Options{Retry: middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.NoRetries}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*bus.Bus{server, client} {
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer b.Close()
	}
	pong, err := bus.Request[Pong](ctx, client, "server", Ping{N: 1})
	if err != nil || pong.N != 2 {
		t.Fatalf("Request = %+v, %v; want N 2", pong, err)
	}
	if err := client.Publish(ctx, "pings.x.y", Ping{N: -1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-published:
	case <-ctx.Done():
		t.Fatal("the event published under pings.x.y did not reach the subscriber of pings.#")
	}
}
