package bus_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// funcCodec is a codec of an uncomparable type (it holds funcs), as a codec
// built from a library's Marshal and Unmarshal often is.
type funcCodec struct {
	marshal   func(any) ([]byte, error)
	unmarshal func([]byte, any) error
}

func (funcCodec) ContentType() string { return "application/json" }

func (c funcCodec) Encode(v any, m *transport.Message) error {
	b, err := c.marshal(v)
	m.Body, m.ContentType = b, "application/json"
	return err
}

func (c funcCodec) Decode(m *transport.Message, v any) error { return c.unmarshal(m.Body, v) }

// A codec of an uncomparable type works as Options.Codec: the Bus never
// compares it with ==, which would panic.
func TestUncomparableCodec(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Codec: funcCodec{json.Marshal, json.Unmarshal}})
		got := make(chan string, 1)
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { got <- m.ID; return nil }))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}))
		if id := <-got; id != "x" {
			t.Fatalf("handled %q", id)
		}
	})
}
