package bus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

func TestEventString(t *testing.T) {
	for _, c := range []struct {
		e    bus.Notice
		want string
	}{
		{bus.Notice{Kind: bus.Retried, MessageID: "m1", MessageType: "orders.PlaceOrder", Queue: "orders", Retries: 2, Delay: 4 * time.Second, Err: errors.New("gateway down")},
			"retried: message m1 (orders.PlaceOrder) in orders, retry 2 in 4s: gateway down"},
		{bus.Notice{Kind: bus.SentToErrorQueue, MessageID: "m1", MessageType: "orders.PlaceOrder", Queue: "orders", Retries: 5, Err: errors.New("gateway down")},
			"sent to error queue: message m1 (orders.PlaceOrder) in orders after 5 retries: gateway down"},
		{bus.Notice{Kind: bus.TransportChanged, Queue: "orders", Transport: transport.Event{Kind: transport.Disconnected}},
			"transport event in orders (transport: disconnected)"},
		{bus.Notice{Kind: bus.Started, Queue: "orders"}, "started in orders"},
		{bus.Notice{}, "unknown notice"},
	} {
		if got := c.e.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}
