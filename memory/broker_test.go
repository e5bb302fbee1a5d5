package memory_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

func TestQueueRedeclare(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	q := transport.Queue{Name: "q", Arguments: transport.Headers{"x-max-length": 10, "x-custom": "a"}}
	must(t, b.DeclareQueue(q))
	// Integers compare by value whatever their width, and arguments
	// RabbitMQ does not check may differ.
	must(t, b.DeclareQueue(transport.Queue{Name: "q", Type: transport.Quorum, Arguments: transport.Headers{"x-max-length": int64(10), "x-custom": "b"}}))
	for name, other := range map[string]transport.Queue{
		"type":      {Name: "q", Type: transport.Classic, Arguments: q.Arguments},
		"argument":  {Name: "q", Arguments: transport.Headers{"x-max-length": 11}},
		"missing":   {Name: "q"},
		"kind":      {Name: "q", Arguments: transport.Headers{"x-max-length": "10"}},
		"new check": {Name: "q", Arguments: transport.Headers{"x-max-length": 10, "x-message-ttl": 5}},
	} {
		mustIs(t, fmt.Errorf("%s: %w", name, b.DeclareQueue(other)), transport.ErrTopologyConflict)
	}
	// A shared queue is used as found.
	must(t, b.DeclareQueue(transport.Queue{Name: "q", Type: transport.Classic, Shared: true}))
	must(t, b.DeclareQueue(transport.Queue{Name: "shared", Type: transport.Classic, Shared: true}))
	if st, _ := b.Stats("shared"); st.Type != transport.Classic {
		t.Fatalf("shared queue created as %s", st.Type)
	}
	mustIs(t, b.DeclareQueue(transport.Queue{Name: "amq.x"}), transport.ErrInvalidName)
	mustIs(t, b.DeclareQueue(transport.Queue{Name: "t", Temporary: true}), transport.ErrNotSupported)
	mustIs(t, b.DeclareQueue(transport.Queue{Name: "q", Arguments: transport.Headers{"x-queue-type": "classic"}}), transport.ErrInvalidMessage)
}

func TestTransportDeclare(t *testing.T) {
	tr := newTransport(t, memory.Options{DirectExchange: "D", TopicExchange: "T"})
	b := tr.Broker()
	must(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "q"}, Topics: []string{"a.*", "#"}}))
	must(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "q"}, Topics: []string{"b"}}))
	if got := fmt.Sprint(b.Bindings("q")); got != "[{D q} {T #} {T a.*} {T b}]" {
		t.Fatalf("bindings %s", got)
	}
	if got := b.Exchanges(); got["D"] != memory.ExchangeDirect || got["T"] != memory.ExchangeTopic {
		t.Fatalf("exchanges %v", got)
	}
	mustIs(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "q", Type: transport.Classic}}), transport.ErrTopologyConflict)
	mustIs(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: ""}}), transport.ErrInvalidName)
	must(t, tr.Unbind(ctxT(t), "q", "#"))
	must(t, tr.Bind(ctxT(t), "q", "c.#"))
	if got := fmt.Sprint(b.Bindings("q")); got != "[{D q} {T a.*} {T b} {T c.#}]" {
		t.Fatalf("bindings %s", got)
	}
	// A transport on a broker whose exchange has another kind reports it.
	must(t, b.DeclareExchange("X", memory.ExchangeFanout))
	other := newTransport(t, memory.Options{Broker: b, DirectExchange: "X", TopicExchange: "T"})
	mustIs(t, other.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "r"}}), transport.ErrTopologyConflict)
}

func TestMessagesAreNormalizedCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q1", "t")
		declare(t, tr, "q2", "t")
		ts := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
		msg := transport.Message{
			ID: "m", Timestamp: ts, Body: []byte("body"),
			Headers: transport.Headers{"n": 7, "tbl": map[string]any{"k": []string{"v"}}},
		}
		must(t, tr.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "t", Mandatory: true, Message: msg}))
		msg.Body[0] = 'X'
		msg.Headers["n"] = 8
		want := transport.Message{
			ID: "m", Timestamp: time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC), Body: []byte("body"),
			Headers: transport.Headers{"n": int32(7), "tbl": map[string]any{"k": []any{"v"}}},
		}
		g1, g2 := newCollector(), newCollector()
		c1 := consume(t, tr, "q1", transport.ConsumeOptions{}, g1.handle)
		consume(t, tr, "q2", transport.ConsumeOptions{}, g2.handle)
		d1, d2 := g1.next(t), g2.next(t)
		for _, d := range []*transport.Delivery{d1, d2} {
			if !reflect.DeepEqual(d.Message, want) {
				t.Fatalf("delivered\n%#v\nwant\n%#v", d.Message, want)
			}
			if d.Exchange != transport.Topic || d.RoutingKey != "t" {
				t.Fatalf("delivery %+v", d)
			}
		}
		// A handler owns what it got: changing it changes no other copy,
		// not even the one redelivered after a requeue.
		d1.Body[0] = 'Y'
		d1.Headers["tbl"].(map[string]any)["k"] = "changed"
		if !reflect.DeepEqual(d2.Message, want) {
			t.Fatal("copies of two queues share state")
		}
		must(t, d1.Nack(true))
		again := g1.next(t)
		want.Body = []byte("body")
		want.Headers["x-delivery-count"] = int64(1) // q1 is a quorum queue
		if !again.Redelivered || !reflect.DeepEqual(again.Message, want) {
			t.Fatalf("redelivered %#v", again.Message)
		}
		c1.Close()
	})
}

func TestFailDispatchesAndJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{Name: "svc"})
		b := tr.Broker()
		declare(t, tr, "q")
		boom := errors.New("boom")
		b.FailDispatches(2, boom)
		err := tr.Dispatch(ctxT(t),
			transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "1"}},
			transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "2"}},
			transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "3"}},
		)
		mustIs(t, err, boom)
		var de *transport.DispatchError
		if !errors.As(err, &de) || de.Index != 0 {
			t.Fatalf("error %v", err)
		}
		must(t, tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "4"}}))
		b.FailDispatches(1, nil)
		mustIs(t, b.Publish("", "q", transport.Message{ID: "5"}, memory.PublishOptions{}), transport.ErrRejected)

		got := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 5, Tag: "c1"}, got.handle)
		ds := got.drain()
		if ids(ds...) != "3 4 " {
			t.Fatalf("delivered %s", ids(ds...))
		}
		must(t, ds[0].Ack())
		must(t, ds[1].Nack(false))

		var lines []string
		for _, r := range b.Journal() {
			s := fmt.Sprintf("%s %s", r.Op, r.Message.ID)
			switch r.Op {
			case memory.Dispatched:
				s += fmt.Sprintf(" %v by %s", r.Queues, r.Connection)
			case memory.Failed:
				s += fmt.Sprintf(" %v", errors.Is(r.Err, boom) || errors.Is(r.Err, transport.ErrRejected))
			case memory.Delivered, memory.Acked:
				s += " " + r.Queue + " " + r.Consumer
			case memory.Nacked:
				s += fmt.Sprintf(" requeue=%v", r.Requeue)
			}
			lines = append(lines, s)
		}
		want := "[failed 1 true failed 2 true dispatched 3 [q] by svc dispatched 4 [q] by svc failed 5 true " +
			"delivered 3 q c1 delivered 4 q c1 acked 3 q c1 nacked 4 requeue=false]"
		if got := fmt.Sprint(lines); got != want {
			t.Fatalf("journal\n got %s\nwant %s", got, want)
		}
		b.ClearJournal()
		if n := len(b.Journal()); n != 0 {
			t.Fatalf("%d records after ClearJournal", n)
		}
		b.SetJournalLimit(1)
		send(t, tr, "q", "6", "7")
		if rs := b.Journal(); len(rs) != 1 || rs[0].Op != memory.Delivered || rs[0].Message.ID != "7" {
			t.Fatalf("journal with limit 1: %+v", rs)
		}
	})
}

func TestWaitIdle(t *testing.T) {
	// Outside a bubble, with real goroutines: a chain of handlers, each
	// dispatching to the next queue before it acks.
	b := memory.NewBroker()
	defer b.Close()
	tr := newTransport(t, memory.Options{Broker: b})
	const n = 200
	var handled atomic.Int64
	for i := range 3 {
		q := fmt.Sprint("q", i)
		declare(t, tr, q)
		next := fmt.Sprint("q", i+1)
		consume(t, tr, q, transport.ConsumeOptions{Concurrency: 4}, func(ctx context.Context, d *transport.Delivery) {
			handled.Add(1)
			if next != "q3" {
				if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: next, Message: d.Message}); err != nil {
					t.Error(err)
				}
			}
			if err := d.Ack(); err != nil {
				t.Error(err)
			}
		})
	}
	declare(t, tr, "unconsumed")
	send(t, tr, "unconsumed", "stays")
	for i := range n {
		send(t, tr, "q0", fmt.Sprint(i))
	}
	must(t, b.WaitIdle(ctxT(t)))
	if got := handled.Load(); got != 3*n {
		t.Fatalf("handled %d before idle, want %d", got, 3*n)
	}
	if d := b.Depth("unconsumed"); d != 1 {
		t.Fatalf("unconsumed depth %d", d)
	}
	// A delivery left unsettled keeps the broker busy.
	d, ok, err := tr.Get(ctxT(t), "unconsumed")
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	mustIs(t, b.WaitIdle(ctx), context.DeadlineExceeded)
	must(t, d.Ack())
	must(t, b.WaitIdle(ctxT(t)))
}

func TestBrokersAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b1, b2 := memory.NewBroker(), memory.NewBroker()
		defer b1.Close()
		defer b2.Close()
		t1 := newTransport(t, memory.Options{Broker: b1})
		t2 := newTransport(t, memory.Options{Broker: b2})
		declare(t, t1, "q")
		declare(t, t2, "q", "a")
		send(t, t1, "q", "1")
		must(t, t2.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a", Mandatory: true}))
		mustIs(t, t1.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a", Mandatory: true}), transport.ErrUnroutable)
		b1.Disconnect()
		must(t, t2.Health(context.Background()))
		b1.Reconnect()
		if b1.Depth("q") != 1 || b2.Depth("q") != 1 {
			t.Fatalf("depths %d %d", b1.Depth("q"), b2.Depth("q"))
		}
	})
}

func TestPurgeQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		b := tr.Broker()
		declare(t, tr, "q")
		send(t, tr, "q", "1", "2", "3")
		d, _, err := tr.Get(ctxT(t), "q")
		must(t, err)
		n, err := b.PurgeQueue("q")
		if err != nil || n != 2 {
			t.Fatalf("purged %d, %v", n, err)
		}
		if st, _ := b.Stats("q"); st.Ready != 0 || st.Unacked != 1 || b.Depth("q") != 1 {
			t.Fatalf("stats after purge %+v", st)
		}
		// The unsettled delivery survives the purge.
		must(t, d.Nack(true))
		if got := msgIDs(b.Messages("q")); got != "1 " {
			t.Fatalf("queue holds %q", got)
		}
		_, err = b.PurgeQueue("missing")
		mustIs(t, err, transport.ErrNotFound)
	})
}
