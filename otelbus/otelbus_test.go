package otelbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/otelbus"
)

// The messages of the tests.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
	OrderBilled struct{ ID string }
	GetQuote    struct{ ID string }
	Quote       struct{ Price int }
	Ping        struct{}
)

var (
	system   = attribute.String("messaging.system", "rabbitmq")
	process  = attribute.String("messaging.operation.name", "process")
	create   = attribute.String("messaging.operation.type", "create")
	sendType = attribute.String("messaging.operation.type", "send")
)

func operation(op string) attribute.KeyValue { return otelbus.OperationKey.String(op) }

// TestOrderJourney follows one order from an HTTP-style root span through
// Send -> handler -> Publish -> two subscribers -> Reply, and checks every
// span: one trace, the parents and links the conventions give, the
// attributes exactly, and the baggage carried along.
func TestOrderJourney(t *testing.T) {
	brokers(t, func(t *testing.T, w *world) {
		done := make(chan struct{})
		var customer atomic.Value
		orders := w.endpoint("orders", bus.Options{}, nil)
		must(t, bus.Handle(orders, func(ctx context.Context, o PlaceOrder) error {
			return orders.Publish(ctx, "orders.placed", OrderPlaced(o))
		}))
		must(t, bus.Handle(orders, func(ctx context.Context, o OrderBilled) error {
			close(done)
			return nil
		}))
		var billing *bus.Bus
		billing = w.endpoint("billing", bus.Options{Subscriptions: []string{"orders.placed"}}, func(b *bus.Bus) {
			must(t, bus.Handle(b, func(ctx context.Context, o OrderPlaced) error {
				customer.Store(baggage.FromContext(ctx).Member("customer").Value())
				return billing.Reply(ctx, OrderBilled(o))
			}))
		})
		shipped := make(chan struct{})
		w.endpoint("shipping", bus.Options{Subscriptions: []string{"orders.placed"}}, func(b *bus.Bus) {
			must(t, bus.Handle(b, func(ctx context.Context, o OrderPlaced) error {
				close(shipped)
				return nil
			}))
		})
		web := w.endpoint("", bus.Options{}, nil)

		member, _ := baggage.NewMember("customer", "42")
		bag, _ := baggage.New(member)
		ctx, root := w.tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "POST /orders",
			trace.WithSpanKind(trace.SpanKindServer))
		must(t, web.Send(ctx, "orders", PlaceOrder{ID: "1"}, bus.WithMessageID("order-1")))
		root.End()
		wait(t, done)
		wait(t, shipped)

		spans := w.waitSpans(10)
		if len(spans) != 10 {
			t.Fatalf("%d spans, want 10:\n%s", len(spans), dump(spans))
		}
		rootSpan := w.one(spans, "POST /orders")
		for _, s := range spans {
			if s.SpanContext().TraceID() != rootSpan.SpanContext().TraceID() {
				t.Errorf("span %q is in trace %s, not the root's %s", s.Name(), s.SpanContext().TraceID(), rootSpan.SpanContext().TraceID())
			}
		}
		if got := customer.Load(); got != "42" {
			t.Errorf("billing's handler saw the baggage member customer=%v, want 42", got)
		}

		toOrders := "PikaBusDirect:" + w.q("orders")
		placed := "PikaBusTopic:" + w.q("orders.placed")
		send := w.one(spans, "send "+toOrders, operation("send"))
		w.childOf(send, rootSpan)
		w.checkAttrs(send, map[string]any{
			"messaging.system":                           "rabbitmq",
			"messaging.operation.name":                   "send",
			"messaging.operation.type":                   "send",
			"messaging.destination.name":                 toOrders,
			"messaging.rabbitmq.destination.routing_key": w.q("orders"),
			"messaging.message.id":                       "order-1",
			"messaging.message.conversation_id":          "order-1",
			"busline.message.type":                       "PlaceOrder",
			"busline.operation":                          "send",
		})
		if send.SpanKind() != trace.SpanKindProducer {
			t.Errorf("send span kind %v", send.SpanKind())
		}

		handled := w.one(spans, "process "+toOrders, otelbus.MessageTypeKey.String("PlaceOrder"))
		w.childOf(handled, send)
		w.linksTo(handled, send)
		w.checkAttrs(handled, map[string]any{
			"messaging.system":                           "rabbitmq",
			"messaging.operation.name":                   "process",
			"messaging.operation.type":                   "process",
			"messaging.destination.name":                 toOrders,
			"messaging.rabbitmq.destination.routing_key": w.q("orders"),
			"messaging.message.id":                       "order-1",
			"messaging.message.conversation_id":          "order-1",
			"busline.message.type":                       "PlaceOrder",
		})
		if handled.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("process span kind %v", handled.SpanKind())
		}

		publish := w.one(spans, "publish "+placed)
		w.childOf(publish, handled)
		eventID, _ := attr(publish, "messaging.message.id")
		w.checkAttrs(publish, map[string]any{
			"messaging.system":                           "rabbitmq",
			"messaging.operation.name":                   "publish",
			"messaging.operation.type":                   "create",
			"messaging.destination.name":                 placed,
			"messaging.rabbitmq.destination.routing_key": w.q("orders.placed"),
			"messaging.message.id":                       eventID.AsString(),
			"messaging.message.conversation_id":          "order-1",
			"busline.message.type":                       "OrderPlaced",
			"busline.operation":                          "publish",
		})
		batch := w.one(spans, "send "+placed)
		w.childOf(batch, handled)
		w.linksTo(batch, publish)
		w.checkAttrs(batch, map[string]any{
			"messaging.system":              "rabbitmq",
			"messaging.operation.name":      "send",
			"messaging.operation.type":      "send",
			"messaging.destination.name":    placed,
			"messaging.batch.message_count": 1,
		})
		if batch.SpanKind() != trace.SpanKindClient {
			t.Errorf("batch send span kind %v", batch.SpanKind())
		}

		for _, sub := range []string{"billing", "shipping"} {
			dest := placed + ":" + w.q(sub)
			s := w.one(spans, "process "+dest)
			w.childOf(s, publish)
			w.linksTo(s, publish)
			w.checkAttrs(s, map[string]any{
				"messaging.system":                           "rabbitmq",
				"messaging.operation.name":                   "process",
				"messaging.operation.type":                   "process",
				"messaging.destination.name":                 dest,
				"messaging.rabbitmq.destination.routing_key": w.q("orders.placed"),
				"messaging.message.id":                       eventID.AsString(),
				"messaging.message.conversation_id":          "order-1",
				"busline.message.type":                       "OrderPlaced",
			})
		}
		billed := w.one(spans, "process "+placed+":"+w.q("billing"))
		reply := w.one(spans, "send "+toOrders, operation("reply"))
		w.childOf(reply, billed)
		if v, _ := attr(reply, "messaging.operation.type"); v.AsString() != "create" {
			t.Errorf("reply span: operation type %q, want create", v.AsString())
		}
		replyBatch := find(spans, "send "+toOrders, sendType)
		if len(replyBatch) != 2 { // web's send, and billing's batch
			t.Fatalf("%d send spans to orders, want 2:\n%s", len(replyBatch), dump(spans))
		}
		for _, s := range replyBatch {
			if s.SpanKind() == trace.SpanKindClient {
				w.childOf(s, billed)
				w.linksTo(s, reply)
			}
		}
		gotReply := w.one(spans, "process "+toOrders, otelbus.MessageTypeKey.String("OrderBilled"))
		w.childOf(gotReply, reply)
		for _, s := range spans {
			if s.Status().Code == codes.Error {
				t.Errorf("span %q failed: %v", s.Name(), s.Status())
			}
		}

		m := w.metrics()
		checkPoints(t, m, otelbus.MetricSentMessages, map[string]float64{
			"messaging.destination.name=" + toOrders + ",messaging.operation.name=send,messaging.operation.type=send":  2,
			"messaging.destination.name=" + placed + ",messaging.operation.name=publish,messaging.operation.type=send": 1,
		})
		checkPoints(t, m, otelbus.MetricConsumedMessages, map[string]float64{
			"messaging.destination.name=" + toOrders + ",messaging.operation.name=process,messaging.operation.type=process":                       2,
			"messaging.destination.name=" + placed + ":" + w.q("billing") + ",messaging.operation.name=process,messaging.operation.type=process":  1,
			"messaging.destination.name=" + placed + ":" + w.q("shipping") + ",messaging.operation.name=process,messaging.operation.type=process": 1,
		})
		checkPoints(t, m, otelbus.MetricProcessDuration, m[otelbus.MetricConsumedMessages])
		checkPoints(t, m, otelbus.MetricOperationDuration, map[string]float64{
			"messaging.destination.name=" + toOrders + ",messaging.operation.name=send,messaging.operation.type=send": 2,
			"messaging.destination.name=" + placed + ",messaging.operation.name=send,messaging.operation.type=send":   1,
		})
	})
}

