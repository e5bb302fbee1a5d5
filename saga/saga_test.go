package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/saga"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestFlowShipsWhenPaidAndReserved(t *testing.T) {
	bubble(t, saga.Options{}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		must(t, c.Send(ctx, "orders", OrderPlaced{OrderID: "o1"}))
		idle()
		rec, o, ok := e.instance("o1")
		if !ok || o.Events != 1 || rec.Version != 1 || rec.Originator != c.Queue() {
			t.Fatalf("after OrderPlaced: %v %+v %+v", ok, o, rec)
		}
		// Parallel branches, in either order.
		must(t, c.Send(ctx, "orders", StockReserved{OrderID: "o1"}))
		must(t, c.Send(ctx, "orders", PaymentReceived{OrderID: "o1"}))
		idle()
		if _, _, ok := e.instance("o1"); ok {
			t.Error("the instance is still stored after it completed")
		}
		if got := e.shipped.values(); len(got) != 1 || got[0] != (ShipOrder{OrderID: "o1"}) {
			t.Errorf("shipping got %v, want one ShipOrder", got)
		}
		if got := replies.values(); len(got) != 1 || got[0] != (OrderStatus{OrderID: "o1", Status: "shipped"}) {
			t.Errorf("the originator got %v, want shipped", got)
		}
		// The payment timeout comes after completion: dropped.
		time.Sleep(paymentTimeout)
		idle()
		if got := e.shipped.values(); len(got) != 1 {
			t.Errorf("shipping got %v after the timeout of a completed instance", got)
		}
	})
}

func TestPaymentTimeoutIsExactAndCancels(t *testing.T) {
	bubble(t, saga.Options{}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		start := time.Now()
		must(t, c.Send(ctx, "orders", OrderPlaced{OrderID: "o2"}))
		must(t, c.Send(ctx, "orders", StockReserved{OrderID: "o2"}))
		idle()
		time.Sleep(time.Until(start.Add(paymentTimeout)) - time.Nanosecond)
		idle()
		if _, o, ok := e.instance("o2"); !ok || o.Cancelled || len(e.shipped.values()) != 0 {
			t.Fatalf("before the timeout was due: %v %+v, shipping got %v", ok, o, e.shipped.values())
		}
		time.Sleep(time.Nanosecond)
		idle()
		if got := e.shipped.values(); len(got) != 1 || got[0] != (CancelOrder{OrderID: "o2"}) {
			t.Fatalf("at the timeout, after %v, shipping got %v, want one CancelOrder", time.Since(start), got)
		}
		if _, _, ok := e.instance("o2"); ok {
			t.Error("the cancelled instance is still stored")
		}
		if got := replies.values(); len(got) != 1 || got[0] != (OrderStatus{OrderID: "o2", Status: "cancelled"}) {
			t.Errorf("the originator got %v, want cancelled", got)
		}
		// A late payment finds no instance, does not start one: ignored.
		must(t, c.Send(ctx, "orders", PaymentReceived{OrderID: "o2"}))
		idle()
		if _, _, ok := e.instance("o2"); ok {
			t.Error("a late payment started an instance")
		}
		if n := e.broker.Depth("error"); n != 0 {
			t.Errorf("%d messages on the error queue, want none (NotFoundIgnore)", n)
		}
	})
}

// TestTimeoutArrivingEarlyIsDeferred: the bus handles a deferred message
// up to its deferral tolerance (100 ms) early; a saga timeout is deferred
// again instead, so its handler never runs early.
func TestTimeoutArrivingEarlyIsDeferred(t *testing.T) {
	bubble(t, saga.Options{}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		must(t, c.Send(ctx, "orders", OrderPlaced{OrderID: "o3"}))
		idle()
		rec, _, _ := e.instance("o3")
		due := time.Now().Add(time.Minute)
		must(t, c.Defer(ctx, time.Minute-50*time.Millisecond, "orders", PaymentOverdue{OrderID: "o3"}, bus.WithHeaders(map[string]any{
			saga.HeaderSagaID: rec.ID, saga.HeaderSagaName: "Order", saga.HeaderTimeoutAt: due.UTC().Format(time.RFC3339Nano)})))
		time.Sleep(time.Until(due) - time.Nanosecond)
		idle()
		if len(e.shipped.values()) != 0 {
			t.Fatal("the timeout was handled early")
		}
		time.Sleep(time.Nanosecond)
		idle()
		if got := e.shipped.values(); len(got) != 1 {
			t.Fatalf("at its due time shipping got %v, want one CancelOrder", got)
		}
	})
}

