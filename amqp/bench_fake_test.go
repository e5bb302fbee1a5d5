package amqp

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/busline/busline/internal/cputime"
	"github.com/busline/busline/transport"
)

// pikaBusHeaders are the headers a bus Send writes, with values of their
// real lengths.
var pikaBusHeaders = transport.Headers{
	"PikaBus.MessageId":          "0195f1c4e3b07a3c9d2e4f6a8b0c1d2e",
	"PikaBus.CorrelationId":      "0195f1c4e3b07a3c9d2e4f6a8b0c1d2e",
	"PikaBus.ConversationId":     "0195f1c4e3b07a3c9d2e4f6a8b0c1d2e",
	"PikaBus.TimeSent":           "2026-11-22T09:30:00.123456+00:00",
	"PikaBus.ReplyToAddress":     "orders",
	"PikaBus.OriginatingAddress": "orders",
	"PikaBus.Intent":             "command",
	"PikaBus.MessageType":        "bench.Payload",
	"PikaBus.ContentType":        "application/json",
	"PikaBus.ContentEncoding":    "utf-8",
	"traceparent":                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}

// BenchmarkDispatchFake measures what the transport itself costs per
// message, without a broker and without amqp091's encoding and I/O: one
// goroutine dispatches one 256-byte message at a time, with no headers or
// with the PikaBus headers, to a fake broker that confirms at once.
func BenchmarkDispatchFake(b *testing.B) {
	body := make([]byte, 256)
	for _, c := range []struct {
		name    string
		headers transport.Headers
	}{{"none", nil}, {"pikabus", pikaBusHeaders}} {
		b.Run(c.name, func(b *testing.B) {
			tr := dialFake(b, newFakeBroker())
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Used()
			for i := range b.N {
				err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q", Mandatory: true,
					Message: transport.Message{ID: strconv.Itoa(i), Headers: c.headers, Body: body}})
				if err != nil {
					b.Fatal(err)
				}
			}
			// The wall time of this ping-pong between goroutines depends on
			// how the scheduler parks and wakes them; CPU time is the cost.
			b.ReportMetric(float64((cputime.Used()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkPlan measures what Dispatch does to a message before handing it
// to the writer: validation and conversion into an amqp091 publishing.
func BenchmarkPlan(b *testing.B) {
	t := &Transport{opts: Options{}.withDefaults()}
	t.delays = newDelays(t.opts)
	o := transport.Outgoing{RoutingKey: "q", Mandatory: true,
		Message: transport.Message{ID: "m", Headers: pikaBusHeaders, Body: make([]byte, 256)}}
	now := time.Now()
	b.ReportAllocs()
	for range b.N {
		if _, err := t.plan(&o, now); err != nil {
			b.Fatal(err)
		}
	}
}
