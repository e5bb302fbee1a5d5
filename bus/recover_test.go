package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// errorQueue returns the messages in the error queue.
func errorQueue(e *env) []transport.Message { return e.broker.Messages("error") }

func retries(m transport.Message) int64 {
	n, _, _ := middleware.HeaderInt(m.Headers["PikaBus.ErrorRetries"])
	return n
}

func TestRetriesWithBackoffThenErrorQueue(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var seen []int
		var at []time.Duration
		start := time.Now()
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			in, _ := bus.IncomingFrom(ctx)
			seen = append(seen, in.Retries)
			at = append(at, time.Since(start))
			return fmt.Errorf("attempt %d failed", in.Retries)
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}))
		time.Sleep(time.Hour)
		idle()
		if !slices.Equal(seen, []int{0, 1, 2, 3, 4, 5}) {
			t.Errorf("retry counts seen %v", seen)
		}
		// PikaBus's backoff: retry n waits n × 2 s after the failure
		// before it.
		want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 12 * time.Second, 20 * time.Second, 30 * time.Second}
		if !slices.Equal(at, want) {
			t.Errorf("attempts at %v, want %v", at, want)
		}
		eq := errorQueue(e)
		if len(eq) != 1 {
			t.Fatalf("%d messages in the error queue", len(eq))
		}
		m := eq[0]
		if string(m.Body) != `{"ID":"x"}` || header(m, "SourceQueue") != "orders" || retries(m) != 6 ||
			!strings.Contains(header(m, "ErrorDetails"), "attempt 5 failed") || header(m, "MessageType") != "PlaceOrder" {
			t.Errorf("error queue message: %s %v", m.Body, m.Headers)
		}
		if e.broker.Depth("orders") != 0 {
			t.Error("messages left in the endpoint queue")
		}
	})
}

func TestCustomRetryOptions(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		backoff := middleware.LinearBackoff(time.Minute)
		b := e.bus("orders", bus.Options{Retry: middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.Retries(2), Backoff: backoff}})
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { attempts++; return errors.New("no") }))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		time.Sleep(3*time.Minute - time.Millisecond)
		idle()
		if attempts != 4 || len(errorQueue(e)) != 0 {
			t.Errorf("%d attempts, %d in the error queue before the last retry", attempts, len(errorQueue(e)))
		}
		time.Sleep(time.Millisecond)
		idle()
		if attempts != 6 || len(errorQueue(e)) != 1 || retries(errorQueue(e)[0]) != 3 {
			t.Errorf("%d attempts (want 6: 3 deliveries, each retried once at once), error queue %v", attempts, errorQueue(e))
		}
	})
}

func TestPermanentFailures(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			attempts++
			switch m.ID {
			case "permanent":
				return bus.Permanent(errors.New("invalid order"))
			case "panic":
				panic("handler bug")
			case "panic permanent":
				panic(bus.Permanent(errors.New("fatal")))
			}
			return nil
		}))
		e.start(b)
		for _, id := range []string{"permanent", "panic permanent"} {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: id}))
		}
		// Undecodable bodies and unknown content types.
		for _, body := range []struct{ ct, body string }{{"application/json", `{"ID": 12`}, {"application/x-unknown", `x`}} {
			must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{
				ID: body.ct, ContentType: body.ct, Body: []byte(body.body),
				Headers: transport.Headers{"PikaBus.MessageType": "PlaceOrder"},
			}}))
		}
		idle()
		if attempts != 2 {
			t.Errorf("%d attempts, want 2 (undecodable bodies reach no handler)", attempts)
		}
		eq := errorQueue(e)
		if len(eq) != 4 {
			t.Fatalf("%d messages in the error queue, want 4", len(eq))
		}
		for i, want := range []string{"invalid order", "fatal", "undecodable", `no codec for content type "application/x-unknown"`} {
			if d := header(eq[i], "ErrorDetails"); !strings.Contains(d, want) || retries(eq[i]) != 1 {
				t.Errorf("error queue message %d: ErrorDetails %q (want %q), retries %d", i, d, want, retries(eq[i]))
			}
		}
	})
}

func TestPanickingHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(1)}})
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			attempts++
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "never sent"}))
			panic("handler bug")
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		time.Sleep(time.Minute)
		idle()
		eq := errorQueue(e)
		if attempts != 2 || len(eq) != 1 {
			t.Fatalf("%d attempts, %d in the error queue", attempts, len(eq))
		}
		d := header(eq[0], "ErrorDetails")
		if !strings.Contains(d, "panic: handler bug") || !strings.Contains(d, "goroutine") {
			t.Errorf("ErrorDetails has no panic and stack: %q", d)
		}
	})
}

