package bus_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// TestWireFormat pins the exact headers and properties of a Send, a Publish,
// a Reply and a Defer: PikaBus's wire format.
func TestWireFormat(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		// The bubble's clock starts at 2000-01-01T00:00:00Z.
		server := e.bus("server", bus.Options{Subscriptions: []string{"orders.#"}})
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error { return server.Reply(ctx, Pong{p.N}) }))
		must(t, bus.Handle(server, func(ctx context.Context, p OrderPlaced) error { return nil }))
		must(t, bus.Handle(server, func(ctx context.Context, p PlaceOrder) error { return nil }))
		e.start(server)
		client := e.bus("client", bus.Options{})
		must(t, bus.Handle(client, func(ctx context.Context, p Pong) error { return nil }))
		e.start(client)

		must(t, client.Send(ctx, "server", Ping{1}, bus.WithHeaders(transport.Headers{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})))
		idle()
		time.Sleep(time.Second)
		must(t, client.Publish(ctx, "orders.placed", OrderPlaced{ID: "o"}))
		must(t, client.Defer(ctx, time.Minute, "server", PlaceOrder{ID: "d"}))
		idle()

		sent := map[string]transport.Message{}
		for _, r := range e.broker.Journal() {
			if r.Op == memory.Dispatched {
				sent[header(r.Message, "MessageType")] = r.Message
			}
		}
		send, reply := sent["Ping"], sent["Pong"]
		t0, t1 := "2000-01-01T00:00:00.000000+00:00", "2000-01-01T00:00:01.000000+00:00"
		for _, c := range []struct {
			name    string
			m       transport.Message
			headers transport.Headers
			props   transport.Message
		}{{
			name: "send",
			m:    send,
			headers: transport.Headers{
				"PikaBus.MessageId":          send.ID,
				"PikaBus.CorrelationId":      send.ID,
				"PikaBus.ConversationId":     send.ID,
				"PikaBus.TimeSent":           t0,
				"PikaBus.ReplyToAddress":     "client",
				"PikaBus.OriginatingAddress": "client",
				"PikaBus.Intent":             "command",
				"PikaBus.MessageType":        "Ping",
				"PikaBus.ContentType":        "application/json",
				"PikaBus.ContentEncoding":    "utf-8",
				"traceparent":                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			},
			props: transport.Message{CorrelationID: send.ID, ReplyTo: "client", ContentType: "application/json",
				ContentEncoding: "utf-8", Type: "Ping", Body: []byte(`{"N":1}`)},
		}, {
			name: "reply",
			m:    reply,
			headers: transport.Headers{
				"PikaBus.MessageId":          reply.ID,
				"PikaBus.CorrelationId":      send.ID,
				"PikaBus.ConversationId":     send.ID,
				"PikaBus.TimeSent":           t0,
				"PikaBus.ReplyToAddress":     "server",
				"PikaBus.OriginatingAddress": "server",
				"PikaBus.Intent":             "command",
				"PikaBus.MessageType":        "Pong",
				"PikaBus.ContentType":        "application/json",
				"PikaBus.ContentEncoding":    "utf-8",
				"traceparent":                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			},
			props: transport.Message{CorrelationID: send.ID, ReplyTo: "server", ContentType: "application/json",
				ContentEncoding: "utf-8", Type: "Pong", Body: []byte(`{"N":1}`)},
		}, {
			name: "publish",
			m:    sent["OrderPlaced"],
			headers: transport.Headers{
				"PikaBus.MessageId":          sent["OrderPlaced"].ID,
				"PikaBus.CorrelationId":      sent["OrderPlaced"].ID,
				"PikaBus.ConversationId":     sent["OrderPlaced"].ID,
				"PikaBus.TimeSent":           t1,
				"PikaBus.ReplyToAddress":     "client",
				"PikaBus.OriginatingAddress": "client",
				"PikaBus.Intent":             "event",
				"PikaBus.MessageType":        "OrderPlaced",
				"PikaBus.ContentType":        "application/json",
				"PikaBus.ContentEncoding":    "utf-8",
			},
			props: transport.Message{CorrelationID: sent["OrderPlaced"].ID, ReplyTo: "client", ContentType: "application/json",
				ContentEncoding: "utf-8", Type: "OrderPlaced", Body: []byte(`{"ID":"o"}`)},
		}, {
			name: "defer",
			m:    sent["PlaceOrder"],
			headers: transport.Headers{
				"PikaBus.MessageId":          sent["PlaceOrder"].ID,
				"PikaBus.CorrelationId":      sent["PlaceOrder"].ID,
				"PikaBus.ConversationId":     sent["PlaceOrder"].ID,
				"PikaBus.TimeSent":           t1,
				"PikaBus.ReplyToAddress":     "client",
				"PikaBus.OriginatingAddress": "client",
				"PikaBus.Intent":             "command",
				"PikaBus.MessageType":        "PlaceOrder",
				"PikaBus.ContentType":        "application/json",
				"PikaBus.ContentEncoding":    "utf-8",
				"PikaBus.DeferredTime":       "2000-01-01T00:01:01.000000+00:00",
			},
			props: transport.Message{CorrelationID: sent["PlaceOrder"].ID, ReplyTo: "client", ContentType: "application/json",
				ContentEncoding: "utf-8", Type: "PlaceOrder", Body: []byte(`{"ID":"d"}`)},
		}} {
			m := c.m
			if m.ID == "" || len(m.ID) != 36 || strings.Count(m.ID, "-") != 4 {
				t.Errorf("%s: message id %q is not a UUID", c.name, m.ID)
			}
			if !maps.EqualFunc(m.Headers, c.headers, func(a, b any) bool { return a == b }) {
				t.Errorf("%s: headers\n got %v\nwant %v", c.name, m.Headers, c.headers)
			}
			p := c.props
			p.ID, p.Timestamp, p.Headers = m.ID, m.Timestamp, m.Headers
			ts, _ := time.Parse(time.RFC3339, strings.Replace(c.headers["PikaBus.TimeSent"].(string), ".000000", "", 1))
			if !m.Timestamp.Equal(ts) || m.CorrelationID != p.CorrelationID || m.ReplyTo != p.ReplyTo ||
				m.ContentType != p.ContentType || m.ContentEncoding != p.ContentEncoding || m.Type != p.Type ||
				string(m.Body) != string(p.Body) {
				t.Errorf("%s: properties\n got %+v\nwant %+v", c.name, m, p)
			}
		}
		var deferred []memory.Record
		for _, r := range e.broker.Journal() {
			if r.Op == memory.Dispatched && r.RoutingKey == "server" && !r.NotBefore.IsZero() {
				deferred = append(deferred, r)
			}
		}
		if len(deferred) != 1 || !deferred[0].NotBefore.Equal(time.Date(2000, 1, 1, 0, 1, 1, 0, time.UTC)) {
			t.Errorf("deferred dispatches %+v", deferred)
		}
	})
}

