package bus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// untyped is a message as a foreign producer sends it without a type: no
// MessageType header, no type property.
func untyped(e *env, queue, body string) {
	e.t.Helper()
	must(e.t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: queue, Mandatory: true, Message: transport.Message{
		ContentType: "application/json", Body: []byte(body),
	}}))
}

// calls records handler calls in order.
type calls struct {
	mu  sync.Mutex
	got []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, s)
}

func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	return got
}

// The precedence: the handlers of the message's type, else the fallback
// handlers, else the Unhandled policy.
func TestHandleFallbackPrecedence(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var c calls
		var types []string
		fail := map[string]int{} // fallback failures left, by body
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			c.add("typed " + m.ID)
			if m.ID == "bad" {
				return bus.Permanent(errors.New("bad order"))
			}
			return nil
		}))
		for _, name := range []string{"fallback1", "fallback2"} {
			must(t, b.HandleFallback(func(ctx context.Context, m *transport.Message) error {
				c.add(name + " " + string(m.Body))
				if name == "fallback1" {
					in, _ := bus.IncomingFrom(ctx)
					types = append(types, in.MessageType)
				}
				if name == "fallback2" && fail[string(m.Body)] > 0 {
					fail[string(m.Body)]--
					return errors.New("fallback fails once")
				}
				return nil
			}))
		}
		e.start(b)

		// A type with a handler: that handler only.
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "a"}))
		idle()
		if got := c.take(); !slices.Equal(got, []string{"typed a"}) {
			t.Errorf("PlaceOrder: %v", got)
		}
		// A type without one: every fallback handler, in order.
		must(t, b.Send(ctx, "orders", OrderPlaced{ID: "b"}))
		idle()
		if got := c.take(); !slices.Equal(got, []string{`fallback1 {"ID":"b"}`, `fallback2 {"ID":"b"}`}) {
			t.Errorf("OrderPlaced: %v", got)
		}
		// No type at all: the fallback handlers too.
		untyped(e, "orders", `{"n":1}`)
		idle()
		if got := c.take(); !slices.Equal(got, []string{`fallback1 {"n":1}`, `fallback2 {"n":1}`}) {
			t.Errorf("untyped: %v", got)
		}
		if !slices.Equal(types, []string{"OrderPlaced", ""}) {
			t.Errorf("fallback saw the types %q", types)
		}
		// A fallback that fails is retried like any handler: all of them run again.
		fail[`{"n":2}`] = 1
		untyped(e, "orders", `{"n":2}`)
		idle()
		time.Sleep(3 * time.Second)
		idle()
		if got := c.take(); !slices.Equal(got, []string{`fallback1 {"n":2}`, `fallback2 {"n":2}`, `fallback1 {"n":2}`, `fallback2 {"n":2}`}) {
			t.Errorf("failing fallback: %v", got)
		}
		// A typed handler that fails does not fall back.
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "bad"}))
		idle()
		if got := c.take(); !slices.Equal(got, []string{"typed bad"}) {
			t.Errorf("failing typed handler: %v", got)
		}
		eq := errorQueue(e)
		if len(eq) != 1 || !strings.Contains(header(eq[0], "ErrorDetails"), "bad order") {
			t.Errorf("error queue %v: want only the bad order", eq)
		}
		if n := e.broker.Depth("orders"); n != 0 {
			t.Errorf("%d messages left in the queue", n)
		}
	})
}

func TestHandleFallbackRefusals(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		noop := func(context.Context, *transport.Message) error { return nil }
		b := e.bus("orders", bus.Options{})
		if err := b.HandleFallback(nil); err == nil {
			t.Error("HandleFallback(nil) succeeded")
		}
		if err := e.bus("", bus.Options{}).HandleFallback(noop); !errors.Is(err, bus.ErrSendOnly) {
			t.Errorf("HandleFallback on a send-only bus: %v", err)
		}
		b.Close()
		if err := b.HandleFallback(noop); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("HandleFallback after Close: %v", err)
		}
	})
}

// A message without a type is handled as Options.DefaultMessageType; a type
// property that repeats the content type (PikaBus 1.x) counts as none.
func TestDefaultMessageType(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{DefaultMessageType: "PlaceOrder"})
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle, bus.WithMessageType("PlaceOrder")))
		e.start(b)
		untyped(e, "orders", `{"ID":"no type"}`)
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
			ContentType: "application/json", Type: "application/json", Body: []byte(`{"ID":"content type as type"}`),
		}}))
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
			Type: "application/json", Body: []byte(`{"ID":"content type header as type"}`),
			Headers: transport.Headers{"PikaBus.ContentType": "application/json"},
		}}))
		// A type of its own is not replaced.
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
			ContentType: "application/json", Type: "Other", Body: []byte(`{"ID":"other"}`),
		}}))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "go"}, bus.WithMessageType("PlaceOrder")))
		idle()
		if got := r.all(); !slices.Equal(got, []PlaceOrder{{"no type"}, {"content type as type"}, {"content type header as type"}, {"go"}}) {
			t.Errorf("handled %v", got)
		}
		for _, in := range r.incoming() {
			if in.MessageType != "PlaceOrder" {
				t.Errorf("Incoming.MessageType %q", in.MessageType)
			}
		}
		eq := errorQueue(e)
		if len(eq) != 1 || !strings.Contains(header(eq[0], "ErrorDetails"), `no handler for message type "Other"`) {
			t.Errorf("error queue %v", eq)
		}

		// Without it, and without a fallback, a message without a type is
		// unhandled, and the reason says what would take it.
		plain := e.bus("plain", bus.Options{})
		e.start(plain)
		untyped(e, "plain", `{}`)
		idle()
		eq = errorQueue(e)
		if len(eq) != 2 || !strings.Contains(header(eq[1], "ErrorDetails"), "DefaultMessageType") {
			t.Errorf("error queue %v", eq)
		}

		// A default type no handler takes falls back.
		fb := e.bus("fallback", bus.Options{DefaultMessageType: "Nobody"})
		var c calls
		must(t, fb.HandleFallback(func(ctx context.Context, m *transport.Message) error {
			in, _ := bus.IncomingFrom(ctx)
			c.add(in.MessageType)
			return nil
		}))
		e.start(fb)
		untyped(e, "fallback", `{}`)
		idle()
		if got := c.take(); !slices.Equal(got, []string{"Nobody"}) {
			t.Errorf("fallback saw %v", got)
		}
	})
}
