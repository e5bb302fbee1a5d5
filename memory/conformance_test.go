package memory_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestConformance runs the transport conformance suite against the memory
// transport, each subtest in a synctest bubble so that its waits pass in
// fake time and its goroutines must all end.
//
// The transports of one subtest are connections to one broker, as the
// RabbitMQ transports of a subtest are to one node, each with exchanges of
// its own (see [conformance.Harness.New]), so that what one transport
// declares is there for another.
func TestConformance(t *testing.T) {
	conformance.RunTransport(t, harness(""))
}

// TestConformanceClassic runs the suite on classic queues, whose requeue
// position and headers differ from quorum queues' (the default).
func TestConformanceClassic(t *testing.T) {
	conformance.RunTransport(t, harness(transport.Classic))
}

func harness(typ transport.QueueType) conformance.Harness {
	var mu sync.Mutex
	brokers := map[testing.TB]*memory.Broker{}
	return conformance.Harness{
		New: func(_ context.Context, t testing.TB) (transport.Transport, error) {
			mu.Lock()
			b, ok := brokers[t]
			if !ok {
				b = memory.NewBroker()
				brokers[t] = b
				t.Cleanup(func() {
					mu.Lock()
					delete(brokers, t)
					mu.Unlock()
					b.Close()
				})
			}
			mu.Unlock()
			var s [4]byte
			_, _ = rand.Read(s[:])
			suffix := "-" + hex.EncodeToString(s[:])
			return memory.New(memory.Options{
				Broker:         b,
				DirectExchange: transport.DefaultDirectExchange + suffix,
				TopicExchange:  transport.DefaultTopicExchange + suffix,
			}), nil
		},
		Bubble:    synctest.Test,
		QueueType: typ,
	}
}