func TestInheritedHeaders(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{HeaderPrefix: "Acme"})
		var r recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			return b.Send(ctx, "orders", OrderPlaced{ID: m.ID})
		}))
		must(t, bus.Handle(b, func(ctx context.Context, m OrderPlaced) error { return r.handle(ctx, m.ID) }))
		e.start(b)
		// A PikaBus 1.x message: its own time format, integer retries of
		// another width, an x-death array, a correlation id.
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
			ContentType: "application/json", Type: "application/json", Body: []byte(`{"ID":"py"}`),
			Headers: transport.Headers{
				"Acme.MessageId":      "m-1",
				"Acme.CorrelationId":  "corr-1",
				"Acme.MessageType":    "PlaceOrder",
				"Acme.TimeSent":       "11/22/2026 09:30:00",
				"Acme.ErrorRetries":   int64(0),
				"Acme.ContentType":    "application/json",
				"x-death":             []any{map[string]any{"count": int64(1), "queue": "orders"}},
				"traceparent":         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"x-delivery-count":    int32(2),
				"Acme.ConversationId": []byte("binary conversation id"),
			},
		}}))
		idle()
		in := r.incoming()
		if len(in) != 1 {
			t.Fatalf("handled %d", len(in))
		}
		got := in[0]
		h := got.Message.Headers
		if got.CorrelationID != "corr-1" || h["Acme.CorrelationId"] != "corr-1" ||
			h["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
			t.Errorf("inherited %+v", got)
		}
		if _, ok := h["PikaBus.MessageId"]; ok {
			t.Error("PikaBus headers written with another prefix")
		}
		keys := slices.Sorted(maps.Keys(h))
		for _, k := range keys {
			if !strings.HasPrefix(k, "Acme.") && k != "traceparent" {
				t.Errorf("unexpected header %q", k)
			}
		}
	})
}

