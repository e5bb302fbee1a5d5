package conformance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

func (s *suite) busLifecycle(t *testing.T) {
	s.serialLeaf(t, "Goroutines", s.busGoroutines)
	s.busLeaf(t, "Shutdown", "", func(e *busEnv) {
		t := e.t
		sinkBus, sink := e.endpoint("sink", bus.Options{})
		b := e.bus("worker", bus.Options{Concurrency: 2})
		started := make(chan string, 2)
		release := make(chan struct{})
		busHandle(e, b, func(ctx context.Context, c busCommand) error {
			started <- c.ID
			<-release
			return b.Send(ctx, sinkBus.Queue(), busCommand{ID: "from " + c.ID})
		})
		e.start(b)
		for _, id := range []string{"a", "b"} {
			e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: id}), "Send")
		}
		wait(e.env, started, "the first handler")
		wait(e.env, started, "the second handler")
		done := make(chan error, 1)
		go func() { done <- b.Shutdown(e.ctx()) }()
		if err, silent := quiet(e.env, done); !silent {
			t.Fatalf("Shutdown returned %v while two handlers were running", err)
		}
		close(release)
		e.ok(wait(e.env, done, "Shutdown to return once the handlers finished"), "Shutdown")
		// What the in-flight handlers sent was dispatched.
		got := []string{sink.next().msg.(busCommand).ID, sink.next().msg.(busCommand).ID}
		slices.Sort(got)
		if !slices.Equal(got, []string{"from a", "from b"}) {
			t.Errorf("the sink got %q from the handlers Shutdown waited for", got)
		}
		e.is(b.Send(e.ctx(), sinkBus.Queue(), busCommand{}), bus.ErrClosed, "Send after Shutdown")
		e.ok(b.Shutdown(e.ctx()), "second Shutdown")
		e.ok(e.bounded("Bus.Close", b.Close), "Close after Shutdown")
	})
	s.busLeaf(t, "Close", "", func(e *busEnv) {
		t := e.t
		b := e.bus("worker", bus.Options{})
		running := make(chan struct{}, 1)
		cancelled := make(chan struct{}, 1)
		busHandle(e, b, func(ctx context.Context, c busCommand) error {
			running <- struct{}{}
			<-ctx.Done()
			cancelled <- struct{}{}
			return ctx.Err()
		})
		e.start(b)
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "held"}), "Send")
		wait(e.env, running, "the handler")
		if err := e.bounded("Bus.Close", b.Close); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cancelled:
		default:
			t.Error("Close returned before the handler whose context it cancelled returned")
		}
		e.ok(e.bounded("Bus.Close", b.Close), "second Close")
		e.ok(b.Shutdown(e.ctx()), "Shutdown after Close")
		_, reqErr := bus.Request[busPong](e.ctx(), b, b.Queue(), busPing{})
		for name, err := range map[string]error{
			"Send":        b.Send(e.ctx(), b.Queue(), busCommand{}),
			"Publish":     b.Publish(e.ctx(), "x", busEvent{}),
			"Request":     reqErr,
			"Transaction": b.Transaction(e.ctx(), func(context.Context) error { return nil }),
			"Subscribe":   b.Subscribe(e.ctx(), "x"),
			"Start":       b.Start(e.ctx()),
			"Pause":       b.Pause(e.ctx()),
			"Health":      b.Health(e.ctx()),
		} {
			e.is(err, bus.ErrClosed, "%s after Close", name)
		}
		// The message went back to its queue, not to the error queue: the
		// next instance of the endpoint gets it, redelivered.
		next, r := e.endpoint("worker", bus.Options{})
		if d := r.next(); d.msg.(busCommand).ID != "held" || !d.in.Redelivered {
			t.Errorf("after Close, the next instance got %+v (redelivered %v), want \"held\" redelivered", d.msg, d.in.Redelivered)
		}
		errs := e.errorInbox()
		errs.empty("a handler cancelled by Close")
		_ = next
	})
	s.busLeaf(t, "PauseResume", "", func(e *busEnv) {
		t := e.t
		b, r := e.endpoint("worker", bus.Options{})
		e.ok(b.Health(e.ctx()), "Health")
		e.ok(b.Pause(e.ctx()), "Pause")
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "while paused"}), "Send")
		if d, silent := quiet(e.env, r.ch); !silent {
			t.Errorf("a paused endpoint handled %+v", d.msg)
		}
		e.ok(b.Resume(e.ctx()), "Resume")
		if d := r.next(); d.msg.(busCommand).ID != "while paused" {
			t.Errorf("after Resume: %+v", d.msg)
		}
		e.ok(b.Health(e.ctx()), "Health")
	})
}

