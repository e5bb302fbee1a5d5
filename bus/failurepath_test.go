package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// events collects a Bus's events of one kind.
type eventLog struct {
	mu sync.Mutex
	ev []bus.Notice
}

func (l *eventLog) add(e bus.Notice) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) of(k bus.NoticeKind) []bus.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []bus.Notice
	for _, e := range l.ev {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// failing returns a Bus on e whose handler of PlaceOrder counts its calls
// and fails with err.
func failing(e *env, err error, evs *eventLog) (*bus.Bus, *atomic.Int64) {
	b := e.bus("orders", bus.Options{OnNotice: evs.add})
	var n atomic.Int64
	must(e.t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
		n.Add(1)
		return err
	}))
	e.start(b)
	return b, &n
}

// maxDeliveries is the most deliveries a message may have in window when
// every one is held, exponentially from a second, before it goes back: the
// first, then one after each hold that ends within the window.
func maxDeliveries(window time.Duration) int64 {
	n, held := int64(1), time.Duration(0)
	for d := time.Second; held+d <= window; d = min(2*d, time.Minute) {
		held += d
		n++
	}
	return n
}

// TestForwardFailureHeldWhileBrokerRefuses: while the broker refuses every
// publish, a failing message's retry copy cannot be dispatched; the message
// is held with an exponential backoff before each nack (issue 9 §1, 10,778
// deliveries per second before), the operator is told, and once the broker
// accepts publishes again the retry goes out.
func TestForwardFailureHeldWhileBrokerRefuses(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var evs eventLog
		b, n := failing(e, errors.New("db down"), &evs)
		e.broker.FailDispatches(1<<30, nil)
		must(t, e.broker.Inject("orders", transport.Message{ID: "m1",
			Headers: transport.Headers{"PikaBus.MessageType": "PlaceOrder"}, Body: []byte(`{}`)}))
		const window = 2 * time.Minute
		time.Sleep(window)
		if got, limit := n.Load(), maxDeliveries(window); got > limit || got < 3 {
			t.Errorf("%d deliveries in %v while the broker refuses publishes, want 3 to %d", got, window, limit)
		}
		ff := evs.of(bus.ForwardFailed)
		if len(ff) == 0 {
			t.Fatal("no ForwardFailed event")
		}
		last := ff[len(ff)-1]
		var fe *middleware.ForwardError
		if last.MessageID != "m1" || last.Queue != "orders" || !errors.As(last.Err, &fe) || fe.Stage != "retry" ||
			last.Delay != time.Minute || last.Retries != len(ff) {
			t.Errorf("last ForwardFailed: %+v", last)
		}
		// The broker accepts publishes again: the retry copies go out on
		// their schedule, and the message ends in the error queue.
		e.broker.FailDispatches(0, nil)
		time.Sleep(3 * time.Minute)
		idle()
		if len(evs.of(bus.Retried)) != middleware.DefaultMaxRetries || e.broker.Depth("error") != 1 || e.broker.Depth("orders") != 0 {
			t.Errorf("after the broker recovered: %d Retried events, error queue %d, orders %d",
				len(evs.of(bus.Retried)), e.broker.Depth("error"), e.broker.Depth("orders"))
		}
		must(t, b.Close())
	})
}