func TestUnhandledMessages(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}))
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: transport.Message{Body: []byte("{}")}}))
		idle()
		eq := errorQueue(e)
		if len(eq) != 2 {
			t.Fatalf("%d messages in the error queue", len(eq))
		}
		if d := header(eq[0], "ErrorDetails"); !strings.Contains(d, `no handler for message type "PlaceOrder"`) || retries(eq[0]) != 1 {
			t.Errorf("ErrorDetails %q", d)
		}
		if d := header(eq[1], "ErrorDetails"); !strings.Contains(d, "no message type") {
			t.Errorf("ErrorDetails %q", d)
		}

		discard := e.bus("discard", bus.Options{Unhandled: bus.UnhandledDiscard})
		e.start(discard)
		must(t, discard.Send(ctx, "discard", PlaceOrder{}))
		idle()
		if len(errorQueue(e)) != 2 || e.broker.Depth("discard") != 0 {
			t.Error("an unhandled message was not discarded")
		}
	})
}

func TestHandlerTimeout(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{HandlerTimeout: time.Second, Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries}})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			<-ctx.Done()
			return ctx.Err()
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		time.Sleep(2 * time.Second)
		idle()
		eq := errorQueue(e)
		if len(eq) != 1 || !strings.Contains(header(eq[0], "ErrorDetails"), "timed out") {
			t.Errorf("error queue %v", eq)
		}
	})
}

func TestErrorQueueReplay(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		fixed := false
		var r recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if !fixed {
				return bus.Permanent(errors.New("bug"))
			}
			return r.handle(ctx, m.ID)
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}))
		idle()
		fixed = true
		res, err := middleware.Replay(ctx, e.tr, middleware.ReplayOptions{Queue: b.ErrorQueue()})
		must(t, err)
		idle()
		if len(res.Replayed) != 1 || !slices.Equal(r.all(), []string{"x"}) || r.incoming()[0].Retries != 0 {
			t.Errorf("replay %+v; handled %v %+v", res, r.all(), r.incoming())
		}
	})
}

func TestCustomPipeline(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var order []string
		stage := func(name string) middleware.Middleware {
			return func(next middleware.Handler) middleware.Handler {
				return func(ctx context.Context, m *middleware.Message) error {
					order = append(order, name)
					return next(ctx, m)
				}
			}
		}
		b := e.bus("orders", bus.Options{
			Pipeline: func(p bus.Plumbing) (middleware.Middleware, error) {
				eq, err := middleware.ErrorQueue(p.Sender, middleware.ErrorQueueOptions{Queue: p.ErrorQueue, Headers: p.Headers})
				return middleware.Chain(stage("pipeline"), eq), err
			},
			Middleware: []middleware.Middleware{stage("user")},
		})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			order = append(order, "handler")
			return errors.New("no retries here")
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		if !slices.Equal(order, []string{"pipeline", "user", "handler"}) || len(errorQueue(e)) != 1 {
			t.Errorf("order %v, error queue %d", order, len(errorQueue(e)))
		}
	})
}

func TestPipelineWithoutErrorHandlingRequeues(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Pipeline: func(bus.Plumbing) (middleware.Middleware, error) {
			return middleware.Chain(), nil
		}})
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			attempts++
			if attempts == 1 {
				panic("no Recover stage")
			}
			if attempts == 2 {
				return errors.New("no ErrorQueue stage")
			}
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		// Each failure holds the message (1 s, then 2 s) before it goes
		// back to its queue.
		time.Sleep(10 * time.Second)
		idle()
		if attempts != 3 || e.broker.Depth("orders") != 0 {
			t.Errorf("%d attempts, %d left", attempts, e.broker.Depth("orders"))
		}
	})
}

// Options.OnNotice reports every delayed retry and every message sent to
// the error queue, with the message, the error and the retry count.
func TestRetryAndErrorQueueEvents(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var rec events
		var own []int
		backoff := middleware.LinearBackoff(time.Second)
		b := e.bus("orders", bus.Options{OnNotice: rec.add, Retry: middleware.RetryOptions{
			MaxRetries: middleware.Retries(2), Backoff: backoff,
			OnRetry: func(ctx context.Context, f middleware.Failure) { own = append(own, f.Retries) },
		}})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if m.ID == "bad" {
				return bus.Permanent(errors.New("bad order"))
			}
			return errors.New("database down")
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}, bus.WithMessageID("m-x")))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "bad"}, bus.WithMessageID("m-bad")))
		must(t, b.Send(ctx, "orders", OrderPlaced{ID: "y"}, bus.WithMessageID("m-y")))
		time.Sleep(5 * time.Second)
		idle()

		var got []string
		rec.mu.Lock()
		for _, ev := range rec.ev {
			if ev.Kind != bus.Retried && ev.Kind != bus.SentToErrorQueue {
				continue
			}
			got = append(got, fmt.Sprintf("%s %s %s queue=%s retries=%d delay=%v err=%v",
				ev.Kind, ev.MessageID, ev.MessageType, ev.Queue, ev.Retries, ev.Delay, ev.Err))
		}
		rec.mu.Unlock()
		want := []string{
			"retried m-x PlaceOrder queue=orders retries=1 delay=1s err=database down",
			"sent to error queue m-bad PlaceOrder queue=orders retries=0 delay=0s err=bad order",
			`sent to error queue m-y OrderPlaced queue=orders retries=0 delay=0s err=no handler for message: permanent failure: endpoint "orders" has no handler for message type "OrderPlaced"; it handles ["PlaceOrder"]`,
			"retried m-x PlaceOrder queue=orders retries=2 delay=2s err=database down",
			"sent to error queue m-x PlaceOrder queue=orders retries=2 delay=0s err=database down (gave up after 2 delayed retries)",
		}
		if !slices.Equal(got, want) {
			t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !slices.Equal(own, []int{1, 2}) {
			t.Errorf("Options.Retry.OnRetry saw %v", own)
		}
		if n := len(errorQueue(e)); n != 3 {
			t.Errorf("%d messages in the error queue", n)
		}
	})
}

