package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// PyOrder is what the Python service of these tests sends: PikaBus
// serializes a dict with json.dumps.
type PyOrder struct {
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// OrderAccepted is the Go service's reply.
type OrderAccepted struct {
	OrderID string `json:"order_id"`
}

func (OrderAccepted) MessageType() string { return "OrderAccepted" }

// pikaBusSend returns the message a Python PikaBus service listening on
// queue "pyservice" publishes for
//
//	await bus.Send({'order_id': '42', 'quantity': 3}, queue='orders')
//
// with no messageType, as PikaBus's PikaProperties builds it: uuid1 ids (the
// correlation id a fresh one, not the message id), the listener queue as
// ReplyToAddress and OriginatingAddress, the serializer's content type and
// encoding, no MessageType header and no type property, and TimeSent as
// timeSent writes it. PikaBus 2 writes datetime.isoformat() of an aware UTC
// time ("+00:00"; no fraction when the microseconds are zero) and a type
// property only when given a messageType; PikaBus 1.x writes
// '%m/%d/%Y %H:%M:%S' and, in its early versions, the content type as the
// type property.
func pikaBusSend(timeSent string, typeProperty string) transport.Message {
	const (
		id   = "6a3c1e2e-7c8b-11f0-8de9-0242ac120002"
		corr = "6a3c1f46-7c8b-11f0-8de9-0242ac120002"
	)
	return transport.Message{
		ID:              id,
		CorrelationID:   corr,
		ReplyTo:         "pyservice",
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Type:            typeProperty,
		Timestamp:       time.Date(2026, 8, 7, 16, 32, 19, 0, time.UTC),
		Headers: transport.Headers{
			"PikaBus.MessageId":          id,
			"PikaBus.TimeSent":           timeSent,
			"PikaBus.ReplyToAddress":     "pyservice",
			"PikaBus.OriginatingAddress": "pyservice",
			"PikaBus.Intent":             "command",
			"PikaBus.ContentType":        "application/json",
			"PikaBus.ContentEncoding":    "utf-8",
			"PikaBus.CorrelationId":      corr,
		},
		Body: []byte(`{"order_id": "42", "quantity": 3}`),
	}
}

// A Go endpoint handles what a Python PikaBus service sends without a
// message type (Options.DefaultMessageType), and its Reply reaches the
// Python service's queue as PikaBus expects: to the ReplyToAddress, with the
// incoming CorrelationId, and a TimeSent its peers read.
func TestPikaBusInterop(t *testing.T) {
	for _, c := range []struct {
		name, timeSent, typeProperty string
		format                       bus.Options
		wantTimeSent                 *regexp.Regexp
	}{
		{"PikaBus 2", "2026-08-07T16:32:19.123456+00:00", "", bus.Options{},
			regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)},
		{"PikaBus 2, whole second", "2026-08-07T16:32:19+00:00", "", bus.Options{},
			regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)},
		{"PikaBus 1.x", "08/07/2026 16:32:19", "application/json", bus.Options{TimeFormat: middleware.TimePikaBus1},
			regexp.MustCompile(`^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d$`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, e *env) {
				// The Python service's own queue, as PikaBus declares it.
				python := e.transport("python")
				must(t, python.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "pyservice"}}))

				opts := c.format
				opts.DefaultMessageType = "PlaceOrder" // what the Python side would call it
				orders := e.bus("orders", opts)
				var got []PyOrder
				var in bus.Incoming
				must(t, bus.Handle(orders, func(ctx context.Context, o PyOrder) error {
					got = append(got, o)
					in, _ = bus.IncomingFrom(ctx)
					return orders.Reply(ctx, OrderAccepted{OrderID: o.OrderID})
				}, bus.WithMessageType("PlaceOrder")))
				e.start(orders)

				sent := pikaBusSend(c.timeSent, c.typeProperty)
				must(t, python.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: sent}))
				idle()

				if len(got) != 1 || got[0] != (PyOrder{OrderID: "42", Quantity: 3}) {
					t.Fatalf("handled %+v", got)
				}
				wantTime := time.Date(2026, 8, 7, 16, 32, 19, 0, time.UTC)
				if c.name == "PikaBus 2" {
					wantTime = wantTime.Add(123456 * time.Microsecond)
				}
				if in.MessageType != "PlaceOrder" || in.MessageID != sent.ID || in.CorrelationID != sent.CorrelationID ||
					in.ReplyTo != "pyservice" || in.OriginatingAddress != "pyservice" || in.Intent != "command" ||
					!in.TimeSent.Equal(wantTime) || in.Retries != 0 {
					t.Errorf("Incoming %+v", in)
				}
				if n := len(errorQueue(e)); n != 0 {
					t.Errorf("%d messages in the error queue", n)
				}

				// The reply, as the Python service's consumer gets it.
				d, ok, err := python.Get(ctx, "pyservice")
				if err != nil || !ok {
					t.Fatalf("no reply in pyservice: %v", err)
				}
				must(t, d.Ack())
				r := d.Message
				h := func(name string) string { s, _ := r.Headers["PikaBus."+name].(string); return s }
				if h("CorrelationId") != sent.CorrelationID || r.CorrelationID != sent.CorrelationID {
					t.Errorf("reply correlation id %q / %q, want the request's CorrelationId header %q", h("CorrelationId"), r.CorrelationID, sent.CorrelationID)
				}
				if id := h("MessageId"); id == "" || id == sent.ID || r.ID != id {
					t.Errorf("reply id %q / %q", id, r.ID)
				}
				for name, want := range map[string]string{
					"ReplyToAddress": "orders", "OriginatingAddress": "orders", "Intent": "command",
					"MessageType": "OrderAccepted", "ContentType": "application/json", "ContentEncoding": "utf-8",
				} {
					if h(name) != want {
						t.Errorf("reply header %s = %q, want %q", name, h(name), want)
					}
				}
				if !c.wantTimeSent.MatchString(h("TimeSent")) {
					t.Errorf("reply TimeSent %q, not what this PikaBus version reads", h("TimeSent"))
				}
				if r.ReplyTo != "orders" || r.Type != "OrderAccepted" || r.ContentType != "application/json" ||
					string(r.Body) != `{"order_id":"42"}` {
					t.Errorf("reply %+v", r)
				}
				if d.Queue != "pyservice" || d.Exchange != transport.Direct || d.RoutingKey != "pyservice" {
					t.Errorf("reply delivered from %s exchange under %q to %q", d.Exchange, d.RoutingKey, d.Queue)
				}
			})
		})
	}
}

