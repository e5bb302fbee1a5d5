// Command telemetry runs three services on one broker with OpenTelemetry
// (package otelbus): a shop takes an order over "HTTP" and sends it to
// orders, which publishes OrderPlaced; billing, subscribed, fails once, is
// retried, then replies to orders. The spans of the order, exported by
// OpenTelemetry's stdout exporter, are printed as a tree: one trace across
// the three services. The metrics are served for Prometheus by
// OpenTelemetry's Prometheus exporter; the example scrapes its own endpoint
// and prints the counters.
//
//	go run .                 # the in-memory broker
//	go run . -amqp amqp://guest:guest@localhost:5672/
//	go run . -serve          # then keep serving /metrics until interrupted
//	go run . -json           # also print the exporter's JSON
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/otelbus"
	"github.com/busline/busline/transport"
)

var (
	listen  = flag.String("listen", "127.0.0.1:0", "address of the Prometheus scrape endpoint (/metrics)")
	serve   = flag.Bool("serve", false, "keep serving /metrics after the scenario, until interrupted")
	rawJSON = flag.Bool("json", false, "print the stdout exporter's JSON too")
)

// The messages of the order.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
	OrderBilled struct{ ID string }
)

func main() { exampleutil.Main("telemetry", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	// One stdout exporter for the three services' spans; each service has
	// its own TracerProvider, named by its resource.
	var spans lockedBuffer
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(&spans))
	if err != nil {
		return err
	}
	propagator := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	registry := prometheus.NewRegistry()
	promExporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return err
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExporter))
	defer meters.Shutdown(context.WithoutCancel(ctx))
	metricsURL, stopServer, err := serveMetrics(registry)
	if err != nil {
		return err
	}
	defer stopServer()

	var providers []*sdktrace.TracerProvider
	service := func(name string) (*sdktrace.TracerProvider, func(*bus.Bus, transport.Transport) (bus.Hooks, error)) {
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithSyncer(exporter),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))))
		providers = append(providers, tp)
		return tp, otelbus.Instrument(otelbus.WithTracerProvider(tp), otelbus.WithMeterProvider(meters), otelbus.WithPropagator(propagator))
	}

	// orders: takes PlaceOrder, publishes OrderPlaced; takes billing's reply.
	_, instrument := service("orders")
	orders, err := bus.New(ex.Transport, "orders", ex.Options(bus.Options{Instrument: instrument}))
	if err != nil {
		return err
	}
	billed := make(chan string, 1)
	if err := bus.Handle(orders, func(ctx context.Context, o PlaceOrder) error {
		ex.Printf("orders   placing %s", o.ID)
		return orders.Publish(ctx, "orders.placed", OrderPlaced(o))
	}); err != nil {
		return err
	}
	if err := bus.Handle(orders, func(ctx context.Context, o OrderBilled) error {
		ex.Printf("orders   %s billed", o.ID)
		billed <- o.ID
		return nil
	}); err != nil {
		return err
	}

	// billing: subscribed to OrderPlaced; its payment gateway fails once.
	backoff := middleware.LinearBackoff(200 * time.Millisecond)
	_, instrument = service("billing")
	billing, err := bus.New(ex.Transport, "billing", ex.Options(bus.Options{
		Subscriptions: []string{"orders.placed"},
		Retry:         middleware.RetryOptions{Backoff: backoff},
		Instrument:    instrument,
	}))
	if err != nil {
		return err
	}
	var once sync.Once
	if err := bus.Handle(billing, func(ctx context.Context, o OrderPlaced) error {
		var failed error
		once.Do(func() { failed = errors.New("payment gateway timeout") })
		if failed != nil {
			ex.Printf("billing  charging %s: %v", o.ID, failed)
			return failed
		}
		ex.Printf("billing  charging %s: done", o.ID)
		return billing.Reply(ctx, OrderBilled(o))
	}); err != nil {
		return err
	}

	// shop: a send-only client behind an HTTP handler (here, a span).
	shopTracer, instrument := service("shop")
	shop, err := bus.New(ex.Transport, "", ex.Options(bus.Options{Instrument: instrument}))
	if err != nil {
		return err
	}

	for _, b := range []*bus.Bus{orders, billing} {
		if err := b.Start(ctx); err != nil {
			return err
		}
		defer b.Shutdown(context.WithoutCancel(ctx))
	}

	rctx, root := shopTracer.Tracer("shop").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	ex.Printf("shop     POST /orders: order-1 (trace %s)", root.SpanContext().TraceID())
	err = shop.Send(rctx, "orders", PlaceOrder{ID: "order-1"})
	root.End()
	if err != nil {
		return err
	}
	if _, err := exampleutil.Receive(ctx, billed, 1, "the order billed"); err != nil {
		return err
	}
	// Pause waits for the handlings under way, so that their spans have
	// ended; the endpoints still run, so that their gauges report.
	for _, b := range []*bus.Bus{orders, billing} {
		if err := b.Pause(ctx); err != nil {
			return err
		}
	}
	scraped, err := scrape(ctx, metricsURL)
	if err != nil {
		return err
	}
	if *serve {
		fmt.Printf("Serving %s until interrupted.\n", metricsURL)
		<-ctx.Done()
	}
	for _, b := range []*bus.Bus{orders, billing, shop} {
		if err := b.Shutdown(ctx); err != nil {
			return err
		}
	}
	for _, tp := range providers {
		if err := tp.Shutdown(ctx); err != nil {
			return err
		}
	}

	if *rawJSON {
		fmt.Println(spans.String())
	}
	tree, err := spanTree(spans.Bytes())
	if err != nil {
		return err
	}
	fmt.Printf("\nThe order's trace (%d spans), from OpenTelemetry's stdout exporter:\n%s", strings.Count(tree, "\n"), tree)

	fmt.Printf("\nThe metrics, scraped from %s:\n%s", metricsURL, scraped)
	return nil
}

