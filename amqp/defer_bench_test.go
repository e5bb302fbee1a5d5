package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchkit"
	"github.com/busline/busline/internal/brokertest"
)

// deferBy is the delay of BenchmarkDefer64's messages: long enough that
// none falls due, and moves through the delay levels, while the benchmarks
// of the same run measure something else. They wait in delay levels of the
// test binary's own (deferPrefix), deleted with them when its benchmarks
// are done.
const deferBy = time.Hour

// deferKey is the routing key of a message deferred by deferBy (3,600 s,
// bits 11, 10, 9 and 4) to q with the default 28 levels.
func deferKey(q string) string {
	return strings.Repeat("0.", 16) + "1.1.1.0.0.0.0.1.0.0.0.0." + q
}

// deferEntry is the level a message deferred by deferBy enters at, as
// NServiceBus enters its levels (highest first): the raw columns' way.
func deferEntry(b *testing.B) string { return deferPrefix(b) + "-11" }

// deferLevels names the delay levels of BenchmarkDefer64's transports: one
// prefix per test binary, its levels deleted, with the messages waiting in
// them, once the binary's benchmarks are done (dropDeferLevels). Without
// it the messages each run defers by an hour (200,000 per round of `make
// bench-rabbitmq`) fell due on a kept node an hour later, in the middle of
// other measurements: on 2026-12-03 the deferral-lateness runs made while
// they did were the slowest of the day.
var deferLevels struct {
	sync.Mutex
	prefix, url string
}

// deferPrefix returns the binary's delay prefix for BenchmarkDefer64.
func deferPrefix(b *testing.B) string {
	url := brokertest.URL(b)
	deferLevels.Lock()
	defer deferLevels.Unlock()
	if deferLevels.prefix == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		deferLevels.prefix, deferLevels.url = "bench-delay-"+hex.EncodeToString(r[:]), url
	}
	return deferLevels.prefix
}

// dialDefer dials a transport with the binary's delay levels.
func dialDefer(b *testing.B) *amqp.Transport {
	return dial(b, amqp.Options{DelayPrefix: deferPrefix(b)})
}

// dropDeferLevels deletes the delay levels deferPrefix named, if any, and
// the messages in them.
func dropDeferLevels() {
	deferLevels.Lock()
	defer deferLevels.Unlock()
	prefix := deferLevels.prefix
	if prefix == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "BenchmarkDefer64: delete the delay levels %s-*: %v\n", prefix, err)
	}
	conn, err := amqp091.Dial(deferLevels.url)
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fail(err)
		return
	}
	defer ch.Close()
	names := []string{prefix + "-delivery", prefix + "-undelivered"}
	for l := range 28 {
		names = append(names, fmt.Sprintf("%s-%02d", prefix, l))
	}
	for _, n := range names {
		if _, err := ch.QueueDelete(n, false, false, false); err != nil {
			fail(err)
			return
		}
		if err := ch.ExchangeDelete(n, false, false); err != nil {
			fail(err)
			return
		}
	}
	deferLevels.prefix = ""
}

// BenchmarkDefer64: as BenchmarkSend64, with every message deferred by
// deferBy. Defer/Send in the summary of ratios is the price of deferral.
// The columns:
//
//   - bus, transport: as in BenchmarkSend64;
//   - raw: amqp091-go publishing bare messages the way the transport
//     enters the delay levels: to the default exchange, with the delay key
//     as routing key and the entry level's queue in a BCC header;
//   - rawbus: amqp091-go publishing exactly what the bus's Defer puts on
//     the wire (PikaBus's headers, the BCC with the hop keys, the
//     expiration, the delay key): bus against rawbus is busline's own
//     cost, Defer/Send rawbus the broker's cost of the deferral route;
//   - raw-topic: the same messages published to the entry level's topic
//     exchange, as NServiceBus enters its levels (and this transport did):
//     the broker matches the 29-word key against the level's patterns,
//     which Defer/Send raw-topic/raw shows the price of.
func BenchmarkDefer64(b *testing.B) {
	const inFlight = 64
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dialDefer(b)
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, inFlight, func() error { return c.Defer(context.Background(), deferBy, q, payload) })
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dialDefer(b)
			q := benchQueue(b, tr, typ)
			benchkit.Parallel(b, inFlight, func() error {
				m := transportMsg(q)
				m.NotBefore = time.Now().Add(deferBy)
				return tr.Dispatch(context.Background(), m)
			})
		})
		b.Run("raw/"+string(typ), func(b *testing.B) {
			tr := dialDefer(b)
			q := benchQueue(b, tr, typ)
			bcc := amqp091.Table{"BCC": []any{deferEntry(b)}}
			rawWindowTo(b, "", deferKey(q), inFlight, func() amqp091.Publishing {
				m := rawPublishing()
				m.Headers = bcc
				return m
			})
		})
		b.Run("rawbus/"+string(typ), func(b *testing.B) {
			tr := dialDefer(b)
			q := benchQueue(b, tr, typ)
			ex, key, msg := busDeferred(b, tr, q)
			rawWindowTo(b, ex, key, inFlight, func() amqp091.Publishing {
				m := msg
				m.MessageId = nextID()
				return m
			})
		})
		b.Run("raw-topic/"+string(typ), func(b *testing.B) {
			tr := dialDefer(b)
			q := benchQueue(b, tr, typ)
			rawWindowTo(b, deferEntry(b), deferKey(q), inFlight, rawPublishing)
		})
	}
}

// busDeferred returns what a bus Defer of payload to q by deferBy puts on
// the wire: exchange, routing key and publishing, as the transport plans it.
func busDeferred(b *testing.B, tr *amqp.Transport, q string) (exchange, key string, msg amqp091.Publishing) {
	c := &capture{Transport: tr}
	s, err := bus.New(c, "", bus.Options{Logger: benchkit.Quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Defer(context.Background(), deferBy, q, payload); err != nil {
		b.Fatal(err)
	}
	o := *c.out
	o.NotBefore = time.Now().Add(deferBy)
	exchange, key, msg, err = amqp.Plan(tr, o)
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := msg.Headers["BCC"]; !ok || len(msg.Headers) < 10 {
		b.Fatalf("the planned deferral: exchange %q key %q expiration %q headers %v", exchange, key, msg.Expiration, msg.Headers)
	}
	return exchange, key, msg
}