// A PikaBus service publishes events without a type too; a Go endpoint
// subscribed to them takes everything with a fallback handler, as a PikaBus
// handler does.
func TestPikaBusEventsToFallback(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		audit := e.bus("audit", bus.Options{Subscriptions: []string{"orders.#"}})
		var seen []bus.Incoming
		must(t, audit.HandleFallback(func(ctx context.Context, m *transport.Message) error {
			in, _ := bus.IncomingFrom(ctx)
			seen = append(seen, in)
			return nil
		}))
		e.start(audit)
		ev := pikaBusSend("2026-08-07T16:32:19.123456+00:00", "")
		ev.Headers["PikaBus.Intent"] = "event"
		must(t, e.transport("python").Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, RoutingKey: "orders.placed", Message: ev}))
		idle()
		if len(seen) != 1 || seen[0].Intent != "event" || seen[0].MessageType != "" || string(seen[0].Message.Body) != string(ev.Body) {
			t.Errorf("fallback saw %+v", seen)
		}
	})
}

// A message a PikaBus 2 service moved to the error queue, with the headers
// scripts/pikabus-interop.sh saw on it: PikaBus writes ErrorRetries as a
// Python int, which pamqp encodes as a short-short ('b', int8 in amqp091),
// keeps the DeferredTime of its last retry and puts a Python traceback in
// ErrorDetails. busline's replay sends it back to the PikaBus service's
// queue with a fresh retry count and everything else as it was.
func TestPikaBusErrorQueueReplay(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		python := e.transport("python")
		must(t, python.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "pyservice"}}))
		must(t, python.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "error", Type: transport.Classic}}))
		failed := pikaBusSend("2026-11-22T10:50:35.768520+00:00", "")
		failed.Headers["PikaBus.ErrorRetries"] = int8(3)
		failed.Headers["PikaBus.DeferredTime"] = "2026-11-22T10:50:38.775396+00:00"
		failed.Headers["PikaBus.SourceQueue"] = "pyservice"
		failed.Headers["PikaBus.ErrorDetails"] = "Traceback (most recent call last):\n  ...\nRuntimeError: python handler failure\n"
		must(t, python.Dispatch(ctx, transport.Outgoing{RoutingKey: "error", Mandatory: true, Message: failed}))

		ops := e.bus("", bus.Options{}) // an operations tool: a send-only Bus
		res, err := ops.ReplayErrors(ctx, middleware.ReplayOptions{})
		must(t, err)
		if len(res.Replayed) != 1 || res.Replayed[0].SourceQueue != "pyservice" {
			t.Fatalf("replayed %+v", res)
		}
		d, ok, err := python.Get(ctx, "pyservice")
		if err != nil || !ok {
			t.Fatalf("nothing back in pyservice: %v", err)
		}
		must(t, d.Ack())
		// PikaBus reads the count with int(headers[key]) when the header is
		// there, and counts from 0 when it is not.
		if r, ok := d.Message.Headers["PikaBus.ErrorRetries"]; ok {
			if n, _, err := middleware.HeaderInt(r); err != nil || n != 0 {
				t.Errorf("replayed with ErrorRetries %v (%T), want a fresh count", r, r)
			}
		}
		if d.Message.ID != failed.ID || d.Message.Headers["PikaBus.MessageId"] != failed.ID ||
			d.Message.Headers["PikaBus.CorrelationId"] != failed.CorrelationID || string(d.Message.Body) != string(failed.Body) {
			t.Errorf("replayed %+v", d.Message)
		}
		if n := len(errorQueue(e)); n != 0 {
			t.Errorf("%d messages left in the error queue", n)
		}
	})
}

