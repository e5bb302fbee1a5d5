package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// TestPerInstanceQueueRecovers runs a PerInstance endpoint, subscribed on
// the transport's topic exchange and on amq.topic, through a proxy that
// loses its connections. A short loss keeps the queue (x-expires) and the
// events published meanwhile. A queue that expired during the loss (deleted
// here while the connection is frozen) is declared again on reconnection
// with both bindings, the one on amq.topic included.
func TestPerInstanceQueueRecovers(t *testing.T) {
	broker, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newFreezingProxy(t, broker.Host)
	u := *broker
	u.Host = p.addr
	ctx := testCtx(t, 60*time.Second)
	tr, err := amqp.Dial(ctx, u.String(), amqp.Options{
		Heartbeat: time.Second, DialTimeout: time.Second,
		ReconnectDelay: 20 * time.Millisecond, MaxReconnectDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	pub, err := amqp.Dial(ctx, broker.String(), amqp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	var r [4]byte
	_, _ = rand.Read(r[:])
	prefix := "perinstance-" + hex.EncodeToString(r[:]) + "."
	quiet := slog.New(slog.DiscardHandler)
	b, err := bus.New(tr, "cache", bus.Options{PerInstance: true, Logger: quiet, QueuePrefix: prefix, TopicPrefix: prefix,
		Subscriptions: []string{"cache.#"},
		Exchanges:     []bus.Exchange{{Name: "amq.topic", TopicPrefix: prefix, Subscriptions: []string{"legacy.#"}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	if err := bus.Handle(b, func(_ context.Context, e invalidate) error { got <- e.Key; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := bus.Handle(b, func(_ context.Context, e invalidate) error { got <- "legacy " + e.Key; return nil },
		bus.WithMessageType("legacy.invalidate")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q := b.Queue()
	if !strings.HasPrefix(q, prefix+"cache.instance-") {
		t.Fatalf("queue %q, want %scache.instance-…", q, prefix)
	}
	client, err := bus.New(pub, "", bus.Options{Logger: quiet, TopicPrefix: prefix, QueuePrefix: prefix, ErrorQueue: "error"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	defer func() { _ = pub.DeleteQueue(context.Background(), prefix+"error") }()
	publish := func(key string) {
		t.Helper()
		if err := client.Publish(ctx, "cache.invalidate", invalidate{Key: key}); err != nil {
			t.Fatal(err)
		}
		if err := pub.Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, ExchangeName: "amq.topic",
			RoutingKey: prefix + "legacy.invalidate", Message: transport.Message{Body: []byte(`{"Key":"` + key + `"}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	handled := map[string]bool{}
	expect := func(key string) {
		t.Helper()
		seen := map[string]bool{}
		for len(seen) < 2 {
			select {
			case g := <-got:
				if handled[g] {
					continue // at least once: an ack lost with the connection
				}
				handled[g] = true
				if g != key && g != "legacy "+key {
					t.Fatalf("handled %q, want %q from both exchanges", g, key)
				}
				seen[g] = true
			case <-ctx.Done():
				t.Fatalf("handled %v, want %q from both exchanges", seen, key)
			}
		}
	}

	publish("a")
	expect("a")

	p.reset()
	publish("during")
	expect("during")

	p.freeze(true)
	if err := pub.DeleteQueue(ctx, q); err != nil { // as x-expires would
		t.Fatal(err)
	}
	p.reset()
	p.freeze(false)
	// Until the queue is back, events go nowhere: publish until one
	// arrives through each exchange.
	deadline := time.Now().Add(30 * time.Second)
	for seen := map[string]bool{}; len(seen) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("after the queue expired and the connection returned: handled %v, want events through both exchanges", seen)
		}
		publish("after")
		select {
		case g := <-got:
			if g == "after" || g == "legacy after" {
				seen[g] = true
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type invalidate struct{ Key string }
