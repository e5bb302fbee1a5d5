package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/conformance"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// The transports the conformance suites run against: Dial's on quorum
// queues (the default) and on classic ones, and DialNoDelay's, which is
// not a transport.Delayer, on quorum queues.
var conformanceRuns = []struct {
	name    string
	typ     transport.QueueType
	noDelay bool
}{
	{"quorum", transport.Quorum, false},
	{"classic", transport.Classic, false},
	{"nodelay", transport.Quorum, true},
}

// TestConformance runs the transport conformance suite against the broker.
func TestConformance(t *testing.T) {
	url := brokertest.URL(t)
	for _, r := range conformanceRuns {
		t.Run(r.name, func(t *testing.T) {
			conformance.RunTransport(t, harness(url, r.typ, r.noDelay, "conformance-amqp"))
		})
	}
}

// TestBusConformance runs the bus scenarios over the transport.
func TestBusConformance(t *testing.T) {
	url := brokertest.URL(t)
	for _, r := range conformanceRuns {
		t.Run(r.name, func(t *testing.T) {
			conformance.RunBus(t, harness(url, r.typ, r.noDelay, "conformance-amqp-bus"))
		})
	}
}

// harness makes transports on the broker at url whose queues are of type
// typ, with DialNoDelay if noDelay. Each transport gets exchanges of its
// own, deleted afterwards, so that the routing subtests of one do not see
// the bindings of another.
func harness(url string, typ transport.QueueType, noDelay bool, prefix string) conformance.Harness {
	return conformance.Harness{
		New: func(ctx context.Context, t testing.TB) (transport.Transport, error) {
			var b [4]byte
			_, _ = rand.Read(b[:])
			suffix := "-conformance-" + hex.EncodeToString(b[:])
			opts := amqp.Options{
				DirectExchange: transport.DefaultDirectExchange + suffix,
				TopicExchange:  transport.DefaultTopicExchange + suffix,
				QueueType:      typ,
			}
			t.Cleanup(func() { deleteExchanges(t, url, opts.DirectExchange, opts.TopicExchange) })
			if noDelay {
				return amqp.DialNoDelay(ctx, url, opts)
			}
			return amqp.Dial(ctx, url, opts)
		},
		DeclareUnbound: func(ctx context.Context, t testing.TB, _ transport.Transport, q transport.Queue) error {
			return declareUnbound(url, q)
		},
		Timeout:        20 * time.Second,
		DelayTolerance: 3 * time.Second,
		QueueType:      typ,
		QueuePrefix:    prefix,
	}
}

func deleteExchanges(t testing.TB, url string, names ...string) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Logf("delete exchanges: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, n := range names {
		_ = ch.ExchangeDelete(n, false, false)
	}
}

// declareUnbound declares q with amqp091 alone, bound on no exchange, as
// PikaBus 1.x declares its listener queue.
func declareUnbound(url string, q transport.Queue) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	typ := q.Type
	if typ == "" {
		typ = transport.Quorum
	}
	_, err = ch.QueueDeclare(q.Name, true, false, false, false, amqp091.Table{"x-queue-type": string(typ)})
	return err
}
