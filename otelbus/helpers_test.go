package otelbus_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/otelbus"
	"github.com/busline/busline/transport"
)

// world is one test's telemetry (an in-memory span recorder, a manual
// metric reader) and broker (memory, or a RabbitMQ node), with a prefix
// that keeps its queues and topics apart from other tests'.
type world struct {
	t      *testing.T
	broker string
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	prefix string
	dial   func() transport.Transport
	logs   lockedBuffer
	mu     sync.Mutex
	queues []string
}

// brokers runs f on the memory broker and, when BUSLINE_AMQP_URL is set
// (always under CI=true), on RabbitMQ.
func brokers(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("memory", func(t *testing.T) {
		br := memory.NewBroker()
		t.Cleanup(func() { br.Close() })
		w := newWorld(t, "memory", func() transport.Transport {
			return memory.New(memory.Options{Broker: br})
		})
		f(t, w)
	})
	t.Run("rabbitmq", func(t *testing.T) {
		url := brokertest.URL(t)
		w := newWorld(t, "rabbitmq", func() transport.Transport {
			tr, err := amqp.Dial(context.Background(), url, amqp.Options{})
			if err != nil {
				t.Fatalf("amqp.Dial: %v", err)
			}
			return tr
		})
		f(t, w)
	})
}

func newWorld(t *testing.T, broker string, dial func() transport.Transport) *world {
	var r [4]byte
	_, _ = rand.Read(r[:])
	w := &world{t: t, broker: broker, rec: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	w.prefix = "otel" + hex.EncodeToString(r[:]) + "."
	w.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(w.rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	w.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(w.reader))
	w.dial = func() transport.Transport {
		tr := dial()
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	t.Cleanup(func() {
		_ = w.tp.Shutdown(context.Background())
		_ = w.mp.Shutdown(context.Background())
	})
	return w
}

// endpoint returns a started Bus on a transport of its own (a connection of
// its own on RabbitMQ), instrumented, closed when the test ends (before its
// queues are deleted).
func (w *world) endpoint(queue string, opts bus.Options, register func(b *bus.Bus)) *bus.Bus {
	w.t.Helper()
	tr := w.dial()
	opts.QueuePrefix, opts.TopicPrefix = w.prefix, w.prefix
	opts.Instrument = otelbus.Instrument(
		otelbus.WithTracerProvider(w.tp),
		otelbus.WithMeterProvider(w.mp),
		otelbus.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
	opts.Logger = slog.New(slog.NewJSONHandler(&w.logs, nil))
	if opts.Retry.Backoff == nil {
		backoff := middleware.LinearBackoff(20 * time.Millisecond)
		opts.Retry.Backoff = backoff
	}
	b, err := bus.New(tr, queue, opts)
	if err != nil {
		w.t.Fatalf("bus.New(%q): %v", queue, err)
	}
	if register != nil {
		register(b)
	}
	if queue != "" {
		if err := b.Start(context.Background()); err != nil {
			w.t.Fatalf("Start %q: %v", queue, err)
		}
		w.mu.Lock()
		w.queues = append(w.queues, b.Queue(), b.ErrorQueue())
		w.mu.Unlock()
		if d, ok := tr.(transport.QueueDeleter); ok && w.broker == "rabbitmq" {
			w.t.Cleanup(func() {
				for _, q := range []string{b.Queue(), b.ErrorQueue()} {
					_ = d.DeleteQueue(context.Background(), q)
				}
			})
		}
	}
	w.t.Cleanup(func() { _ = b.Close() })
	return b
}

// q is a queue or topic name with the world's prefix.
func (w *world) q(name string) string { return w.prefix + name }

// waitSpans waits until n spans have ended and returns them. The wait is
// bounded; the time it takes is not asserted.
func (w *world) waitSpans(n int) []sdktrace.ReadOnlySpan {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := w.rec.Ended()
		if len(spans) >= n {
			time.Sleep(50 * time.Millisecond) // a span too many would show now
			return w.rec.Ended()
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d spans ended, want %d:\n%s", len(spans), n, dump(spans))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dump lists spans, one a line, for failure messages.
func dump(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s %q span=%s parent=%s %v\n", s.SpanKind(), s.Name(), s.SpanContext().SpanID(), s.Parent().SpanID(), s.Attributes())
	}
	return b.String()
}

// find returns the spans named name whose attributes include match.
func find(spans []sdktrace.ReadOnlySpan, name string, match ...attribute.KeyValue) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() != name {
			continue
		}
		ok := true
		for _, m := range match {
			if v, found := attr(s, m.Key); !found || v != m.Value {
				ok = false
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartTime().Before(out[j].StartTime()) })
	return out
}

// one returns the only span find finds, or fails the test.
func (w *world) one(spans []sdktrace.ReadOnlySpan, name string, match ...attribute.KeyValue) sdktrace.ReadOnlySpan {
	w.t.Helper()
	got := find(spans, name, match...)
	if len(got) != 1 {
		w.t.Fatalf("%d spans %q %v, want 1; spans:\n%s", len(got), name, match, dump(spans))
	}
	return got[0]
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// checkAttrs compares the span's attributes with want exactly, except that
// the delivery tag, which the broker picks, need only be there.
func (w *world) checkAttrs(s sdktrace.ReadOnlySpan, want map[string]any) {
	w.t.Helper()
	got := map[string]any{}
	for _, a := range s.Attributes() {
		got[string(a.Key)] = a.Value.AsInterface()
	}
	if tag, ok := got["messaging.rabbitmq.message.delivery_tag"]; ok {
		if tag.(int64) <= 0 {
			w.t.Errorf("span %q: delivery tag %v", s.Name(), tag)
		}
		delete(got, "messaging.rabbitmq.message.delivery_tag")
	} else if s.SpanKind() == trace.SpanKindConsumer {
		w.t.Errorf("span %q: no delivery tag", s.Name())
	}
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	for _, k := range keys(want) {
		if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
			w.t.Errorf("span %q: %s = %v, want %v", s.Name(), k, got[k], want[k])
		}
	}
	for _, k := range keys(got) {
		if _, ok := want[k]; !ok {
			w.t.Errorf("span %q: unexpected attribute %s = %v", s.Name(), k, got[k])
		}
	}
}

// childOf checks that s is a child of parent, in its trace.
func (w *world) childOf(s, parent sdktrace.ReadOnlySpan) {
	w.t.Helper()
	if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		w.t.Errorf("span %q (parent %s, trace %s) is not a child of %q (%s, trace %s)", s.Name(), s.Parent().SpanID(),
			s.SpanContext().TraceID(), parent.Name(), parent.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
}

// linksTo checks that s links to each of targets, and to nothing else.
func (w *world) linksTo(s sdktrace.ReadOnlySpan, targets ...sdktrace.ReadOnlySpan) {
	w.t.Helper()
	var got, want []string
	for _, l := range s.Links() {
		got = append(got, l.SpanContext.SpanID().String())
	}
	for _, t := range targets {
		want = append(want, t.SpanContext().SpanID().String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		w.t.Errorf("span %q links to %v, want %v", s.Name(), got, want)
	}
}

// metrics collects the metrics and indexes the data points by instrument
// name and attribute set.
func (w *world) metrics() map[string]map[string]float64 {
	w.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := w.reader.Collect(context.Background(), &rm); err != nil {
		w.t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelbus.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			pts := map[string]float64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					pts[setString(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					pts[setString(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					pts[setString(p.Attributes)] = float64(p.Count)
				}
			}
			out[m.Name] = pts
		}
	}
	return out
}

func setString(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		if kv.Key == "messaging.system" {
			continue // always rabbitmq; checked once
		}
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}

// lockedBuffer is a log destination for concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