// A pipeline of one's own raises the events by giving the stages the Bus's
// hooks.
func TestOwnPipelineEvents(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var rec events
		b := e.bus("orders", bus.Options{OnNotice: rec.add, Pipeline: func(p bus.Plumbing) (middleware.Middleware, error) {
			return middleware.ErrorQueue(p.Sender, middleware.ErrorQueueOptions{
				Queue: p.ErrorQueue, Headers: p.Headers, OnForward: p.OnForward,
			})
		}})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { return errors.New("boom") }))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "x"}, bus.WithMessageID("m-x")))
		idle()
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var found bool
		for _, ev := range rec.ev {
			if ev.Kind == bus.SentToErrorQueue {
				found = ev.MessageID == "m-x" && ev.MessageType == "PlaceOrder" && ev.Err.Error() == "boom"
			}
		}
		if !found {
			t.Errorf("no SentToErrorQueue event for m-x in %v", rec.ev)
		}
	})
}

// noGetter hides the memory transport's Getter capability.
type noGetter struct {
	transport.Transport
	transport.Delayer
}

// ReplayErrors replays the endpoint's error queue with the Bus's prefixes
// and header names, through its DispatchMiddleware, from an endpoint or a
// send-only Bus.
func TestReplayErrors(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var dispatched calls
		seen := func(next middleware.Dispatcher) middleware.Dispatcher {
			return func(ctx context.Context, msgs ...transport.Outgoing) error {
				for _, o := range msgs {
					dispatched.add(o.RoutingKey)
				}
				return next(ctx, msgs...)
			}
		}
		opts := bus.Options{QueuePrefix: "staging.", HeaderPrefix: "Acme", DispatchMiddleware: []middleware.DispatchMiddleware{seen}}
		b := e.bus("orders", opts)
		fixed := false
		var r recorder[PlaceOrder]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if !fixed {
				return bus.Permanent(errors.New("bug"))
			}
			return r.handle(ctx, m)
		}))
		e.start(b)
		for _, id := range []string{"a", "b"} {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: id}, bus.WithMessageID("m-"+id)))
		}
		idle()
		if n := e.broker.Depth("staging.error"); n != 2 {
			t.Fatalf("%d messages in staging.error", n)
		}
		fixed = true
		dispatched.take()
		res, err := b.ReplayErrors(ctx, middleware.ReplayOptions{MessageIDs: []string{"m-a", "m-x"}})
		if !errors.Is(err, bus.ErrNotFound) || !strings.HasPrefix(err.Error(), `bus "staging.orders": replay errors: `) ||
			!slices.Equal(res.NotFound, []string{"m-x"}) || len(res.Replayed) != 1 || res.Replayed[0].SourceQueue != "staging.orders" {
			t.Fatalf("ReplayErrors: %+v, %v", res, err)
		}
		idle()
		if got := dispatched.take(); !slices.Equal(got, []string{"staging.orders"}) {
			t.Errorf("DispatchMiddleware saw %v", got)
		}
		if got := r.all(); !slices.Equal(got, []PlaceOrder{{"a"}}) || r.incoming()[0].Retries != 0 {
			t.Errorf("handled %v", got)
		}

		// A send-only Bus replays the rest, as an operations tool.
		ops := e.bus("", bus.Options{QueuePrefix: "staging.", HeaderPrefix: "Acme"})
		res, err = ops.ReplayErrors(ctx, middleware.ReplayOptions{})
		must(t, err)
		idle()
		if len(res.Replayed) != 1 || res.Replayed[0].ID != "m-b" || !slices.Equal(r.all(), []PlaceOrder{{"a"}, {"b"}}) {
			t.Errorf("replay from a send-only bus: %+v; handled %v", res, r.all())
		}
		if n := e.broker.Depth("staging.error"); n != 0 {
			t.Errorf("%d messages left in staging.error", n)
		}

		// Refusals.
		ng := e.busOn(noGetter{e.tr, e.tr}, "", bus.Options{})
		if _, err := ng.ReplayErrors(ctx, middleware.ReplayOptions{}); !errors.Is(err, bus.ErrNotSupported) {
			t.Errorf("ReplayErrors without a Getter: %v", err)
		}
		ops.Close()
		if _, err := ops.ReplayErrors(ctx, middleware.ReplayOptions{}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("ReplayErrors after Close: %v", err)
		}
	})
}
