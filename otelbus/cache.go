package otelbus

import (
	"go.opentelemetry.io/otel/metric"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/busline/busline/transport"
)

// maxCached bounds each cache of an endpoint: past it (a topic per
// customer, say), names and attribute sets are built for each message
// rather than kept.
const maxCached = 4096

// cache holds, per destination, what every message to or from it shares:
// the span name, the options that start its span (kind and the attributes
// samplers see), the attributes of its metrics. Building them once keeps
// the instrumentation's cost per message low, and nil with no-op providers.
type cache struct {
	producers, consumers, batches sync.Map
	n                             atomic.Int64
}

func (c *cache) store(m *sync.Map, k, v any) {
	if c.n.Add(1) < maxCached {
		m.Store(k, v)
	}
}

type producerKey struct {
	ex   transport.Exchange
	rk   string
	held bool
}

// producerInfo is what the messages sent to one destination share.
type producerInfo struct {
	op, dest  string
	temporary bool
	name      string
	start     []trace.SpanStartOption
	ok        measure // sent.messages and operation.duration, success
}

func (e *endpoint) producer(ex transport.Exchange, rk string, held bool) *producerInfo {
	k := producerKey{ex, rk, held}
	if p, ok := e.cache.producers.Load(k); ok {
		return p.(*producerInfo)
	}
	p := &producerInfo{op: operationName(ex)}
	p.dest, p.temporary = e.producerDestination(&transport.Outgoing{Exchange: ex, RoutingKey: rk})
	p.name = spanName(p.op, p.dest, p.temporary)
	opType := "send"
	if held {
		// Held in a handler's batch: this span creates the message; the
		// batch's dispatch is a "send" span of its own, linked to it.
		opType = "create"
	}
	attrs := appendDestination([]attribute.KeyValue{systemRabbitMQ, operationNameKey.String(p.op), operationTypeKey.String(opType)},
		p.dest, p.temporary)
	p.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...)}
	p.ok = e.inst.attrs(metricKey{op: p.op, opType: "send", dest: p.dest, temporary: p.temporary})
	e.cache.store(&e.cache.producers, k, p)
	return p
}

type batchKey struct {
	dest      string
	temporary bool
}

// batchInfo is what the dispatches of batches to one destination (or to
// several: dest empty) share.
type batchInfo struct {
	name  string
	start []trace.SpanStartOption
	ok    measure // operation.duration, success
}

func (e *endpoint) batch(dest string, temporary bool) *batchInfo {
	k := batchKey{dest, temporary}
	if b, ok := e.cache.batches.Load(k); ok {
		return b.(*batchInfo)
	}
	b := &batchInfo{name: spanName("send", dest, temporary)}
	attrs := appendDestination([]attribute.KeyValue{systemRabbitMQ, operationNameKey.String("send"), operationTypeKey.String("send")},
		dest, temporary)
	b.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...)}
	b.ok = e.inst.attrs(metricKey{op: "send", opType: "send", dest: dest, temporary: temporary})
	e.cache.store(&e.cache.batches, k, b)
	return b
}

type consumerKey struct {
	ex        transport.Exchange
	rk, queue string
}

// consumerInfo is what the deliveries from one destination share.
type consumerInfo struct {
	dest      string
	temporary bool
	name      string
	start     []trace.SpanStartOption
	ok        measure // consumed.messages and process.duration, success
	active    []metric.AddOption
}

func (e *endpoint) consumer(ex transport.Exchange, rk, queue string) *consumerInfo {
	k := consumerKey{ex, rk, queue}
	if c, ok := e.cache.consumers.Load(k); ok {
		return c.(*consumerInfo)
	}
	c := &consumerInfo{}
	c.dest, c.temporary = e.consumerDestination(&transport.Delivery{Exchange: ex, RoutingKey: rk, Queue: queue})
	c.name = spanName("process", c.dest, c.temporary)
	attrs := appendDestination([]attribute.KeyValue{systemRabbitMQ, operationNameKey.String("process"), operationTypeKey.String("process")},
		c.dest, c.temporary)
	c.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	c.ok = e.inst.attrs(metricKey{op: "process", opType: "process", dest: c.dest, temporary: c.temporary})
	if base, ok := replyQueueBase(queue); ok {
		queue = base + ".reply-{id}"
	}
	c.active = newMeasure(systemRabbitMQ, destinationNameKey.String(queue)).add
	e.cache.store(&e.cache.consumers, k, c)
	return c
}
