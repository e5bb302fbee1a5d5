package watermillbus_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
	"github.com/busline/busline/watermillbus"
)

// unsupported is what a Transport declares it cannot do on any backend
// (see the Transport documentation).
var unsupported = map[string]string{
	"Consume/Prefetch":             "a consumer holds one unsettled message per subscription (one per unit of Concurrency), whatever the prefetch",
	"Settle/ConsumerCloseRequeues": "it holds two unsettled deliveries with Prefetch 2 and Concurrency 1",
	"Settle/DeliveryCount":         "a requeued message is published again; there is no x-delivery-count",
	"QueueArguments":               "Watermill's pub/subs have no priorities, length limits, TTL or dead-lettering; Declare refuses QueueOptions with ErrNotSupported",
	"Consume/Priority":             "Watermill's subscribers have no consumer priority: Consume refuses one with ErrNotSupported",
	"Flow/Priority":                "Watermill's subscribers have no consumer priority: Consume refuses one with ErrNotSupported",
}

// registries gives the transports of one subtest one Registry, as the
// harness asks (transports of one t see one broker), and those of
// different subtests different ones.
type registries struct {
	mu sync.Mutex
	m  map[testing.TB]watermillbus.Registry
}

func (r *registries) get(t testing.TB) watermillbus.Registry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[testing.TB]watermillbus.Registry{}
	}
	reg, ok := r.m[t]
	if !ok {
		reg = watermillbus.NewMemoryRegistry()
		r.m[t] = reg
		t.Cleanup(func() {
			r.mu.Lock()
			delete(r.m, t)
			r.mu.Unlock()
		})
	}
	return reg
}

// watermillAMQP is the harness of a Transport over watermill-amqp v3: its
// durable queue configuration (a queue per topic, consumers compete),
// publishing with confirms.
func watermillAMQP(t *testing.T) conformance.Harness {
	url := brokertest.URL(t)
	var regs registries
	return conformance.Harness{
		New: func(ctx context.Context, t testing.TB) (transport.Transport, error) {
			cfg := wmamqp.NewDurableQueueConfig(url)
			cfg.Publish.ConfirmDelivery = true
			cfg.Publish.ChannelPoolSize = 4
			var pubp atomic.Pointer[wmamqp.Publisher]
			cfg.Connection.AmqpConfig = noRedial(func() bool { p := pubp.Load(); return p != nil && p.Closed() })
			pub, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
			if err != nil {
				return nil, err
			}
			pubp.Store(pub)
			var subp atomic.Pointer[wmamqp.Subscriber]
			cfg.Connection.AmqpConfig = noRedial(func() bool { s := subp.Load(); return s != nil && s.Closed() })
			sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
			if err != nil {
				_ = pub.Close()
				return nil, err
			}
			subp.Store(sub)
			return watermillbus.NewTransport(watermillbus.TransportOptions{
				Publisher: pub, Subscriber: sub, Registry: regs.get(t), CloseBackend: true, Competing: true,
			})
		},
		QueueType:   transport.Classic,
		Unsupported: unsupported,
		// The suites run beside every other package's tests on two shared
		// cores in CI.
		Timeout: 30 * time.Second,
	}
}

// noRedial is the amqp091-go configuration of a watermill-amqp publisher or
// subscriber that refuses to dial once closed() says it was closed.
// watermill-amqp v3.0.2 closes its connection at Close and its reconnecting
// goroutine may take that close for a loss (it selects between "closing"
// and the connection's close notification, both ready, at random) and dial
// again: a connection nobody closes, which goleak reported once in CI.
// Otherwise the configuration is amqp091.Dial's.
func noRedial(closed func() bool) *amqp091.Config {
	dial := amqp091.DefaultDial(30 * time.Second)
	return &amqp091.Config{
		Heartbeat: 10 * time.Second,
		Locale:    "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			if closed() {
				return nil, errors.New("watermill-amqp publisher or subscriber closed: not dialing again")
			}
			return dial(network, addr)
		},
	}
}

func TestTransportWatermillAMQP(t *testing.T) {
	conformance.RunTransport(t, watermillAMQP(t))
}

func TestBusWatermillAMQP(t *testing.T) {
	conformance.RunBus(t, watermillAMQP(t))
}
