package otelbus

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// The names of the instruments (see the package documentation).
const (
	MetricSentMessages      = "messaging.client.sent.messages"
	MetricConsumedMessages  = "messaging.client.consumed.messages"
	MetricOperationDuration = "messaging.client.operation.duration"
	MetricProcessDuration   = "messaging.process.duration"
	MetricRetries           = "busline.retries"
	MetricForwarded         = "busline.error_queue.forwarded"
	MetricActiveHandlings   = "busline.handlings.active"
	MetricQueueMessages     = "busline.queue.messages"
	MetricConnectionUp      = "busline.connection.up"
	MetricConnectionBlocked = "busline.connection.blocked"
)

// durationBuckets are the bucket boundaries the conventions advise for
// messaging.client.operation.duration and messaging.process.duration.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// instruments are the synchronous instruments, and the attribute sets they
// record with, built once per distinct key: the hot path allocates none.
type instruments struct {
	sent, consumed     metric.Int64Counter
	operation, process metric.Float64Histogram
	retries, forwarded metric.Int64Counter
	active             metric.Int64UpDownCounter

	sets sync.Map     // metricKey or failureKey -> measure
	n    atomic.Int64 // entries in sets
}

func newInstruments(m metric.Meter) (*instruments, error) {
	in := &instruments{}
	var err error
	if in.sent, err = m.Int64Counter(MetricSentMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of messages producer attempted to send to the broker.")); err != nil {
		return nil, err
	}
	if in.consumed, err = m.Int64Counter(MetricConsumedMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of messages that were delivered to the application.")); err != nil {
		return nil, err
	}
	if in.operation, err = m.Float64Histogram(MetricOperationDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of messaging operation initiated by a producer or consumer client."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if in.process, err = m.Float64Histogram(MetricProcessDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of processing operation."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if in.retries, err = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Delayed retries scheduled after a failed handling.")); err != nil {
		return nil, err
	}
	if in.forwarded, err = m.Int64Counter(MetricForwarded, metric.WithUnit("{message}"),
		metric.WithDescription("Messages that failed for good and were sent to the error queue.")); err != nil {
		return nil, err
	}
	if in.active, err = m.Int64UpDownCounter(MetricActiveHandlings, metric.WithUnit("{handling}"),
		metric.WithDescription("Messages being handled.")); err != nil {
		return nil, err
	}
	return in, nil
}

// metricKey is what the messaging metrics' attributes depend on.
type metricKey struct {
	op, opType, dest, errType string
	temporary                 bool
}

// measure is an attribute set as the options of Add and Record, built
// once: passing a slice as the variadic argument allocates nothing.
type measure struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasure(kv ...attribute.KeyValue) measure {
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	return measure{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

// attrs returns the attributes of the messaging metrics for k.
func (in *instruments) attrs(k metricKey) measure {
	if m, ok := in.sets.Load(k); ok {
		return m.(measure)
	}
	kv := []attribute.KeyValue{systemRabbitMQ, operationNameKey.String(k.op)}
	if k.opType != "" {
		kv = append(kv, operationTypeKey.String(k.opType))
	}
	kv = appendDestination(kv, k.dest, k.temporary)
	if k.errType != "" {
		kv = append(kv, errorTypeKey.String(k.errType))
	}
	m := newMeasure(kv...)
	if in.n.Add(1) < maxCached {
		in.sets.Store(k, m)
	}
	return m
}

type failureKey struct{ queue, messageType, errType string }

// failureAttrs are the attributes of busline.retries and
// busline.error_queue.forwarded.
func (in *instruments) failureAttrs(queue, messageType, errType string) []metric.AddOption {
	k := failureKey{queue, messageType, errType}
	if m, ok := in.sets.Load(k); ok {
		return m.(measure).add
	}
	kv := []attribute.KeyValue{systemRabbitMQ, destinationNameKey.String(queue), errorTypeKey.String(errType)}
	if messageType != "" {
		kv = append(kv, messageTypeKey.String(messageType))
	}
	m := newMeasure(kv...)
	if in.n.Add(1) < maxCached {
		in.sets.Store(k, m)
	}
	return m.add
}

// gauges are the observable instruments of one endpoint: the depth of its
// queue and of the error queue (when the transport is a
// transport.Inspector), and the state of its connection.
type gauges struct {
	reg       metric.Registration
	inspector transport.Inspector // nil if the transport cannot tell
	queues    []string
	running   atomic.Bool // Started and not yet Stopped
	down      atomic.Bool // Disconnected since the last Connected
	blocked   atomic.Bool
	connAttrs metric.ObserveOption
}

func newGauges(m metric.Meter, b *bus.Bus, t transport.Transport) (*gauges, error) {
	g := &gauges{}
	name := b.Queue()
	g.connAttrs = metric.WithAttributeSet(attribute.NewSet(systemRabbitMQ, endpointKey.String(name)))
	if in, ok := t.(transport.Inspector); ok && name != "" {
		g.inspector = in
		g.queues = []string{name, b.ErrorQueue()}
	}
	depth, err := m.Int64ObservableGauge(MetricQueueMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Messages ready in the endpoint's queue and in the error queue, as the broker reports them."))
	if err != nil {
		return nil, err
	}
	up, err := m.Int64ObservableGauge(MetricConnectionUp, metric.WithUnit("{connection}"),
		metric.WithDescription("1 while the endpoint runs and its transport is connected, else 0."))
	if err != nil {
		return nil, err
	}
	blocked, err := m.Int64ObservableGauge(MetricConnectionBlocked, metric.WithUnit("{connection}"),
		metric.WithDescription("1 while the broker blocks the transport's publishing (a resource alarm), else 0."))
	if err != nil {
		return nil, err
	}
	g.reg, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if !g.running.Load() {
			return nil
		}
		o.ObserveInt64(up, boolInt(!g.down.Load()), g.connAttrs)
		o.ObserveInt64(blocked, boolInt(g.blocked.Load()), g.connAttrs)
		for _, q := range g.queues {
			info, err := g.inspector.Inspect(ctx, q)
			if err != nil {
				continue // gone, or the connection is down: nothing to say
			}
			o.ObserveInt64(depth, int64(info.Messages), metric.WithAttributes(systemRabbitMQ, destinationNameKey.String(q)))
		}
		return nil
	}, depth, up, blocked)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// EndpointKey is the endpoint's queue, on the connection gauges.
const EndpointKey = attribute.Key("busline.endpoint")

const endpointKey = EndpointKey

func (g *gauges) event(e bus.Notice) {
	switch e.Kind {
	case bus.Started, bus.Resumed:
		g.running.Store(true)
	case bus.Stopped:
		g.running.Store(false)
		_ = g.reg.Unregister()
	case bus.TransportChanged:
		switch e.Transport.Kind {
		case transport.Connected:
			g.down.Store(false)
		case transport.Disconnected:
			g.down.Store(true)
		case transport.Blocked:
			g.blocked.Store(true)
		case transport.Unblocked:
			g.blocked.Store(false)
		}
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
