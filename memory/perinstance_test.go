package memory_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestPerInstanceQueueOutage checks a PerInstance endpoint's queue across
// losses of its transport's connection, as RabbitMQ's x-expires treats the
// RabbitMQ transport's: a short outage keeps the queue, its bindings (on
// the transport's topic exchange and on amq.topic) and the events published
// meanwhile; one longer than memory.TemporaryExpiry deletes it, and the
// reconnection declares it again, empty, with its bindings. Closing the
// endpoint deletes it.
func TestPerInstanceQueueOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		br := memory.NewBroker()
		defer br.Close()
		tr := memory.New(memory.Options{Broker: br})
		defer tr.Close()
		pub := memory.New(memory.Options{Broker: br})
		defer pub.Close()
		quiet := slog.New(slog.DiscardHandler)

		b, err := bus.New(tr, "cache", bus.Options{PerInstance: true, Logger: quiet,
			Subscriptions: []string{"cache.#"},
			Exchanges:     []bus.Exchange{{Name: "amq.topic", Subscriptions: []string{"legacy.#"}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 16)
		if err := bus.Handle(b, func(_ context.Context, e Invalidate) error { got <- e.Key; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := bus.Handle(b, func(_ context.Context, e Invalidate) error { got <- "legacy " + e.Key; return nil },
			bus.WithMessageType("legacy.invalidate")); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		q := b.Queue()
		if !strings.HasPrefix(q, "cache.instance-") {
			t.Fatalf("queue %q, want cache.instance-…", q)
		}
		client, err := bus.New(pub, "", bus.Options{Logger: quiet, Exchanges: []bus.Exchange{{Name: "amq.topic"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		publish := func(key string) {
			t.Helper()
			if err := client.Publish(ctx, "cache.invalidate", Invalidate{Key: key}); err != nil {
				t.Fatal(err)
			}
			if err := pub.Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, ExchangeName: "amq.topic",
				RoutingKey: "legacy.invalidate", Message: transport.Message{Body: []byte(`{"Key":"` + key + `"}`)}}); err != nil {
				t.Fatal(err)
			}
		}
		expect := func(want ...string) {
			t.Helper()
			synctest.Wait()
			for _, w := range want {
				select {
				case g := <-got:
					if g != w && g != "legacy "+w {
						t.Errorf("handled %q, want %q", g, w)
					}
				default:
					t.Fatalf("nothing handled, want %q", w)
				}
			}
			if len(got) > 0 {
				t.Errorf("handled %q too", <-got)
			}
		}

		publish("a")
		expect("a", "a")

		tr.Disconnect()
		time.Sleep(memory.TemporaryExpiry / 2)
		publish("during")
		tr.Reconnect()
		expect("during", "during")

		tr.Disconnect()
		time.Sleep(memory.TemporaryExpiry + time.Second)
		if _, err := pub.Inspect(ctx, q); err == nil {
			t.Errorf("the queue of an instance disconnected for longer than TemporaryExpiry still exists")
		}
		publish("lost") // nobody hears it: the instance is away
		tr.Reconnect()
		synctest.Wait()
		publish("after")
		expect("after", "after")

		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Inspect(ctx, q); !errors.Is(err, transport.ErrNotFound) {
			t.Errorf("Inspect of the queue of a closed PerInstance endpoint = %v, want ErrNotFound", err)
		}
	})
}

// Invalidate is the event of TestPerInstanceQueueOutage.
type Invalidate struct{ Key string }
