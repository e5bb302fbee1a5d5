package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/busline/busline/bus"
	collide "github.com/busline/busline/bus/internal/collide/othertypes"
	"github.com/busline/busline/bus/internal/othertypes"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
	"time"
)

func TestSendToTypedHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "a"}))
		must(t, b.Send(ctx, "orders", &PlaceOrder{ID: "b"})) // a pointer has its element's type
		idle()
		if got := r.all(); !slices.Equal(got, []PlaceOrder{{"a"}, {"b"}}) {
			t.Errorf("handled %v", got)
		}
		in := r.incoming()[0]
		if in.MessageType != "PlaceOrder" || in.Queue != "orders" || in.Intent != "command" ||
			in.ReplyTo != "orders" || in.OriginatingAddress != "orders" || in.Retries != 0 || in.Redelivered ||
			in.MessageID == "" || in.CorrelationID != in.MessageID || in.TimeSent.IsZero() || in.Message == nil {
			t.Errorf("Incoming %+v", in)
		}
		if n := e.broker.Depth("orders") + e.broker.Depth("error"); n != 0 {
			t.Errorf("%d messages left", n)
		}
	})
}

func TestIncomingFromOutsideHandler(t *testing.T) {
	if _, ok := bus.IncomingFrom(context.Background()); ok {
		t.Error("IncomingFrom(Background) ok")
	}
}

type named struct{}

func (named) MessageType() string { return "Sales.OrderAccepted" }

type namedPtr struct{ N int }

func (*namedPtr) MessageType() string { return "Sales.Ptr" }

type Generic[T any] struct{ V T }

func TestTypeName(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{PlaceOrder{}, "PlaceOrder"},
		{&PlaceOrder{}, "PlaceOrder"},
		{named{}, "Sales.OrderAccepted"},
		{&named{}, "Sales.OrderAccepted"},
		{namedPtr{}, "Sales.Ptr"},
		{othertypes.PlaceOrder{}, "PlaceOrder"},
		{"text", "string"},
		{json.RawMessage("{}"), "RawMessage"},
	} {
		got, err := bus.TypeName(c.v)
		if err != nil || got != c.want {
			t.Errorf("TypeName(%T) = %q, %v; want %q", c.v, got, err, c.want)
		}
	}
	g, err := bus.TypeName(Generic[int]{})
	if err != nil || !strings.HasPrefix(g, "Generic[") {
		t.Errorf("TypeName(Generic[int]) = %q, %v", g, err)
	}
	for _, v := range []any{nil, map[string]any{}, struct{ A int }{}, []PlaceOrder{}} {
		if got, err := bus.TypeName(v); err == nil {
			t.Errorf("TypeName(%T) = %q, want an error", v, got)
		}
	}
}

func TestMessageTypeNames(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var mine, other, ptr, renamed recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m named) error { return mine.handle(ctx, "named") }))
		must(t, bus.Handle(b, func(ctx context.Context, m *namedPtr) error { return ptr.handle(ctx, "ptr") }))
		must(t, bus.Handle(b, func(ctx context.Context, m othertypes.PlaceOrder) error { return other.handle(ctx, m.Ref) }))
		// A type of the same derived name from another package is refused...
		err := bus.Handle(b, func(ctx context.Context, m othertypes2PlaceOrder) error { return nil })
		if err != nil {
			t.Fatalf("a type whose derived name differs was refused: %v", err)
		}
		err = bus.Handle(b, func(ctx context.Context, m collide.PlaceOrder) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "othertypes.PlaceOrder") {
			t.Errorf("collision of derived names: %v", err)
		}
		// ...unless it is named on purpose.
		must(t, bus.Handle(b, func(ctx context.Context, m collide.PlaceOrder) error { return renamed.handle(ctx, m.Ref) },
			bus.WithMessageType("othertypes.PlaceOrder")))
		// An unnamed type needs a name.
		if err := bus.Handle(b, func(context.Context, map[string]any) error { return nil }); err == nil {
			t.Error("Handle of an unnamed type succeeded")
		}
		var raw recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m map[string]any) error { return raw.handle(ctx, m["Ref"].(string)) },
			bus.WithMessageType("Custom.Name")))
		e.start(b)

		must(t, b.Send(ctx, "orders", named{}))
		must(t, b.Send(ctx, "orders", &namedPtr{}))
		must(t, b.Send(ctx, "orders", othertypes.PlaceOrder{Ref: "x"}))
		must(t, b.Send(ctx, "orders", collide.PlaceOrder{Ref: "z"}, bus.WithMessageType("othertypes.PlaceOrder")))
		// The type of the same derived name is refused on the send side
		// too, and so is bus_test's PlaceOrder: every "PlaceOrder" of
		// this Bus is othertypes'.
		for _, m := range []any{collide.PlaceOrder{}, PlaceOrder{}} {
			if err := b.Send(ctx, "orders", m); !errors.Is(err, bus.ErrInvalidMessage) || !strings.Contains(err.Error(), "both derive") {
				t.Errorf("Send(%T) of a colliding derived name: %v", m, err)
			}
		}
		must(t, b.Send(ctx, "orders", map[string]any{"Ref": "y"}, bus.WithMessageType("Custom.Name")))
		if err := b.Send(ctx, "orders", map[string]any{}); err == nil {
			t.Error("Send of an unnamed type without WithMessageType succeeded")
		}
		idle()
		for _, c := range []struct {
			r    *recorder[string]
			want []string
		}{{&mine, []string{"named"}}, {&ptr, []string{"ptr"}}, {&other, []string{"x"}}, {&renamed, []string{"z"}}, {&raw, []string{"y"}}} {
			if got := c.r.all(); !slices.Equal(got, c.want) {
				t.Errorf("handled %v, want %v", got, c.want)
			}
		}
	})
}

