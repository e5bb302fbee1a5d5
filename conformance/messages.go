package conformance

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

func (s *suite) messagesGroup(t *testing.T) {
	s.leaf(t, "Properties", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		full := transport.Message{
			ID:              strings.Repeat("i", transport.MaxNameLength),
			CorrelationID:   "correlation-1",
			ReplyTo:         "replies",
			ContentType:     "application/json",
			ContentEncoding: "utf-8",
			Type:            "orders.Placed",
			Timestamp:       time.Date(2026, 3, 4, 8, 6, 7, 891_000_000, time.FixedZone("UTC+3", 3*3600)),
			Body:            []byte(`{"n":1}`),
		}
		empty := transport.Message{ID: "empty"}
		e.dispatch(
			transport.Outgoing{RoutingKey: q, Mandatory: true, Message: full},
			transport.Outgoing{RoutingKey: q, Mandatory: true, Message: empty},
		)
		d := in.ack()
		want, _ := full.Normalized()
		checkMessage(t, want, d)
		if !d.Timestamp.Equal(headerTime) || d.Timestamp.Location().String() != "UTC" {
			t.Errorf("Timestamp = %v, want %v (whole seconds, UTC)", d.Timestamp, headerTime)
		}
		if d.Queue != q || d.Exchange != transport.Direct || d.RoutingKey != q || d.Redelivered {
			t.Errorf("delivery from queue %q exchange %v key %q redelivered %v, want %q, direct, %q, false",
				d.Queue, d.Exchange, d.RoutingKey, d.Redelivered, q, q)
		}
		d = in.ack()
		checkMessage(t, empty, d)
	})
	s.leaf(t, "Headers", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		sent := canonicalHeaders()
		e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "headers", Headers: sent}})
		if d := diffHeaders(canonicalHeaders(), sent); d != "" {
			t.Errorf("Dispatch modified the caller's headers:\n%s", d)
		}
		d := in.ack()
		if diff := diffHeaders(canonicalHeaders(), d.Headers); diff != "" {
			t.Errorf("headers did not arrive as sent:\n%s", diff)
		}
	})
	s.leaf(t, "InputHeaders", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		sent, want := inputHeaders()
		e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "input", Headers: sent}})
		d := in.ack()
		if diff := diffHeaders(want, d.Headers); diff != "" {
			t.Errorf("headers of accepted input types did not arrive in canonical form:\n%s", diff)
		}
	})
	s.leaf(t, "Bodies", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		every := make([]byte, 256)
		for i := range every {
			every[i] = byte(i)
		}
		large := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		bodies := map[string][]byte{"nil": nil, "empty": {}, "every-byte": every, "large": large}
		var batch []transport.Outgoing
		for _, id := range []string{"nil", "empty", "every-byte", "large"} {
			batch = append(batch, transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: id, Body: bodies[id]}})
		}
		e.dispatch(batch...)
		for _, id := range []string{"nil", "empty", "every-byte", "large"} {
			d := in.ack()
			if d.ID != id {
				t.Fatalf("delivered %q, want %q", d.ID, id)
			}
			if !bytes.Equal(d.Body, bodies[id]) {
				t.Errorf("body of %q arrived as %d bytes, want the %d bytes sent", id, len(d.Body), len(bodies[id]))
			}
		}
	})
}

// checkMessage compares the properties and body of d with want, which is in
// canonical form.
func checkMessage(t *testing.T, want transport.Message, d *transport.Delivery) {
	t.Helper()
	for _, p := range []struct{ name, got, want string }{
		{"ID", d.ID, want.ID},
		{"CorrelationID", d.CorrelationID, want.CorrelationID},
		{"ReplyTo", d.ReplyTo, want.ReplyTo},
		{"ContentType", d.ContentType, want.ContentType},
		{"ContentEncoding", d.ContentEncoding, want.ContentEncoding},
		{"Type", d.Type, want.Type},
	} {
		if p.got != p.want {
			t.Errorf("message %q: %s = %q, want %q", short(want.ID), p.name, short(p.got), short(p.want))
		}
	}
	if !d.Timestamp.Equal(want.Timestamp) {
		t.Errorf("message %q: Timestamp = %v, want %v", short(want.ID), d.Timestamp, want.Timestamp)
	}
	if !bytes.Equal(d.Body, want.Body) {
		t.Errorf("message %q: Body = %q, want %q", short(want.ID), d.Body, want.Body)
	}
	if diff := diffHeaders(want.Headers, d.Headers); diff != "" {
		t.Errorf("message %q: headers differ:\n%s", short(want.ID), diff)
	}
}

