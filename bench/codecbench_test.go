package bench

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchkit"
	"github.com/busline/busline/internal/benchloop"
	"github.com/busline/busline/internal/cputime"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// BenchmarkCodec measures each candidate encoding and decoding the bus
// benchmark's 256-byte message through its bus.Codec, alone: CPU time and
// allocations per operation.
func BenchmarkCodec(b *testing.B) {
	msg := routerPayload()
	for _, c := range candidates {
		codec := c.busCodec()
		b.Run(c.name+"/encode", func(b *testing.B) {
			var m transport.Message
			b.ReportAllocs()
			cpu := cputime.Used()
			for range b.N {
				if err := codec.Encode(msg, &m); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
		var m transport.Message
		if err := codec.Encode(msg, &m); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			cpu := cputime.Used()
			for range b.N {
				var v RouterPayload
				if err := codec.Decode(&m, &v); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkBusCodec is the root module's bus BenchmarkBus/concurrency=1
// (Send, the memory broker, the standard pipeline, a typed handler, the
// ack; 256-byte payload; window messages in flight) with each candidate
// as Options.Codec. encoding/json is bus.JSON, which encodes into pooled
// buffers; the others are a libCodec, a fresh body per message.
// BenchmarkRouterCodec is Watermill's router with the same library.
func BenchmarkBusCodec(b *testing.B) {
	for _, c := range candidates {
		b.Run(c.name, func(b *testing.B) { benchBus(b, c.busCodec()) })
	}
}

// BenchmarkRouterCodec is BenchmarkRouter with each candidate marshalling
// and unmarshalling the payload, as a Watermill user who picked it would.
func BenchmarkRouterCodec(b *testing.B) {
	for _, c := range candidates[1:] {
		b.Run(c.name, func(b *testing.B) { benchRouter(b, c.marshal, c.unmarshal) })
	}
}

func benchBus(b *testing.B, codec bus.Codec) {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	tr.Broker().SetJournalLimit(0)
	bs, err := bus.New(tr, "bench", bus.Options{Codec: codec, Logger: benchkit.Quiet})
	if err != nil {
		b.Fatal(err)
	}
	w := benchloop.New(window)
	if err := bus.Handle(bs, func(ctx context.Context, m RouterPayload) error {
		w.Handled()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := bs.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	msg := routerPayload()
	b.ReportAllocs()
	b.SetBytes(256)
	w.Run(b, func() error { return bs.Send(ctx, "bench", msg) })
}

func reportCPU(b *testing.B, start time.Duration) {
	if used := cputime.Used() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
