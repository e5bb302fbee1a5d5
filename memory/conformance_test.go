package memory_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestConformance runs the transport conformance suite against the memory
// transport, each subtest in a synctest bubble so that its waits pass in
// fake time and its goroutines must all end.
func TestConformance(t *testing.T) {
	conformance.RunTransport(t, conformance.Harness{
		New: func(context.Context, testing.TB) (transport.Transport, error) {
			return memory.New(memory.Options{}), nil
		},
		Bubble: synctest.Test,
	})
}
