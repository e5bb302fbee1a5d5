package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

func deferral(t *testing.T, s middleware.Sender, opts middleware.DeferralOptions) middleware.Middleware {
	t.Helper()
	mw, err := middleware.Deferral(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func TestDeferralReschedules(t *testing.T) {
	for name, format := range map[string]func(time.Time) any{
		"RFC 3339":    func(t time.Time) any { return middleware.FormatTime(t) },
		"PikaBus 1.x": func(t time.Time) any { return t.UTC().Format("01/02/2006 15:04:05") },
		"bytes":       func(t time.Time) any { return []byte(middleware.FormatTime(t)) },
		"timestamp":   func(t time.Time) any { return t },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBroker("orders")
				var handled []time.Time
				h := deferral(t, delaying{b}, middleware.DeferralOptions{})(func(ctx context.Context, m *middleware.Message) error {
					handled = append(handled, time.Now())
					return nil
				})
				due := time.Now().Add(90 * time.Second)
				m := order("m1")
				m.Headers[names.DeferredTime] = format(due)
				b.put("orders", m)
				for {
					_, err, ok := deliver(t, t.Context(), b, "orders", h)
					if !ok {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if len(handled) != 1 || handled[0].Before(due) || handled[0].Sub(due) > 0 {
					t.Fatalf("handled at %v, want once at %v", handled, due)
				}
				if len(b.sent) != 2 {
					t.Fatalf("%d dispatches, want the original and one reschedule", len(b.sent))
				}
				o := b.sent[1]
				if !o.NotBefore.Equal(due) || !o.Mandatory || o.RoutingKey != "orders" || o.Exchange != transport.Direct {
					t.Fatalf("reschedule %+v", o)
				}
				if string(o.Message.Body) != string(m.Body) || o.Message.ID != "m1" || o.Message.Headers["x-foreign"] == nil {
					t.Fatalf("reschedule changed the message: %+v", o.Message)
				}
			})
		})
	}
}

func TestDeferralBeyondMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker("orders")
		b.maxDelay = time.Hour
		var handled []time.Time
		h := deferral(t, delaying{b}, middleware.DeferralOptions{})(func(ctx context.Context, m *middleware.Message) error {
			handled = append(handled, time.Now())
			return nil
		})
		start := time.Now()
		due := start.Add(150 * time.Minute)
		m := order("m1")
		m.Headers[names.DeferredTime] = middleware.FormatTime(due)
		b.put("orders", m)
		var arrivals []time.Duration
		for {
			at, err, ok := deliver(t, t.Context(), b, "orders", h)
			if !ok {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			arrivals = append(arrivals, at.Sub(start))
		}
		want := []time.Duration{0, time.Hour, 2 * time.Hour, 150 * time.Minute}
		if len(arrivals) != len(want) {
			t.Fatalf("arrivals %v, want %v", arrivals, want)
		}
		for i := range want {
			if arrivals[i] != want[i] {
				t.Fatalf("arrivals %v, want %v", arrivals, want)
			}
		}
		if len(handled) != 1 || !handled[0].Equal(due) {
			t.Fatalf("handled at %v, want %v", handled, due)
		}
	})
}

func TestDeferralHandlesNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		b := newBroker("orders")
		calls := 0
		h := deferral(t, delaying{b}, middleware.DeferralOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})(
			func(ctx context.Context, m *middleware.Message) error { calls++; return nil })
		now := time.Now()
		for _, v := range []any{
			nil,
			middleware.FormatTime(now.Add(-time.Hour)),
			middleware.FormatTime(now),
			middleware.FormatTime(now.Add(middleware.DefaultDeferralTolerance)), // within tolerance
			"tomorrow",            // unreadable: logged, handled
			int32(5),              // unreadable type
			"01/01/1999 00:00:00", // PikaBus 1.x, past
		} {
			m := order("m")
			if v != nil {
				m.Headers[names.DeferredTime] = v
			}
			if err := h(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err != nil {
				t.Fatal(err)
			}
		}
		if calls != 7 || len(b.sent) != 0 {
			t.Fatalf("handled %d of 7, rescheduled %d", calls, len(b.sent))
		}
		if n := strings.Count(logs.String(), "unreadable DeferredTime"); n != 2 {
			t.Fatalf("%d warnings logged, want 2:\n%s", n, logs.String())
		}
		// Without tolerance a message due a moment later is rescheduled.
		h = deferral(t, delaying{b}, middleware.DeferralOptions{Tolerance: -1})(failWith(errors.New("handled early")))
		m := order("m")
		m.Headers[names.DeferredTime] = middleware.FormatTime(now.Add(time.Millisecond))
		if err := h(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err != nil || len(b.sent) != 1 {
			t.Fatalf("%v, %d rescheduled", err, len(b.sent))
		}
	})
}

func TestDeferralForwardFailure(t *testing.T) {
	b := newBroker() // no queue: the reschedule is unroutable
	h := deferral(t, delaying{b}, middleware.DeferralOptions{})(failWith(errors.New("handled early")))
	m := order("m1")
	m.Headers[names.DeferredTime] = middleware.FormatTime(time.Now().Add(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := h(ctx, &middleware.Message{Message: m, Queue: "orders"})
	var fe *middleware.ForwardError
	if !errors.As(err, &fe) || fe.Stage != "deferral" || !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("got %v, want a ForwardError wrapping ErrUnroutable", err)
	}
}

func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mw, err := middleware.Timeout(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = mw(func(ctx context.Context, m *middleware.Message) error {
			<-ctx.Done()
			return ctx.Err()
		})(t.Context(), &middleware.Message{})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 5s") || time.Since(start) != 5*time.Second {
			t.Fatalf("got %v after %v", err, time.Since(start))
		}
		if err := mw(failWith(nil))(t.Context(), &middleware.Message{}); err != nil {
			t.Fatal(err)
		}
		// A timeout is a failure like any other: retried.
		b := newBroker("orders", "error")
		h := standard(t, delaying{b}, middleware.StandardOptions{Timeout: time.Second})(func(ctx context.Context, m *middleware.Message) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if err := h(t.Context(), &middleware.Message{Message: order("m1"), Queue: "orders"}); err != nil {
			t.Fatal(err)
		}
		if got := b.messages("orders"); len(got) != 1 || got[0].Headers[names.ErrorRetries] != int32(1) {
			t.Fatalf("after a timeout: %v", got)
		}
	})
}
