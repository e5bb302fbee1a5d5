package bus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

func TestPublishToWildcardSubscribers(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		star := e.bus("star", bus.Options{Subscriptions: []string{"orders.*"}})
		hash := e.bus("hash", bus.Options{Subscriptions: []string{"orders.#"}})
		exact := e.bus("exact", bus.Options{})
		must(t, exact.Subscribe(ctx, "orders.placed")) // before Start
		var rs [3]recorder[string]
		for i, b := range []*bus.Bus{star, hash, exact} {
			must(t, bus.Handle(b, func(ctx context.Context, m OrderPlaced) error { return rs[i].handle(ctx, m.ID) }))
			e.start(b)
		}
		for _, topic := range []string{"orders.placed", "orders", "orders.placed.eu", "payments.placed"} {
			must(t, star.Publish(ctx, topic, OrderPlaced{ID: topic}))
		}
		idle()
		for i, want := range [][]string{
			{"orders.placed"},
			{"orders.placed", "orders", "orders.placed.eu"},
			{"orders.placed"},
		} {
			if got := rs[i].all(); !slices.Equal(got, want) {
				t.Errorf("subscriber %d got %v, want %v", i, got, want)
			}
		}
		if in := rs[0].incoming()[0]; in.Intent != "event" {
			t.Errorf("Intent %q", in.Intent)
		}

		// Unsubscribe at run time, subscribe anew.
		must(t, hash.Unsubscribe(ctx, "orders.#"))
		must(t, star.Subscribe(ctx, "payments.*"))
		must(t, star.Publish(ctx, "orders.x.y", OrderPlaced{ID: "unheard"}))
		must(t, star.Publish(ctx, "payments.placed", OrderPlaced{ID: "p"}))
		idle()
		if got := rs[1].all(); len(got) != 3 {
			t.Errorf("unsubscribed endpoint got %v", got)
		}
		if got := rs[0].all(); !slices.Equal(got, []string{"orders.placed", "p"}) {
			t.Errorf("star got %v", got)
		}
		if got := star.Subscriptions(); !slices.Equal(got, []string{"orders.*", "payments.*"}) {
			t.Errorf("Subscriptions %v", got)
		}
		if err := star.Subscribe(ctx, strings.Repeat("x", 300)); !errors.Is(err, bus.ErrInvalidName) {
			t.Errorf("Subscribe to a long pattern: %v", err)
		}
	})
}

func TestPublishRequireSubscriber(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		must(t, b.Publish(ctx, "nobody.listens", OrderPlaced{}))
		err := b.Publish(ctx, "nobody.listens", OrderPlaced{}, bus.WithRequireSubscriber(true))
		if !errors.Is(err, bus.ErrUnroutable) || !strings.Contains(err.Error(), `topic "nobody.listens"`) {
			t.Errorf("Publish with a required subscriber: %v", err)
		}
		strict := e.bus("strict", bus.Options{RequireSubscriber: true})
		if err := strict.Publish(ctx, "nobody.listens", OrderPlaced{}); !errors.Is(err, bus.ErrUnroutable) {
			t.Errorf("Publish with Options.RequireSubscriber: %v", err)
		}
		must(t, strict.Publish(ctx, "nobody.listens", OrderPlaced{}, bus.WithRequireSubscriber(false)))
	})
}

func TestSendUnroutable(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		err := b.Send(ctx, "nowhere", PlaceOrder{})
		if !errors.Is(err, bus.ErrUnroutable) || !strings.Contains(err.Error(), `queue "nowhere"`) ||
			!strings.Contains(err.Error(), "PlaceOrder") {
			t.Errorf("Send to a missing queue: %v", err)
		}
	})
}

