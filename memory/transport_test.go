package memory_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

func TestSendConsumeAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "orders")
		got := newCollector()
		consume(t, tr, "orders", transport.ConsumeOptions{Prefetch: 10}, got.handle)
		send(t, tr, "orders", "1", "2", "3")
		ds := got.drain()
		if ids(ds...) != "1 2 3 " {
			t.Fatalf("delivered %q", ids(ds...))
		}
		for _, d := range ds {
			if d.Queue != "orders" || d.Exchange != transport.Direct || d.RoutingKey != "orders" || string(d.Body) != "body "+d.ID {
				t.Fatalf("delivery %+v", d)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if n := tr.Broker().Depth("orders"); n != 0 {
			t.Fatalf("depth %d after acks", n)
		}
	})
}

func TestRoundRobin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		a, b := newCollector(), newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 100}, a.handle)
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 100}, b.handle)
		send(t, tr, "q", "1", "2", "3", "4", "5", "6")
		if got := ids(a.drain()...); got != "1 3 5 " {
			t.Errorf("first consumer got %q", got)
		}
		if got := ids(b.drain()...); got != "2 4 6 " {
			t.Errorf("second consumer got %q", got)
		}
	})
}

// TestRoundRobinSkipsFullConsumers checks that a consumer whose prefetch
// window is full is passed over, and gets its turn again once it has room.
func TestRoundRobinSkipsFullConsumers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		a, b := newCollector(), newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 1}, a.handle)
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 10}, b.handle)
		send(t, tr, "q", "1", "2", "3", "4")
		held := a.drain()
		if got := ids(held...); got != "1 " {
			t.Fatalf("full consumer got %q", got)
		}
		if got := ids(b.drain()...); got != "2 3 4 " {
			t.Fatalf("other consumer got %q", got)
		}
		must(t, held[0].Ack())
		send(t, tr, "q", "5", "6", "7")
		if got := ids(a.drain()...); got != "5 " {
			t.Fatalf("after its ack the first consumer got %q", got)
		}
		if got := ids(b.drain()...); got != "6 7 " {
			t.Fatalf("then the other got %q", got)
		}
	})
}

func TestPrefetchBoundsUnsettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		got := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 2}, got.handle)
		send(t, tr, "q", "1", "2", "3", "4")
		ds := got.drain()
		if ids(ds...) != "1 2 " {
			t.Fatalf("delivered %q with prefetch 2", ids(ds...))
		}
		info, err := tr.Inspect(context.Background(), "q")
		if err != nil || info.Messages != 2 || info.Consumers != 1 {
			t.Fatalf("inspect %+v %v", info, err)
		}
		if err := ds[1].Ack(); err != nil {
			t.Fatal(err)
		}
		if got := ids(got.drain()...); got != "3 " {
			t.Fatalf("after one ack delivered %q", got)
		}
	})
}

// TestNackRequeuePosition checks where a nacked message goes back, as
// RabbitMQ 3.10.8 does it: to its original position in a classic queue, to
// the back (in the order of the nacks) in a quorum queue.
func TestNackRequeuePosition(t *testing.T) {
	for _, tc := range []struct {
		typ            transport.QueueType
		held, redelivd string
	}{
		{transport.Classic, "1 2 4 5 ", "1* 2* 4 5 "},
		{transport.Quorum, "4 5 2 1 ", "4 5 2* 1* "},
	} {
		t.Run(string(tc.typ), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTransport(t, memory.Options{})
				must(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "q", Type: tc.typ}}))
				send(t, tr, "q", "1", "2", "3", "4", "5")
				var ds []*transport.Delivery
				for range 3 {
					d, ok, err := tr.Get(context.Background(), "q")
					if err != nil || !ok {
						t.Fatalf("get: %v %v", ok, err)
					}
					ds = append(ds, d)
				}
				must(t, ds[1].Nack(true))
				must(t, ds[0].Nack(true))
				must(t, ds[2].Nack(false))
				mustIs(t, ds[2].Ack(), transport.ErrSettled)
				if got := msgIDs(tr.Broker().Messages("q")); got != tc.held {
					t.Fatalf("queue holds %q, want %q", got, tc.held)
				}
				got := newCollector()
				consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 10}, got.handle)
				if got := ids(got.drain()...); got != tc.redelivd {
					t.Fatalf("delivered %q, want %q", got, tc.redelivd)
				}
			})
		})
	}
}

// TestCloseRequeuesUnsettled checks that the deliveries a consumer leaves
// go back to their original positions, in a quorum queue too (as on
// RabbitMQ 3.10.8).
func TestCloseRequeuesUnsettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		got := newCollector()
		c := consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 3}, got.handle)
		send(t, tr, "q", "1", "2", "3", "4")
		ds := got.drain()
		if err := ds[1].Ack(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if err := c.Err(); err != nil {
			t.Fatalf("Err after Close: %v", err)
		}
		mustIs(t, ds[0].Ack(), transport.ErrClosed)
		if got := msgIDs(tr.Broker().Messages("q")); got != "1 3 4 " {
			t.Fatalf("queue holds %q", got)
		}
		again := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 10}, again.handle)
		if got := ids(again.drain()...); got != "1* 3* 4* " && got != "1* 3* 4 " {
			t.Fatalf("redelivered %q", got)
		}
	})
}

func TestMandatoryUnroutable(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	err := tr.Dispatch(ctxT(t),
		transport.Outgoing{RoutingKey: "nowhere", Message: transport.Message{ID: "a"}},
		transport.Outgoing{RoutingKey: "nowhere", Mandatory: true, Message: transport.Message{ID: "b"}},
		transport.Outgoing{Exchange: transport.Topic, RoutingKey: "x.y", Mandatory: true, Message: transport.Message{ID: "c"}},
	)
	mustIs(t, err, transport.ErrUnroutable)
	var de *transport.DispatchError
	if !errors.As(err, &de) || de.Index != 1 || de.MessageID != "b" {
		t.Fatalf("first failure %+v", de)
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 2 {
		t.Fatalf("%d failures, want 2: %v", n, err)
	}
}

func TestDispatchToMissingExchange(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	if err := tr.Broker().DeleteExchange(transport.DefaultTopicExchange); err != nil {
		t.Fatal(err)
	}
	err := tr.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a"})
	mustIs(t, err, transport.ErrNotFound)
}

func TestAfterClose(t *testing.T) {
	tr := memory.New(memory.Options{})
	declare(t, tr, "q")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := context.Background()
	mustIs(t, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}}), transport.ErrClosed)
	mustIs(t, tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q"}), transport.ErrClosed)
	_, err := tr.Consume(ctx, "q", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
	mustIs(t, err, transport.ErrClosed)
	mustIs(t, tr.Bind(ctx, "q", "a"), transport.ErrClosed)
	mustIs(t, tr.Unbind(ctx, "q", "a"), transport.ErrClosed)
	_, _, err = tr.Get(ctx, "q")
	mustIs(t, err, transport.ErrClosed)
	_, err = tr.Inspect(ctx, "q")
	mustIs(t, err, transport.ErrClosed)
	mustIs(t, tr.DeleteQueue(ctx, "q"), transport.ErrClosed)
	mustIs(t, tr.Health(ctx), transport.ErrClosed)
	mustIs(t, tr.Broker().Publish("", "q", transport.Message{}, memory.PublishOptions{}), transport.ErrClosed)
}

var _ = time.Second
