package conformance

import (
	"context"
	"strconv"
	"testing"

	"github.com/busline/busline/transport"
)

func (s *suite) capabilitiesGroup(t *testing.T) {
	s.leafUnless(t, "Inspector", lacks(s.caps.inspector, "Inspector"), func(e *env) {
		t := e.t
		ins := e.tr.(transport.Inspector)
		q := e.queue("q")
		e.send(q, "a", "b", "c")
		expectInfo := func(want transport.QueueInfo) {
			t.Helper()
			var got transport.QueueInfo
			var err error
			if !poll(e, func() bool {
				got, err = ins.Inspect(e.ctx(), q)
				return err == nil && got == want
			}) {
				t.Errorf("Inspect(%q) = %+v, %v; want %+v", q, got, err, want)
			}
		}
		expectInfo(transport.QueueInfo{Name: q, Messages: 3})
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
		d := in.next()
		expectInfo(transport.QueueInfo{Name: q, Messages: 2, Consumers: 1})
		d.Ack()
		missing := e.name("missing")
		_, err := ins.Inspect(e.ctx(), missing)
		is(t, err, transport.ErrNotFound, "Inspect(%q) of a queue that does not exist", missing)
	})
	s.leafUnless(t, "Getter", lacks(s.caps.getter, "Getter"), func(e *env) {
		t := e.t
		g := e.tr.(transport.Getter)
		q := e.queue("q")
		if d, ok, err := g.Get(e.ctx(), q); err != nil || ok {
			if ok {
				d.Ack()
			}
			t.Fatalf("Get of an empty queue = %v, %v, want no message and no error", ok, err)
		}
		e.send(q, "a", "b")
		get := func() *transport.Delivery {
			t.Helper()
			return e.get(q)
		}
		d := get()
		if d.ID != "a" || d.Redelivered || d.Queue != q || string(d.Body) != "body of a" {
			t.Errorf("Get = %q (queue %q, redelivered %v, body %q), want a from %q, not redelivered", d.ID, d.Queue, d.Redelivered, d.Body, q)
		}
		if err := d.Nack(true); err != nil {
			t.Fatalf("Nack(requeue) of a got message: %v", err)
		}
		seen := map[string]bool{}
		for range 2 {
			d := get()
			seen[d.ID] = true
			if d.ID == "a" && !d.Redelivered {
				t.Error("Get after Nack with requeue returned the message without Redelivered")
			}
			if err := d.Ack(); err != nil {
				t.Errorf("Ack of a got message: %v", err)
			}
		}
		if !seen["a"] || !seen["b"] {
			t.Errorf("Get returned %v, want a and b", seen)
		}
		if d, ok, err := g.Get(e.ctx(), q); err != nil || ok {
			if ok {
				t.Errorf("Get after every message was acked returned %q", d.ID)
				d.Ack()
			} else {
				t.Errorf("Get of an empty queue: %v", err)
			}
		}
	})
	s.leafUnless(t, "QueueDeleter", lacks(s.caps.deleter, "QueueDeleter"), func(e *env) {
		t := e.t
		del := e.tr.(transport.QueueDeleter)
		q := e.queue("q", "del.t")
		in := e.inbox(q, transport.ConsumeOptions{})
		e.send(q, "a", "b")
		in.ack()
		if err := del.DeleteQueue(e.ctx(), q); err != nil {
			t.Fatalf("DeleteQueue(%q): %v", q, err)
		}
		wait(e, in.c.Done(), "the consumer of a deleted queue to stop")
		if in.c.Err() == nil {
			t.Error("the consumer of a deleted queue stopped with Err nil, want the reason")
		}
		is(t, e.tr.Bind(e.ctx(), q, "x"), transport.ErrNotFound, "Bind of a deleted queue")
		c, err := e.tr.Consume(e.ctx(), q, transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		if is(t, err, transport.ErrNotFound, "Consume of a deleted queue"); c != nil {
			c.Close()
		}
		is(t, e.tr.Dispatch(e.ctx(), direct(q, "after")...), transport.ErrUnroutable, "mandatory Dispatch to a deleted queue")
		is(t, e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "del.t", Mandatory: true, Message: msg("after")}),
			transport.ErrUnroutable, "mandatory Dispatch to a deleted queue's topic binding")
		if err := del.DeleteQueue(e.ctx(), q); err != nil {
			t.Errorf("DeleteQueue of a queue that does not exist = %v, want nil", err)
		}
	})
	s.leafUnless(t, "Watcher", lacks(s.caps.watcher, "Watcher"), func(e *env) {
		t := e.t
		events := make(chan transport.Event, 64)
		stop := e.tr.(transport.Watcher).Watch(func(ev transport.Event) {
			select {
			case events <- ev:
			default:
			}
		})
		defer stop()
		q := e.queue("q")
		c := e.consume(q, transport.ConsumeOptions{}, func(_ context.Context, d *transport.Delivery) { d.Ack() })
		expect := func(kind transport.EventKind) transport.Event {
			t.Helper()
			for {
				ev := wait(e, events, "a %v event for queue %q", kind, q)
				if ev.Kind == kind && ev.Queue == q {
					if ev.Time.IsZero() {
						t.Errorf("%v event without a Time", kind)
					}
					return ev
				}
			}
		}
		expect(transport.ConsumerStarted)
		if err := e.bounded("Consumer.Close", c.Close); err != nil {
			t.Fatal(err)
		}
		if ev := expect(transport.ConsumerStopped); ev.Err != nil {
			t.Errorf("ConsumerStopped after Close has Err %v, want nil", ev.Err)
		}
	})
	s.asyncLeaf(t)
	s.leafUnless(t, "ExchangeBinder", lacks(s.caps.exchanges, "ExchangeBinder"), func(e *env) {
		t := e.t
		xb := e.tr.(transport.ExchangeBinder)
		// RabbitMQ's own amq.topic, where tomodachi services publish:
		// shared by every subtest, so the keys are this subtest's names.
		const ex = "amq.topic"
		q := e.queue("q")
		key := e.name("k")
		if err := xb.BindExchange(e.ctx(), ex, q, key+".#"); err != nil {
			t.Fatalf("BindExchange(%q, %q, %q): %v", ex, q, key+".#", err)
		}
		if err := xb.BindExchange(e.ctx(), ex, q, key+".#"); err != nil {
			t.Errorf("BindExchange a second time = %v, want nil", err)
		}
		out := func(id, rk string) transport.Outgoing {
			return transport.Outgoing{Exchange: transport.Topic, ExchangeName: ex, RoutingKey: rk, Mandatory: true, Message: msg(id)}
		}
		in := e.inbox(q, transport.ConsumeOptions{})
		e.dispatch(out("a", key+".created"))
		d := in.next()
		if d.ID != "a" || d.Exchange != transport.Topic || d.ExchangeName != ex || d.RoutingKey != key+".created" || string(d.Body) != "body of a" {
			t.Errorf("delivery = %q via %v %q under %q, body %q; want a via topic %q under %q",
				d.ID, d.Exchange, d.ExchangeName, d.RoutingKey, d.Body, ex, key+".created")
		}
		d.Ack()
		// The transport's own topic exchange is another exchange.
		is(t, e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Topic, RoutingKey: key + ".created", Mandatory: true, Message: msg("own")}),
			transport.ErrUnroutable, "mandatory Dispatch to the transport's topic exchange under a key bound only on %q", ex)
		e.send(q, "direct")
		if d := in.next(); d.ExchangeName != "" {
			t.Errorf("a direct message arrived with ExchangeName %q, want empty", d.ExchangeName)
		} else {
			d.Ack()
		}
		if err := xb.UnbindExchange(e.ctx(), ex, q, key+".#"); err != nil {
			t.Fatalf("UnbindExchange: %v", err)
		}
		is(t, e.tr.Dispatch(e.ctx(), out("b", key+".created")), transport.ErrUnroutable, "mandatory Dispatch after UnbindExchange")
		if err := xb.UnbindExchange(e.ctx(), ex, q, key+".#"); err != nil {
			t.Errorf("UnbindExchange of a binding that does not exist = %v, want nil", err)
		}
		missing := e.name("missing")
		is(t, xb.BindExchange(e.ctx(), ex, missing, key), transport.ErrNotFound, "BindExchange of a queue that does not exist")
		is(t, e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Direct, ExchangeName: ex, RoutingKey: q, Message: msg("c")}),
			transport.ErrInvalidMessage, "Dispatch of a direct message with an ExchangeName")
		is(t, xb.BindExchange(e.ctx(), "", q, key), transport.ErrInvalidName, "BindExchange on the default exchange")
		nowhere := out("d", key)
		nowhere.ExchangeName = e.name("nowhere")
		is(t, e.tr.Dispatch(e.ctx(), nowhere), transport.ErrNotFound, "Dispatch to an exchange that does not exist")
		in.empty("after UnbindExchange")
	})
	s.leafUnless(t, "HealthChecker", lacks(s.caps.health, "HealthChecker"), func(e *env) {
		hc := e.tr.(transport.HealthChecker)
		q := e.queue("q")
		e.consume(q, transport.ConsumeOptions{}, func(_ context.Context, d *transport.Delivery) { d.Ack() })
		if err := hc.Health(e.ctx()); err != nil {
			e.t.Errorf("Health of a new transport with a running consumer = %v, want nil", err)
		}
		e.closeTransport()
		if err := hc.Health(e.ctx()); err == nil {
			e.t.Error("Health of a closed transport = nil, want an error")
		}
	})
}

