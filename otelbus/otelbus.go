package otelbus

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/busline/busline/otelbus"

// Option configures [Instrument].
type Option func(*config)

type config struct {
	tp            trace.TracerProvider
	mp            metric.MeterProvider
	prop          propagation.TextMapPropagator
	direct, topic string
	propagatorSet bool
}

// WithTracerProvider sets the provider of the tracer. The default is the
// global one (otel.GetTracerProvider), read when [Instrument] is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets the provider of the meter. The default is the
// global one (otel.GetMeterProvider), read when [Instrument] is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithPropagator sets how a message's context travels in its headers. The
// default is the global propagator (otel.GetTextMapPropagator) if one was
// set, else W3C Trace Context and Baggage: the global default propagates
// nothing, which would cut the trace at every message.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop, c.propagatorSet = p, true }
}

// WithExchanges names the transport's direct and topic exchanges, which
// are part of the destination names (amqp.Options.DirectExchange and
// TopicExchange). The defaults are PikaBus's: "PikaBusDirect" and
// "PikaBusTopic".
func WithExchanges(direct, topic string) Option {
	return func(c *config) { c.direct, c.topic = direct, topic }
}

// Instrument returns the function that installs traces, metrics and log
// correlation on an endpoint: give it as [bus.Options.Instrument]. Each
// endpoint it is given to registers its own observable instruments (queue
// depth, connection state) and removes them when it stops.
func Instrument(opts ...Option) func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
	c := config{direct: transport.DefaultDirectExchange, topic: transport.DefaultTopicExchange}
	for _, o := range opts {
		o(&c)
	}
	return func(b *bus.Bus, t transport.Transport) (bus.Hooks, error) {
		cfg := c
		if cfg.tp == nil {
			cfg.tp = otel.GetTracerProvider()
		}
		if cfg.mp == nil {
			cfg.mp = otel.GetMeterProvider()
		}
		if !cfg.propagatorSet {
			cfg.prop = otel.GetTextMapPropagator()
			if len(cfg.prop.Fields()) == 0 {
				cfg.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
			}
		}
		e, err := newEndpoint(b, t, &cfg)
		if err != nil {
			return bus.Hooks{}, fmt.Errorf("otelbus: %w", err)
		}
		if !e.tracing && !e.metering {
			// Both providers are no-ops: nothing to record, but the
			// context still travels from the messages handled to the
			// messages sent, as it would through no-op spans.
			return bus.Hooks{Send: e.propagate, Handle: e.extract, Log: LogHandler}, nil
		}
		return bus.Hooks{
			Send:     e.send,
			Sent:     e.sent,
			Dispatch: e.dispatch,
			Handle:   e.handle,
			Retry:    e.retry,
			Forward:  e.forward,
			Event:    e.event,
			Log:      LogHandler,
		}, nil
	}
}

// endpoint is the instrumentation of one Bus.
type endpoint struct {
	tracer   trace.Tracer
	tracing  bool // false with a no-op TracerProvider: no span is started
	metering bool // false with a no-op MeterProvider
	prop     propagation.TextMapPropagator
	names    middleware.HeaderNames
	queue    string
	direct   string
	topic    string
	inst     *instruments
	gauges   *gauges
	cache    cache
}

func newEndpoint(b *bus.Bus, t transport.Transport, c *config) (*endpoint, error) {
	_, noopTracer := c.tp.(tracenoop.TracerProvider)
	_, noopMeter := c.mp.(metricnoop.MeterProvider)
	e := &endpoint{
		metering: !noopMeter,
		tracer:   c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		tracing:  !noopTracer,
		prop:     c.prop,
		names:    b.HeaderNames(),
		queue:    b.Queue(),
		direct:   c.direct,
		topic:    c.topic,
	}
	meter := c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	var err error
	if e.inst, err = newInstruments(meter); err != nil {
		return nil, err
	}
	if e.gauges, err = newGauges(meter, b, t); err != nil {
		return nil, err
	}
	return e, nil
}

// propagate writes the context into the message's headers: the Send hook
// when neither traces nor metrics are recorded.
func (e *endpoint) propagate(ctx context.Context, s bus.Sending) context.Context {
	e.prop.Inject(ctx, headerCarrier(s.Message.Message.Headers))
	return ctx
}

// extract reads the context of the message's headers for its handling: the
// Handle hook when neither traces nor metrics are recorded.
func (e *endpoint) extract(ctx context.Context, d *transport.Delivery, m *middleware.Message, next middleware.Handler) error {
	return next(e.prop.Extract(ctx, headerCarrier(m.Headers)), m)
}