func TestReadingPikaBusHeaders(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle))
		e.start(b)
		for _, h := range []transport.Headers{
			{"PikaBus.TimeSent": "11/22/2026 09:30:00", "PikaBus.ErrorRetries": int64(3)},
			{"PikaBus.TimeSent": "2026-11-22T09:30:00.000000Z", "PikaBus.ErrorRetries": "3"},
			{"PikaBus.TimeSent": "2026-11-22T10:30:00+01:00", "PikaBus.ErrorRetries": uint8(3)},
			{"PikaBus.TimeSent": time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC), "PikaBus.ErrorRetries": int16(3)},
		} {
			h["PikaBus.MessageType"] = "PlaceOrder"
			h["x-death"] = []any{map[string]any{"count": int64(1)}}
			must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{Body: []byte(`{}`), Headers: h}}))
		}
		// Unreadable headers are ignored, not fatal.
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{Body: []byte(`{}`), Headers: transport.Headers{
			"PikaBus.MessageType": "PlaceOrder", "PikaBus.TimeSent": int32(5), "PikaBus.ErrorRetries": "many", "PikaBus.ReplyToAddress": int32(1),
		}}}))
		idle()
		in := r.incoming()
		if len(in) != 5 {
			t.Fatalf("handled %d of 5", len(in))
		}
		want := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
		for i, x := range in[:4] {
			if !x.TimeSent.Equal(want) || x.Retries != 3 {
				t.Errorf("message %d: TimeSent %v, Retries %d", i, x.TimeSent, x.Retries)
			}
		}
		if x := in[4]; !x.TimeSent.IsZero() || x.Retries != 0 || x.ReplyTo != "" {
			t.Errorf("unreadable headers gave %+v", x)
		}
	})
}

func TestWithHeadersOverridesStandardHeaders(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}, bus.WithHeaders(transport.Headers{"PikaBus.MessageId": "mine", "tenant": "t"})))
		must(t, b.Send(ctx, "orders", PlaceOrder{}, bus.WithMessageID("id-2"), bus.WithCorrelationID("corr-2"), bus.WithConversationID("conv-2")))
		idle()
		in := r.incoming()
		if in[0].MessageID != "mine" || in[0].Message.ID != "mine" || in[0].Message.Headers["tenant"] != "t" {
			t.Errorf("overridden id: %+v", in[0])
		}
		if in[1].MessageID != "id-2" || in[1].CorrelationID != "corr-2" || in[1].ConversationID != "conv-2" || in[1].Message.CorrelationID != "corr-2" {
			t.Errorf("ids set by options: %+v", in[1])
		}
	})
}

// TestTimeFormatPikaBus1 writes the times a PikaBus 1.x peer reads, and
// still reads times in either form.
func TestTimeFormatPikaBus1(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		legacy := e.bus("legacy", bus.Options{TimeFormat: middleware.TimePikaBus1})
		target := e.bus("python-service", bus.Options{})
		e.start(legacy)
		e.start(target)
		ctx := context.Background()
		if err := legacy.Defer(ctx, 90*time.Second, "python-service", PlaceOrder{ID: "1"}); err != nil {
			t.Fatal(err)
		}
		msgs := e.broker.Deferred()
		if len(msgs) != 1 {
			t.Fatalf("%d deferred messages, want 1", len(msgs))
		}
		h := msgs[0].Message.Headers
		// The bubble's clock starts at 2000-01-01 00:00:00 UTC.
		if got := h["PikaBus.TimeSent"]; got != "01/01/2000 00:00:00" {
			t.Errorf("TimeSent = %v, want PikaBus 1.x form", got)
		}
		if got := h["PikaBus.DeferredTime"]; got != "01/01/2000 00:01:30" {
			t.Errorf("DeferredTime = %v, want PikaBus 1.x form", got)
		}
		if _, err := bus.New(e.tr, "x", bus.Options{TimeFormat: 9}); err == nil {
			t.Error("New accepted an unknown TimeFormat")
		}
	})
}