func TestKeepCompletedDropsLateMessages(t *testing.T) {
	bubble(t, saga.Options{KeepCompleted: time.Hour}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		for _, m := range []any{OrderPlaced{"o4"}, PaymentReceived{"o4"}, StockReserved{"o4"}} {
			must(t, c.Send(ctx, "orders", m))
		}
		idle()
		rec, o, ok := e.instance("o4")
		if !ok || !rec.Completed || !o.Shipped || rec.Version != 3 {
			t.Fatalf("kept record: %v %+v %+v", ok, rec, o)
		}
		// A duplicate start, a late payment: dropped, no new instance.
		must(t, c.Send(ctx, "orders", OrderPlaced{"o4"}))
		must(t, c.Send(ctx, "orders", PaymentReceived{"o4"}))
		idle()
		if rec2, _, _ := e.instance("o4"); rec2.Version != 3 || rec2.ID != rec.ID {
			t.Errorf("late messages changed the completed instance: %+v", rec2)
		}
		if got := e.shipped.values(); len(got) != 1 {
			t.Errorf("shipping got %v", got)
		}
		// After it expired, the value may start a new instance.
		time.Sleep(time.Hour)
		n, err := e.store.DeleteExpired(ctx, time.Now(), 100)
		if err != nil || n != 1 {
			t.Errorf("DeleteExpired: %d, %v; want 1", n, err)
		}
		must(t, c.Send(ctx, "orders", OrderPlaced{"o4"}))
		idle()
		if rec3, _, ok := e.instance("o4"); !ok || rec3.ID == rec.ID || rec3.Completed {
			t.Errorf("no new instance after expiry: %v %+v", ok, rec3)
		}
	})
}

func TestNotFoundToErrorQueue(t *testing.T) {
	bubble(t, saga.Options{NotFound: saga.NotFoundToErrorQueue}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		must(t, c.Send(ctx, "orders", PaymentReceived{OrderID: "nobody"}))
		idle()
		msgs := e.broker.Messages("error")
		if len(msgs) != 1 {
			t.Fatalf("%d messages on the error queue, want 1", len(msgs))
		}
		details, _ := msgs[0].Headers["PikaBus.ErrorDetails"].(string)
		// ErrorRetries is the delayed retries plus one: 1, none.
		if r := msgs[0].Headers["PikaBus.ErrorRetries"]; !strings.Contains(details, "no instance") || r != int32(1) {
			t.Errorf("error queue message: details %q, retries %v", details, msgs[0].Headers["PikaBus.ErrorRetries"])
		}
	})
}

// TestReplyFromLaterMessage: Reply answers the message being handled;
// ReplyToOriginator answers the message that started the instance, from a
// message another endpoint sent.
func TestReplyFromLaterMessage(t *testing.T) {
	bubble(t, saga.Options{}, bus.Options{}, func(t *testing.T, e *env) {
		var replies recorder[any]
		c := e.client(&replies)
		must(t, c.Send(ctx, "orders", OrderPlaced{OrderID: "o5"}))
		idle()
		st, err := bus.Request[OrderStatus](ctx, c, "orders", GetStatus{OrderID: "o5"})
		if err != nil || st.Status != "placed" {
			t.Fatalf("Request: %+v, %v", st, err)
		}
		other := e.bus("payments", bus.Options{Logger: testLogger()})
		must(t, other.Send(ctx, "orders", PaymentReceived{OrderID: "o5"}))
		must(t, other.Send(ctx, "orders", StockReserved{OrderID: "o5"}))
		idle()
		if got := replies.values(); len(got) != 1 || got[0] != (OrderStatus{OrderID: "o5", Status: "shipped"}) {
			t.Errorf("the originator got %v, want shipped", got)
		}
	})
}