// asyncLeaf checks transport.AsyncDispatcher: a window of messages posted
// by one caller is confirmed and arrives in order, an unroutable mandatory
// message gets ErrUnroutable through done, an invalid one is refused by the
// call with done never called, and after Close the call fails with
// ErrClosed.
func (s *suite) asyncLeaf(t *testing.T) {
	s.leafUnless(t, "AsyncDispatcher", lacks(s.caps.async, "AsyncDispatcher"), func(e *env) {
		t := e.t
		ad := e.tr.(transport.AsyncDispatcher)
		q := e.queue("q")
		const n = 50
		verdicts := make(chan error, n+1)
		done := func(err error) { verdicts <- err }
		for _, o := range direct(q, numbered("m", n)...) {
			if err := ad.DispatchAsync(e.ctx(), o, done); err != nil {
				t.Fatalf("DispatchAsync(%s): %v", o.Message.ID, err)
			}
		}
		for i := range n {
			if err := wait(e, verdicts, "the verdict of message %d of %d", i+1, n); err != nil {
				t.Errorf("DispatchAsync verdict: %v, want nil", err)
			}
		}
		e.inbox(q, transport.ConsumeOptions{Prefetch: n}).expect(numbered("m", n)...)

		missing := e.name("missing")
		if err := ad.DispatchAsync(e.ctx(), direct(missing, "lost")[0], done); err != nil {
			t.Errorf("DispatchAsync of a mandatory message to a missing queue = %v, want nil and ErrUnroutable through done", err)
		} else {
			is(t, wait(e, verdicts, "the verdict of an unroutable message"), transport.ErrUnroutable, "DispatchAsync's verdict on a mandatory message to a missing queue")
		}
		topic := transport.Outgoing{Exchange: transport.Topic, RoutingKey: e.name("nobody"), Mandatory: true, Message: msg("lost")}
		if err := ad.DispatchAsync(e.ctx(), topic, done); err != nil {
			t.Errorf("DispatchAsync of a mandatory event nobody subscribed to = %v, want nil and ErrUnroutable through done", err)
		} else {
			is(t, wait(e, verdicts, "the verdict of an unroutable event"), transport.ErrUnroutable, "DispatchAsync's verdict on a mandatory event nobody subscribed to")
		}

		called := false
		bad := direct(q, "bad")[0]
		bad.Message.Headers = transport.Headers{"x": struct{}{}}
		err := ad.DispatchAsync(e.ctx(), bad, func(error) { called = true })
		is(t, err, transport.ErrInvalidMessage, "DispatchAsync of a message with a header AMQP cannot carry")
		e.closeTransport()
		err = ad.DispatchAsync(e.ctx(), direct(q, "late")[0], func(error) { called = true })
		is(t, err, transport.ErrClosed, "DispatchAsync after Close")
		if called {
			t.Error("DispatchAsync called done for a message it refused")
		}
	})
}

// numbered returns n message ids: prefix-0, prefix-1, ...
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}
