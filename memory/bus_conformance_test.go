package memory_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestBusConformance runs the bus scenarios over the memory transport, each
// in a synctest bubble: retries and deferred messages pass in fake time,
// and every goroutine of the endpoints must have ended with the subtest.
func TestBusConformance(t *testing.T) {
	conformance.RunBus(t, conformance.Harness{
		New: func(context.Context, testing.TB) (transport.Transport, error) {
			return memory.New(memory.Options{}), nil
		},
		DeclareUnbound: func(_ context.Context, _ testing.TB, tr transport.Transport, q transport.Queue) error {
			return tr.(*memory.Transport).Broker().DeclareQueue(q)
		},
		Bubble: synctest.Test,
	})
}
