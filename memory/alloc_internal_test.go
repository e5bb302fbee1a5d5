package memory

import (
	"context"
	"testing"

	"github.com/busline/busline/transport"
)

// TestRoundTripAllocs checks what a message costs the broker once it runs
// warm: the broker's own copy is recycled, so a dispatch, a delivery and an
// ack allocate only what the handler receives, its Delivery with the body
// (one allocation) and its headers map; nothing when the handler gives its
// delivery back with Recycle, as package bus does.
func TestRoundTripAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	ctx := context.Background()
	tr := New(Options{})
	defer tr.Close()
	tr.Broker().SetJournalLimit(0)
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error)
	var recycle bool // read by the handler after each send on acked
	c, err := tr.Consume(ctx, "q", transport.ConsumeOptions{}, func(_ context.Context, d *transport.Delivery) {
		err := d.Ack()
		if recycle {
			tr.Recycle(d)
		}
		acked <- err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, c := range []struct {
		name    string
		headers transport.Headers
		recycle bool
		want    float64
	}{
		{"no headers", nil, false, 1},
		{"eight headers", transport.Headers{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": int32(8)}, false, 1 + 2},
		{"eleven headers, recycled", transport.Headers{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": int32(8), "i": "9", "j": "10", "k": "11"}, true, 0},
	} {
		recycle = c.recycle
		o := transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "id", Body: make([]byte, 256), Headers: c.headers}}
		n := testing.AllocsPerRun(1000, func() {
			if err := tr.Dispatch(ctx, o); err != nil {
				t.Fatal(err)
			}
			if err := <-acked; err != nil {
				t.Fatal(err)
			}
		})
		if n > c.want {
			t.Errorf("%s: %v allocations per message, want %v", c.name, n, c.want)
		}
	}
}
