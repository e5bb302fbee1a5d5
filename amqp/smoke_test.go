package amqp_test

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

func TestSmoke(t *testing.T) {
	url := brokertest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	tr, err := amqp.Dial(ctx, []string{url}, amqp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("dial", time.Since(start))
	defer tr.Close()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "smoke"}, Topics: []string{"a.#"}}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *transport.Delivery, 10)
	c, err := tr.Consume(ctx, "smoke", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "smoke", Mandatory: true, Message: transport.Message{ID: "1", Headers: transport.Headers{"n": 1 << 40}}},
		transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a.b", Mandatory: true, Message: transport.Message{ID: "2"}},
		transport.Outgoing{RoutingKey: "nope", Mandatory: true, Message: transport.Message{ID: "3"}},
		transport.Outgoing{RoutingKey: "smoke", NotBefore: time.Now().Add(1500 * time.Millisecond), Mandatory: true, Message: transport.Message{ID: "4"}},
	)
	t.Log("dispatch:", err)
	for range 3 {
		select {
		case d := <-got:
			t.Logf("%s %v %q %#v", d.ID, d.Exchange, d.RoutingKey, d.Headers)
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
}