// busGoroutines: nothing an endpoint started is left once it and its
// transport are closed, after it handled, replied, published and requested.
func (s *suite) busGoroutines(t *testing.T) {
	before := goroutineIDs()
	func() {
		e := &busEnv{env: s.open(t)}
		e.topicPrefix, e.errorQueue = e.id+".", e.name("error")
		server := e.bus("server", bus.Options{Subscriptions: []string{"#"}, OnNotice: func(bus.Notice) {}})
		busHandle(e, server, func(ctx context.Context, p busPing) error { return server.Reply(ctx, busPong(p)) })
		busHandle(e, server, func(ctx context.Context, ev busEvent) error { return nil })
		e.start(server)
		client := e.bus("", bus.Options{})
		r, err := bus.Request[busPong](e.ctx(), client, server.Queue(), busPing{N: 1})
		if err != nil || r.N != 1 {
			t.Fatalf("Request: %v, %v", r, err)
		}
		e.ok(client.Publish(e.ctx(), "x", busEvent{}), "Publish")
		e.ok(server.Shutdown(e.ctx()), "Shutdown")
		e.ok(client.Shutdown(e.ctx()), "Shutdown of the client")
		e.closeTransport()
	}()
	deadline := time.Now().Add(s.h.Timeout)
	for {
		left := goroutinesSince(before)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, g := range left {
				t.Errorf("goroutine left after the endpoints and their transport were closed:\n%s", g.stack)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *suite) busSend(t *testing.T) {
	s.busLeaf(t, "Command", "", func(e *busEnv) {
		t := e.t
		server, r := e.endpoint("server", bus.Options{})
		client, _ := e.endpoint("client", bus.Options{})
		e.ok(client.Send(e.ctx(), server.Queue(), busCommand{ID: "c-1", N: 7}), "Send")
		d := r.next()
		in := d.in
		if d.msg != (busCommand{ID: "c-1", N: 7}) {
			t.Errorf("handled %+v", d.msg)
		}
		want := bus.Incoming{
			MessageID: in.MessageID, CorrelationID: in.MessageID, ConversationID: in.MessageID,
			MessageType: busTypeName(e, busCommand{}), Intent: "command", ReplyTo: client.Queue(), OriginatingAddress: client.Queue(),
			TimeSent: in.TimeSent, Queue: server.Queue(), Message: in.Message,
		}
		if in != want || in.MessageID == "" || in.TimeSent.IsZero() {
			t.Errorf("Incoming\n got %+v\nwant %+v", in, want)
		}
	})
	s.busLeaf(t, "Unroutable", "", func(e *busEnv) {
		client := e.bus("", bus.Options{})
		missing := e.name("missing")
		err := client.Send(e.ctx(), missing, busCommand{})
		if e.is(err, bus.ErrUnroutable, "Send to a queue that does not exist") && !strings.Contains(err.Error(), missing) {
			e.t.Errorf("the error does not name the queue: %v", err)
		}
	})
	s.busLeaf(t, "InvalidName", "", func(e *busEnv) {
		client := e.bus("", bus.Options{})
		e.is(client.Send(e.ctx(), "amq.reserved", busCommand{}), bus.ErrInvalidName, "Send to an amq. queue")
		e.is(client.Send(e.ctx(), strings.Repeat("q", 256), busCommand{}), bus.ErrInvalidName, "Send to a 256-byte queue name")
		e.is(client.Publish(e.ctx(), strings.Repeat("t", 256), busEvent{}), bus.ErrInvalidName, "Publish under a long topic")
		_, err := bus.New(e.tr, "amq.reserved", e.options(bus.Options{}))
		e.is(err, bus.ErrInvalidName, "bus.New with an amq. queue")
	})
}

func (s *suite) busPublish(t *testing.T) {
	s.busLeaf(t, "Wildcards", "", func(e *busEnv) {
		t := e.t
		client := e.bus("", bus.Options{})
		star, rs := e.endpoint("star", bus.Options{Subscriptions: []string{"orders.*"}})
		hash, rh := e.endpoint("hash", bus.Options{Subscriptions: []string{"orders.#"}})
		exact := e.bus("exact", bus.Options{})
		e.ok(exact.Subscribe(e.ctx(), "orders.placed"), "Subscribe before Start")
		re := e.receiver(exact)
		e.start(exact)
		for _, topic := range []string{"orders.placed", "orders", "orders.placed.eu", "payments.placed"} {
			e.ok(client.Publish(e.ctx(), topic, busEvent{ID: topic}), "Publish %q", topic)
		}
		for _, c := range []struct {
			b    *bus.Bus
			r    *busReceived
			want []string
		}{
			{star, rs, []string{"orders.placed"}},
			{hash, rh, []string{"orders.placed", "orders", "orders.placed.eu"}},
			{exact, re, []string{"orders.placed"}},
		} {
			var got []string
			for _, d := range c.r.drain(client) {
				got = append(got, d.msg.(busEvent).ID)
				if d.in.Intent != "event" {
					t.Errorf("Intent of an event: %q", d.in.Intent)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("%s subscribed to %q got %q, want %q", c.b.Queue(), c.b.Subscriptions(), got, c.want)
			}
		}
	})
	s.busLeaf(t, "Unsubscribe", "", func(e *busEnv) {
		t := e.t
		client := e.bus("", bus.Options{})
		b, r := e.endpoint("sub", bus.Options{Subscriptions: []string{"a.*"}})
		e.ok(b.Subscribe(e.ctx(), "b.#"), "Subscribe")
		e.ok(client.Publish(e.ctx(), "a.x", busEvent{ID: "a.x"}), "Publish")
		e.ok(client.Publish(e.ctx(), "b.y.z", busEvent{ID: "b.y.z"}), "Publish")
		if got := r.drain(client); len(got) != 2 {
			t.Errorf("before Unsubscribe: %v", describeHandled(got))
		}
		e.ok(b.Unsubscribe(e.ctx(), "a.*"), "Unsubscribe")
		e.ok(b.Unsubscribe(e.ctx(), "never.subscribed"), "Unsubscribe of a pattern never subscribed")
		e.ok(client.Publish(e.ctx(), "a.x", busEvent{ID: "after"}), "Publish")
		r.none(client, "after Unsubscribe")
		if got := b.Subscriptions(); !slices.Equal(got, []string{e.topicPrefix + "b.#"}) {
			t.Errorf("Subscriptions() = %q", got)
		}
	})
	s.busLeaf(t, "RequireSubscriber", "", func(e *busEnv) {
		client := e.bus("", bus.Options{})
		e.ok(client.Publish(e.ctx(), "nobody.listens", busEvent{}), "Publish without subscribers")
		e.is(client.Publish(e.ctx(), "nobody.listens", busEvent{}, bus.WithRequireSubscriber(true)), bus.ErrUnroutable,
			"Publish WithRequireSubscriber(true) without subscribers")
		strict := e.bus("", bus.Options{RequireSubscriber: true})
		e.is(strict.Publish(e.ctx(), "nobody.listens", busEvent{}), bus.ErrUnroutable, "Publish with Options.RequireSubscriber")
		_, _ = e.endpoint("sub", bus.Options{Subscriptions: []string{"somebody.*"}})
		e.ok(strict.Publish(e.ctx(), "somebody.listens", busEvent{}), "Publish to a subscriber")
	})
}

func (s *suite) busDefer(t *testing.T) {
	skip := lacks(s.caps.delayer, "Delayer")
	s.busLeaf(t, "NeverEarly", skip, func(e *busEnv) {
		t := e.t
		b, r := e.endpoint("timer", bus.Options{})
		start := time.Now()
		due := map[string]time.Time{
			"defer": start.Add(time.Second),
			"delay": start.Add(2 * time.Second),
			"at":    start.Add(3 * time.Second),
		}
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "at"}, bus.WithDeliverAt(due["at"])), "Send WithDeliverAt")
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "delay"}, bus.WithDelay(2*time.Second)), "Send WithDelay")
		e.ok(b.Defer(e.ctx(), time.Second, b.Queue(), busCommand{ID: "defer"}), "Defer")
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "now"}), "Send")
		if d := r.next(); d.msg.(busCommand).ID != "now" {
			t.Fatalf("first handled %+v, want the message sent without delay", d.msg)
		}
		for range 3 {
			d := r.next()
			id := d.msg.(busCommand).ID
			// Asked for relative to start (or at a time): the message's own
			// due time, in DeferredTime, is no earlier, and it is handled
			// neither before it nor much later.
			asked := due[id]
			dt, ok, err := middleware.HeaderTime(d.in.Message.Headers[middleware.DefaultHeaderNames.DeferredTime])
			if !ok || err != nil {
				t.Errorf("%q: DeferredTime %v (%v)", id, d.in.Message.Headers[middleware.DefaultHeaderNames.DeferredTime], err)
				continue
			}
			if dt.Before(asked.Add(-time.Microsecond)) || dt.After(asked.Add(e.h.Timeout)) {
				t.Errorf("%q: DeferredTime %v, want %v or a little later", id, dt, asked)
			}
			if d.at.Before(dt) || d.at.Before(asked) {
				t.Errorf("%q handled %v before it was due", id, dt.Sub(d.at))
			}
			if late := d.at.Sub(dt); late > e.h.DelayTolerance {
				t.Errorf("%q handled %v after it was due, more than the tolerance %v", id, late, e.h.DelayTolerance)
			}
		}
	})
	s.busLeaf(t, "NotSupported", "", func(e *busEnv) {
		client := e.bus("", bus.Options{})
		e.is(client.Publish(e.ctx(), "x", busEvent{}, bus.WithDelay(time.Second)), bus.ErrNotSupported, "Publish WithDelay")
		if !s.caps.delayer {
			e.is(client.Defer(e.ctx(), time.Second, e.name("q"), busCommand{}), bus.ErrNotSupported, "Defer without a Delayer")
		}
	})
}