// TestErrorQueueDeletedWhileRunning: a message that fails for good while
// the error queue is gone is held once, the error queue is declared again,
// and the message reaches it on its next delivery (issue 9 §1: 17,761
// deliveries per second before).
func TestErrorQueueDeletedWhileRunning(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var evs eventLog
		b, n := failing(e, middleware.Permanent(errors.New("bad order")), &evs)
		must(t, e.broker.DeleteQueue(b.ErrorQueue()))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "1"}))
		time.Sleep(10 * time.Second)
		idle()
		if n.Load() != 2 {
			t.Errorf("%d deliveries, want 2: held once, then forwarded", n.Load())
		}
		if e.broker.Depth("error") != 1 || e.broker.Depth("orders") != 0 {
			t.Errorf("error queue %d, orders %d", e.broker.Depth("error"), e.broker.Depth("orders"))
		}
		ff := evs.of(bus.ForwardFailed)
		if len(ff) != 1 || !errors.Is(ff[0].Err, bus.ErrUnroutable) || ff[0].Delay != time.Second {
			t.Errorf("ForwardFailed events: %+v", ff)
		}
		if len(evs.of(bus.SentToErrorQueue)) != 1 {
			t.Errorf("SentToErrorQueue events: %d", len(evs.of(bus.SentToErrorQueue)))
		}
		// Deleted again and again: never faster than the backoff.
		for range 3 {
			must(t, e.broker.DeleteQueue(b.ErrorQueue()))
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "again"}))
			time.Sleep(5 * time.Second)
			idle()
		}
		if n.Load() != 8 {
			t.Errorf("%d deliveries, want 8", n.Load())
		}
	})
}

// TestInvalidUTF8HeaderKeysForwarded: RabbitMQ delivers header keys that are
// not valid UTF-8; a failing message that carries them is forwarded (to the
// error queue here, and as a retry copy) with the keys rewritten and listed
// under middleware.SanitizedHeader, instead of looping (issue 9 §1).
func TestInvalidUTF8HeaderKeysForwarded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		unknown bool
	}{
		{"permanent", middleware.Permanent(errors.New("bad")), false},
		{"retried", errors.New("transient"), false},
		{"unhandled type", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, e *env) {
				var evs eventLog
				b, n := failing(e, tc.err, &evs)
				typ := "PlaceOrder"
				if tc.unknown {
					typ = "Unknown"
				}
				must(t, e.broker.Inject(b.Queue(), transport.Message{ID: "m1", Body: []byte(`{}`), Headers: transport.Headers{
					"PikaBus.MessageType": typ,
					"x-\xff-key":          "top",
					"table":               map[string]any{"x-\xfe-inner": int32(1), "ok": "v"},
					"array":               []any{map[string]any{"\xc3": true}},
				}}))
				time.Sleep(2 * time.Minute)
				idle()
				if len(evs.of(bus.ForwardFailed)) != 0 {
					t.Errorf("ForwardFailed: %+v", evs.of(bus.ForwardFailed))
				}
				msgs := e.broker.Messages("error")
				if len(msgs) != 1 {
					t.Fatalf("%d messages in the error queue (%d deliveries)", len(msgs), n.Load())
				}
				h := msgs[0].Headers
				if h.Validate() != nil || h[`x-\xff-key`] != "top" || h["table"].(map[string]any)[`x-\xfe-inner`] != int32(1) ||
					h["array"].([]any)[0].(map[string]any)[`\xc3`] != true {
					t.Errorf("error queue copy headers: %#v", h)
				}
				got := fmt.Sprint(h[middleware.SanitizedHeader])
				for _, p := range []string{`x-\xff-key`, `table.x-\xfe-inner`, `array[0].\xc3`} {
					if !strings.Contains(got, p) {
						t.Errorf("%s = %s, want %s listed", middleware.SanitizedHeader, got, p)
					}
				}
			})
		})
	}
}

// limited is a memory transport whose deferred delivery reaches only
// queues of at most 20 bytes, as RabbitMQ's delay levels limit names.
type limited struct{ *memory.Transport }

func (limited) MaxDelayedQueueName() int { return 20 }

// TestQueueNameTooLongForDelays: New refuses an endpoint queue that the
// transport's deferred delivery, which delayed retries use, cannot reach,
// instead of looping on its first failure (issue 9 §1).
func TestQueueNameTooLongForDelays(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		tr := limited{e.tr}
		name := strings.Repeat("q", 21)
		if _, err := bus.New(tr, name, bus.Options{}); err == nil || !strings.Contains(err.Error(), "at most 20 bytes") {
			t.Errorf("New with a %d-byte queue: %v", len(name), err)
		}
		if _, err := bus.New(tr, "orders", bus.Options{QueuePrefix: strings.Repeat("p", 15)}); err == nil {
			t.Error("New counted the queue without its prefix")
		}
		b, err := bus.New(tr, name[:20], bus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		must(t, b.Close())
	})
}

