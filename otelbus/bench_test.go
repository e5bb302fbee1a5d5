package otelbus_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchloop"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/otelbus"
	"github.com/busline/busline/transport"
)

// BenchPayload encodes to 256 bytes of JSON, as package bus's benchmark's.
type BenchPayload struct {
	ID   string
	Data string
}

// BenchmarkBus measures a message's whole trip over the memory transport
// (Send, the broker, the standard pipeline, a typed handler that publishes
// an event, the dispatch of its batch, the ack) as package bus's
// BenchmarkBus does, but with a handler that sends, so that every hook is
// on the path: without instrumentation ("none"), with it over no-op
// providers ("noop", which Instrument recognizes: the cost of carrying the
// context along, to compare with none), over the global providers of a
// program that installed no SDK ("global": no-ops it cannot recognize),
// with the SDK sampling no span and a meter provider with a reader
// ("sdk-unsampled": metrics only), and with the SDK sampling every span
// into a batch processor whose exporter drops them ("sdk": what a traced
// message costs). Compare cpu-ns/op, which other processes on a shared
// machine inflate less than ns/op.
func BenchmarkBus(b *testing.B) {
	cases := []struct {
		name       string
		instrument func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func())
	}{
		{"none", func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func()) { return nil, func() {} }},
		{"noop", func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func()) {
			return instrumentWith(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()), func() {}
		}},
		{"global", func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func()) {
			// The global providers as a program that installed no SDK
			// has them: delegates that forward to no-ops, which
			// Instrument cannot tell from real ones.
			return instrumentWith(otel.GetTracerProvider(), otel.GetMeterProvider()), func() {}
		}},
		{"sdk-unsampled", func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func()) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			return instrumentWith(tp, mp), func() {
				_ = tp.Shutdown(context.Background())
				_ = mp.Shutdown(context.Background())
			}
		}},
		{"sdk", func() (func(*bus.Bus, transport.Transport) (bus.Hooks, error), func()) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
				sdktrace.WithBatcher(discard{}, sdktrace.WithMaxQueueSize(1<<16)))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			return instrumentWith(tp, mp), func() {
				_ = tp.Shutdown(context.Background())
				_ = mp.Shutdown(context.Background())
			}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			instrument, stop := c.instrument()
			defer stop()
			benchBus(b, instrument)
		})
	}
}

func instrumentWith(tp trace.TracerProvider, mp metric.MeterProvider) func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
	return otelbusInstrument(tp, mp, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

const window = 256

func benchBus(b *testing.B, instrument func(*bus.Bus, transport.Transport) (bus.Hooks, error)) {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	tr.Broker().SetJournalLimit(0)
	opts := bus.Options{Instrument: instrument, Logger: slog.New(slog.DiscardHandler)}
	orders, err := bus.New(tr, "bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	opts.Subscriptions = []string{"bench.done"}
	sink, err := bus.New(tr, "sink", opts)
	if err != nil {
		b.Fatal(err)
	}
	w := benchloop.New(window)
	if err := bus.Handle(orders, func(ctx context.Context, m BenchPayload) error {
		return orders.Publish(ctx, "bench.done", Ping{})
	}); err != nil {
		b.Fatal(err)
	}
	if err := bus.Handle(sink, func(ctx context.Context, m Ping) error {
		w.Handled()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, e := range []*bus.Bus{orders, sink} {
		if err := e.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer e.Close()
	}
	msg := BenchPayload{ID: "0123456789abcdef"}
	enc, _ := json.Marshal(msg)
	msg.Data = strings.Repeat("x", 256-len(enc))
	b.ReportAllocs()
	w.Run(b, func() error { return orders.Send(ctx, "bench", msg) })
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func otelbusInstrument(tp trace.TracerProvider, mp metric.MeterProvider, p propagation.TextMapPropagator) func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
	return otelbus.Instrument(otelbus.WithTracerProvider(tp), otelbus.WithMeterProvider(mp), otelbus.WithPropagator(p))
}