func (s *suite) busReply(t *testing.T) {
	s.busLeaf(t, "ToSender", "", func(e *busEnv) {
		t := e.t
		server := e.bus("server", bus.Options{})
		busHandle(e, server, func(ctx context.Context, p busPing) error { return server.Reply(ctx, busPong{N: p.N + 1}) })
		e.start(server)
		client, r := e.endpoint("client", bus.Options{})
		e.ok(client.Send(e.ctx(), server.Queue(), busPing{N: 1}, bus.WithCorrelationID("conversation-1")), "Send")
		d := r.next()
		if d.msg != (busPong{N: 2}) || d.in.CorrelationID != "conversation-1" || d.in.OriginatingAddress != server.Queue() ||
			d.in.Intent != "command" || d.in.MessageType != busTypeName(e, busPong{}) {
			t.Errorf("reply %+v with %+v", d.msg, d.in)
		}
	})
	s.busLeaf(t, "NoAddress", "", func(e *busEnv) {
		server := e.bus("server", bus.Options{})
		replied := make(chan error, 1)
		busHandle(e, server, func(ctx context.Context, p busPing) error { replied <- server.Reply(ctx, busPong{}); return nil })
		e.start(server)
		e.is(server.Reply(e.ctx(), busPong{}), bus.ErrNoReplyAddress, "Reply outside a handler")
		e.ok(e.bus("", bus.Options{}).Send(e.ctx(), server.Queue(), busPing{}), "Send from a send-only endpoint")
		e.is(wait(e.env, replied, "the handler"), bus.ErrNoReplyAddress, "Reply to a message without a reply address")
	})
}