// sendCtx is the context a producer span runs under, and when the send
// began, for the duration metric.
type sendCtx struct {
	context.Context
	start time.Time
	p     *producerInfo
}

func (e *endpoint) send(ctx context.Context, s bus.Sending) context.Context {
	start := time.Now()
	o := s.Message
	p := e.producer(o.Exchange, o.RoutingKey, s.Held)
	if e.tracing {
		var span trace.Span
		ctx, span = e.tracer.Start(ctx, p.name, p.start...)
		if span.IsRecording() {
			m := &o.Message
			attrs := make([]attribute.KeyValue, 0, 5)
			if o.RoutingKey != "" {
				attrs = append(attrs, routingKeyKey.String(o.RoutingKey))
			}
			if m.ID != "" {
				attrs = append(attrs, messageIDKey.String(m.ID))
			}
			if conv, ok := middleware.HeaderString(m.Headers[e.names.ConversationID]); ok && conv != "" {
				attrs = append(attrs, conversationIDKey.String(conv))
			}
			if m.Type != "" {
				attrs = append(attrs, messageTypeKey.String(m.Type))
			}
			attrs = append(attrs, buslineOperationKey.String(s.Operation))
			span.SetAttributes(attrs...)
		}
	}
	e.prop.Inject(ctx, headerCarrier(o.Message.Headers))
	if s.Held {
		return ctx // counted when the batch is dispatched
	}
	return &sendCtx{Context: ctx, start: start, p: p}
}

func (e *endpoint) sent(ctx context.Context, s bus.Sending, err error) {
	if e.tracing {
		span := trace.SpanFromContext(ctx)
		if err != nil {
			setError(span, err)
		}
		span.End()
	}
	sc, _ := ctx.(*sendCtx)
	if sc == nil {
		return
	}
	p := sc.p
	m := p.ok
	if err != nil {
		m = e.inst.attrs(metricKey{op: p.op, opType: "send", dest: p.dest, temporary: p.temporary, errType: errorType(err)})
	}
	e.inst.sent.Add(ctx, 1, m.add...)
	e.inst.operation.Record(ctx, time.Since(sc.start).Seconds(), m.record...)
}

// dispatch wraps the dispatch of a handler's or transaction's batch in a
// "send" span linked to each message's creation context.
func (e *endpoint) dispatch(next middleware.Dispatcher) middleware.Dispatcher {
	return func(ctx context.Context, msgs ...transport.Outgoing) error {
		start := time.Now()
		var buf [8]*producerInfo
		infos := buf[:0]
		var dest string
		var temporary bool
		for i := range msgs {
			p := e.producer(msgs[i].Exchange, msgs[i].RoutingKey, false)
			infos = append(infos, p)
			if i == 0 {
				dest, temporary = p.dest, p.temporary
			} else if p.dest != dest {
				dest, temporary = "", false
			}
		}
		batch := e.batch(dest, temporary)
		var span trace.Span
		if e.tracing {
			links := make([]trace.Link, 0, len(msgs))
			for i := range msgs {
				sc := trace.SpanContextFromContext(e.prop.Extract(context.Background(), headerCarrier(msgs[i].Message.Headers)))
				if sc.IsValid() {
					links = append(links, trace.Link{SpanContext: sc})
				}
			}
			opts := append(batch.start[:len(batch.start):len(batch.start)],
				trace.WithLinks(links...), trace.WithAttributes(batchCountKey.Int(len(msgs))))
			ctx, span = e.tracer.Start(ctx, batch.name, opts...)
		}
		err := next(ctx, msgs...)
		if span != nil {
			if err != nil {
				setError(span, err)
			}
			span.End()
		}
		et := errorType(err)
		for _, p := range infos {
			m := p.ok
			if err != nil {
				m = e.inst.attrs(metricKey{op: p.op, opType: "send", dest: p.dest, temporary: p.temporary, errType: et})
			}
			e.inst.sent.Add(ctx, 1, m.add...)
		}
		m := batch.ok
		if err != nil {
			m = e.inst.attrs(metricKey{op: "send", opType: "send", dest: dest, temporary: temporary, errType: et})
		}
		e.inst.operation.Record(ctx, time.Since(start).Seconds(), m.record...)
		return err
	}
}

// handling is the state of one handling, found in its context by the
// Retry and Forward hooks.
type handling struct {
	context.Context
	span   trace.Span // nil when not tracing
	failed error      // the handler's error, once Retry or Forward reported it
}

type handlingKey struct{}

func (h *handling) Value(k any) any {
	if _, ok := k.(handlingKey); ok {
		return h
	}
	return h.Context.Value(k)
}

