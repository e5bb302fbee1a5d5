package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// holdingTransport is a memory transport whose DispatchAsync keeps the
// verdicts until the test gives them with release: a broker slow to
// confirm.
type holdingTransport struct {
	transport.Transport
	mu   sync.Mutex
	held []func(error)
}

func (h *holdingTransport) DispatchAsync(ctx context.Context, o transport.Outgoing, done func(error)) error {
	if err := o.Validate(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, done)
	return nil
}

// release gives the oldest held post verdict err.
func (h *holdingTransport) release(err error) {
	h.mu.Lock()
	done := h.held[0]
	h.held = h.held[1:]
	h.mu.Unlock()
	done(err)
}

// plainTransport hides every optional capability of a transport.
type plainTransport struct{ transport.Transport }

func TestSendAsyncWindow(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		ht := &holdingTransport{Transport: e.tr}
		b := e.busOn(ht, "", bus.Options{PostWindow: 2})
		r1, err := b.SendAsync(ctx, "q", PlaceOrder{ID: "1"})
		must(t, err)
		_, err = b.SendAsync(ctx, "q", PlaceOrder{ID: "2"})
		must(t, err)
		if r1.Err() != nil {
			t.Fatalf("Err() of a pending receipt = %v, want nil", r1.Err())
		}
		// The window is full: the third waits, bounded by its context.
		_, err = b.SendAsync(after(t, time.Second), "q", PlaceOrder{ID: "3"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SendAsync past the window = %v, want the context's deadline", err)
		}
		third := make(chan error, 1)
		go func() {
			_, err := b.SendAsync(ctx, "q", PlaceOrder{ID: "3"})
			third <- err
		}()
		idle()
		select {
		case err := <-third:
			t.Fatalf("SendAsync returned %v with the window full", err)
		default:
		}
		ht.release(nil)
		must(t, <-third)
		select {
		case <-r1.Done():
		default:
			t.Fatal("the receipt is not done after its verdict")
		}
		must(t, r1.Err())

		fast := e.busOn(ht, "", bus.Options{PostWindow: 1, PostWindowFailFast: true})
		_, err = fast.SendAsync(ctx, "q", PlaceOrder{})
		must(t, err)
		if _, err := fast.SendAsync(ctx, "q", PlaceOrder{}); !errors.Is(err, bus.ErrPostWindowFull) {
			t.Errorf("SendAsync past a fail-fast window = %v, want ErrPostWindowFull", err)
		}
	})
}

func TestCloseFailsPendingPosts(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		ht := &holdingTransport{Transport: e.tr}
		b := e.busOn(ht, "", bus.Options{})
		var order []string
		var mu sync.Mutex
		cb := bus.WithOnAck(func(r *bus.Receipt) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, r.MessageID())
		})
		var rs []*bus.Receipt
		for _, id := range []string{"a", "b", "c"} {
			r, err := b.SendAsync(ctx, "q", PlaceOrder{}, bus.WithMessageID(id), cb)
			must(t, err)
			rs = append(rs, r)
		}
		ht.release(nil) // a is confirmed
		must(t, b.Close())
		for _, r := range rs[1:] {
			select {
			case <-r.Done():
			default:
				t.Fatalf("receipt %s still pending after Close returned", r.MessageID())
			}
			if !errors.Is(r.Err(), bus.ErrClosed) {
				t.Errorf("receipt %s after Close: %v, want ErrClosed", r.MessageID(), r.Err())
			}
		}
		must(t, rs[0].Err())
		// The transport's late verdict changes nothing.
		ht.release(nil)
		if !errors.Is(rs[1].Err(), bus.ErrClosed) {
			t.Errorf("a verdict after Close replaced ErrClosed: %v", rs[1].Err())
		}
		idle()
		mu.Lock()
		defer mu.Unlock()
		if len(order) != 3 || order[0] != "a" || order[1] != "b" || order[2] != "c" {
			t.Errorf("callbacks ran for %q, want a, b, c once each in order", order)
		}
		if _, err := b.SendAsync(ctx, "q", PlaceOrder{}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("SendAsync after Close = %v, want ErrClosed", err)
		}
	})
}

func TestShutdownWaitsForPosts(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		ht := &holdingTransport{Transport: e.tr}
		b := e.busOn(ht, "", bus.Options{})
		r1, err := b.SendAsync(ctx, "q", PlaceOrder{})
		must(t, err)
		r2, err := b.SendAsync(ctx, "q", PlaceOrder{})
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- b.Shutdown(after(t, time.Minute)) }()
		idle()
		ht.release(nil)
		idle()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a post pending and time left", err)
		default:
		}
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the deadline it ran out of", err)
		}
		must(t, r1.Err())
		if !errors.Is(r2.Err(), bus.ErrClosed) {
			t.Errorf("the post pending when Shutdown gave up: %v, want ErrClosed", r2.Err())
		}
	})
}

func TestSendAsyncWithoutAsyncDispatcher(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		server := e.bus("server", bus.Options{})
		var got recorder[PlaceOrder]
		must(t, bus.Handle(server, got.handle))
		e.start(server)
		b := e.busOn(plainTransport{e.tr}, "", bus.Options{})
		acked := make(chan error, 2)
		r, err := b.SendAsync(ctx, "server", PlaceOrder{ID: "1"}, bus.WithOnAck(func(r *bus.Receipt) { acked <- r.Err() }))
		must(t, err)
		must(t, r.Wait(ctx))
		must(t, <-acked)
		r, err = b.SendAsync(ctx, "missing", PlaceOrder{ID: "2"})
		must(t, err)
		if err := r.Wait(ctx); !errors.Is(err, bus.ErrUnroutable) {
			t.Errorf("verdict of a post to a missing queue: %v, want ErrUnroutable", err)
		}
		idle()
		if g := got.all(); len(g) != 1 || g[0].ID != "1" {
			t.Errorf("handled %v", g)
		}
	})
}

func TestSendAsyncInHandlerIsNotHeld(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		server := e.bus("server", bus.Options{})
		var got recorder[Pong]
		other := e.bus("other", bus.Options{})
		must(t, bus.Handle(other, got.handle))
		e.start(other)
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error {
			if _, err := server.SendAsync(ctx, "other", Pong{N: p.N}); err != nil {
				return err
			}
			return bus.Permanent(errors.New("the handler fails after posting"))
		}))
		e.start(server)
		must(t, server.Send(ctx, "server", Ping{N: 1}))
		idle()
		if g := got.all(); len(g) != 1 {
			t.Errorf("a post from a failed handler: handled %v, want it sent anyway", g)
		}
	})
}