// TestFailuresRequestsAndDeferrals checks that retried, forwarded,
// requested and deferred messages stay in their sender's trace, that each
// retry and the error-queue forward are events of the handling that failed,
// that the bus's log records carry the trace, and the metrics' values.
func TestFailuresRequestsAndDeferrals(t *testing.T) {
	brokers(t, func(t *testing.T, w *world) {
		attempts := map[string]*atomic.Int32{"once": {}, "never": {}}
		pinged := make(chan struct{})
		var flaky *bus.Bus
		flaky = w.endpoint("flaky", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(2)}}, func(b *bus.Bus) {
			must(t, bus.Handle(b, func(ctx context.Context, o PlaceOrder) error {
				n := attempts[o.ID].Add(1)
				if o.ID == "never" || n == 1 {
					return errors.New("out of stock")
				}
				return nil
			}))
			must(t, bus.Handle(b, func(ctx context.Context, q GetQuote) error {
				return flaky.Reply(ctx, Quote{Price: 7})
			}))
			must(t, bus.Handle(b, func(ctx context.Context, p Ping) error {
				close(pinged)
				return nil
			}))
		})
		web := w.endpoint("", bus.Options{}, nil)
		tracer := w.tp.Tracer("test")

		ctx, root := tracer.Start(context.Background(), "POST /orders")
		must(t, web.Send(ctx, "flaky", PlaceOrder{ID: "once"}))
		must(t, web.Send(ctx, "flaky", PlaceOrder{ID: "never"}))
		q, err := bus.Request[Quote](withTimeout(t, ctx), web, "flaky", GetQuote{})
		if err != nil || q.Price != 7 {
			t.Fatalf("Request: %v, %v", q, err)
		}
		must(t, web.Defer(ctx, 30*time.Millisecond, "flaky", Ping{}))
		root.End()
		wait(t, pinged)

		// root, 4 sends, 2+3 attempts, the quote (process, reply, batch),
		// the reply's arrival, the ping
		spans := w.waitSpans(1 + 4 + 5 + 3 + 1 + 1)
		if len(spans) != 15 {
			t.Fatalf("%d spans, want 15:\n%s", len(spans), dump(spans))
		}
		rootSpan := w.one(spans, "POST /orders")
		for _, s := range spans {
			if s.SpanContext().TraceID() != rootSpan.SpanContext().TraceID() {
				t.Errorf("span %q is in trace %s, not the root's %s", s.Name(), s.SpanContext().TraceID(), rootSpan.SpanContext().TraceID())
			}
		}
		toFlaky := "PikaBusDirect:" + w.q("flaky")
		sends := find(spans, "send "+toFlaky, operation("send"))
		if len(sends) != 2 {
			t.Fatalf("%d send spans, want 2:\n%s", len(sends), dump(spans))
		}
		var retryEvents, forwardEvents int
		for i, id := range []string{"once", "never"} {
			send := sends[i]
			w.childOf(send, rootSpan)
			msgID, _ := attr(send, "messaging.message.id")
			got := find(spans, "process "+toFlaky, attribute.String("messaging.message.id", msgID.AsString()))
			want := map[string]int{"once": 2, "never": 3}[id]
			if len(got) != want {
				t.Fatalf("%s: %d process spans, want %d:\n%s", id, len(got), want, dump(spans))
			}
			for n, p := range got {
				w.childOf(p, send) // each retry continues the sender's trace
				retries, _ := attr(p, otelbus.RetriesKey)
				if retries.AsInt64() != int64(n) {
					t.Errorf("%s attempt %d: busline.message.retries %v", id, n+1, retries.AsInt64())
				}
				last := n == len(got)-1
				var events []string
				for _, e := range p.Events() {
					events = append(events, e.Name)
					switch e.Name {
					case otelbus.EventRetryScheduled:
						retryEvents++
						checkEventAttrs(t, e.Attributes, map[string]any{
							"busline.retry.number": n + 1, "busline.retry.delay": 0.02 * float64(n+1),
							"error.type": "_OTHER", "exception.message": "out of stock",
						})
					case otelbus.EventSentToErrorQueue:
						forwardEvents++
						checkEventAttrs(t, e.Attributes, map[string]any{
							"busline.error_queue": w.q("error"), "busline.message.retries": 2,
							"error.type": "_OTHER", "exception.message": "out of stock (gave up after 2 delayed retries)",
						})
					}
				}
				failed := id == "never" || !last
				if failed != (p.Status().Code == codes.Error) {
					t.Errorf("%s attempt %d: status %v", id, n+1, p.Status())
				}
				if et, _ := attr(p, "error.type"); failed && et.AsString() != "_OTHER" {
					t.Errorf("%s attempt %d: error.type %q", id, n+1, et.AsString())
				}
				if len(events) != map[bool]int{true: 1, false: 0}[failed] {
					t.Errorf("%s attempt %d: events %v", id, n+1, events)
				}
			}
		}
		if retryEvents != 3 || forwardEvents != 1 {
			t.Errorf("%d retry events and %d error-queue events, want 3 and 1", retryEvents, forwardEvents)
		}

		request := w.one(spans, "send "+toFlaky, operation("request"))
		w.childOf(request, rootSpan)
		quoted := w.one(spans, "process "+toFlaky, otelbus.MessageTypeKey.String("GetQuote"))
		w.childOf(quoted, request)
		replyDest := "PikaBusDirect:" + w.q("busline") + ".reply-{id}"
		reply := w.one(spans, "send "+replyDest, operation("reply"))
		w.childOf(reply, quoted)
		if v, _ := attr(reply, "messaging.destination.template"); v.AsString() != replyDest {
			t.Errorf("reply: destination template %q, want %q", v.AsString(), replyDest)
		}
		if v, _ := attr(reply, "messaging.destination.temporary"); !v.AsBool() {
			t.Errorf("reply: not marked temporary")
		}
		// The reply's arrival at the requester: a process span on the
		// temporary reply queue, a child of the reply's creation.
		arrived := w.one(spans, "process "+replyDest)
		w.childOf(arrived, reply)
		w.checkAttrs(arrived, map[string]any{
			"messaging.system":                           "rabbitmq",
			"messaging.operation.name":                   "process",
			"messaging.operation.type":                   "process",
			"messaging.destination.template":             replyDest,
			"messaging.destination.temporary":            true,
			"messaging.rabbitmq.destination.routing_key": must2(attr(reply, "messaging.rabbitmq.destination.routing_key")).AsString(),
			"messaging.message.id":                       must2(attr(reply, "messaging.message.id")).AsString(),
			"messaging.message.conversation_id":          must2(attr(reply, "messaging.message.conversation_id")).AsString(),
			"busline.message.type":                       "Quote",
		})
		deferred := w.one(spans, "send "+toFlaky, operation("defer"))
		w.childOf(deferred, rootSpan)
		ping := w.one(spans, "process "+toFlaky, otelbus.MessageTypeKey.String("Ping"))
		w.childOf(ping, deferred)

		// The bus's log records of a handling carry its span.
		var logged int
		for line := range strings.Lines(w.logs.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["msg"] != "handling failed; retry scheduled" {
				continue
			}
			logged++
			var owner trace.SpanContext
			for _, s := range spans {
				if s.SpanContext().SpanID().String() == rec["span_id"] {
					owner = s.SpanContext()
				}
			}
			if !owner.IsValid() || rec["trace_id"] != rootSpan.SpanContext().TraceID().String() {
				t.Errorf("log record %v: trace_id and span_id are not a handling's", rec)
			}
		}
		if logged != 3 {
			t.Errorf("%d retry log records, want 3:\n%s", logged, w.logs.String())
		}

		m := w.metrics()
		proc := ",messaging.operation.name=process,messaging.operation.type=process"
		checkPoints(t, m, otelbus.MetricConsumedMessages, map[string]float64{
			"messaging.destination.name=" + toFlaky + proc:                                                 3, // once's 2nd, the quote, the ping
			"error.type=_OTHER,messaging.destination.name=" + toFlaky + proc:                               4,
			"messaging.destination.template=" + replyDest + ",messaging.destination.temporary=true" + proc: 1,
		})
		checkPoints(t, m, otelbus.MetricProcessDuration, m[otelbus.MetricConsumedMessages])
		checkPoints(t, m, otelbus.MetricSentMessages, map[string]float64{
			"messaging.destination.name=" + toFlaky + ",messaging.operation.name=send,messaging.operation.type=send": 4,
			"messaging.destination.template=" + replyDest +
				",messaging.destination.temporary=true,messaging.operation.name=send,messaging.operation.type=send": 1,
		})
		failure := "busline.message.type=PlaceOrder,error.type=_OTHER,messaging.destination.name=" + w.q("flaky")
		checkPoints(t, m, otelbus.MetricRetries, map[string]float64{failure: 3})
		checkPoints(t, m, otelbus.MetricForwarded, map[string]float64{failure: 1})
		checkPoints(t, m, otelbus.MetricActiveHandlings, map[string]float64{
			"messaging.destination.name=" + w.q("flaky"):                   0,
			"messaging.destination.name=" + w.q("busline") + ".reply-{id}": 0,
		})
		checkPoints(t, m, otelbus.MetricQueueMessages, map[string]float64{
			"messaging.destination.name=" + w.q("flaky"): 0,
			"messaging.destination.name=" + w.q("error"): 1,
		})
		endpoint := "busline.endpoint=" + w.q("flaky")
		checkPoints(t, m, otelbus.MetricConnectionUp, map[string]float64{endpoint: 1})
		checkPoints(t, m, otelbus.MetricConnectionBlocked, map[string]float64{endpoint: 0})
	})
}

func checkPoints(t *testing.T, m map[string]map[string]float64, name string, want map[string]float64) {
	t.Helper()
	got := m[name]
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, unexpected", name, k, v)
		}
	}
}

func checkEventAttrs(t *testing.T, attrs []attribute.KeyValue, want map[string]any) {
	t.Helper()
	got := map[string]string{}
	for _, a := range attrs {
		got[string(a.Key)] = a.Value.Emit()
	}
	if len(got) != len(want) {
		t.Errorf("event attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != toValue(v).Emit() {
			t.Errorf("event attribute %s = %q, want %v", k, got[k], v)
		}
	}
}

func toValue(v any) attribute.Value {
	switch v := v.(type) {
	case int:
		return attribute.IntValue(v)
	case float64:
		return attribute.Float64Value(v)
	case string:
		return attribute.StringValue(v)
	}
	panic(v)
}

// must2 returns v, found or not: attr's value, for an attribute the
// test checks elsewhere.
func must2(v attribute.Value, _ bool) attribute.Value { return v }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wait waits for c, within a bound that only catches a hang.
func wait(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatal("gave up waiting")
	}
}

func withTimeout(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
