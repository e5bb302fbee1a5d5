package otelbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/otelbus"
)

// An endpoint instrumented with one option: here with a tracer provider
// of its own that records the spans, elsewhere with the global providers
// (otelbus.Instrument() alone). The handling continues the sender's trace.
func ExampleInstrument() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t := memory.New(memory.Options{})
	defer t.Close()

	orders, err := bus.New(t, "orders", bus.Options{
		Instrument: otelbus.Instrument(otelbus.WithTracerProvider(tp)),
		// The bus's records of a handling carry its trace_id and span_id.
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		panic(err)
	}
	handled := make(chan struct{})
	bus.Handle(orders, func(ctx context.Context, o PlaceOrder) error {
		close(handled)
		return nil
	})
	if err := orders.Start(ctx); err != nil {
		panic(err)
	}
	if err := orders.Send(ctx, "orders", PlaceOrder{ID: "1"}); err != nil {
		panic(err)
	}
	<-handled
	orders.Shutdown(ctx) // the handling's span has ended when it returns

	ended := spans.Ended()
	slices.SortFunc(ended, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	for _, s := range ended {
		fmt.Println(s.SpanKind(), s.Name(), s.SpanContext().TraceID() == ended[0].SpanContext().TraceID())
	}
	// Output:
	// producer send PikaBusDirect:orders true
	// consumer process PikaBusDirect:orders true
}