// TestConcurrentMessagesLoseNoUpdate: with a concurrent endpoint, messages
// for one instance race; the losers of a save conflict are retried and no
// update is lost, and one correlation value starts one instance.
func TestConcurrentMessagesLoseNoUpdate(t *testing.T) {
	bubble(t, saga.Options{}, bus.Options{}, func(t *testing.T, e *env) {
		counts := counterSaga()
		b := e.bus("counters", bus.Options{Concurrency: 8, Retry: fastRetries, Logger: testLogger()})
		store := saga.NewMemoryStore()
		must(t, counts.Register(b, store))
		must(t, b.Start(ctx))
		for i := range 10 {
			for _, k := range []string{"a", "b", "c"} {
				must(t, b.Send(ctx, "counters", Step{Key: k, N: i}))
			}
		}
		idle()
		for _, k := range []string{"a", "b", "c"} {
			r, err := store.Find(ctx, "Counter", k)
			must(t, err)
			var c Count
			must(t, json.Unmarshal(r.State, &c))
			if c.Seen != 1<<10-1 || c.Handled != 10 || r.Version != 10 {
				t.Errorf("%s: %+v version %d, want all 10 steps once", k, c, r.Version)
			}
		}
		if n := e.broker.Depth("error"); n != 0 {
			t.Errorf("%d messages on the error queue", n)
		}
	})
}

// Step is one of ten messages of a counter instance, any of which starts it.
type Step struct {
	Key string
	N   int
}

// Count is a counter instance: which steps it saw, and how many handlings
// changed it (more than ten: a message handled twice; fewer: an update
// lost).
type Count struct {
	Seen    int
	Handled int
}

func counterSaga() *saga.Saga[Count] {
	sg := saga.New[Count]("Counter", saga.Options{})
	saga.StartedBy(sg, func(m Step) string { return m.Key },
		func(ctx context.Context, s *saga.Instance[Count], m Step) error {
			s.State.Seen |= 1 << m.N
			s.State.Handled++
			return nil
		})
	return sg
}

func TestRegisterReportsMistakes(t *testing.T) {
	sg := saga.New[Order]("", saga.Options{KeepCompleted: -1})
	saga.Handles[Order, PaymentReceived](sg, nil, nil)
	saga.Handles(sg, func(m StockReserved) string { return "" }, func(context.Context, *saga.Instance[Order], StockReserved) error { return nil })
	saga.Handles(sg, func(m StockReserved) string { return "" }, func(context.Context, *saga.Instance[Order], StockReserved) error { return nil })
	err := sg.Register(nil, nil)
	for _, want := range []string{"empty name", "negative KeepCompleted", "nil handler", "given twice", "no message type starts it"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Register: %v; want it to say %q", err, want)
		}
	}
}

func TestRequestTimeoutNeedsTimeoutHandler(t *testing.T) {
	sg := saga.New[Order]("x", saga.Options{})
	saga.StartedBy(sg, func(m OrderPlaced) string { return m.OrderID },
		func(ctx context.Context, s *saga.Instance[Order], m OrderPlaced) error {
			return s.RequestTimeout(time.Second, ShipOrder{})
		})
	in := saga.NewInstance(Order{}, saga.Record{ID: "i", Correlation: "o"})
	err := sg.Apply(ctx, in, OrderPlaced{OrderID: "o"})
	if err == nil || !strings.Contains(err.Error(), "no Timeout handler for saga_test.ShipOrder") {
		t.Errorf("Apply: %v", err)
	}
	if err := sg.Apply(ctx, in, PaymentReceived{}); err == nil {
		t.Error("Apply of a type the saga does not take: no error")
	}
	in = saga.NewInstance(Order{}, saga.Record{ID: "i", Correlation: "o"})
	if err := orderSaga(saga.Options{}).Apply(ctx, in, PaymentReceived{OrderID: "o"}); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Apply of a non-starting message to a new instance: %v", err)
	}
}