// TestShutdownKeepsItsDeadline: a handler that ignores its context does
// not hold Shutdown past its deadline (it held a 2 s Shutdown for 12 s
// before, issue 9 §3): Shutdown returns the context's error, saying how
// many handlers were still running, StopGrace after the deadline; the
// message is not acked whatever the handler returns, and goes back to its
// queue when it returns. Close then returns at once.
func TestShutdownKeepsItsDeadline(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{HandlerTimeout: time.Second})
		release := make(chan struct{})
		var returned atomic.Bool
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			<-release // ignores ctx
			must(t, b.Send(ctx, "elsewhere", PlaceOrder{}))
			returned.Store(true)
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "stuck"}))
		idle()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		err := b.Shutdown(sctx)
		if took := time.Since(start); took != 2*time.Second+bus.StopGrace {
			t.Errorf("Shutdown took %v, want its deadline plus StopGrace", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 handlers still running") || returned.Load() {
			t.Errorf("Shutdown: %v (handler returned: %v)", err, returned.Load())
		}
		start = time.Now()
		must(t, b.Close())
		if took := time.Since(start); took != 0 {
			t.Errorf("Close after Shutdown took %v", took)
		}
		close(release)
		idle()
		if e.broker.Depth("orders") != 1 || e.broker.Depth("error") != 0 {
			t.Errorf("orders %d, error %d: the message must go back to its queue", e.broker.Depth("orders"), e.broker.Depth("error"))
		}
		if e.broker.Depth("elsewhere") != 0 {
			t.Error("what the abandoned handler sent went out")
		}
	})
}

// TestCloseDoesNotWaitForStubbornHandlers: Close cancels the handlers and
// waits StopGrace at most for them; the transport's Close waits for the
// rest, so no goroutine outlives it.
func TestCloseDoesNotWaitForStubbornHandlers(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Concurrency: 2})
		release := make(chan struct{})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if m.ID == "polite" {
				<-ctx.Done()
				return ctx.Err()
			}
			<-release
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "polite"}))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "stubborn"}))
		idle()
		start := time.Now()
		must(t, b.Close())
		if took := time.Since(start); took != bus.StopGrace {
			t.Errorf("Close took %v, want StopGrace", took)
		}
		closed := make(chan struct{})
		go func() {
			_ = e.tr.Close()
			close(closed)
		}()
		idle()
		select {
		case <-closed:
			t.Fatal("the transport's Close returned with a handler running")
		default:
		}
		close(release)
		<-closed
		if e.broker.Depth("orders") != 2 {
			t.Errorf("orders %d, want both messages back", e.broker.Depth("orders"))
		}
	})
}

// TestPauseEndsHolds: a message held after a forward failed goes back to
// its queue at once when the Bus pauses, so Pause does not wait for the
// hold; Shutdown likewise.
func TestPauseEndsHolds(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var evs eventLog
		b, n := failing(e, errors.New("db down"), &evs)
		e.broker.FailDispatches(1<<30, nil)
		for range 4 { // the first is held, the others wait behind it
			must(t, e.broker.Inject("orders", transport.Message{ID: fmt.Sprint("m", n.Load()),
				Headers: transport.Headers{"PikaBus.MessageType": "PlaceOrder"}, Body: []byte(`{}`)}))
			idle()
		}
		start := time.Now()
		must(t, b.Pause(ctx))
		if took := time.Since(start); took != 0 {
			t.Errorf("Pause waited %v for a held message", took)
		}
		if e.broker.Depth("orders") != 4 {
			t.Errorf("orders %d after Pause, want the held messages back", e.broker.Depth("orders"))
		}
		must(t, b.Resume(ctx))
		idle()
		start = time.Now()
		must(t, b.Shutdown(ctx))
		if took := time.Since(start); took != 0 {
			t.Errorf("Shutdown waited %v for a held message", took)
		}
	})
}
