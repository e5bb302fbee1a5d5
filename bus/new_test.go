package bus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// noDelay hides the memory transport's Delayer capability.
type noDelay struct{ transport.Transport }

func TestNewRefusesBadArguments(t *testing.T) {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	long := strings.Repeat("q", 256)
	for _, c := range []struct {
		name  string
		t     transport.Transport
		queue string
		opts  bus.Options
		want  error
	}{
		{"reserved queue name", tr, "amq.orders", bus.Options{}, bus.ErrInvalidName},
		{"queue name too long", tr, long, bus.Options{}, bus.ErrInvalidName},
		{"prefix makes the name too long", tr, "orders", bus.Options{QueuePrefix: long}, bus.ErrInvalidName},
		{"bad error queue", tr, "orders", bus.Options{ErrorQueue: "amq.error"}, bus.ErrInvalidName},
		{"pattern too long", tr, "orders", bus.Options{Subscriptions: []string{long}}, bus.ErrInvalidName},
		{"subscriptions without a queue", tr, "", bus.Options{Subscriptions: []string{"a.*"}}, bus.ErrSendOnly},
		{"negative concurrency", tr, "orders", bus.Options{Concurrency: -1}, nil},
		{"unknown queue type", tr, "orders", bus.Options{QueueType: "stream"}, nil},
		{"unknown error queue type", tr, "orders", bus.Options{ErrorQueueType: "stream"}, nil},
		{"unknown unhandled policy", tr, "orders", bus.Options{Unhandled: 9}, nil},
		{"two codecs for one content type", tr, "orders", bus.Options{Codecs: []bus.Codec{bus.JSON}}, nil},
		{"nil codec", tr, "orders", bus.Options{Codecs: []bus.Codec{nil}}, nil},
		{"bad retry options", tr, "orders", bus.Options{Retry: middleware.RetryOptions{Immediate: -1}}, nil},
		{"pipeline fails", tr, "orders", bus.Options{Pipeline: func(bus.Plumbing) (middleware.Middleware, error) { return nil, errors.New("no") }}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := bus.New(c.t, c.queue, c.opts)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("New: %v, want an error wrapping %v", err, c.want)
			}
		})
	}
	if _, err := bus.New(nil, "orders", bus.Options{}); err == nil {
		t.Error("New(nil transport) succeeded")
	}
}

func TestNewTouchesNoBroker(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		before := e.broker.Queues()
		b := e.bus("orders", bus.Options{Subscriptions: []string{"payments.#"}})
		if got := e.broker.Queues(); !slices.Equal(got, before) {
			t.Errorf("queues after New: %v, want %v", got, before)
		}
		if len(e.broker.Journal()) != 0 {
			t.Error("New dispatched something")
		}
		if b.Queue() != "orders" || b.ErrorQueue() != "error" {
			t.Errorf("Queue %q ErrorQueue %q", b.Queue(), b.ErrorQueue())
		}
	})
}

func TestStartDeclaresTopology(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("orders", bus.Options{Subscriptions: []string{"payments.#", "stock.*"}})
		must(t, b.Subscribe(ctx, "users.created"))
		must(t, b.Unsubscribe(ctx, "stock.*"))
		e.start(b)
		st, err := e.broker.Stats("orders")
		must(t, err)
		if st.Type != transport.Quorum || st.Consumers != 1 {
			t.Errorf("endpoint queue %+v, want a quorum queue with one consumer", st)
		}
		want := []memory.Binding{
			{Exchange: transport.DefaultDirectExchange, Key: "orders"},
			{Exchange: transport.DefaultTopicExchange, Key: "payments.#"},
			{Exchange: transport.DefaultTopicExchange, Key: "users.created"},
		}
		if got := e.broker.Bindings("orders"); !sameBindings(got, want) {
			t.Errorf("bindings %v, want %v", got, want)
		}
		eq, err := e.broker.Stats("error")
		must(t, err)
		if eq.Consumers != 0 {
			t.Errorf("error queue has %d consumers", eq.Consumers)
		}
		if got := b.Subscriptions(); !slices.Equal(got, []string{"payments.#", "users.created"}) {
			t.Errorf("Subscriptions() = %v", got)
		}
		if err := b.Start(ctx); err == nil {
			t.Error("second Start succeeded")
		}
	})
}

