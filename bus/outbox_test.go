package bus_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// sentTo returns the bodies of the messages dispatched with routing key key.
func sentTo(e *env, key string) []string {
	var out []string
	for _, r := range e.broker.Journal() {
		if r.Op == memory.Dispatched && r.RoutingKey == key {
			out = append(out, string(r.Message.Body))
		}
	}
	return out
}

func TestHandlerSendsOnlyOnSuccessAndBeforeAck(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var unackedAtFlush []int
		b := e.bus("orders", bus.Options{
			Retry: middleware.RetryOptions{Immediate: 2, MaxRetries: middleware.NoRetries},
			DispatchMiddleware: []middleware.DispatchMiddleware{func(next middleware.Dispatcher) middleware.Dispatcher {
				return func(ctx context.Context, msgs ...transport.Outgoing) error {
					if msgs[0].RoutingKey == "billing" {
						st, _ := e.broker.Stats("orders")
						unackedAtFlush = append(unackedAtFlush, st.Unacked)
					}
					return next(ctx, msgs...)
				}
			}},
		})
		billing := e.bus("billing", bus.Options{})
		var billed recorder[string]
		must(t, bus.Handle(billing, func(ctx context.Context, m PlaceOrder) error { return billed.handle(ctx, m.ID) }))
		e.start(billing)
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			attempts++
			must(t, b.Send(ctx, "billing", PlaceOrder{ID: m.ID + "-first"}))
			must(t, b.Send(ctx, "billing", PlaceOrder{ID: m.ID + "-second"}))
			if attempts < 3 {
				return errors.New("not yet")
			}
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "o"}))
		idle()
		if attempts != 3 {
			t.Fatalf("%d attempts, want 3 (two immediate retries)", attempts)
		}
		// Two failed attempts sent nothing; the third sent its two
		// messages, once, in one batch, before the ack.
		if got := billed.all(); !slices.Equal(got, []string{"o-first", "o-second"}) {
			t.Errorf("billing got %v", got)
		}
		if !slices.Equal(unackedAtFlush, []int{1}) {
			t.Errorf("unacked messages in orders at each flush: %v, want [1]", unackedAtFlush)
		}
		if e.broker.Depth("orders") != 0 {
			t.Error("the handled message was not acked")
		}
	})
}

func TestFlushFailureIsRetried(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		billing := e.bus("billing", bus.Options{})
		var billed recorder[string]
		must(t, bus.Handle(billing, func(ctx context.Context, m PlaceOrder) error { return billed.handle(ctx, m.ID) }))
		e.start(billing)
		attempts := 0
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			attempts++
			if attempts == 1 {
				e.broker.FailDispatches(1, nil) // the flush of this attempt
			}
			return b.Send(ctx, "billing", m)
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "o"}))
		idle()
		time.Sleep(2 * time.Second) // the first delayed retry
		idle()
		if attempts != 2 {
			t.Errorf("%d attempts, want 2", attempts)
		}
		if got := billed.all(); !slices.Equal(got, []string{"o"}) {
			t.Errorf("billing got %v", got)
		}
		if in := billed.incoming(); len(in) == 1 && in[0].Retries != 0 {
			t.Errorf("the sent message has Retries %d", in[0].Retries)
		}
	})
}

func TestScopeEndsWithTheHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		kept := make(chan context.Context, 1)
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			kept <- ctx
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		late := <-kept
		for _, err := range []error{
			b.Send(late, "orders", PlaceOrder{}),
			b.Publish(late, "x", OrderPlaced{}),
			b.Defer(late, time.Second, "orders", PlaceOrder{}),
			b.Reply(late, Pong{}),
			b.Transaction(late, func(context.Context) error { return nil }),
		} {
			if !errors.Is(err, bus.ErrScopeEnded) {
				t.Errorf("send with a finished handler's context: %v, want ErrScopeEnded", err)
			}
		}
		// Its metadata is gone: the transport reused the message's memory.
		if in, ok := bus.IncomingFrom(late); ok {
			t.Errorf("IncomingFrom after the handler: %+v %v, want not ok", in, ok)
		}
	})
}