// How the Bus picks the form of a message's times: WithTimeFormat, else
// TimeFormatByQueue, else Options.TimeFormat; events take only the call
// and Options.TimeFormat.
func TestTimeFormatChoice(t *testing.T) {
	pika1 := regexp.MustCompile(`^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d$`)
	iso := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)
	bubble(t, func(t *testing.T, e *env) {
		python := e.transport("python")
		for _, q := range []string{"py1", "py2"} {
			must(t, python.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q}, Topics: []string{"ev." + q}}))
		}
		b := e.bus("", bus.Options{TimeFormatByQueue: map[string]middleware.TimeFormat{"py1": middleware.TimePikaBus1}})
		check := func(what, queue string, want *regexp.Regexp, headers ...string) {
			t.Helper()
			d, ok, err := python.Get(ctx, queue)
			if err != nil || !ok {
				t.Fatalf("%s: nothing in %s: %v", what, queue, err)
			}
			must(t, d.Ack())
			for _, h := range append([]string{"TimeSent"}, headers...) {
				if v, _ := d.Message.Headers["PikaBus."+h].(string); !want.MatchString(v) {
					t.Errorf("%s: %s %q, want it to match %s", what, h, v, want)
				}
			}
		}
		must(t, b.Send(ctx, "py1", PlaceOrder{ID: "1"}))
		check("Send to a queue named in TimeFormatByQueue", "py1", pika1)
		must(t, b.Send(ctx, "py2", PlaceOrder{ID: "2"}))
		check("Send to another queue", "py2", iso)
		must(t, b.Send(ctx, "py2", PlaceOrder{ID: "3"}, bus.WithTimeFormat(middleware.TimePikaBus1)))
		check("Send WithTimeFormat(TimePikaBus1)", "py2", pika1)
		must(t, b.Send(ctx, "py1", PlaceOrder{ID: "4"}, bus.WithTimeFormat(middleware.TimeRFC3339)))
		check("Send WithTimeFormat(TimeRFC3339) to a 1.x queue", "py1", iso)
		must(t, b.Defer(ctx, time.Second, "py1", PlaceOrder{ID: "5"}))
		time.Sleep(time.Second)
		idle()
		check("Defer to a queue named in TimeFormatByQueue", "py1", pika1, "DeferredTime")
		must(t, b.Publish(ctx, "ev.py1", OrderPlaced{ID: "6"}))
		check("Publish", "py1", iso)

		err := b.Send(ctx, "py2", PlaceOrder{ID: "7"}, bus.WithTimeFormat(9))
		if !errors.Is(err, bus.ErrInvalidMessage) {
			t.Errorf("WithTimeFormat(9) = %v, want ErrInvalidMessage", err)
		}
	})
	for _, opts := range []bus.Options{
		{TimeFormatByQueue: map[string]middleware.TimeFormat{"py": 7}},
		{TimeFormatByQueue: map[string]middleware.TimeFormat{"": middleware.TimePikaBus1}},
	} {
		if _, err := bus.New(memory.New(memory.Options{}), "", opts); err == nil {
			t.Errorf("bus.New(%+v) = nil error", opts)
		}
	}
}