func sameBindings(got, want []memory.Binding) bool {
	key := func(b memory.Binding) string { return b.Exchange + " " + b.Key }
	g := make([]string, len(got))
	for i, b := range got {
		g[i] = key(b)
	}
	w := make([]string, len(want))
	for i, b := range want {
		w[i] = key(b)
	}
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// Start creates a missing error queue as a classic queue, the type PikaBus 2
// declares it with (durable, no arguments) each time one of its handlers
// fails: on RabbitMQ 3.x that declaration of a quorum "error" fails with
// "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'error':
// received none but current is the value 'quorum'" (observed with
// scripts/pikabus-interop.sh), and the Python service then redelivers the
// failed message forever. Options.ErrorQueueType chooses otherwise.
func TestStartCreatesClassicErrorQueue(t *testing.T) {
	for _, c := range []struct {
		opts bus.Options
		want transport.QueueType
	}{
		{bus.Options{}, transport.Classic},
		{bus.Options{QueueType: transport.Quorum}, transport.Classic},
		{bus.Options{ErrorQueueType: transport.Quorum}, transport.Quorum},
	} {
		bubble(t, func(t *testing.T, e *env) {
			e.start(e.bus("orders", c.opts))
			st, err := e.broker.Stats("error")
			must(t, err)
			if st.Type != c.want {
				t.Errorf("%+v: error queue created as %q, want %q", c.opts, st.Type, c.want)
			}
			if st, err := e.broker.Stats("orders"); err != nil || st.Type != transport.Quorum {
				t.Errorf("%+v: endpoint queue %+v %v, want quorum", c.opts, st, err)
			}
		})
	}
}

func TestStartUsesExistingErrorQueue(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		// A PikaBus installation's error queue, classic with arguments.
		must(t, e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{
			Name: "error", Type: transport.Classic, Arguments: transport.Headers{"x-max-length": 10},
		}}))
		b := e.bus("orders", bus.Options{})
		e.start(b)
	})
}

func TestStartConflict(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		must(t, e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "orders", Type: transport.Classic}}))
		b := e.bus("orders", bus.Options{})
		if err := b.Start(ctx); !errors.Is(err, bus.ErrTopologyConflict) || !strings.Contains(err.Error(), `"orders"`) {
			t.Errorf("Start on a classic queue: %v, want ErrTopologyConflict naming the queue", err)
		}
		b2 := e.bus("orders", bus.Options{QueueType: transport.Classic})
		e.start(b2)
	})
}

func TestSendOnly(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		server := e.bus("server", bus.Options{})
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error { return server.Reply(ctx, Pong{p.N}) }))
		e.start(server)

		client := e.bus("", bus.Options{})
		if client.Queue() != "" {
			t.Errorf("Queue() = %q", client.Queue())
		}
		// Sends and requests work without Start.
		must(t, client.Send(ctx, "server", Ping{1}))
		r, err := bus.Request[Pong](after(t, time.Minute), client, "server", Ping{2})
		must(t, err)
		if r.N != 2 {
			t.Errorf("reply %+v", r)
		}
		if err := bus.Handle(client, func(context.Context, Ping) error { return nil }); !errors.Is(err, bus.ErrSendOnly) {
			t.Errorf("Handle on a send-only bus: %v", err)
		}
		if err := client.Subscribe(ctx, "a"); !errors.Is(err, bus.ErrSendOnly) {
			t.Errorf("Subscribe on a send-only bus: %v", err)
		}
		if err := client.Pause(ctx); !errors.Is(err, bus.ErrSendOnly) {
			t.Errorf("Pause on a send-only bus: %v", err)
		}
		// Its errors say what it is, rather than naming an empty queue.
		for _, err := range []error{
			client.Send(ctx, "nowhere", Ping{3}),
			client.Pause(ctx),
			bus.Handle(client, func(context.Context, Ping) error { return nil }),
		} {
			if err == nil {
				t.Error("a send-only bus sent to a missing queue, paused or took a handler without an error")
			} else if msg := err.Error(); !strings.HasPrefix(msg, "send-only bus: ") || strings.Contains(msg, `bus ""`) {
				t.Errorf("error of a send-only bus: %q", msg)
			}
		}
		if err := server.Send(ctx, "nowhere", Ping{4}); err == nil || !strings.HasPrefix(err.Error(), `bus "server": send `) {
			t.Errorf("error of an endpoint: %q", err)
		}
		e.start(client)
		must(t, client.Health(ctx))
		must(t, client.Shutdown(ctx))
	})
}

// TestNoDelayTransportRetriesAtOnce checks the pipeline New builds over a
// transport that cannot defer: as many immediate retries as the delayed
// ones would have been, then the error queue; Defer is refused.
func TestNoDelayTransportRetriesAtOnce(t *testing.T) {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	b, err := bus.New(noDelay{tr}, "orders", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(3)}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	if err := bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
		calls.Add(1)
		return errors.New("gateway down")
	}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Send(ctx, "orders", PlaceOrder{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Broker().WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("handler called %d times, want 4 (the first try and 3 immediate retries)", got)
	}
	if got := tr.Broker().Messages("error"); len(got) != 1 {
		t.Errorf("%d messages on the error queue, want 1", len(got))
	}
	if err := b.Defer(ctx, time.Second, "orders", PlaceOrder{ID: "2"}); !errors.Is(err, bus.ErrNotSupported) {
		t.Errorf("Defer: %v, want ErrNotSupported", err)
	}
}
