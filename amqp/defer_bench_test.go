package amqp_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/benchkit"
)

// deferBy is the delay of BenchmarkDefer64's messages: long enough that
// none falls due, and moves through the delay levels, while the benchmarks
// of the same run measure something else (a bench node is thrown away
// after `make bench`; on a kept node they go to the undelivered queue an
// hour later, their destination being gone).
const deferBy = time.Hour

// deferKey is the routing key of a message deferred by deferBy (3,600 s,
// bits 11, 10, 9 and 4) to q with the default 28 levels, and deferEntry
// the level it enters at.
func deferKey(q string) string {
	return strings.Repeat("0.", 16) + "1.1.1.0.0.0.0.1.0.0.0.0." + q
}

const deferEntry = "busline-delay-11"

// BenchmarkDefer64: as BenchmarkSend64, with every message deferred by
// deferBy. Defer/Send in the summary of ratios is the price of deferral.
// The columns:
//
//   - bus, transport: as in BenchmarkSend64;
//   - raw: amqp091-go publishing bare messages the way the transport
//     enters the delay levels: to the default exchange, with the delay key
//     as routing key and the entry level's queue in a BCC header;
//   - rawbus: raw's way with the bus's messages (PikaBus's headers and the
//     BCC): Defer/Send rawbus against raw is the cost to RabbitMQ of
//     taking the BCC out of a larger header table, which the bus pays too;
//   - raw-topic: the same messages published to the entry level's topic
//     exchange, as NServiceBus enters its levels (and this transport did):
//     the broker matches the 29-word key against the level's patterns,
//     which Defer/Send raw-topic/raw shows the price of.
func BenchmarkDefer64(b *testing.B) {
	const inFlight = 64
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, inFlight, func() error { return c.Defer(context.Background(), deferBy, q, payload) })
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			benchkit.Parallel(b, inFlight, func() error {
				m := transportMsg(q)
				m.NotBefore = time.Now().Add(deferBy)
				return tr.Dispatch(context.Background(), m)
			})
		})
		b.Run("raw/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			bcc := amqp091.Table{"BCC": []any{deferEntry}}
			rawWindowTo(b, "", deferKey(q), inFlight, func() amqp091.Publishing {
				m := rawPublishing()
				m.Headers = bcc
				return m
			})
		})
		b.Run("rawbus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			msg := busPublishing(b, tr, q)
			rawWindowTo(b, "", deferKey(q), inFlight, func() amqp091.Publishing {
				m := msg()
				m.Headers = maps.Clone(m.Headers)
				m.Headers["BCC"] = []any{deferEntry}
				return m
			})
		})
		b.Run("raw-topic/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			rawWindowTo(b, deferEntry, deferKey(q), inFlight, rawPublishing)
		})
	}
}