// TestIncomingKeptByTheHandler checks that a handler that read its
// message's metadata may keep it, and read it again, after it returned:
// the delivery is then not reused.
func TestIncomingKeptByTheHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		kept := make(chan context.Context, 1)
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if _, ok := bus.IncomingFrom(ctx); !ok {
				t.Error("IncomingFrom in the handler: not ok")
			}
			kept <- ctx
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}, bus.WithHeaders(map[string]any{"x-kept": "yes"})))
		idle()
		late := <-kept
		in, ok := bus.IncomingFrom(late)
		if !ok || in.MessageType != "PlaceOrder" || in.Message.Headers["x-kept"] != "yes" {
			t.Errorf("IncomingFrom after the handler: %+v %v", in, ok)
		}
	})
}

func TestTransaction(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var r recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { return r.handle(ctx, m.ID) }))
		e.start(b)

		// Commit: everything goes, in order, once fn returned.
		err := b.Transaction(ctx, func(ctx context.Context) error {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "1"}))
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "2"}))
			if n := len(sentTo(e, "orders")); n != 0 {
				t.Errorf("%d messages dispatched before the commit", n)
			}
			return nil
		})
		must(t, err)
		idle()
		if got := r.all(); !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("after commit: %v", got)
		}

		// Rollback by error.
		boom := errors.New("boom")
		err = b.Transaction(ctx, func(ctx context.Context) error {
			must(t, b.Send(ctx, "orders", PlaceOrder{ID: "rolled back"}))
			return boom
		})
		if err != boom {
			t.Errorf("Transaction returned %v, want fn's error", err)
		}

		// Rollback by panic, which goes on.
		func() {
			defer func() {
				if p := recover(); p != "panic!" {
					t.Errorf("recovered %v", p)
				}
			}()
			_ = b.Transaction(ctx, func(ctx context.Context) error {
				must(t, b.Send(ctx, "orders", PlaceOrder{ID: "panicked"}))
				panic("panic!")
			})
		}()

		// A dispatch failure at commit is Transaction's error.
		err = b.Transaction(ctx, func(ctx context.Context) error {
			return b.Publish(ctx, "nobody", OrderPlaced{}, bus.WithRequireSubscriber(true))
		})
		if !errors.Is(err, bus.ErrUnroutable) {
			t.Errorf("commit of an unroutable event: %v", err)
		}
		idle()
		if got := r.all(); !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("after rollbacks: %v", got)
		}
	})
}

func TestTransactionInsideHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		billing := e.bus("billing", bus.Options{})
		var billed recorder[string]
		must(t, bus.Handle(billing, func(ctx context.Context, m PlaceOrder) error { return billed.handle(ctx, m.ID) }))
		e.start(billing)
		var corr string
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			in, _ := bus.IncomingFrom(ctx)
			corr = in.CorrelationID
			must(t, b.Transaction(ctx, func(ctx context.Context) error {
				if _, ok := bus.IncomingFrom(ctx); !ok {
					t.Error("no Incoming inside a transaction inside a handler")
				}
				return b.Send(ctx, "billing", PlaceOrder{ID: "committed"})
			}))
			_ = b.Transaction(ctx, func(ctx context.Context) error {
				must(t, b.Send(ctx, "billing", PlaceOrder{ID: "rolled back"}))
				return errors.New("no")
			})
			// Held back with the handler's own until it returns.
			if n := len(sentTo(e, "billing")); n != 0 {
				t.Errorf("%d messages dispatched before the handler returned", n)
			}
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		if got := billed.all(); !slices.Equal(got, []string{"committed"}) {
			t.Errorf("billing got %v", got)
		}
		if in := billed.incoming(); len(in) == 1 && in[0].CorrelationID != corr {
			t.Errorf("correlation id %q, want the handled message's %q", in[0].CorrelationID, corr)
		}
	})
}

// ErrScopeEnded and sends nothing, instead of losing its messages silently.
func TestNestedTransactionCommittingAfterTheHandler(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		must(t, e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "billing"}}))
		begun, release := make(chan struct{}), make(chan struct{})
		result := make(chan error, 1)
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			go func() {
				result <- b.Transaction(ctx, func(ctx context.Context) error {
					close(begun)
					if err := b.Send(ctx, "billing", PlaceOrder{ID: "late"}); err != nil {
						return err
					}
					<-release // the handler returns meanwhile
					return nil
				})
			}()
			<-begun
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		close(release)
		if err := <-result; !errors.Is(err, bus.ErrScopeEnded) {
			t.Errorf("transaction committed after its handler returned: %v, want ErrScopeEnded", err)
		}
		idle()
		if got := sentTo(e, "billing"); len(got) != 0 {
			t.Errorf("dispatched %q", got)
		}
	})
}
