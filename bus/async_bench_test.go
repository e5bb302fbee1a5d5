package bus_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
)

// BenchmarkSendAsync compares, over the memory broker, one caller posting
// with SendAsync and a window of 64 with 64 goroutines calling Send: the
// cost of a Receipt over the blocking call (the broker's verdict is
// immediate here; amqp's BenchmarkSendAsync measures the overlap of
// confirms). The queue has no consumer: it only grows.
func BenchmarkSendAsync(b *testing.B) {
	const window = 64
	setup := func(b *testing.B, opts bus.Options) *bus.Bus {
		tr := memory.New(memory.Options{})
		b.Cleanup(func() { tr.Close() })
		tr.Broker().SetJournalLimit(0)
		server, err := bus.New(tr, "bench", bus.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if err := server.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := server.Pause(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { server.Close() })
		opts.Logger = slog.New(slog.DiscardHandler)
		c, err := bus.New(tr, "", opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	msg := benchPayload()
	b.Run("send64", func(b *testing.B) {
		c := setup(b, bus.Options{})
		b.ReportAllocs()
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		b.ResetTimer()
		cpu := cpuTime()
		for range window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					if err := c.Send(context.Background(), "bench", msg); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		reportCPU(b, cpu)
	})
	b.Run("async1", func(b *testing.B) {
		c := setup(b, bus.Options{PostWindow: window})
		ctx := context.Background()
		b.ReportAllocs()
		receipts := make([]*bus.Receipt, 0, b.N)
		b.ResetTimer()
		cpu := cpuTime()
		for range b.N {
			r, err := c.SendAsync(ctx, "bench", msg)
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
		b.StopTimer()
		reportCPU(b, cpu)
	})
}