func TestInvalidNamesAreRefusedBeforeSending(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		var handlerErrs []error
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			handlerErrs = append(handlerErrs, b.Send(ctx, "amq.gen", m), b.Publish(ctx, strings.Repeat("t", 256), m))
			return nil
		}))
		e.start(b)
		long := strings.Repeat("q", 256)
		for _, err := range []error{
			b.Send(ctx, "amq.gen", PlaceOrder{}),
			b.Send(ctx, long, PlaceOrder{}),
			b.Send(ctx, "", PlaceOrder{}),
			b.Defer(ctx, time.Second, "amq.x", PlaceOrder{}),
			b.Publish(ctx, long, PlaceOrder{}),
			b.Publish(ctx, "bad\xff", PlaceOrder{}),
		} {
			if !errors.Is(err, bus.ErrInvalidName) {
				t.Errorf("got %v, want ErrInvalidName", err)
			}
		}
		for _, r := range e.broker.Journal() {
			if r.Op == memory.Dispatched || r.Op == memory.Failed {
				t.Errorf("something reached the broker: %+v", r)
			}
		}
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		if len(handlerErrs) != 2 || !errors.Is(handlerErrs[0], bus.ErrInvalidName) || !errors.Is(handlerErrs[1], bus.ErrInvalidName) {
			t.Errorf("inside a handler: %v", handlerErrs)
		}
	})
}

func TestInvalidMessages(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{})
		e.start(b)
		for _, c := range []struct {
			name string
			msg  any
			opts []bus.SendOption
		}{
			{"nil message", nil, nil},
			{"unencodable", PlaceOrderFunc{F: func() {}}, nil},
			{"header of a bad type", PlaceOrder{}, []bus.SendOption{bus.WithHeaders(transport.Headers{"h": struct{}{}})}},
			{"message type too long", PlaceOrder{}, []bus.SendOption{bus.WithMessageType(strings.Repeat("t", 256))}},
		} {
			if err := b.Send(ctx, "orders", c.msg, c.opts...); !errors.Is(err, bus.ErrInvalidMessage) {
				t.Errorf("%s: %v, want ErrInvalidMessage", c.name, err)
			}
		}
	})
}

type PlaceOrderFunc struct{ F func() }

func TestPrefixes(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		opts := bus.Options{QueuePrefix: "staging.", TopicPrefix: "staging.", Subscriptions: []string{"orders.*"}}
		b := e.bus("orders", opts)
		var r recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			if m.ID == "fail" {
				return bus.Permanent(errors.New("no"))
			}
			return r.handle(ctx, m.ID)
		}))
		must(t, bus.Handle(b, func(ctx context.Context, m OrderPlaced) error { return r.handle(ctx, "event "+m.ID) }))
		must(t, bus.Handle(b, func(ctx context.Context, m Ping) error { return b.Reply(ctx, Pong{m.N}) }))
		e.start(b)
		if b.Queue() != "staging.orders" || b.ErrorQueue() != "staging.error" {
			t.Errorf("Queue %q ErrorQueue %q", b.Queue(), b.ErrorQueue())
		}
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "a"}))
		must(t, b.Publish(ctx, "orders.placed", OrderPlaced{ID: "b"}))
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "fail"}))
		reply, err := bus.Request[Pong](after(t, time.Minute), b, "orders", Ping{3})
		must(t, err)
		idle()
		if got := r.all(); !slices.Equal(got, []string{"a", "event b"}) {
			t.Errorf("handled %v", got)
		}
		if reply.N != 3 {
			t.Errorf("reply %+v", reply)
		}
		if e.broker.Depth("staging.error") != 1 || e.broker.Depth("error") != 0 {
			t.Errorf("error queues: staging.error %d, error %d", e.broker.Depth("staging.error"), e.broker.Depth("error"))
		}
		for _, q := range e.broker.Queues() {
			if !strings.HasPrefix(q, "staging.") {
				t.Errorf("queue %q has no prefix", q)
			}
		}
		for _, bd := range e.broker.Bindings("staging.orders") {
			if !strings.HasPrefix(bd.Key, "staging.") {
				t.Errorf("binding %+v has no prefix", bd)
			}
		}
	})
}

func TestWithFullQueueName(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{QueuePrefix: "staging."})
		var r recorder[string]
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error { return r.handle(ctx, m.ID) }))
		e.start(b)
		must(t, b.Send(ctx, b.Queue(), PlaceOrder{ID: "send"}, bus.WithFullQueueName()))
		must(t, b.Defer(ctx, time.Minute, b.Queue(), PlaceOrder{ID: "defer"}, bus.WithFullQueueName()))
		time.Sleep(time.Minute)
		idle()
		if got := r.all(); len(got) != 2 || got[0] != "send" || got[1] != "defer" {
			t.Errorf("handled %q, want send then defer, both on %q", got, b.Queue())
		}
	})
}
