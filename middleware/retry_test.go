package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

var names = middleware.DefaultHeaderNames

// order is the message the tests handle: properties, PikaBus headers, a
// foreign non-string header.
func order(id string) transport.Message {
	return transport.Message{
		ID:            id,
		CorrelationID: "corr-" + id,
		ContentType:   "application/json",
		Type:          "PlaceOrder",
		Headers: transport.Headers{
			names.MessageID:   id,
			names.MessageType: "PlaceOrder",
			"x-foreign":       []any{int64(7), "seven"},
		},
		Body: []byte(`{"order":"` + id + `"}`),
	}
}

// deliver takes the next due message of queue from b (waiting for it in fake
// time) and runs h on it as an endpoint would. ok is false if the queue is
// empty.
func deliver(t *testing.T, ctx context.Context, b *broker, queue string, h middleware.Handler) (at time.Time, err error, ok bool) {
	t.Helper()
	m, at, ok := b.next(queue)
	if !ok {
		return at, nil, false
	}
	b.mu.Lock()
	b.delivered++
	n := b.delivered
	b.mu.Unlock()
	if n > maxDeliveries {
		t.Fatalf("%s: more than %d deliveries: messages keep coming back", queue, maxDeliveries)
	}
	return at, h(ctx, &middleware.Message{Message: m, Queue: queue}), true
}

// maxDeliveries bounds the deliveries of one fake broker: far more than any
// test makes, far fewer than an endless retry loop.
const maxDeliveries = 1000

func standard(t *testing.T, s middleware.Sender, opts middleware.StandardOptions) middleware.Middleware {
	t.Helper()
	mw, err := middleware.Standard(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func TestRetriesThroughToErrorQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker("orders", "error")
		var calls []time.Time
		h := standard(t, delaying{b}, middleware.StandardOptions{})(func(ctx context.Context, m *middleware.Message) error {
			calls = append(calls, time.Now())
			return errors.New("database down")
		})
		start := time.Now()
		b.put("orders", order("m1"))
		for {
			_, err, ok := deliver(t, t.Context(), b, "orders", h)
			if !ok {
				break
			}
			if err != nil {
				t.Fatalf("pipeline returned %v; want nil (retried or forwarded)", err)
			}
		}
		// First delivery, then 5 delayed retries 2, 4, 6, 8, 10 s after each failure.
		want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 12 * time.Second, 20 * time.Second, 30 * time.Second}
		if len(calls) != len(want) {
			t.Fatalf("handler called %d times, want %d", len(calls), len(want))
		}
		for i, at := range calls {
			if got := at.Sub(start); got != want[i] {
				t.Errorf("attempt %d at +%v, want +%v", i+1, got, want[i])
			}
		}
		// The retry copies: ErrorRetries 1..5, DeferredTime the due time.
		var retries []transport.Outgoing
		for _, o := range b.sent {
			if o.RoutingKey == "orders" && o.Message.Headers[names.ErrorRetries] != nil {
				retries = append(retries, o)
			}
		}
		if len(retries) != 5 {
			t.Fatalf("%d retry copies, want 5", len(retries))
		}
		for i, o := range retries {
			if got := o.Message.Headers[names.ErrorRetries]; got != int32(i+1) {
				t.Errorf("copy %d: ErrorRetries %#v, want int32(%d)", i+1, got, i+1)
			}
			due := start.Add(want[i+1])
			if !o.NotBefore.Equal(due) || o.Message.Headers[names.DeferredTime] != middleware.FormatTime(due) {
				t.Errorf("copy %d: NotBefore %v DeferredTime %v, want %v", i+1, o.NotBefore, o.Message.Headers[names.DeferredTime], due)
			}
			if !o.Mandatory || o.Exchange != transport.Direct {
				t.Errorf("copy %d: not a mandatory direct message: %+v", i+1, o)
			}
		}
		errs := b.messages("error")
		if len(errs) != 1 {
			t.Fatalf("%d messages on the error queue, want 1", len(errs))
		}
		got := errs[0]
		orig := order("m1")
		if string(got.Body) != string(orig.Body) || got.ID != orig.ID || got.CorrelationID != orig.CorrelationID ||
			got.ContentType != orig.ContentType || got.Type != orig.Type {
			t.Errorf("error queue copy lost body or properties: %+v", got)
		}
		if got.Headers[names.ErrorRetries] != int32(6) {
			t.Errorf("ErrorRetries = %#v, want int32(6) (5 retries + the last failure, as PikaBus)", got.Headers[names.ErrorRetries])
		}
		if got.Headers[names.SourceQueue] != "orders" {
			t.Errorf("SourceQueue = %#v", got.Headers[names.SourceQueue])
		}
		details, _ := got.Headers[names.ErrorDetails].(string)
		if !strings.Contains(details, "database down") || !strings.Contains(details, "gave up after 5 delayed retries") {
			t.Errorf("ErrorDetails = %q", details)
		}
		for _, k := range []string{names.MessageID, names.MessageType, "x-foreign", names.DeferredTime} {
			if _, ok := got.Headers[k]; !ok {
				t.Errorf("error queue copy lost header %s", k)
			}
		}
	})
}

