package conformance

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// queueArgumentsGroup checks the queue arguments of transport.QueueOptions
// as RabbitMQ 3.10.8 enforces them (docs/architecture.md records the facts
// these expectations come from). Each subtest names the queue type it
// needs, since the two types differ.
func (s *suite) queueArgumentsGroup(t *testing.T) {
	s.leaf(t, "Refused", func(e *env) {
		t := e.t
		for _, c := range []struct {
			what   string
			q      transport.Queue
			target error
		}{
			{"MaxPriority on a quorum queue", transport.Queue{Type: transport.Quorum, Options: transport.QueueOptions{MaxPriority: 5}}, transport.ErrNotSupported},
			{"DeliveryLimit on a classic queue", transport.Queue{Type: transport.Classic, Options: transport.QueueOptions{DeliveryLimit: 5}}, transport.ErrNotSupported},
			{"reject-publish-dlx on a quorum queue", transport.Queue{Type: transport.Quorum, Options: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublishDLX}}, transport.ErrNotSupported},
			{"x-max-priority on a quorum queue", transport.Queue{Type: transport.Quorum, Arguments: transport.Headers{"x-max-priority": int32(5)}}, transport.ErrNotSupported},
			{"x-delivery-limit on a classic queue", transport.Queue{Type: transport.Classic, Arguments: transport.Headers{"x-delivery-limit": int32(5)}}, transport.ErrNotSupported},
			{"a negative x-max-length", transport.Queue{Type: transport.Classic, Arguments: transport.Headers{"x-max-length": int32(-1)}}, transport.ErrInvalidMessage},
			{"x-max-priority 256", transport.Queue{Type: transport.Classic, Arguments: transport.Headers{"x-max-priority": int32(256)}}, transport.ErrInvalidMessage},
			{"a string x-message-ttl", transport.Queue{Type: transport.Quorum, Arguments: transport.Headers{"x-message-ttl": "1000"}}, transport.ErrInvalidMessage},
			{"an unknown x-overflow", transport.Queue{Type: transport.Quorum, Arguments: transport.Headers{"x-overflow": "bogus"}}, transport.ErrInvalidMessage},
			{"x-dead-letter-routing-key without an exchange", transport.Queue{Type: transport.Quorum, Arguments: transport.Headers{"x-dead-letter-routing-key": "x"}}, transport.ErrInvalidMessage},
			{"a negative MaxLength", transport.Queue{Options: transport.QueueOptions{MaxLength: -1}}, transport.ErrInvalidMessage},
			{"an option also given in Arguments", transport.Queue{Options: transport.QueueOptions{MaxLength: 1}, Arguments: transport.Headers{"x-max-length": int32(1)}}, transport.ErrInvalidMessage},
		} {
			c.q.Name = e.name("refused")
			e.remember(c.q.Name)
			is(t, e.tr.Declare(e.ctx(), transport.Topology{Queue: c.q}), c.target, "Declare with %s", c.what)
		}
		// The transport still works.
		q := e.queue("after")
		in := e.inbox(q, transport.ConsumeOptions{})
		e.send(q, "still-works")
		in.expect("still-works")
	})
	s.leaf(t, "Conflict", func(e *env) {
		t := e.t
		q := e.name("q")
		declared := transport.Queue{Name: q, Type: transport.Quorum, Options: transport.QueueOptions{MaxLength: 10, DeliveryLimit: 3, MessageTTL: time.Minute}}
		e.declare(transport.Topology{Queue: declared})
		e.declare(transport.Topology{Queue: declared})
		// The same arguments given by name: no conflict.
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Quorum,
			Arguments: transport.Headers{"x-max-length": int32(10), "x-delivery-limit": int64(3), "x-message-ttl": int32(60000)}}})
		for _, o := range []transport.QueueOptions{
			{MaxLength: 11, DeliveryLimit: 3, MessageTTL: time.Minute},
			{MaxLength: 10, DeliveryLimit: 4, MessageTTL: time.Minute},
			{MaxLength: 10, DeliveryLimit: 3, MessageTTL: time.Second},
			{MaxLength: 10, DeliveryLimit: 3},
		} {
			err := e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Quorum, Options: o}})
			is(t, err, transport.ErrTopologyConflict, "Declare(%q) again with %+v", q, o)
		}
	})
	s.leafUnless(t, "Priority", lacks(s.caps.getter, "Getter"), func(e *env) {
		t := e.t
		q := e.name("prio")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic, Options: transport.QueueOptions{MaxPriority: 5}}})
		send := func(ids ...string) {
			for _, id := range ids {
				var p uint8
				fmt.Sscanf(id[1:], "%d", &p)
				m := msg(id)
				m.Priority = p
				e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, Message: m})
			}
		}
		// A priority above the queue's maximum counts as the maximum; a
		// message without one has priority 0.
		send("a1", "b1", "c5", "d0", "e9", "f5")
		var got []string
		for range 6 {
			d := e.get(q)
			got = append(got, d.ID)
			if d.ID == "e9" && d.Message.Priority != 9 {
				t.Errorf("message e9 delivered with Priority %d, want 9", d.Message.Priority)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if want := []string{"c5", "e9", "f5", "a1", "b1", "d0"}; !slices.Equal(got, want) {
			t.Errorf("priority queue delivered %q, want %q", got, want)
		}
		// A requeued message goes back to its place among those of its
		// priority.
		send("a1", "b1", "c5", "d5")
		d1, d2, d3 := e.get(q), e.get(q), e.get(q)
		send("g5", "h1")
		for _, d := range []*transport.Delivery{d3, d1, d2} {
			if err := d.Nack(true); err != nil {
				t.Fatal(err)
			}
		}
		got = nil
		for range 6 {
			d := e.get(q)
			got = append(got, d.ID)
			_ = d.Ack()
		}
		if want := []string{"c5", "d5", "g5", "a1", "b1", "h1"}; !slices.Equal(got, want) {
			t.Errorf("after nacking %s, %s, %s with requeue, the priority queue delivered %q, want %q", d3.ID, d1.ID, d2.ID, got, want)
		}
	})
	s.leaf(t, "DeliveryLimit", func(e *env) {
		t := e.t
		dlq := e.name("dlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: dlq, Type: transport.Classic}})
		q := e.name("q")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Quorum,
			Options: transport.QueueOptions{DeliveryLimit: 2, DeadLetterQueue: dlq}}})
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
		e.send(q, "looping")
		// Delivered three times, nacked with requeue each time: the third
		// return is one more than the limit allows.
		for i := range 3 {
			d := in.next()
			if d.ID != "looping" {
				t.Fatalf("delivery %d is %q, want looping", i+1, d.ID)
			}
			if err := d.Nack(true); err != nil {
				t.Fatal(err)
			}
		}
		in.empty("after three deliveries with x-delivery-limit 2")
		dead := e.inbox(dlq, transport.ConsumeOptions{})
		checkDeath(t, dead.ack(), "looping", q, "delivery_limit")

		// A consumer that goes away (a crashed process) returns the
		// message too, and that counts.
		q1 := e.name("crash")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q1, Type: transport.Quorum,
			Options: transport.QueueOptions{DeliveryLimit: 1, DeadLetterQueue: dlq}}})
		e.send(q1, "crashing")
		for range 2 {
			crash := e.inbox(q1, transport.ConsumeOptions{Prefetch: 1})
			crash.next()
			if err := e.bounded("Consumer.Close", crash.c.Close); err != nil {
				t.Fatal(err)
			}
		}
		checkDeath(t, dead.ack(), "crashing", q1, "delivery_limit")
		e.inbox(q1, transport.ConsumeOptions{}).empty("after two deliveries with x-delivery-limit 1")

		// Without a dead-letter queue the message is dropped.
		q2 := e.name("nodlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q2, Type: transport.Quorum, Options: transport.QueueOptions{DeliveryLimit: 1}}})
		in2 := e.inbox(q2, transport.ConsumeOptions{Prefetch: 1})
		e.send(q2, "dropped")
		for range 2 {
			if err := in2.next().Nack(true); err != nil {
				t.Fatal(err)
			}
		}
		in2.empty("x-delivery-limit 1 without a dead-letter queue")
		dead.empty("nothing else is dead-lettered")
	})
	s.leaf(t, "NackDeadLetter", func(e *env) {
		dlq := e.name("dlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: dlq, Type: transport.Classic}})
		dead := e.inbox(dlq, transport.ConsumeOptions{})
		for _, typ := range []transport.QueueType{transport.Classic, transport.Quorum} {
			q := e.name(string(typ))
			e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: typ, Options: transport.QueueOptions{DeadLetterQueue: dlq}}})
			in := e.inbox(q, transport.ConsumeOptions{})
			e.send(q, "rejected-"+string(typ))
			if err := in.next().Nack(false); err != nil {
				e.t.Fatal(err)
			}
			checkDeath(e.t, dead.ack(), "rejected-"+string(typ), q, "rejected")
		}
	})
	s.leaf(t, "DropHead", func(e *env) {
		dlq := e.name("dlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: dlq, Type: transport.Classic}})
		dead := e.inbox(dlq, transport.ConsumeOptions{})
		for _, typ := range []transport.QueueType{transport.Classic, transport.Quorum} {
			q := e.name(string(typ))
			e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: typ,
				Options: transport.QueueOptions{MaxLength: 2, DeadLetterQueue: dlq}}})
			e.send(q, "m1", "m2", "m3")
			checkDeath(e.t, dead.ack(), "m1", q, "maxlen")
			in := e.inbox(q, transport.ConsumeOptions{})
			in.expect("m2", "m3")
			if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
				e.t.Fatal(err)
			}
		}
		// Bytes count bodies only: 4-byte bodies under a 10-byte limit.
		q := e.name("bytes")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic,
			Options: transport.QueueOptions{MaxLengthBytes: 10}}})
		for _, b := range []string{"aaaa", "bbbb", "cccc"} {
			e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: b, Body: []byte(b),
				Headers: transport.Headers{"big": "a header longer than the limit, which does not count"}}})
		}
		in := e.inbox(q, transport.ConsumeOptions{})
		in.expect("bbbb", "cccc")
	})
	s.leaf(t, "RejectPublish", func(e *env) {
		t := e.t
		refused := func(q, id string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), e.h.QuietPeriod)
			defer cancel()
			err := e.tr.Dispatch(ctx, direct(q, id)...)
			is(t, err, transport.ErrRejected, "Dispatch of %q to the full queue %q", id, q)
		}
		// A classic queue refuses the message that would take it over its
		// limit; messages delivered and not settled do not count.
		qc := e.name("classic")
		e.declare(transport.Topology{Queue: transport.Queue{Name: qc, Type: transport.Classic,
			Options: transport.QueueOptions{MaxLength: 2, Overflow: transport.RejectPublish}}})
		e.send(qc, "c1", "c2")
		refused(qc, "c3")
		in := e.inbox(qc, transport.ConsumeOptions{Prefetch: 1})
		held := in.next()
		e.send(qc, "c4")
		if err := held.Ack(); err != nil {
			t.Fatal(err)
		}
		in.expect("c2", "c4")

		// A quorum queue takes the message that takes it over its limit,
		// then refuses until it is down to 80% of it.
		qq := e.name("quorum")
		e.declare(transport.Topology{Queue: transport.Queue{Name: qq, Type: transport.Quorum,
			Options: transport.QueueOptions{MaxLength: 2, Overflow: transport.RejectPublish}}})
		e.send(qq, "q1", "q2", "q3")
		refused(qq, "q4")
		g, ok := e.tr.(transport.Getter)
		if ok {
			for _, want := range []string{"q1", "q2"} {
				d := e.get(qq)
				if d.ID != want {
					t.Errorf("quorum queue delivered %q, want %q", d.ID, want)
				}
				_ = d.Ack()
			}
			e.send(qq, "q5")
			var got []string
			for {
				d, ok, err := g.Get(e.ctx(), qq)
				if err != nil || !ok {
					break
				}
				got = append(got, d.ID)
				_ = d.Ack()
			}
			if want := []string{"q3", "q5"}; !slices.Equal(got, want) {
				t.Errorf("quorum queue held %q, want %q", got, want)
			}
		}

		// reject-publish-dlx dead-letters what it refuses.
		dlq := e.name("dlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: dlq, Type: transport.Classic}})
		qd := e.name("dlx")
		e.declare(transport.Topology{Queue: transport.Queue{Name: qd, Type: transport.Classic,
			Options: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublishDLX, DeadLetterQueue: dlq}}})
		e.send(qd, "d1")
		refused(qd, "d2")
		checkDeath(t, e.inbox(dlq, transport.ConsumeOptions{}).ack(), "d2", qd, "maxlen")
	})
	s.leaf(t, "MessageTTL", func(e *env) {
		t := e.t
		dlq := e.name("dlq")
		e.declare(transport.Topology{Queue: transport.Queue{Name: dlq, Type: transport.Classic}})
		dead := e.inbox(dlq, transport.ConsumeOptions{})
		const ttl = 200 * time.Millisecond
		for _, typ := range []transport.QueueType{transport.Classic, transport.Quorum} {
			// Nobody consumes: the messages expire all the same.
			q := e.name(string(typ))
			e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: typ,
				Options: transport.QueueOptions{MessageTTL: ttl, DeadLetterQueue: dlq}}})
			e.send(q, "t1-"+string(typ), "t2-"+string(typ))
			checkDeath(t, dead.ack(), "t1-"+string(typ), q, "expired")
			checkDeath(t, dead.ack(), "t2-"+string(typ), q, "expired")

			// A message held past its TTL and requeued keeps its expiry:
			// it is dead-lettered, not delivered again.
			in := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
			e.send(q, "held-"+string(typ))
			held := in.next()
			time.Sleep(2 * ttl)
			if err := held.Nack(true); err != nil {
				t.Fatal(err)
			}
			checkDeath(t, dead.ack(), "held-"+string(typ), q, "expired")
			in.silent("a message that expired while delivered was requeued")
			if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// checkDeath checks that d is message id, dead-lettered from queue for
// reason, with RabbitMQ's x-death and x-first-death headers.
func checkDeath(t *testing.T, d *transport.Delivery, id, queue, reason string) {
	t.Helper()
	if d.ID != id {
		t.Errorf("dead-letter queue delivered %q, want %q", d.ID, id)
		return
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) == 0 {
		t.Errorf("dead-lettered message %q has no x-death header: %v", id, d.Headers)
		return
	}
	death, _ := deaths[0].(map[string]any)
	if death["queue"] != queue || death["reason"] != reason || death["count"] != int64(1) {
		t.Errorf("dead-lettered message %q: x-death[0] = %v, want queue %q, reason %q, count 1", id, death, queue, reason)
	}
	if _, ok := death["time"].(time.Time); !ok {
		t.Errorf("dead-lettered message %q: x-death[0] has no time: %v", id, death)
	}
	if d.Headers["x-first-death-queue"] != queue || d.Headers["x-first-death-reason"] != reason {
		t.Errorf("dead-lettered message %q: x-first-death-queue %v, -reason %v, want %q, %q",
			id, d.Headers["x-first-death-queue"], d.Headers["x-first-death-reason"], queue, reason)
	}
}
