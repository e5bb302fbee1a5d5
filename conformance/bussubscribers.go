package conformance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// busSubscribers checks the subscriptions tomodachi's users rely on: a
// queue per instance (competing=False), and a topic exchange other than the
// transport's own (amq.topic), where messages without busline's headers
// arrive.
func (s *suite) busSubscribers(t *testing.T) {
	s.busLeaf(t, "PerInstance", "", func(e *busEnv) {
		t := e.t
		client := e.bus("", bus.Options{})
		tag := "cache"
		var instances []*bus.Bus
		var received []*busReceived
		for i := range 2 {
			b := e.bus(tag, bus.Options{PerInstance: true, InstanceID: fmt.Sprint(i), Subscriptions: []string{"cache.#"}})
			e.remember(b.Queue())
			received = append(received, e.receiver(b))
			e.start(b)
			instances = append(instances, b)
		}
		if q0, q1 := instances[0].Queue(), instances[1].Queue(); q0 == q1 || !strings.HasPrefix(q0, e.name(tag)+".instance-") {
			t.Errorf("instance queues %q and %q: want two queues named %q and the instance", q0, q1, e.name(tag)+".instance-")
		}
		ids := []string{"a", "b", "c", "d"}
		for _, id := range ids {
			e.ok(client.Publish(e.ctx(), "cache.invalidate", busEvent{ID: id}), "Publish %q", id)
		}
		for i, r := range received {
			var got []string
			for _, d := range r.drain(client) {
				got = append(got, d.msg.(busEvent).ID)
			}
			if !slices.Equal(got, ids) {
				t.Errorf("instance %d (%q) handled %q, want every event, %q", i, instances[i].Queue(), got, ids)
			}
		}
		gone := instances[0].Queue()
		e.ok(instances[0].Shutdown(e.ctx()), "Shutdown of an instance")
		if ins, ok := e.tr.(transport.Inspector); ok {
			_, err := ins.Inspect(e.ctx(), gone)
			e.is(err, transport.ErrNotFound, "Inspect of the queue of an instance that shut down")
		}
		e.ok(client.Publish(e.ctx(), "cache.invalidate", busEvent{ID: "e"}), "Publish after an instance left")
		if d := received[1].next(); d.msg.(busEvent).ID != "e" {
			t.Errorf("the remaining instance handled %+v, want e", d.msg)
		}
	})
	s.busLeaf(t, "OtherExchange", lacks(s.caps.exchanges, "ExchangeBinder"), func(e *busEnv) {
		t := e.t
		// amq.topic is shared by every subtest: this one's topics start
		// with its prefix.
		x := bus.Exchange{Name: "amq.topic", TopicPrefix: e.topicPrefix}
		sub := x
		sub.Subscriptions = []string{"orders.#"}
		client := e.bus("", bus.Options{Exchanges: []bus.Exchange{x}})
		b, r := e.endpoint("listener", bus.Options{Exchanges: []bus.Exchange{sub}})
		raw := make(chan busEvent, 4)
		busHandle(e, b, func(ctx context.Context, m busEvent) error {
			raw <- m
			if m.ID == "poison" {
				return middleware.Permanent(errBusBoom)
			}
			return nil
		}, bus.WithMessageType("orders.created"))

		e.ok(client.Publish(e.ctx(), "orders.placed", busEvent{ID: "busline"}, bus.WithExchange("amq.topic")), "Publish WithExchange")
		d := r.next()
		if d.msg.(busEvent).ID != "busline" || d.in.Intent != "event" {
			t.Errorf("handled %+v (intent %q), want the busline event", d.msg, d.in.Intent)
		}
		// The transport's own topic exchange is another exchange.
		e.ok(client.Publish(e.ctx(), "orders.placed", busEvent{ID: "own exchange"}), "Publish")
		r.none(client, "after a Publish on the transport's topic exchange")
		if err := client.Publish(e.ctx(), "orders.placed", busEvent{}, bus.WithExchange("nowhere")); err == nil {
			t.Error("Publish WithExchange of an exchange not in Options.Exchanges = nil, want an error")
		}
		if err := client.Send(e.ctx(), b.Queue(), busEvent{}, bus.WithExchange("amq.topic")); err == nil {
			t.Error("Send WithExchange = nil, want an error: only Publish takes it")
		}

		// As a tomodachi service publishes: no header, no property, the
		// routing key is all there is to go by.
		foreign := func(id, topic string) {
			e.dispatch(transport.Outgoing{Exchange: transport.Topic, ExchangeName: "amq.topic", RoutingKey: e.topicPrefix + topic,
				Mandatory: true, Message: transport.Message{Body: []byte(`{"ID":"` + id + `"}`)}})
		}
		foreign("tomodachi", "orders.created")
		if m := wait(e.env, raw, "the foreign message"); m.ID != "tomodachi" {
			t.Errorf("the handler of orders.created got %+v, want ID tomodachi", m)
		}
		errs := e.errorInbox()
		foreign("poison", "orders.created")
		wait(e.env, raw, "the poison message")
		fd := errs.next()
		if got := busHeader(&fd.Message, "MessageType"); got != "orders.created" {
			t.Errorf("the error queue's copy of a foreign message has MessageType %q, want the routing key less the prefix, orders.created", got)
		}
		if got := busHeader(&fd.Message, "ContentType"); got != "application/json" {
			t.Errorf("the error queue's copy of a foreign message has ContentType %q, want the exchange codec's, application/json", got)
		}
		fd.Ack()
	})
}