// serveMetrics serves the registry's metrics on -listen and returns the
// URL to scrape.
func serveMetrics(reg *prometheus.Registry) (string, func(), error) {
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/metrics", func() { srv.Close() }, nil
}

// scrape fetches the metrics as Prometheus would and returns the samples
// of the counters and gauges (not the histograms' buckets).
func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "_bucket{") {
			continue
		}
		if strings.HasPrefix(line, "messaging_") || strings.HasPrefix(line, "busline_") {
			out.WriteString("  " + line + "\n")
		}
	}
	return out.String(), sc.Err()
}

// exported is the part of the stdout exporter's JSON the tree shows.
type exported struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ SpanID string }
	SpanKind    int
	StartTime   time.Time
	EndTime     time.Time
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
	Events []struct{ Name string }
	Links  []struct {
		SpanContext struct{ SpanID string }
	}
	Status   struct{ Code string }
	Resource []struct {
		Key   string
		Value struct{ Value any }
	}
}

var kinds = map[int]string{1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}

// spanTree reads the exporter's JSON (one object per span) and draws the
// spans as a tree, children under their parent in the order they began.
func spanTree(data []byte) (string, error) {
	var spans []exported
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var s exported
		if err := dec.Decode(&s); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("reading the exporter's output: %w", err)
		}
		spans = append(spans, s)
	}
	slices.SortFunc(spans, func(a, b exported) int { return a.StartTime.Compare(b.StartTime) })
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanContext.SpanID] = true
	}
	var b strings.Builder
	var draw func(parent string, depth int)
	draw = func(parent string, depth int) {
		for _, s := range spans {
			// The roots are the spans whose parent is not in the trace.
			if depth == 0 && ids[s.Parent.SpanID] || depth > 0 && s.Parent.SpanID != parent {
				continue
			}
			service := ""
			for _, r := range s.Resource {
				if r.Key == "service.name" {
					service = fmt.Sprint(r.Value.Value)
				}
			}
			line := fmt.Sprintf("%s%s [%s, %s] %v", strings.Repeat("  ", depth+1), s.Name, service, kinds[s.SpanKind],
				s.EndTime.Sub(s.StartTime).Round(10*time.Microsecond))
			if s.Status.Code == "Error" {
				line += " ERROR"
			}
			for _, e := range s.Events {
				line += " +" + e.Name
			}
			if len(s.Links) > 0 {
				line += fmt.Sprintf(" (%d link(s))", len(s.Links))
			}
			b.WriteString(line + "\n")
			draw(s.SpanContext.SpanID, depth+1)
		}
	}
	draw("", 0)
	return b.String(), nil
}

// lockedBuffer collects the exporter's output from the services'
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.b.Bytes())
}

func (l *lockedBuffer) String() string { return string(l.Bytes()) }
