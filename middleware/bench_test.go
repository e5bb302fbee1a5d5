package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

func ok(context.Context, *middleware.Message) error { return nil }

// The success path of the standard pipeline allocates nothing: the bus's
// budget of 10 allocations per message is spent elsewhere.
func TestStandardSuccessPathAllocatesNothing(t *testing.T) {
	h := standard(t, delaying{newBroker()}, middleware.StandardOptions{})(ok)
	m := &middleware.Message{Message: order("m1"), Queue: "orders"}
	ctx := t.Context()
	if n := testing.AllocsPerRun(1000, func() { _ = h(ctx, m) }); n != 0 {
		t.Fatalf("%v allocations per message", n)
	}
	// A retry copy arriving when due goes through Deferral without
	// allocating either.
	m.Headers[names.DeferredTime] = "2000-01-01T00:00:00.000000Z"
	if n := testing.AllocsPerRun(1000, func() { _ = h(ctx, m) }); n != 0 {
		t.Fatalf("%v allocations per due message", n)
	}
}

// BenchmarkStandard measures the standard pipeline's overhead per message
// that succeeds at once: Deferral, ErrorQueue, Retry and Recover around a
// handler that returns nil.
func BenchmarkStandard(b *testing.B) { benchStandard(b, middleware.StandardOptions{}) }

// BenchmarkStandardWithTimeout adds the optional Timeout stage, which costs
// a context and a timer per message.
func BenchmarkStandardWithTimeout(b *testing.B) {
	benchStandard(b, middleware.StandardOptions{Timeout: time.Minute})
}

func benchStandard(b *testing.B, opts middleware.StandardOptions) {
	h, err := middleware.Standard(delaying{newBroker()}, opts)
	if err != nil {
		b.Fatal(err)
	}
	handler := h(ok)
	m := &middleware.Message{Message: order("m1"), Queue: "orders"}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := handler(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStamp measures stamping one header on a message of a one-message
// batch (the copy-on-write of its headers included).
func BenchmarkStamp(b *testing.B) {
	mw, err := middleware.Stamp(middleware.StampOptions{Headers: transport.Headers{"app": "shop"}})
	if err != nil {
		b.Fatal(err)
	}
	d := mw(func(context.Context, ...transport.Outgoing) error { return nil })
	msgs := []transport.Outgoing{{RoutingKey: "orders", Message: order("m1")}}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		_ = d(ctx, msgs...)
	}
}