// othertypes2PlaceOrder has a name that cannot collide.
type othertypes2PlaceOrder struct{ Ref string }

func TestRawHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var got []transport.Message
		must(t, b.HandleRaw("PlaceOrder", func(ctx context.Context, m *transport.Message) error {
			got = append(got, m.Clone())
			return nil
		}))
		if err := b.HandleRaw("", func(context.Context, *transport.Message) error { return nil }); err == nil {
			t.Error("HandleRaw with an empty type succeeded")
		}
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "a"}, bus.WithHeaders(transport.Headers{"tenant": "t1"})))
		idle()
		if len(got) != 1 || string(got[0].Body) != `{"ID":"a"}` || got[0].Headers["tenant"] != "t1" ||
			header(got[0], "MessageType") != "PlaceOrder" {
			t.Errorf("raw handler saw %+v", got)
		}
	})
}

func TestSeveralHandlersAllRunAndMustAllSucceed(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var calls []string
		var mu sync.Mutex
		call := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
		var fail atomic.Bool
		fail.Store(true)
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			call("first")
			return b.Publish(ctx, "orders.placed", OrderPlaced{m.ID}, bus.WithRequireSubscriber(false))
		}))
		must(t, b.HandleRaw("PlaceOrder", func(ctx context.Context, m *transport.Message) error {
			call("second")
			if fail.Swap(false) {
				return errors.New("second fails once")
			}
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "a"}))
		idle()
		if !slices.Equal(calls, []string{"first", "second"}) {
			t.Fatalf("calls %v", calls)
		}
		// The failure held back the first handler's event; the retry
		// runs both again.
		if n := countDispatched(e, transport.DefaultTopicExchange); n != 0 {
			t.Errorf("%d events published by a failed handling", n)
		}
		time.Sleep(2 * time.Second)
		idle()
		if !slices.Equal(calls, []string{"first", "second", "first", "second"}) {
			t.Errorf("calls %v", calls)
		}
		if n := countDispatched(e, transport.DefaultTopicExchange); n != 1 {
			t.Errorf("%d events published, want 1", n)
		}
	})
}

func TestHandleAfterStart(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Unhandled: bus.UnhandledDiscard})
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "early"}))
		idle()
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, r.handle))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "late"}))
		idle()
		if got := r.all(); !slices.Equal(got, []PlaceOrder{{"late"}}) {
			t.Errorf("handled %v", got)
		}
		b.Close()
		if err := bus.Handle(b, r.handle); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Handle after Close: %v", err)
		}
	})
}

// countDispatched counts the messages dispatched to an exchange.
func countDispatched(e *env, exchange string) int {
	n := 0
	for _, r := range e.broker.Journal() {
		if r.Op == memory.Dispatched && r.Exchange == exchange {
			n++
		}
	}
	return n
}

// A message typed in the form busline wrote before derived names left the
// package out ("orders.PlaceOrder") finds the handler of the derived name,
// unless a handler takes that exact name.
func TestLegacyDerivedName(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var typed, exact recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { return typed.handle(ctx, m.ID) }))
		must(t, b.HandleRaw("shipping.ShipOrder", func(ctx context.Context, m *transport.Message) error {
			return exact.handle(ctx, string(m.Body))
		}))
		e.start(b)
		for _, m := range []transport.Message{
			{ID: "1", Type: "orders.PlaceOrder", Body: []byte(`{"ID":"old-form"}`)},
			{ID: "2", Type: "main.PlaceOrder", Body: []byte(`{"ID":"from-main"}`)},
			{ID: "3", Type: "shipping.ShipOrder", Body: []byte(`x`)},
		} {
			m.ContentType = "application/json"
			m.Headers = transport.Headers{"PikaBus.MessageType": m.Type}
			must(t, e.broker.Inject("orders", m))
		}
		idle()
		if got := typed.all(); !slices.Equal(got, []string{"old-form", "from-main"}) {
			t.Errorf("typed handler saw %v", got)
		}
		if got := exact.all(); !slices.Equal(got, []string{"x"}) {
			t.Errorf("raw handler saw %v", got)
		}
	})
}