// A message in PikaBus 1.x's form, handled by an endpoint with default
// options: its reply and what the handler sends back to its sender are in
// its form, its retry copies and error-queue copy too, and the endpoint
// warns once per sender.
func TestPikaBus1Defaults(t *testing.T) {
	pika1 := regexp.MustCompile(`^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d$`)
	bubble(t, func(t *testing.T, e *env) {
		python := e.transport("python")
		must(t, python.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "pyservice"}}))
		var logs strings.Builder
		orders := e.bus("orders", bus.Options{
			DefaultMessageType: "PlaceOrder",
			Retry:              middleware.RetryOptions{MaxRetries: middleware.Retries(1)},
			Logger:             slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		fail := true
		must(t, bus.Handle(orders, func(ctx context.Context, o PyOrder) error {
			if fail {
				return errors.New("boom")
			}
			if err := orders.Send(ctx, "pyservice", OrderAccepted{OrderID: "sent"}); err != nil {
				return err
			}
			return orders.Reply(ctx, OrderAccepted{OrderID: o.OrderID})
		}, bus.WithMessageType("PlaceOrder")))
		e.start(orders)

		must(t, python.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: pikaBusSend("08/07/2026 16:32:19", "application/json")}))
		time.Sleep(time.Minute)
		idle()
		failed := errorQueue(e)
		if len(failed) != 1 {
			t.Fatalf("%d messages in the error queue, want 1", len(failed))
		}
		if v, _ := failed[0].Headers["PikaBus.DeferredTime"].(string); !pika1.MatchString(v) {
			t.Errorf("the error queue's copy has DeferredTime %q, not in PikaBus 1.x's form", v)
		}

		fail = false
		for range 2 {
			must(t, python.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: pikaBusSend("08/07/2026 16:32:19", "application/json")}))
			idle()
		}
		for i := range 4 {
			d, ok, err := python.Get(ctx, "pyservice")
			if err != nil || !ok {
				t.Fatalf("message %d: nothing in pyservice: %v", i, err)
			}
			must(t, d.Ack())
			if v, _ := d.Message.Headers["PikaBus.TimeSent"].(string); !pika1.MatchString(v) {
				t.Errorf("message %d to the PikaBus 1.x sender: TimeSent %q", i, v)
			}
		}
		if n := strings.Count(logs.String(), "PikaBus 1.x's time form"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
		}
	})
}
