package bus_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchloop"
	"github.com/busline/busline/memory"
)

// BenchPayload encodes to 256 bytes of JSON.
type BenchPayload struct {
	ID   string
	Data string
}

func benchPayload() BenchPayload {
	p := BenchPayload{ID: "0123456789abcdef"}
	b, _ := json.Marshal(p)
	p.Data = strings.Repeat("x", 256-len(b))
	if b, _ := json.Marshal(p); len(b) != 256 {
		panic(len(b))
	}
	return p
}

// window bounds the messages sent and not yet handled,
// so that they measure a steady state rather than a queue growing as fast
// as the sender can fill it.
const window = 256

// BenchmarkBus measures a message's whole trip over the memory transport:
// Send (encode, headers, dispatch), the broker, the standard pipeline
// (deferral, error queue, retry, recover), JSON decoding into a typed
// handler, and the ack. b.N messages are sent from one goroutine, at most
// window of them in flight, and handled by the endpoint; allocations are
// counted in every goroutine. The nested module bench runs the same trip
// through Watermill's Router (BenchmarkRouter).
func BenchmarkBus(b *testing.B) {
	for _, c := range []struct {
		name        string
		concurrency int
	}{{"concurrency=1", 1}, {"concurrency=4", 4}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			tr := memory.New(memory.Options{})
			defer tr.Close()
			tr.Broker().SetJournalLimit(0)
			bs, err := bus.New(tr, "bench", bus.Options{Concurrency: c.concurrency})
			if err != nil {
				b.Fatal(err)
			}
			w := benchloop.New(window)
			if err := bus.Handle(bs, func(ctx context.Context, m BenchPayload) error {
				w.Handled()
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if err := bs.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer bs.Close()
			msg := benchPayload()
			b.ReportAllocs()
			b.SetBytes(256)
			w.Run(b, func() error { return bs.Send(ctx, "bench", msg) })
		})
	}
}

// reportCPU reports the process's CPU time per message since start, in
// every goroutine, garbage collection included.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
