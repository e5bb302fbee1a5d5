package conformance

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

type ctxKey struct{}

func (s *suite) consumeGroup(t *testing.T) {
	s.leaf(t, "MissingQueue", func(e *env) {
		q := e.name("missing")
		c, err := e.tr.Consume(e.ctx(), q, transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		if is(e.t, err, transport.ErrNotFound, "Consume(%q) of a queue that does not exist", q); c != nil {
			c.Close()
		}
	})
	s.leaf(t, "HandlerContext", func(e *env) {
		t := e.t
		q := e.queue("q")
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "value"))
		type seen struct {
			value any
			err   error
		}
		got := make(chan seen, 1)
		c, err := e.tr.Consume(ctx, q, transport.ConsumeOptions{}, func(hctx context.Context, d *transport.Delivery) {
			d.Ack()
			got <- seen{hctx.Value(ctxKey{}), hctx.Err()}
		})
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
		t.Cleanup(func() { e.bounded("Consumer.Close", c.Close) })
		// The context given to Consume bounds only the start.
		cancel()
		e.send(q, "m")
		v := wait(e, got, "the handler")
		if v.value != "value" {
			t.Errorf("handler context value = %v, want the value of the context given to Consume", v.value)
		}
		if v.err != nil {
			t.Errorf("handler context is done (%v) because the context given to Consume was canceled", v.err)
		}
		select {
		case <-c.Done():
			t.Errorf("consumer stopped (Err %v) when the context given to Consume was canceled", c.Err())
		default:
		}
	})
	s.leaf(t, "HandlerMayDispatch", func(e *env) {
		q1, q2 := e.queue("requests"), e.queue("replies")
		errs := make(chan error, 1)
		e.consume(q1, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			err := e.tr.Dispatch(ctx, direct(q2, "reply-to-"+d.ID)...)
			if aerr := d.Ack(); err == nil {
				err = aerr
			}
			errs <- err
		})
		in := e.inbox(q2, transport.ConsumeOptions{})
		e.send(q1, "request")
		if err := wait(e, errs, "the handler"); err != nil {
			e.t.Errorf("Dispatch from a handler: %v", err)
		}
		in.expect("reply-to-request")
	})
	s.leaf(t, "Competing", s.competing)
	s.leaf(t, "Priority", s.priority)
	s.leaf(t, "Prefetch", s.prefetch)
	s.leaf(t, "Concurrency", s.concurrency)
	s.leaf(t, "Drain", s.drain)
	s.leaf(t, "DrainTimeout", s.drainTimeout)
	s.leaf(t, "Close", s.consumerClose)
}

// priority: a message goes to the consumer of the highest priority with
// room in its prefetch window; one of lower priority gets messages only
// while those above it are full, as RabbitMQ's x-priority does.
func (s *suite) priority(e *env) {
	t := e.t
	q := e.queue("q")
	low := e.inbox(q, transport.ConsumeOptions{Prefetch: 10, Priority: -1})
	high := e.inbox(q, transport.ConsumeOptions{Prefetch: 2, Priority: 5})
	mid := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
	e.send(q, "m1", "m2", "m3", "m4", "m5", "m6")
	// high takes two and is full, mid one, low the rest.
	h1, h2, m := high.next(), high.next(), mid.next()
	if h1.ID != "m1" || h2.ID != "m2" || m.ID != "m3" {
		t.Errorf("priority 5 (prefetch 2) got %q and %q, priority 0 (prefetch 1) %q; want m1, m2 and m3", h1.ID, h2.ID, m.ID)
	}
	settle := []*transport.Delivery{h1, h2, m}
	for _, want := range []string{"m4", "m5", "m6"} {
		d := low.next()
		settle = append(settle, d)
		if d.ID != want {
			t.Errorf("priority -1 got %q, want %q: it gets messages only while the others are full", d.ID, want)
		}
	}
	high.silent("priority 5, full")
	mid.silent("priority 0, full")
	for _, d := range settle {
		d.Ack()
	}
}