// responder starts an endpoint answering busPing{N} with busPong{N}, once
// release (if not nil) lets it.
func (e *busEnv) responder(release <-chan struct{}) *bus.Bus {
	b := e.bus("responder", bus.Options{Concurrency: 4})
	busHandle(e, b, func(ctx context.Context, p busPing) error {
		if release != nil {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return b.Reply(ctx, busPong(p))
	})
	e.start(b)
	return b
}

func (s *suite) busRequest(t *testing.T) {
	s.busLeaf(t, "Reply", "", func(e *busEnv) {
		server := e.responder(nil)
		client := e.bus("", bus.Options{})
		r, err := bus.Request[busPong](e.ctx(), client, server.Queue(), busPing{N: 42})
		if err != nil || r.N != 42 {
			e.t.Errorf("Request = %+v, %v; want pong 42", r, err)
		}
	})
	s.busLeaf(t, "Concurrent", "", func(e *busEnv) {
		server := e.responder(nil)
		client := e.bus("client", bus.Options{})
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Go(func() {
				r, err := bus.Request[busPong](e.ctx(), client, server.Queue(), busPing{N: i})
				if err == nil && r.N != i {
					err = fmt.Errorf("request %d got the reply %d", i, r.N)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				e.t.Error(err)
			}
		}
	})
	s.busLeaf(t, "Instances", "", func(e *busEnv) {
		// Two instances of one endpoint: each gets the replies to its own
		// requests, not its sibling's, and none lands in their queue.
		server := e.responder(nil)
		a, ra := e.endpoint("client", bus.Options{})
		b, rb := e.endpoint("client", bus.Options{})
		var wg sync.WaitGroup
		for i, c := range []*bus.Bus{a, b, a, b, a, b} {
			wg.Go(func() {
				r, err := bus.Request[busPong](e.ctx(), c, server.Queue(), busPing{N: i})
				if err != nil || r.N != i {
					e.t.Errorf("request %d: %+v, %v", i, r, err)
				}
			})
		}
		wg.Wait()
		ra.none(a, "replies to requests")
		rb.none(b, "replies to requests")
	})
	s.busLeaf(t, "Timeout", "", func(e *busEnv) {
		t := e.t
		release := make(chan struct{})
		server := e.responder(release)
		client := e.bus("client", bus.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), e.h.QuietPeriod)
		_, err := bus.Request[busPong](ctx, client, server.Queue(), busPing{N: 1})
		cancel()
		e.is(err, context.DeadlineExceeded, "Request whose reply does not come in time")
		// The late reply is dropped: the next request gets its own.
		close(release)
		for i := 2; i < 4; i++ {
			r, err := bus.Request[busPong](e.ctx(), client, server.Queue(), busPing{N: i})
			if err != nil || r.N != i {
				t.Errorf("request %d after a late reply: %+v, %v", i, r, err)
			}
		}
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = bus.Request[busPong](cancelled, client, server.Queue(), busPing{})
		e.is(err, context.Canceled, "Request with a cancelled context")
	})
}

func (s *suite) busHandlers(t *testing.T) {
	s.busLeaf(t, "SendOnSuccessOnly", "", func(e *busEnv) {
		t := e.t
		sinkBus, sink := e.endpoint("sink", bus.Options{})
		b := e.bus("worker", bus.Options{Retry: middleware.RetryOptions{Immediate: 2, MaxRetries: middleware.NoRetries}})
		var attempts atomic.Int32
		busHandle(e, b, func(ctx context.Context, c busCommand) error {
			n := attempts.Add(1)
			e.ok(b.Send(ctx, sinkBus.Queue(), busCommand{ID: fmt.Sprintf("attempt %d", n)}), "Send in a handler")
			e.ok(b.Publish(ctx, "worker.progress", busEvent{}), "Publish in a handler")
			if n < 3 {
				return fmt.Errorf("attempt %d fails", n)
			}
			return nil
		})
		e.start(b)
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "work"}), "Send")
		if d := sink.next(); d.msg.(busCommand).ID != "attempt 3" {
			t.Errorf("the sink got %+v, want only what the successful attempt sent", d.msg)
		}
		sink.none(sinkBus, "after the successful attempt")
	})
	s.busLeaf(t, "SeveralAndRaw", "", func(e *busEnv) {
		t := e.t
		b := e.bus("worker", bus.Options{})
		calls := make(chan string, 10)
		busHandle(e, b, func(ctx context.Context, c busCommand) error { calls <- "typed " + c.ID; return nil })
		busHandle(e, b, func(ctx context.Context, c map[string]any) error { calls <- fmt.Sprint("map ", c["ID"]); return nil },
			bus.WithMessageType(busTypeName(e, busCommand{})))
		e.ok(b.HandleRaw(busTypeName(e, busCommand{}), func(ctx context.Context, m *transport.Message) error {
			calls <- fmt.Sprintf("raw %s %v", m.Body, m.Headers["tenant"])
			return nil
		}), "HandleRaw")
		e.start(b)
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "x"}, bus.WithHeaders(transport.Headers{"tenant": "t1"})), "Send")
		want := []string{"typed x", "map x", `raw {"ID":"x","N":0} t1`}
		for _, w := range want {
			if got := wait(e.env, calls, "handler %q", w); got != w {
				t.Errorf("handler call %q, want %q (in registration order)", got, w)
			}
		}
	})
	s.busLeaf(t, "AfterStart", "", func(e *busEnv) {
		b := e.bus("worker", bus.Options{Unhandled: bus.UnhandledDiscard})
		e.start(b)
		got := make(chan string, 1)
		busHandle(e, b, func(ctx context.Context, c busCommand) error { got <- c.ID; return nil })
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "late"}), "Send")
		if id := wait(e.env, got, "the handler registered after Start"); id != "late" {
			e.t.Errorf("handled %q", id)
		}
	})
}