func (s *suite) namesGroup(t *testing.T) {
	s.leaf(t, "AtLimit", func(e *env) {
		t := e.t
		q := e.nameOfLength(transport.MaxNameLength)
		pattern := e.id + "." + strings.Repeat("w", transport.MaxNameLength-len(e.id)-1)
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}, Topics: []string{pattern}})
		in := e.inbox(q, transport.ConsumeOptions{})
		e.dispatch(
			transport.Outgoing{Exchange: transport.Direct, RoutingKey: q, Mandatory: true, Message: msg("direct")},
			transport.Outgoing{Exchange: transport.Topic, RoutingKey: pattern, Mandatory: true, Message: msg("topic")},
		)
		ds := in.expect("direct", "topic")
		if ds[0].Queue != q || ds[0].RoutingKey != q {
			t.Errorf("a name of 255 bytes arrived as queue %q key %q", short(ds[0].Queue), short(ds[0].RoutingKey))
		}
		if ds[1].RoutingKey != pattern {
			t.Errorf("a routing key of 255 bytes arrived as %q", short(ds[1].RoutingKey))
		}
		if err := e.tr.Unbind(e.ctx(), q, pattern); err != nil {
			t.Errorf("Unbind of a pattern of 255 bytes: %v", err)
		}
	})
	s.leaf(t, "OverLimit", func(e *env) {
		t := e.t
		long := e.nameOfLength(transport.MaxNameLength + 1)
		longKey := strings.Repeat("k", transport.MaxNameLength+1)
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})

		is(t, e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: long}}), transport.ErrInvalidName,
			"Declare of a queue name of 256 bytes")
		is(t, e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: q}, Topics: []string{longKey}}), transport.ErrInvalidName,
			"Declare with a topic pattern of 256 bytes")
		is(t, e.tr.Bind(e.ctx(), long, "a"), transport.ErrInvalidName, "Bind of a queue name of 256 bytes")
		is(t, e.tr.Bind(e.ctx(), q, longKey), transport.ErrInvalidName, "Bind of a pattern of 256 bytes")
		is(t, e.tr.Unbind(e.ctx(), long, "a"), transport.ErrInvalidName, "Unbind of a queue name of 256 bytes")
		is(t, e.tr.Unbind(e.ctx(), q, longKey), transport.ErrInvalidName, "Unbind of a pattern of 256 bytes")
		c, err := e.tr.Consume(e.ctx(), long, transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		if is(t, err, transport.ErrInvalidName, "Consume of a queue name of 256 bytes"); c != nil {
			c.Close()
		}
		err = e.tr.Dispatch(e.ctx(), append(direct(q, "valid-1"), direct(long, "too-long")...)...)
		is(t, err, transport.ErrInvalidName, "Dispatch of a batch with a direct routing key of 256 bytes")
		err = e.tr.Dispatch(e.ctx(), append(direct(q, "valid-2"),
			transport.Outgoing{Exchange: transport.Topic, RoutingKey: longKey, Message: msg("too-long")})...)
		is(t, err, transport.ErrInvalidName, "Dispatch of a batch with a topic routing key of 256 bytes")
		in.empty("a batch refused for a name over the limit must send nothing")
	})
	s.leaf(t, "Invalid", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		for _, name := range []string{"", "amq.reserved-" + e.id, e.name("bad\xffutf8")} {
			is(t, e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: name}}), transport.ErrInvalidName,
				"Declare of queue name %q", name)
		}
		is(t, e.tr.Bind(e.ctx(), q, "a.\xff"), transport.ErrInvalidName, "Bind of a pattern that is not UTF-8")
		err := e.tr.Dispatch(e.ctx(), append(direct(q, "valid-1"),
			transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a.\xff", Message: msg("bad")})...)
		is(t, err, transport.ErrInvalidName, "Dispatch with a topic routing key that is not UTF-8")
		err = e.tr.Dispatch(e.ctx(), append(direct(q, "valid-2"), direct("", "bad")...)...)
		is(t, err, transport.ErrInvalidName, "Dispatch to the direct exchange with an empty routing key")
		in.empty("a batch refused for an invalid name must send nothing")
	})
}