// competing: two consumers of one queue share its messages, each message
// going to one of them.
func (s *suite) competing(e *env) {
	t := e.t
	q := e.queue("q")
	in1 := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
	in2 := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
	// With a prefetch of one, the consumer that holds the first message
	// cannot take the second: both consumers must receive.
	e.send(q, "first", "second")
	d1, d2 := in1.next(), in2.next()
	if got := []string{d1.ID, d2.ID}; !slices.Contains(got, "first") || !slices.Contains(got, "second") {
		t.Errorf("the two consumers received %q, want first and second", got)
	}
	d1.Ack()
	d2.Ack()

	const n = 30
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("m%02d", i))
	}
	e.send(q, ids...)
	count := map[string]int{}
	per := [2]int{}
	for range n {
		d, which := recvEither(e, in1, in2)
		per[which]++
		count[d.ID]++
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("message %q was delivered %d times, want once", id, count[id])
		}
	}
	t.Logf("consumers received %d and %d of %d messages", per[0], per[1], n)
	for _, in := range []*inbox{in1, in2} {
		if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
			t.Fatal(err)
		}
	}
	e.inbox(q, transport.ConsumeOptions{}).empty("after both consumers acked every message")
}

// recvEither returns the next delivery of either inbox and which one.
func recvEither(e *env, a, b *inbox) (*transport.Delivery, int) {
	e.t.Helper()
	timer := time.NewTimer(e.h.Timeout)
	defer timer.Stop()
	select {
	case d := <-a.ch:
		return d, 0
	case d := <-b.ch:
		return d, 1
	case <-timer.C:
		e.t.Fatalf("timed out after %v waiting for a delivery to either consumer of %q", e.h.Timeout, a.queue)
	}
	panic("unreachable")
}

// prefetch: with prefetch P and deliveries left unsettled, exactly P
// arrive, and one more for each one settled.
func (s *suite) prefetch(e *env) {
	t := e.t
	q := e.queue("q")
	const p = 3
	in := e.inbox(q, transport.ConsumeOptions{Prefetch: p})
	var ids []string
	for i := range p + 3 {
		ids = append(ids, fmt.Sprintf("m%d", i))
	}
	e.send(q, ids...)
	var held []*transport.Delivery
	for range p {
		held = append(held, in.next())
	}
	in.silent(fmt.Sprintf("with prefetch %d and %d deliveries unsettled", p, p))
	// Settling one opens the window by one, whether by ack or by a nack
	// that drops.
	if err := held[0].Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	held = append(held[1:], in.next())
	in.silent(fmt.Sprintf("after acking one of %d unsettled deliveries with prefetch %d", p, p))
	if err := held[0].Nack(false); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	held = append(held[1:], in.next())
	in.silent(fmt.Sprintf("after nacking one of %d unsettled deliveries with prefetch %d", p, p))
	for _, d := range held {
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	for _, id := range ids[p+2:] {
		if d := in.ack(); d.ID != id {
			t.Errorf("delivered %q, want %q", d.ID, id)
		}
	}
	in.empty("after settling every delivery")
}

// concurrency: at most Concurrency handler calls run at once, and that
// many do.
func (s *suite) concurrency(e *env) {
	t := e.t
	q := e.queue("q")
	const c = 3
	var running, peak atomic.Int32
	started := make(chan string, 16)
	done := make(chan string, 16)
	release := make(chan struct{})
	e.consume(q, transport.ConsumeOptions{Concurrency: c, Prefetch: 10}, func(ctx context.Context, d *transport.Delivery) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		started <- d.ID
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		d.Ack()
		done <- d.ID
	})
	e.send(q, "m0", "m1", "m2", "m3", "m4", "m5")
	for range c {
		wait(e, started, "%d handler calls to run at once (Concurrency %d)", c, c)
	}
	if id, silent := quiet(e, started); !silent {
		t.Errorf("handler called for %q while %d calls were running with Concurrency %d", id, c, c)
	}
	close(release)
	for range 6 {
		wait(e, done, "the handler calls to finish")
	}
	if p := peak.Load(); p != c {
		t.Errorf("%d handler calls ran at once, want %d", p, c)
	}
}

