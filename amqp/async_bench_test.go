package amqp_test

import (
	"context"
	"testing"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchkit"
)

// BenchmarkSendAsync compares BlazingMQ's way of keeping a window of
// messages unconfirmed, one caller posting with SendAsync and a window of
// 64, with Go's usual way: 64 goroutines each calling the blocking Send.
// The summary prints async1/send64.
func BenchmarkSendAsync(b *testing.B) {
	const window = 64
	for _, typ := range queueTypes {
		b.Run("send64/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, window, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("async1/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c, err := bus.New(tr, "", bus.Options{Logger: benchkit.Quiet, PostWindow: window})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			postAll(b, c, q)
		})
	}
}

// postAll posts b.N messages to q from one goroutine and waits for every
// verdict.
func postAll(b *testing.B, c *bus.Bus, q string) {
	ctx := context.Background()
	receipts := make([]*bus.Receipt, 0, b.N)
	start := benchkit.Start(b)
	for range b.N {
		r, err := c.SendAsync(ctx, q, payload)
		if err != nil {
			b.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	for _, r := range receipts {
		if err := r.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	benchkit.Report(b, start)
}