func (s *suite) busTransaction(t *testing.T) {
	s.busLeaf(t, "Commit", "", func(e *busEnv) {
		t := e.t
		sinkBus, sink := e.endpoint("sink", bus.Options{})
		client := e.bus("", bus.Options{})
		err := client.Transaction(e.ctx(), func(ctx context.Context) error {
			e.ok(client.Send(ctx, sinkBus.Queue(), busCommand{ID: "1"}), "Send in a transaction")
			e.ok(client.Send(ctx, sinkBus.Queue(), busCommand{ID: "2"}), "Send in a transaction")
			sink.none(client, "before the commit") // the busMarker goes outside the transaction
			return nil
		})
		e.ok(err, "Transaction")
		var got []string
		for _, d := range sink.drain(client) {
			got = append(got, d.msg.(busCommand).ID)
		}
		if !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("after the commit the sink got %q, want [1 2]", got)
		}
	})
	s.busLeaf(t, "Rollback", "", func(e *busEnv) {
		t := e.t
		sinkBus, sink := e.endpoint("sink", bus.Options{})
		client := e.bus("", bus.Options{})
		err := client.Transaction(e.ctx(), func(ctx context.Context) error {
			e.ok(client.Send(ctx, sinkBus.Queue(), busCommand{ID: "rolled back"}), "Send in a transaction")
			return errBusBoom
		})
		if err != errBusBoom {
			t.Errorf("Transaction = %v, want the function's error", err)
		}
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("recovered %v, want the function's panic", p)
				}
			}()
			_ = client.Transaction(e.ctx(), func(ctx context.Context) error {
				e.ok(client.Send(ctx, sinkBus.Queue(), busCommand{ID: "panicked"}), "Send in a transaction")
				panic("boom")
			})
		}()
		sink.none(client, "after rollbacks")
	})
}