// drain: Drain stops deliveries, waits for the running handler, and
// requeues what the handler was not given.
func (s *suite) drain(e *env) {
	t := e.t
	q := e.queue("q")
	var calls atomic.Int32
	started := make(chan string, 4)
	acked := make(chan error, 4)
	release := make(chan struct{})
	c := e.consume(q, transport.ConsumeOptions{Concurrency: 1, Prefetch: 3}, func(ctx context.Context, d *transport.Delivery) {
		calls.Add(1)
		started <- d.ID
		select {
		case <-release:
		case <-ctx.Done():
		}
		acked <- d.Ack()
	})
	e.send(q, "a", "b", "c")
	if id := wait(e, started, "the first handler call"); id != "a" {
		t.Errorf("first delivery %q, want a", id)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
		defer cancel()
		drained <- c.Drain(ctx)
	}()
	if err, silent := quiet(e, drained); !silent {
		t.Errorf("Drain returned (%v) while a handler was running", err)
	}
	close(release)
	if err := wait(e, drained, "Drain to return after the handler did"); err != nil {
		t.Errorf("Drain = %v, want nil", err)
	}
	if err := wait(e, acked, "the handler's Ack"); err != nil {
		t.Errorf("Ack in a handler that Drain waited for = %v, want nil", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done is not closed after Drain returned")
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err after Drain = %v, want nil", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1: Drain must requeue what was not handed to the handler yet", n)
	}
	if err := e.bounded("second Drain", func() error { return c.Drain(e.ctx()) }); err != nil {
		t.Errorf("second Drain = %v, want nil", err)
	}
	in := e.inbox(q, transport.ConsumeOptions{})
	got := []string{in.ack().ID, in.ack().ID}
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("after Drain the queue delivered %q, want b and c", got)
	}
	in.empty("after Drain")
}

// drainTimeout: when Drain's context ends first, the handlers' contexts are
// canceled, their unsettled deliveries requeued, and Drain returns the
// context's error.
func (s *suite) drainTimeout(e *env) {
	t := e.t
	q := e.queue("q")
	started := make(chan string, 1)
	canceled := make(chan struct{}, 1)
	c := e.consume(q, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		started <- d.ID
		<-ctx.Done()
		canceled <- struct{}{}
	})
	e.send(q, "stuck")
	wait(e, started, "the handler")
	err := e.bounded("Drain with a context that ends", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.QuietPeriod)
		defer cancel()
		return c.Drain(ctx)
	})
	is(t, err, context.DeadlineExceeded, "Drain whose context ends while a handler runs")
	select {
	case <-canceled:
	default:
		t.Error("Drain returned before the handler it canceled returned")
	}
	wait(e, c.Done(), "Done after Drain")
	d := e.inbox(q, transport.ConsumeOptions{}).ack()
	if d.ID != "stuck" || !d.Redelivered {
		t.Errorf("after Drain gave up, the queue delivered %q (redelivered %v), want stuck, redelivered", d.ID, d.Redelivered)
	}
}

// consumerClose: Close cancels the handlers' contexts, waits for them and
// requeues their unsettled deliveries.
func (s *suite) consumerClose(e *env) {
	t := e.t
	q := e.queue("q")
	started := make(chan string, 1)
	canceled := make(chan struct{}, 1)
	c := e.consume(q, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		started <- d.ID
		<-ctx.Done()
		canceled <- struct{}{}
	})
	e.send(q, "held")
	wait(e, started, "the handler")
	if err := e.bounded("Consumer.Close", c.Close); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	select {
	case <-canceled:
	default:
		t.Error("Close returned before the handler whose context it canceled returned")
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done is not closed after Close returned")
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err after Close = %v, want nil", err)
	}
	if err := e.bounded("second Consumer.Close", c.Close); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := e.bounded("Drain after Close", func() error { return c.Drain(e.ctx()) }); err != nil {
		t.Errorf("Drain after Close = %v, want nil", err)
	}
	d := e.inbox(q, transport.ConsumeOptions{}).ack()
	if d.ID != "held" || !d.Redelivered {
		t.Errorf("after Close the queue delivered %q (redelivered %v), want held, redelivered", d.ID, d.Redelivered)
	}
}

