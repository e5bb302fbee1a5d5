package amqp_test

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
)

// deferBy is the delay of BenchmarkDefer64's messages: long enough that
// none falls due, and moves through the delay levels, while the benchmarks
// of the same run measure something else (a bench node is thrown away
// after `make bench`; on a kept node they go to the undelivered queue an
// hour later, their destination being gone).
const deferBy = time.Hour

// BenchmarkDefer64: as BenchmarkSend64, with every message deferred by
// deferBy (through the delay levels: the publish of a deferred message
// costs the broker what a Send costs, plus its level's routing). Defer/Send
// in the summary of ratios is the price of deferral.
func BenchmarkDefer64(b *testing.B) {
	const inFlight = 64
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := sender(b, tr)
			parallel(b, inFlight, func() error { return c.Defer(context.Background(), deferBy, q, payload) })
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			parallel(b, inFlight, func() error {
				m := transportMsg(q)
				m.NotBefore = time.Now().Add(deferBy)
				return tr.Dispatch(context.Background(), m)
			})
		})
	}
}