func TestRetryReadsForeignCounts(t *testing.T) {
	for _, v := range []any{"2", int64(2), uint8(2), int16(2), []byte("2")} {
		t.Run(fmt.Sprintf("%T", v), func(t *testing.T) {
			b := newBroker("orders", "error")
			h := standard(t, delaying{b}, middleware.StandardOptions{})(failWith(errors.New("no")))
			m := order("m1")
			m.Headers[names.ErrorRetries] = v
			b.put("orders", m)
			if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil {
				t.Fatal(err)
			}
			if got := b.messages("orders")[0].Headers[names.ErrorRetries]; got != int32(3) {
				t.Fatalf("ErrorRetries = %#v, want int32(3)", got)
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		b := newBroker("orders", "error")
		h := standard(t, delaying{b}, middleware.StandardOptions{})(failWith(errors.New("no")))
		m := order("m1")
		m.Headers[names.ErrorRetries] = "many"
		b.put("orders", m)
		if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil {
			t.Fatal(err)
		}
		if got := b.messages("orders")[0].Headers[names.ErrorRetries]; got != int32(1) {
			t.Fatalf("ErrorRetries = %#v, want int32(1)", got)
		}
	})
}

func failWith(err error) middleware.Handler {
	return func(context.Context, *middleware.Message) error { return err }
}

func TestImmediateRetries(t *testing.T) {
	b := newBroker("orders", "error")
	calls := 0
	h := standard(t, delaying{b}, middleware.StandardOptions{Retry: middleware.RetryOptions{Immediate: 2}})(
		func(ctx context.Context, m *middleware.Message) error {
			calls++
			if calls < 3 {
				return errors.New("flaky")
			}
			return nil
		})
	b.put("orders", order("m1"))
	if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil || calls != 3 || len(b.sent) != 1 {
		t.Fatalf("err %v, calls %d, dispatched %d; want success on the third call and nothing dispatched", err, calls, len(b.sent)-1)
	}

	calls = -10 // fail every time
	b.put("orders", order("m2"))
	if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil {
		t.Fatal(err)
	}
	if calls != -7 {
		t.Fatalf("handler called %d times, want 3 (1 + 2 immediate retries)", calls+10)
	}
	if got := b.messages("orders"); len(got) != 1 || got[0].Headers[names.ErrorRetries] != int32(1) {
		t.Fatalf("after the immediate retries: %v, want one delayed retry copy", got)
	}
}

func TestPermanentErrorsSkipRetries(t *testing.T) {
	for name, err := range map[string]error{
		"Permanent":            middleware.Permanent(errors.New("invalid order")),
		"ErrUndecodable":       fmt.Errorf("json: %w", middleware.ErrUndecodable),
		"ErrUnhandled":         middleware.ErrUnhandled,
		"panic with Permanent": nil, // see below
	} {
		t.Run(name, func(t *testing.T) {
			b := newBroker("orders", "error")
			calls := 0
			h := standard(t, delaying{b}, middleware.StandardOptions{Retry: middleware.RetryOptions{Immediate: 3}})(
				func(ctx context.Context, m *middleware.Message) error {
					calls++
					if err == nil {
						panic(middleware.Permanent(errors.New("invalid order")))
					}
					return err
				})
			b.put("orders", order("m1"))
			if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Errorf("handler called %d times, want 1", calls)
			}
			if n := len(b.messages("orders")); n != 0 {
				t.Errorf("%d retry copies, want none", n)
			}
			errs := b.messages("error")
			if len(errs) != 1 || errs[0].Headers[names.ErrorRetries] != int32(1) {
				t.Fatalf("error queue: %v, want the message with ErrorRetries 1", errs)
			}
		})
	}
}

func TestPanicsRetriedThenErrorQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker("orders", "error")
		h := standard(t, delaying{b}, middleware.StandardOptions{})(panicky)
		b.put("orders", order("m1"))
		if _, err, _ := deliver(t, t.Context(), b, "orders", h); err != nil {
			t.Fatal(err)
		}
		copies := b.messages("orders")
		if len(copies) != 1 || copies[0].Headers[names.ErrorRetries] != int32(1) {
			t.Fatalf("after a panic: %v, want a retry copy", copies)
		}
		for {
			if _, err, ok := deliver(t, t.Context(), b, "orders", h); !ok {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		errs := b.messages("error")
		if len(errs) != 1 || errs[0].Headers[names.ErrorRetries] != int32(6) {
			t.Fatalf("error queue: %v, want the message after 5 retries", errs)
		}
		details := errs[0].Headers[names.ErrorDetails].(string)
		for _, want := range []string{"panic: kaboom", "gave up after 5", "goroutine ", "panicky"} {
			if !strings.Contains(details, want) {
				t.Errorf("ErrorDetails lacks %q:\n%s", want, details)
			}
		}
		if len(details) > middleware.DefaultMaxErrorDetails {
			t.Errorf("ErrorDetails is %d bytes", len(details))
		}
	})
}