func (s *suite) settleGroup(t *testing.T) {
	s.leaf(t, "Ack", func(e *env) {
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 10})
		e.send(q, "a", "b", "c")
		in.expect("a", "b", "c")
		if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
			e.t.Fatal(err)
		}
		e.inbox(q, transport.ConsumeOptions{}).empty("acked messages must leave the queue for good")
	})
	s.leaf(t, "Twice", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 10})
		e.send(q, "acked", "nacked")
		d := in.next()
		if err := d.Ack(); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		is(t, d.Ack(), transport.ErrSettled, "second Ack")
		is(t, d.Nack(true), transport.ErrSettled, "Nack after Ack")
		d = in.next()
		if err := d.Nack(false); err != nil {
			t.Fatalf("Nack: %v", err)
		}
		is(t, d.Ack(), transport.ErrSettled, "Ack after Nack")
		is(t, d.Nack(true), transport.ErrSettled, "second Nack")
		in.empty("after settling twice")
	})
	s.leaf(t, "NackDrop", func(e *env) {
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		e.send(q, "dropped")
		if err := in.next().Nack(false); err != nil {
			e.t.Fatalf("Nack: %v", err)
		}
		in.empty("a message nacked without requeue must be dropped")
	})
	s.leaf(t, "NackRequeue", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
		sent := transport.Message{ID: "requeued", CorrelationID: "c", Type: "T", Headers: transport.Headers{"h": "v"}, Body: []byte("body")}
		e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, Message: sent}, direct(q, "next")[0])
		d := in.next()
		if d.ID != "requeued" || d.Redelivered {
			t.Errorf("first delivery %q redelivered %v, want requeued, not redelivered", d.ID, d.Redelivered)
		}
		if err := d.Nack(true); err != nil {
			t.Fatalf("Nack(requeue): %v", err)
		}
		got := map[string]*transport.Delivery{}
		for range 2 {
			d := in.ack()
			got[d.ID] = d
		}
		r, ok := got["requeued"]
		switch {
		case !ok:
			t.Errorf("after Nack with requeue the queue delivered %q, not the requeued message", slices.Collect(func(yield func(string) bool) {
				for id := range got {
					yield(id)
				}
			}))
		case !r.Redelivered:
			t.Error("requeued message delivered again without Redelivered")
		default:
			checkMessage(t, sent, r)
		}
		if n, ok := got["next"]; ok && n.Redelivered {
			t.Error("a message never delivered before arrived with Redelivered set")
		}
		in.empty("after acking the redelivery")
	})
	s.leaf(t, "DeliveryCount", func(e *env) {
		// RabbitMQ adds x-delivery-count to the deliveries of a quorum
		// queue (RabbitMQ 3.10): the number of times the message went
		// back to the queue, from the first redelivery to a consumer, and
		// on every basic.get (0 on the first). Classic queues add nothing.
		t := e.t
		quorum := s.h.QueueType != transport.Classic
		want := func(d *transport.Delivery, n int64, onFirst bool) {
			t.Helper()
			v, ok := d.Headers["x-delivery-count"]
			switch {
			case !quorum && ok:
				t.Errorf("classic queue: x-delivery-count = %v, want none", show(v))
			case quorum && n == 0 && !onFirst && ok:
				t.Errorf("quorum queue, first delivery: x-delivery-count = %v, want none", show(v))
			case quorum && (n > 0 || onFirst) && v != n:
				t.Errorf("quorum queue: x-delivery-count = %s, want int64 %d", show(v), n)
			}
		}
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{Prefetch: 1})
		e.send(q, "m")
		for n := range int64(3) {
			d := in.next()
			want(d, n, false)
			if err := d.Nack(n < 2); err != nil {
				t.Fatalf("Nack: %v", err)
			}
		}
		if !s.caps.getter {
			return
		}
		if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
			t.Fatal(err)
		}
		e.send(q, "g")
		for n := range int64(2) {
			d := e.get(q)
			want(d, n, true)
			if err := d.Nack(n < 1); err != nil {
				t.Fatalf("Nack: %v", err)
			}
		}
	})
	s.leaf(t, "ConsumerCloseRequeues", func(e *env) {
		t := e.t
		q := e.queue("q")
		first := e.inbox(q, transport.ConsumeOptions{Prefetch: 2})
		e.send(q, "a", "b")
		held := []*transport.Delivery{first.next(), first.next()}
		second := e.inbox(q, transport.ConsumeOptions{})
		if err := e.bounded("Consumer.Close", first.c.Close); err != nil {
			t.Fatal(err)
		}
		got := []*transport.Delivery{second.ack(), second.ack()}
		ids := []string{got[0].ID, got[1].ID}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"a", "b"}) {
			t.Errorf("the other consumer received %q, want a and b", ids)
		}
		for _, d := range got {
			if !d.Redelivered {
				t.Errorf("message %q requeued by a closing consumer arrived without Redelivered", d.ID)
			}
			// A return counts on a quorum queue (see DeliveryCount).
			v, ok := d.Headers["x-delivery-count"]
			if s.h.QueueType == transport.Classic && ok || s.h.QueueType != transport.Classic && v != int64(1) {
				t.Errorf("message %q requeued by a closing consumer: x-delivery-count = %s on a %s queue", d.ID, show(v), cmp.Or(s.h.QueueType, transport.Quorum))
			}
		}
		is(t, held[0].Ack(), transport.ErrClosed, "Ack of a delivery whose consumer was closed")
		second.empty("after the redeliveries were acked")
	})
}