func (s *suite) busRecoverability(t *testing.T) {
	s.busLeaf(t, "Retries", lacks(s.caps.delayer, "Delayer"), func(e *busEnv) {
		t := e.t
		backoff := middleware.LinearBackoff(time.Second)
		b := e.bus("worker", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: backoff}})
		attempts := make(chan busDelivery, 10)
		busHandle(e, b, func(ctx context.Context, c busCommand) error {
			in, _ := bus.IncomingFrom(ctx)
			attempts <- busDelivery{msg: c, in: in, at: time.Now()}
			return fmt.Errorf("attempt %d failed", in.Retries)
		})
		e.start(b)
		errs := e.errorInbox()
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "doomed", N: 3}), "Send")
		var prev time.Time
		for i := range 3 {
			a := wait(e.env, attempts, "attempt %d", i+1)
			if a.in.Retries != i {
				t.Errorf("attempt %d: Incoming.Retries %d, want %d", i+1, a.in.Retries, i)
			}
			if i > 0 {
				want := time.Duration(i) * time.Second
				if gap := a.at.Sub(prev); gap < want || gap > want+e.h.DelayTolerance {
					t.Errorf("retry %d came %v after the failure before it, want %v (tolerance %v)", i, gap, want, e.h.DelayTolerance)
				}
			}
			prev = a.at
		}
		d := errs.ack()
		if n := busErrorRetries(&d.Message); n != 3 {
			t.Errorf("ErrorRetries %d, want 3 (the first attempt and two retries)", n)
		}
		if q := busHeader(&d.Message, "SourceQueue"); q != b.Queue() {
			t.Errorf("SourceQueue %q, want %q", q, b.Queue())
		}
		if det := busHeader(&d.Message, "ErrorDetails"); !strings.Contains(det, "attempt 2 failed") {
			t.Errorf("ErrorDetails %q, want the last error", det)
		}
		if string(d.Body) != `{"ID":"doomed","N":3}` || busHeader(&d.Message, "MessageType") != busTypeName(e, busCommand{}) {
			t.Errorf("the error queue's copy changed: %s %v", d.Body, d.Headers)
		}
		if _, silent := quiet(e.env, attempts); !silent {
			t.Error("handled again after going to the error queue")
		}
	})
	// Permanent failures skip the retries the default options would make.
	permanent := func(name string, opts bus.Options, send func(e *busEnv, b *bus.Bus), details ...string) {
		s.busLeaf(t, name, "", func(e *busEnv) {
			t := e.t
			b := e.bus("worker", opts)
			var attempts atomic.Int32
			busHandle(e, b, func(ctx context.Context, c busCommand) error {
				attempts.Add(1)
				switch c.ID {
				case "permanent":
					return bus.Permanent(fmt.Errorf("invalid command %d", c.N))
				case "panic":
					panic(fmt.Sprintf("handler bug %d", c.N))
				}
				return nil
			})
			e.start(b)
			errs := e.errorInbox()
			send(e, b)
			d := errs.ack()
			if n := busErrorRetries(&d.Message); n != 1 {
				t.Errorf("ErrorRetries %d, want 1: no retries", n)
			}
			det := busHeader(&d.Message, "ErrorDetails")
			for _, want := range details {
				if !strings.Contains(det, want) {
					t.Errorf("ErrorDetails %q does not say %q", det, want)
				}
			}
			if q := busHeader(&d.Message, "SourceQueue"); q != b.Queue() {
				t.Errorf("SourceQueue %q, want %q", q, b.Queue())
			}
			if n := attempts.Load(); n > 1 {
				t.Errorf("handled %d times", n)
			}
		})
	}
	permanent("Permanent", bus.Options{}, func(e *busEnv, b *bus.Bus) {
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "permanent", N: 5}), "Send")
	}, "invalid command 5")
	// A panic is retried like an error (package bus's tests check that);
	// here it goes to the error queue at once.
	permanent("Panic", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries}}, func(e *busEnv, b *bus.Bus) {
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "panic", N: 6}), "Send")
	}, "panic: handler bug 6", "goroutine")
	permanent("Undecodable", bus.Options{}, func(e *busEnv, b *bus.Bus) {
		e.dispatch(transport.Outgoing{RoutingKey: b.Queue(), Mandatory: true, Message: transport.Message{
			ID: "garbage", ContentType: "application/json", Body: []byte(`{"ID": 12`),
			Headers: transport.Headers{middleware.DefaultHeaderNames.MessageType: busTypeName(e, busCommand{})},
		}})
	}, "undecodable")
	permanent("UnknownContentType", bus.Options{}, func(e *busEnv, b *bus.Bus) {
		e.dispatch(transport.Outgoing{RoutingKey: b.Queue(), Mandatory: true, Message: transport.Message{
			ID: "xml", ContentType: "application/xml", Body: []byte(`<command/>`),
			Headers: transport.Headers{middleware.DefaultHeaderNames.MessageType: busTypeName(e, busCommand{})},
		}})
	}, "application/xml")
	permanent("Unhandled", bus.Options{}, func(e *busEnv, b *bus.Bus) {
		e.ok(b.Send(e.ctx(), b.Queue(), busEvent{ID: "nobody handles events here"}), "Send")
	}, "no handler", `"busEvent"`)
	s.busLeaf(t, "UnhandledDiscard", "", func(e *busEnv) {
		b, r := e.endpoint("worker", bus.Options{Unhandled: bus.UnhandledDiscard})
		errs := e.errorInbox()
		e.ok(b.Send(e.ctx(), b.Queue(), busUnhandledType{}), "Send")
		r.none(b, "a discarded message")
		errs.empty("a discarded message")
	})
}

