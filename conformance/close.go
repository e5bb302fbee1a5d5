package conformance

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

func (s *suite) closeGroup(t *testing.T) {
	s.serialLeaf(t, "Goroutines", s.goroutines)
	s.leaf(t, "ErrClosed", s.errClosed)
	s.leaf(t, "Twice", func(e *env) {
		t := e.t
		e.closeTransport()
		if err := closeBounded(e.tr, s.h.Timeout); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		other := e.newTransport()
		errs := make(chan error, 3)
		for range 3 {
			go func() { errs <- other.Close() }()
		}
		for range 3 {
			if err := wait(e, errs, "concurrent Close calls to return"); err != nil {
				t.Errorf("concurrent Close = %v, want nil", err)
			}
		}
	})
	s.leaf(t, "Consumers", func(e *env) {
		t := e.t
		q := e.queue("q")
		started := make(chan *transport.Delivery, 1)
		canceled := make(chan struct{}, 1)
		c := e.consume(q, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			started <- d
			<-ctx.Done()
			canceled <- struct{}{}
		})
		e.send(q, "held")
		d := wait(e, started, "the handler")
		e.closeTransport()
		select {
		case <-canceled:
		default:
			t.Error("Close returned before the handler whose context it canceled returned")
		}
		wait(e, c.Done(), "the consumer to stop when its transport closed")
		if err := c.Err(); err != nil {
			t.Errorf("Err of a consumer stopped by the transport's Close = %v, want nil", err)
		}
		is(t, d.Ack(), transport.ErrClosed, "Ack of a delivery after its transport was closed")
		if err := e.bounded("Consumer.Close", c.Close); err != nil {
			t.Errorf("Consumer.Close after the transport's Close = %v, want nil", err)
		}
	})
}

// errClosed: after Close, every method fails with ErrClosed.
func (s *suite) errClosed(e *env) {
	t := e.t
	q := e.queue("q")
	e.closeTransport()
	ctx := e.ctx()
	nop := func(context.Context, *transport.Delivery) {}
	calls := []struct {
		name string
		call func() error
	}{
		{"Declare", func() error {
			return e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}})
		}},
		{"Bind", func() error { return e.tr.Bind(ctx, q, "a") }},
		{"Unbind", func() error { return e.tr.Unbind(ctx, q, "a") }},
		{"Dispatch", func() error { return e.tr.Dispatch(ctx, direct(q, "m")...) }},
		{"Consume", func() error {
			c, err := e.tr.Consume(ctx, q, transport.ConsumeOptions{}, nop)
			if c != nil {
				c.Close()
			}
			return err
		}},
	}
	if ins, ok := e.tr.(transport.Inspector); ok {
		calls = append(calls, struct {
			name string
			call func() error
		}{"Inspect", func() error { _, err := ins.Inspect(ctx, q); return err }})
	}
	if g, ok := e.tr.(transport.Getter); ok {
		calls = append(calls, struct {
			name string
			call func() error
		}{"Get", func() error {
			d, ok, err := g.Get(ctx, q)
			if ok {
				d.Ack()
			}
			return err
		}})
	}
	if del, ok := e.tr.(transport.QueueDeleter); ok {
		calls = append(calls, struct {
			name string
			call func() error
		}{"DeleteQueue", func() error { return del.DeleteQueue(ctx, q) }})
	}
	if hc, ok := e.tr.(transport.HealthChecker); ok {
		calls = append(calls, struct {
			name string
			call func() error
		}{"Health", func() error { return hc.Health(ctx) }})
	}
	for _, c := range calls {
		err := e.bounded(c.name+" after Close", c.call)
		is(t, err, transport.ErrClosed, "%s after Close", c.name)
	}
}

// goroutines: every goroutine a transport starts, New included, has ended
// once Close has returned (polled, bounded by the harness's timeout).
func (s *suite) goroutines(t *testing.T) {
	before := goroutineIDs()
	e := s.open(t)
	q := e.queue("q", "leak.#")
	in := e.inbox(q, transport.ConsumeOptions{Concurrency: 2, Prefetch: 4})
	blocked := make(chan struct{})
	q2 := e.queue("blocked")
	e.consume(q2, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		close(blocked)
		<-ctx.Done()
	})
	e.send(q, "a")
	e.send(q2, "stuck")
	e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "leak.x", Mandatory: true, Message: msg("b")})
	got := []string{in.ack().ID, in.ack().ID}
	if slices.Sort(got); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("received %q, want a and b", got)
	}
	wait(e, blocked, "the blocked handler")
	if s.caps.delayer {
		e.dispatch(transport.Outgoing{RoutingKey: q, NotBefore: time.Now().Add(time.Minute), Message: msg("pending")})
	}
	if s.caps.watcher {
		e.tr.(transport.Watcher).Watch(func(transport.Event) {})
	}
	if s.caps.getter {
		q3 := e.queue("got")
		e.send(q3, "got")
		if d, ok, err := e.tr.(transport.Getter).Get(e.ctx(), q3); err == nil && ok {
			d.Ack()
		}
	}
	e.closeTransport()
	var left []goroutine
	poll(e, func() bool {
		left = goroutinesSince(before)
		return len(left) == 0
	})
	for _, g := range left {
		t.Errorf("goroutine left running after Close:\n%s", g.stack)
	}
}
