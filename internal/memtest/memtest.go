// Package memtest makes memory transports for the conformance suites'
// harnesses: the transports made for one subtest are connections to one
// broker, as the RabbitMQ transports of a subtest are to one node, each
// with exchanges of its own (see [conformance.Harness.New]), so that a
// queue one declares is there for another while the topic routing of one
// never reaches the queues of another.
package memtest

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

var (
	mu      sync.Mutex
	brokers = map[testing.TB]*memory.Broker{}
)

// New returns a new memory transport on the broker of the subtest t,
// made at its first call for t and closed when t ends.
func New(t testing.TB) *memory.Transport {
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
	})
}