// busUnhandledType is a message type no endpoint of the suite handles.
type busUnhandledType struct{}

func (s *suite) busWireFormat(t *testing.T) {
	s.busLeaf(t, "Headers", "", func(e *busEnv) {
		t := e.t
		raw := e.queue("raw", e.topicPrefix+"wire.#")
		in := e.inbox(raw, transport.ConsumeOptions{})
		sender, _ := e.endpoint("sender", bus.Options{})
		e.ok(sender.Send(e.ctx(), raw, busCommand{ID: "c"}), "Send")
		e.ok(sender.Publish(e.ctx(), "wire.event", busEvent{ID: "e"}), "Publish")
		n := middleware.DefaultHeaderNames
		for _, c := range []struct {
			intent, typ, body string
		}{{"command", busTypeName(e, busCommand{}), `{"ID":"c","N":0}`}, {"event", busTypeName(e, busEvent{}), `{"ID":"e"}`}} {
			d := in.ack()
			m := &d.Message
			want := map[string]string{
				n.MessageID: m.ID, n.CorrelationID: m.ID, n.ConversationID: m.ID,
				n.ReplyToAddress: sender.Queue(), n.OriginatingAddress: sender.Queue(),
				n.Intent: c.intent, n.MessageType: c.typ, n.ContentType: "application/json", n.ContentEncoding: "utf-8",
			}
			for k, v := range want {
				if got, _ := m.Headers[k].(string); got != v {
					t.Errorf("%s: header %s = %v, want %q", c.intent, k, m.Headers[k], v)
				}
			}
			sent, ok, err := middleware.HeaderTime(m.Headers[n.TimeSent])
			if !ok || err != nil || time.Since(sent) > e.h.Timeout || time.Since(sent) < -time.Second {
				t.Errorf("%s: TimeSent %v (%v)", c.intent, m.Headers[n.TimeSent], err)
			}
			if ts, _ := m.Headers[n.TimeSent].(string); !strings.HasSuffix(ts, "+00:00") || !strings.Contains(ts, "T") {
				t.Errorf("%s: TimeSent %q is not RFC 3339 in UTC with a +00:00 offset (what PikaBus 2 writes)", c.intent, ts)
			}
			if len(m.Headers) != len(want)+1 {
				t.Errorf("%s: headers %v, want exactly %d", c.intent, m.Headers, len(want)+1)
			}
			if m.ID == "" || m.CorrelationID != m.ID || m.ReplyTo != sender.Queue() || m.ContentType != "application/json" ||
				m.ContentEncoding != "utf-8" || m.Type != c.typ || !m.Timestamp.Equal(sent.Truncate(time.Second)) ||
				string(m.Body) != c.body {
				t.Errorf("%s: properties %+v, want the headers' values", c.intent, m)
			}
		}
	})
	s.busLeaf(t, "Inherited", "", func(e *busEnv) {
		t := e.t
		sinkBus, sink := e.endpoint("sink", bus.Options{})
		b := e.bus("worker", bus.Options{})
		busHandle(e, b, func(ctx context.Context, c busCommand) error {
			return b.Send(ctx, sinkBus.Queue(), busCommand{ID: "child"})
		})
		e.start(b)
		// A PikaBus 1.x message: its time format, an integer of another
		// width, an x-death array, a trace context.
		n := middleware.DefaultHeaderNames
		e.dispatch(transport.Outgoing{RoutingKey: b.Queue(), Mandatory: true, Message: transport.Message{
			ID: "m-1", ContentType: "application/json", Body: []byte(`{"ID":"parent"}`),
			Headers: transport.Headers{
				n.MessageID: "m-1", n.CorrelationID: "corr-1", n.MessageType: busTypeName(e, busCommand{}),
				n.TimeSent: "11/22/2026 09:30:00", n.ErrorRetries: int64(0),
				"x-death":     []any{map[string]any{"count": int64(1), "queue": "somewhere"}},
				"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			},
		}})
		d := sink.next()
		if d.in.CorrelationID != "corr-1" || d.in.ConversationID != "corr-1" ||
			d.in.Message.Headers["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
			t.Errorf("a message sent while handling another inherits its correlation id and trace: %+v", d.in)
		}
	})
}
