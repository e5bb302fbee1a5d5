package memory_test

import (
	"slices"
	"testing"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// A message that reaches several queues enters them in the order the queues
// were declared, whatever the exchange kind and the order of the bindings,
// so that the journal (and the deliveries it records) are the same on every
// run.
func TestRouteOrderIsDeclarationOrder(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	names := []string{"z", "a", "m", "b", "y"}
	for _, n := range names {
		must(t, b.DeclareQueue(transport.Queue{Name: n}))
	}
	must(t, b.DeclareExchange("T", memory.ExchangeTopic))
	must(t, b.DeclareExchange("F", memory.ExchangeFanout))
	must(t, b.DeclareExchange("D", memory.ExchangeDirect))
	// Bind in another order than the declaration, under different patterns.
	for i, n := range []string{"y", "b", "m", "a", "z"} {
		must(t, b.Bind("T", n, []string{"#", "k", "*", "k.#", "#.k"}[i]))
		must(t, b.Bind("F", n, ""))
		must(t, b.Bind("D", n, "k"))
	}
	for _, ex := range []string{"T", "F", "D"} {
		must(t, b.Publish(ex, "k", transport.Message{ID: ex}, memory.PublishOptions{Mandatory: true}))
	}
	var got int
	for _, r := range b.Journal() {
		if r.Op != memory.Dispatched {
			continue
		}
		got++
		if !slices.Equal(r.Queues, names) {
			t.Errorf("message published to %s entered %q, want %q (declaration order)", r.Exchange, r.Queues, names)
		}
	}
	if got != 3 {
		t.Fatalf("journal has %d Dispatched records, want 3", got)
	}
}