func panicky(ctx context.Context, m *middleware.Message) error {
	panic("kaboom")
}

func TestRecover(t *testing.T) {
	h := middleware.Recover()(panicky)
	err := h(t.Context(), &middleware.Message{})
	var p *middleware.PanicError
	if !errors.As(err, &p) || p.Value != "kaboom" || !strings.Contains(string(p.Stack), "panicky") {
		t.Fatalf("Recover returned %v", err)
	}
	if middleware.IsPermanent(err) {
		t.Fatal("a plain panic is permanent")
	}
	h = middleware.Recover()(func(context.Context, *middleware.Message) error { panic(middleware.ErrUnhandled) })
	if err := h(t.Context(), &middleware.Message{}); !errors.Is(err, middleware.ErrUnhandled) {
		t.Fatalf("a panic with an error does not wrap it: %v", err)
	}
}

func TestErrorDetailsBounded(t *testing.T) {
	long := strings.Repeat("é", 100)
	for _, max := range []int{0, 1, 5, 20, 199, 200, 201, 500} {
		got := middleware.ErrorDetails(errors.New(long), max)
		if len(got) > max && len(long) > max {
			t.Errorf("max %d: %d bytes", max, len(got))
		}
		if !strings.HasPrefix(long, strings.TrimSuffix(got, "\n…(truncated)")) {
			t.Errorf("max %d: %q is not a prefix cut on a character boundary", max, got)
		}
	}
	if got := middleware.ErrorDetails(errors.New("bad \xff byte"), 100); got != "bad \uFFFD byte" {
		t.Errorf("invalid UTF-8 kept: %q", got)
	}
	b := newBroker("orders", "error")
	mw, err := middleware.ErrorQueue(b, middleware.ErrorQueueOptions{MaxDetails: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := middleware.Chain(mw, middleware.Recover())(panicky)(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
		t.Fatal(err)
	}
	details := b.messages("error")[0].Headers[names.ErrorDetails].(string)
	if len(details) > 64 || !strings.HasPrefix(details, "panic: kaboom\n\ngoroutine ") || !strings.HasSuffix(details, "…(truncated)") {
		t.Fatalf("ErrorDetails bounded to 64 bytes: %q", details)
	}
}

func TestCancelledContextStillForwards(t *testing.T) {
	b := newBroker("orders", "error")
	h := standard(t, delaying{b}, middleware.StandardOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	// A failure while the context is cancelled is still forwarded: the
	// broker fake refuses a cancelled context, so this passes only if the
	// stages dispatch under a context of their own.
	if err := h(failWith(middleware.Permanent(errors.New("bad"))))(ctx, &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
		t.Fatalf("forwarding under a cancelled context: %v", err)
	}
	if err := h(failWith(errors.New("transient")))(ctx, &middleware.Message{Message: order("m2"), Queue: "orders"}); err != nil {
		t.Fatalf("retrying under a cancelled context: %v", err)
	}
	if len(b.messages("error")) != 1 || len(b.messages("orders")) != 1 {
		t.Fatalf("error queue %d, retries %d; want 1 and 1", len(b.messages("error")), len(b.messages("orders")))
	}

	// A handler that stops because the endpoint's context ended (shutdown)
	// has not failed: the message goes back to the broker, no retry counted.
	err := h(func(ctx context.Context, m *middleware.Message) error { return ctx.Err() })(ctx, &middleware.Message{Message: order("m3"), Queue: "orders"})
	if !errors.Is(err, context.Canceled) || len(b.sent) != 2 {
		t.Fatalf("interrupted handler: %v, %d dispatched; want context.Canceled and nothing more dispatched", err, len(b.sent))
	}
}

func TestForwardFailureReturnsError(t *testing.T) {
	down := errors.New("broker down")
	for _, tc := range []struct {
		name      string
		handler   middleware.Handler
		failQueue string
		stage     string
	}{
		{"retry copy", failWith(errors.New("transient")), "orders", "retry"},
		{"error queue", failWith(middleware.Permanent(errors.New("bad"))), "error", "error queue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker("orders", "error")
			b.fail = func(ctx context.Context, o transport.Outgoing) error {
				if o.RoutingKey == tc.failQueue {
					return down
				}
				return nil
			}
			h := standard(t, delaying{b}, middleware.StandardOptions{})(tc.handler)
			err := h(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"})
			var fe *middleware.ForwardError
			if !errors.As(err, &fe) || !errors.Is(err, down) || fe.Stage != tc.stage || fe.Queue != tc.failQueue || fe.MessageID != "m1" {
				t.Fatalf("pipeline returned %v; want a ForwardError from %s", err, tc.stage)
			}
			if len(b.sent) != 0 {
				t.Fatalf("%d messages dispatched; a failed retry copy must not go to the error queue", len(b.sent))
			}
		})
	}
}

func TestRetryOptions(t *testing.T) {
	b := newBroker("orders", "error")
	backoff := middleware.LinearBackoff(time.Minute)
	synctest.Test(t, func(t *testing.T) {
		mw, err := middleware.Retry(delaying{b}, middleware.RetryOptions{MaxRetries: middleware.Retries(1), Backoff: backoff})
		if err != nil {
			t.Fatal(err)
		}
		h := mw(failWith(errors.New("no")))
		start := time.Now()
		if err := h(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		if o := b.sent[len(b.sent)-1]; !o.NotBefore.Equal(start.Add(time.Minute)) {
			t.Fatalf("NotBefore %v, want +1m", o.NotBefore)
		}
		m := b.messages("orders")[0]
		err = h(t.Context(), &middleware.Message{Message: m, Queue: "orders"})
		if err == nil || !strings.Contains(err.Error(), "gave up after 1 delayed retries") {
			t.Fatalf("after the last retry Retry returned %v", err)
		}
	})

	// The copy's delay is clamped to the transport's MaxDelay; DeferredTime
	// keeps the real due time.
	synctest.Test(t, func(t *testing.T) {
		b := newBroker("orders")
		b.maxDelay = time.Hour
		long := middleware.LinearBackoff(3 * time.Hour)
		mw, _ := middleware.Retry(delaying{b}, middleware.RetryOptions{Backoff: long})
		start := time.Now()
		if err := mw(failWith(errors.New("no")))(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		o := b.sent[0]
		if !o.NotBefore.Equal(start.Add(time.Hour)) || o.Message.Headers[names.DeferredTime] != middleware.FormatTime(start.Add(3*time.Hour)) {
			t.Fatalf("NotBefore %v, DeferredTime %v", o.NotBefore, o.Message.Headers[names.DeferredTime])
		}
	})

	// A backoff of zero (or less) sends the copy at once: no NotBefore, so
	// that a transport never schedules it; DeferredTime says when it was due.
	for _, d := range []time.Duration{0, -time.Second} {
		synctest.Test(t, func(t *testing.T) {
			b := newBroker("orders")
			mw, _ := middleware.Retry(delaying{b}, middleware.RetryOptions{Backoff: func(int) time.Duration { return d }})
			start := time.Now()
			if err := mw(failWith(errors.New("no")))(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
				t.Fatal(err)
			}
			o := b.sent[0]
			if !o.NotBefore.IsZero() || o.Message.Headers[names.DeferredTime] != middleware.FormatTime(start) {
				t.Fatalf("backoff %v: NotBefore %v, DeferredTime %v; want zero and now", d, o.NotBefore, o.Message.Headers[names.DeferredTime])
			}
		})
	}

	// No delayed retries: the error goes on after the immediate ones, and
	// no Delayer is needed.
	mw, err := middleware.Retry(plain{b}, middleware.RetryOptions{MaxRetries: middleware.NoRetries, Immediate: 1})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	boom := errors.New("boom")
	err = mw(func(context.Context, *middleware.Message) error { calls++; return boom })(t.Context(), &middleware.Message{Queue: "orders"})
	if err != boom || calls != 2 {
		t.Fatalf("got %v after %d calls", err, calls)
	}
}

func TestConstructionFailsWithoutCapability(t *testing.T) {
	b := newBroker("orders")
	for name, f := range map[string]func() error{
		"Retry":    func() error { _, err := middleware.Retry(plain{b}, middleware.RetryOptions{}); return err },
		"Deferral": func() error { _, err := middleware.Deferral(plain{b}, middleware.DeferralOptions{}); return err },
		"Standard": func() error { _, err := middleware.Standard(plain{b}, middleware.StandardOptions{}); return err },
		"Standard without deferral": func() error {
			_, err := middleware.Standard(plain{b}, middleware.StandardOptions{NoDeferral: true})
			return err
		},
		"Replay": func() error {
			_, err := middleware.Replay(t.Context(), delaying{b}, middleware.ReplayOptions{})
			return err
		},
		"Dispatcher": func() error {
			_, err := middleware.Retry(middleware.Dispatcher(b.Dispatch), middleware.RetryOptions{})
			return err
		},
	} {
		if err := f(); !errors.Is(err, transport.ErrNotSupported) {
			t.Errorf("%s: %v, want ErrNotSupported", name, err)
		}
	}
	if _, err := middleware.Standard(plain{b}, middleware.StandardOptions{NoDeferral: true, Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries}}); err != nil {
		t.Errorf("Standard without deferral and delayed retries: %v", err)
	}
	zero := delaying{b}
	zero.broker = &broker{}
	if _, err := middleware.Deferral(zero, middleware.DeferralOptions{}); !errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("Deferral with MaxDelay 0: %v", err)
	}
}

func TestConstructorsValidate(t *testing.T) {
	b := delaying{newBroker()}
	partial := middleware.HeaderNames{MessageID: "id"}
	for name, f := range map[string]func() error{
		"Retry nil":      func() error { _, err := middleware.Retry(nil, middleware.RetryOptions{}); return err },
		"Retry negative": func() error { _, err := middleware.Retry(b, middleware.RetryOptions{Immediate: -1}); return err },
		"Retry headers":  func() error { _, err := middleware.Retry(b, middleware.RetryOptions{Headers: partial}); return err },
		"ErrorQueue nil": func() error { _, err := middleware.ErrorQueue(nil, middleware.ErrorQueueOptions{}); return err },
		"ErrorQueue name": func() error {
			_, err := middleware.ErrorQueue(b, middleware.ErrorQueueOptions{Queue: "amq.x"})
			return err
		},
		"ErrorQueue details": func() error {
			_, err := middleware.ErrorQueue(b, middleware.ErrorQueueOptions{MaxDetails: -1})
			return err
		},
		"ErrorQueue headers": func() error {
			_, err := middleware.ErrorQueue(b, middleware.ErrorQueueOptions{Headers: partial})
			return err
		},
		"Deferral nil": func() error { _, err := middleware.Deferral(nil, middleware.DeferralOptions{}); return err },
		"Deferral headers": func() error {
			_, err := middleware.Deferral(b, middleware.DeferralOptions{Headers: partial})
			return err
		},
		"Timeout":      func() error { _, err := middleware.Timeout(0); return err },
		"Standard nil": func() error { _, err := middleware.Standard(nil, middleware.StandardOptions{}); return err },
		"Standard headers": func() error {
			_, err := middleware.Standard(b, middleware.StandardOptions{Headers: partial})
			return err
		},
		"Replay nil": func() error { _, err := middleware.Replay(t.Context(), nil, middleware.ReplayOptions{}); return err },
		"Replay max": func() error {
			_, err := middleware.Replay(t.Context(), full{newBroker()}, middleware.ReplayOptions{Max: -1})
			return err
		},
		"Stamp empty": func() error { _, err := middleware.Stamp(middleware.StampOptions{}); return err },
		"Stamp type": func() error {
			_, err := middleware.Stamp(middleware.StampOptions{Headers: transport.Headers{"x": struct{}{}}})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Custom header names are used throughout.
	custom := middleware.NewHeaderNames("Acme")
	bb := newBroker("orders", "error")
	h := standard(t, delaying{bb}, middleware.StandardOptions{Headers: custom})(failWith(middleware.Permanent(errors.New("x"))))
	if err := h(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
		t.Fatal(err)
	}
	if got := bb.messages("error")[0].Headers; got["Acme.SourceQueue"] != "orders" || got["Acme.ErrorRetries"] != int32(1) {
		t.Fatalf("custom names not used: %v", got)
	}
}

func TestBackoffPolicies(t *testing.T) {
	for i, want := range []time.Duration{2, 4, 6, 8, 10} {
		if got := middleware.DefaultBackoff(i + 1); got != want*time.Second {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", i+1, got, want*time.Second)
		}
	}
	exp := middleware.ExponentialBackoff(time.Second, 10*time.Second)
	for retry, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 100: 10 * time.Second, 1 << 30: 10 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := exp(retry)
			if d < full/2 || d > full {
				t.Fatalf("retry %d: %v outside [%v, %v]", retry, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("retry %d: no jitter", retry)
		}
	}
	lin := middleware.LinearBackoff(time.Hour)
	if lin(3) != 3*time.Hour || lin(1<<40) <= 0 {
		t.Errorf("LinearBackoff: %v, %v", lin(3), lin(1<<40))
	}
}

func TestStagesLogDecisions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs strings.Builder
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := newBroker("orders", "error")
		h := standard(t, delaying{b}, middleware.StandardOptions{Logger: logger, Retry: middleware.RetryOptions{Immediate: 1}})
		m := order("m1")
		if err := h(failWith(errors.New("db down")))(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		m.Headers[names.ErrorRetries] = int32(5)
		if err := h(failWith(errors.New("db down")))(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		m.Headers[names.DeferredTime] = middleware.FormatTime(time.Now().Add(time.Minute))
		if err := h(failWith(errors.New("early")))(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`level=DEBUG msg="handling failed; retrying immediately" message_id=m1 queue=orders attempt=1 of=1 error="db down"`,
			`level=WARN msg="handling failed; retry scheduled" message_id=m1 queue=orders retry=1 of=5 delay=2s error="db down"`,
			`level=WARN msg="handling failed; no retries left" message_id=m1 queue=orders retries=5`,
			`level=ERROR msg="handling failed; message forwarded to the error queue" message_id=m1 queue=orders error_queue=error`,
			`level=DEBUG msg="deferred message rescheduled" message_id=m1 queue=orders due=2000-01-01T00:01:00.000Z not_before=2000-01-01T00:01:00.000Z`,
		} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %s\n%s", want, logs.String())
			}
		}
	})
}

// The error queue is dispatched mandatory: a missing error queue is a
// ForwardError (the message goes back to its queue), never a message lost.
func TestMissingErrorQueueIsAForwardError(t *testing.T) {
	b := newBroker("orders") // no "error" queue
	mw, err := middleware.ErrorQueue(plain{b}, middleware.ErrorQueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = mw(failWith(errors.New("bad")))(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"})
	var fe *middleware.ForwardError
	if !errors.As(err, &fe) || !errors.Is(err, transport.ErrUnroutable) || fe.Queue != middleware.DefaultErrorQueue {
		t.Fatalf("forward to a missing error queue returned %v; want a ForwardError wrapping ErrUnroutable", err)
	}
}

// ErrorDetails is cut to DefaultMaxErrorDetails by default, to MaxDetails
// when set.
func TestErrorDetailsBound(t *testing.T) {
	long := errors.New(strings.Repeat("x", 3*middleware.DefaultMaxErrorDetails))
	for _, tc := range []struct{ max, want int }{{0, middleware.DefaultMaxErrorDetails}, {100, 100}} {
		b := newBroker("orders", "error")
		mw, err := middleware.ErrorQueue(plain{b}, middleware.ErrorQueueOptions{MaxDetails: tc.max})
		if err != nil {
			t.Fatal(err)
		}
		if err := mw(failWith(long))(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		details, _ := b.messages("error")[0].Headers[names.ErrorDetails].(string)
		if len(details) != tc.want || !strings.HasSuffix(details, "(truncated)") {
			t.Errorf("MaxDetails %d: ErrorDetails of %d bytes ending %q, want %d bytes marked truncated",
				tc.max, len(details), details[max(0, len(details)-20):], tc.want)
		}
	}
}

// The copies that Retry and ErrorQueue dispatch leave out x-delivery-count,
// which RabbitMQ (and the memory broker) add to one delivery from a quorum
// queue; every other header goes along.
func TestForwardedCopiesDropDeliveryCount(t *testing.T) {
	in := order("m1")
	in.Headers["x-delivery-count"] = int64(3)
	check := func(what string, m transport.Message) {
		t.Helper()
		if _, ok := m.Headers["x-delivery-count"]; ok {
			t.Errorf("%s carries x-delivery-count", what)
		}
		if _, ok := m.Headers["x-foreign"]; !ok {
			t.Errorf("%s lost the header x-foreign", what)
		}
	}
	b := newBroker("orders", "error")
	eq, err := middleware.ErrorQueue(plain{b}, middleware.ErrorQueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eq(failWith(errors.New("bad")))(t.Context(), &middleware.Message{Message: in, Queue: "orders"}); err != nil {
		t.Fatal(err)
	}
	check("the error queue's copy", b.messages("error")[0])
	synctest.Test(t, func(t *testing.T) {
		rt, err := middleware.Retry(delaying{b}, middleware.RetryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt(failWith(errors.New("no")))(t.Context(), &middleware.Message{Message: in, Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		check("the retry's copy", b.messages("orders")[0])
	})
	if _, ok := in.Headers["x-delivery-count"]; !ok {
		t.Error("the stages changed the headers of the message they were given")
	}
}

func TestBackoffAndLimitPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"LinearBackoff(0)":           func() { middleware.LinearBackoff(0) },
		"ExponentialBackoff(1s,1ms)": func() { middleware.ExponentialBackoff(time.Second, time.Millisecond) },
		"Retries(-1)":                func() { middleware.Retries(-1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestRetryLimit(t *testing.T) {
	for _, c := range []struct {
		l    middleware.RetryLimit
		n    int
		text string
	}{
		{middleware.RetryLimit{}, middleware.DefaultMaxRetries, "5"},
		{middleware.NoRetries, 0, "none"},
		{middleware.Retries(0), 0, "none"},
		{middleware.Retries(3), 3, "3"},
	} {
		if c.l.Count() != c.n || c.l.String() != c.text {
			t.Errorf("%#v: Count %d, String %q; want %d, %q", c.l, c.l.Count(), c.l.String(), c.n, c.text)
		}
	}
}
