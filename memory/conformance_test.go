package memory_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/internal/memtest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestConformance runs the transport conformance suite against the memory
// transport, each subtest in a synctest bubble so that its waits pass in
// fake time and its goroutines must all end.
//
// The transports of one subtest are connections to one broker, each with
// exchanges of its own (see package memtest).
func TestConformance(t *testing.T) {
	conformance.RunTransport(t, harness(""))
}

// TestConformanceClassic runs the suite on classic queues, whose requeue
// position and headers differ from quorum queues' (the default).
func TestConformanceClassic(t *testing.T) {
	conformance.RunTransport(t, harness(transport.Classic))
}

func harness(typ transport.QueueType) conformance.Harness {
	return conformance.Harness{
		New: func(_ context.Context, t testing.TB) (transport.Transport, error) {
			return memtest.New(t), nil
		},
		// A queue of the broker alone, as PikaBus 1.x declares its own.
		DeclareUnbound: func(_ context.Context, _ testing.TB, tr transport.Transport, q transport.Queue) error {
			return tr.(*memory.Transport).Broker().DeclareQueue(q)
		},
		Bubble:    synctest.Test,
		QueueType: typ,
	}
}