func (e *endpoint) handle(ctx context.Context, d *transport.Delivery, m *middleware.Message, next middleware.Handler) (err error) {
	start := time.Now()
	c := e.consumer(d.Exchange, d.RoutingKey, d.Queue)
	parent := e.prop.Extract(ctx, headerCarrier(m.Headers))
	h := &handling{Context: parent}
	if e.tracing {
		ambient := trace.SpanContextFromContext(ctx)
		creation := trace.SpanContextFromContext(parent)
		opts := c.start
		if creation.IsValid() && !creation.Equal(ambient) {
			links := []trace.Link{{SpanContext: creation}}
			if ambient.IsValid() {
				links = append(links, trace.Link{SpanContext: ambient})
			}
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(links...))
		}
		h.Context, h.span = e.tracer.Start(parent, c.name, opts...)
		if h.span.IsRecording() {
			h.span.SetAttributes(e.processAttrs(d, m)...)
		}
	}
	e.inst.active.Add(ctx, 1, c.active...)
	defer func() {
		// Deferred, so that a panic escaping the pipeline still ends the
		// span and leaves the count right.
		e.inst.active.Add(ctx, -1, c.active...)
		failure := err
		if failure == nil {
			failure = h.failed
		}
		if h.span != nil {
			if err != nil {
				setError(h.span, err)
			}
			h.span.End()
		}
		ms := c.ok
		if failure != nil {
			ms = e.inst.attrs(metricKey{op: "process", opType: "process", dest: c.dest, temporary: c.temporary, errType: errorType(failure)})
		}
		e.inst.consumed.Add(ctx, 1, ms.add...)
		e.inst.process.Record(ctx, time.Since(start).Seconds(), ms.record...)
	}()
	return next(h, m)
}

// processAttrs are the attributes of a process span beyond those given at
// its start.
func (e *endpoint) processAttrs(d *transport.Delivery, m *middleware.Message) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	if d.RoutingKey != "" {
		attrs = append(attrs, routingKeyKey.String(d.RoutingKey))
	}
	if d.Tag != 0 {
		attrs = append(attrs, deliveryTagKey.Int64(int64(min(d.Tag, 1<<63-1))))
	}
	if id := headerOr(m.Headers, e.names.MessageID, m.ID); id != "" {
		attrs = append(attrs, messageIDKey.String(id))
	}
	if conv := headerOr(m.Headers, e.names.ConversationID, ""); conv != "" {
		attrs = append(attrs, conversationIDKey.String(conv))
	}
	if t := headerOr(m.Headers, e.names.MessageType, m.Type); t != "" {
		attrs = append(attrs, messageTypeKey.String(t))
	}
	if r, ok, err := middleware.HeaderInt(m.Headers[e.names.ErrorRetries]); ok && err == nil && r > 0 {
		attrs = append(attrs, retriesKey.Int64(r))
	}
	if m.Redelivered {
		attrs = append(attrs, redeliveredKey.Bool(true))
	}
	return attrs
}

func (e *endpoint) retry(ctx context.Context, f middleware.Failure) {
	et := errorType(f.Err)
	e.inst.retries.Add(ctx, 1, e.inst.failureAttrs(f.Message.Queue, messageTypeOf(f.Message, e.names), et)...)
	h, _ := ctx.Value(handlingKey{}).(*handling)
	if h == nil {
		return
	}
	h.failed = f.Err
	if h.span == nil {
		return
	}
	h.span.AddEvent(EventRetryScheduled, trace.WithAttributes(
		retryNumberKey.Int(f.Retries),
		retryDelayKey.Float64(f.Delay.Seconds()),
		errorTypeKey.String(et),
		exceptionMessageKey.String(f.Err.Error()),
	))
	setError(h.span, f.Err)
}

func (e *endpoint) forward(ctx context.Context, f middleware.Failure) {
	et := errorType(f.Err)
	e.inst.forwarded.Add(ctx, 1, e.inst.failureAttrs(f.Message.Queue, messageTypeOf(f.Message, e.names), et)...)
	h, _ := ctx.Value(handlingKey{}).(*handling)
	if h == nil {
		return
	}
	h.failed = f.Err
	if h.span == nil {
		return
	}
	h.span.AddEvent(EventSentToErrorQueue, trace.WithAttributes(
		errorQueueKey.String(f.Queue),
		retriesKey.Int(f.Retries),
		errorTypeKey.String(et),
		exceptionMessageKey.String(f.Err.Error()),
	))
	setError(h.span, f.Err)
}

func (e *endpoint) event(ev bus.Notice) {
	e.gauges.event(ev)
}
