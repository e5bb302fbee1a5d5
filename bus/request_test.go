package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// responder starts an endpoint that answers Ping{N} with Pong{N*10} after
// N seconds.
func responder(e *env, tr transport.Transport, queue string) *bus.Bus {
	b := e.busOn(tr, queue, bus.Options{Concurrency: 10})
	must(e.t, bus.Handle(b, func(ctx context.Context, p Ping) error {
		time.Sleep(time.Duration(p.N) * time.Second)
		return b.Reply(ctx, Pong{p.N * 10})
	}))
	e.start(b)
	return b
}

func TestReply(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		server := e.bus("server", bus.Options{})
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error { return server.Reply(ctx, Pong{p.N + 1}) }))
		e.start(server)
		client := e.bus("client", bus.Options{})
		var pongs recorder[Pong]
		must(t, bus.Handle(client, pongs.handle))
		e.start(client)
		must(t, client.Send(ctx, "server", Ping{1}))
		idle()
		got, in := pongs.all(), pongs.incoming()
		if len(got) != 1 || got[0].N != 2 {
			t.Fatalf("client got %v", got)
		}
		if in[0].CorrelationID == "" || in[0].OriginatingAddress != "server" || in[0].Intent != "command" {
			t.Errorf("reply metadata %+v", in[0])
		}
		// The reply address falls back to the AMQP reply_to property.
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "server", Mandatory: true, Message: transport.Message{
			ID: "foreign", CorrelationID: "c-1", ReplyTo: "client", Type: "Ping",
			Body: []byte(`{"N":5}`),
		}}))
		idle()
		got, in = pongs.all(), pongs.incoming()
		if len(got) != 2 || got[1].N != 6 || in[1].CorrelationID != "c-1" {
			t.Errorf("reply to a message with only reply_to: %v %+v", got, in)
		}
	})
}

func TestReplyWithoutAddress(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		if err := e.bus("x", bus.Options{}).Reply(ctx, Pong{}); !errors.Is(err, bus.ErrNoReplyAddress) {
			t.Errorf("Reply outside a handler: %v", err)
		}
		server := e.bus("server", bus.Options{})
		var replyErr error
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error {
			replyErr = server.Reply(ctx, Pong{})
			return nil
		}))
		e.start(server)
		must(t, e.bus("", bus.Options{}).Send(ctx, "server", Ping{}))
		idle()
		if !errors.Is(replyErr, bus.ErrNoReplyAddress) {
			t.Errorf("Reply to a message from a send-only client: %v", replyErr)
		}
	})
}

func TestConcurrentRequestsGetTheirOwnReplies(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		client := e.bus("client", bus.Options{})
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() {
				n := i % 5
				r, err := bus.Request[Pong](after(t, time.Minute), client, "server", Ping{n})
				if err == nil && r.N != n*10 {
					err = fmt.Errorf("request %d got reply %d", n, r.N)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			must(t, err)
		}
	})
}

func TestRequestsFromCompetingInstances(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		// Two instances of one endpoint, each its own connection:
		// replies come back to the process that asked.
		a := e.busOn(e.transport("a"), "client", bus.Options{})
		b := e.busOn(e.transport("b"), "client", bus.Options{})
		e.start(a)
		e.start(b)
		var wg sync.WaitGroup
		for i, c := range []*bus.Bus{a, b, a, b} {
			wg.Go(func() {
				r, err := bus.Request[Pong](after(t, time.Minute), c, "server", Ping{i})
				if err != nil || r.N != i*10 {
					t.Errorf("instance request %d: %v, %v", i, r, err)
				}
			})
		}
		wg.Wait()
		if n := e.broker.Depth("client"); n != 0 {
			t.Errorf("%d replies went to the shared endpoint queue", n)
		}
	})
}

func TestRequestTimeoutAndLateReply(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		client := e.bus("client", bus.Options{})
		start := time.Now()
		_, err := bus.Request[Pong](after(t, 3*time.Second), client, "server", Ping{5})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 3*time.Second {
			t.Errorf("Request past its deadline: %v after %v", err, time.Since(start))
		}
		// The late reply is acked and dropped; a new request is not
		// confused by it.
		time.Sleep(5 * time.Second)
		idle()
		r, err := bus.Request[Pong](after(t, time.Minute), client, "server", Ping{1})
		if err != nil || r.N != 10 {
			t.Errorf("next request: %v, %v", r, err)
		}
		// The server acks the request after dispatching its reply, so
		// Request may return before that ack: wait for it.
		idle()
		for _, q := range e.broker.Queues() {
			if n := e.broker.Depth(q); n != 0 && q != "error" {
				t.Errorf("%d messages left in %q", n, q)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := bus.Request[Pong](cctx, client, "server", Ping{1}); !errors.Is(err, context.Canceled) {
			t.Errorf("Request with a cancelled context: %v", err)
		}
	})
}

func TestRequestRefusals(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		client := e.bus("client", bus.Options{})
		for _, opt := range []bus.SendOption{bus.WithCorrelationID("c"), bus.WithReplyTo("q"), bus.WithDelay(time.Second)} {
			if _, err := bus.Request[Pong](after(t, time.Minute), client, "server", Ping{}, opt); err == nil {
				t.Errorf("Request with %T succeeded", opt)
			}
		}
		if _, err := bus.Request[Pong](after(t, time.Minute), client, "nowhere", Ping{}); !errors.Is(err, bus.ErrUnroutable) {
			t.Errorf("Request to a missing queue: %v", err)
		}
		// An undecodable reply is the request's error.
		if _, err := bus.Request[chan int](after(t, time.Minute), client, "server", Ping{}); !errors.Is(err, bus.ErrUndecodable) {
			t.Errorf("Request with an undecodable reply: %v", err)
		}
	})
}

func TestRequestFailsOnClose(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		client := e.bus("client", bus.Options{})
		done := make(chan error)
		go func() {
			_, err := bus.Request[Pong](after(t, time.Hour), client, "server", Ping{100})
			done <- err
		}()
		idle()
		must(t, client.Shutdown(ctx))
		if err := <-done; !errors.Is(err, bus.ErrClosed) {
			t.Errorf("waiting Request after Shutdown: %v", err)
		}
		if _, err := bus.Request[Pong](after(t, time.Hour), client, "server", Ping{1}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Request after Shutdown: %v", err)
		}
	})
}

func TestRequestInsideHandlerSendsAtOnce(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		responder(e, e.tr, "server")
		b := e.bus("orders", bus.Options{})
		var got Pong
		var conv, corr, reqCorr string
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			in, _ := bus.IncomingFrom(ctx)
			corr = in.CorrelationID
			conv = in.ConversationID
			var err error
			got, err = bus.Request[Pong](ctx, b, "server", Ping{2})
			return err
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}, bus.WithConversationID("conv-1")))
		idle()
		time.Sleep(2 * time.Second)
		idle()
		if got.N != 20 {
			t.Errorf("reply %+v", got)
		}
		for _, r := range e.broker.Journal() {
			if r.RoutingKey == "server" && r.Op == memory.Dispatched {
				reqCorr = header(r.Message, "CorrelationId")
				if c := header(r.Message, "ConversationId"); c != conv || conv != "conv-1" {
					t.Errorf("request conversation %q, want %q", c, conv)
				}
			}
		}
		if reqCorr == "" || reqCorr == corr {
			t.Errorf("request correlation id %q, must be its own (handled message's is %q)", reqCorr, corr)
		}
	})
}

// A transaction begun inside a handler that commits after the handler
// returned cannot join the handler's outbox any more: it fails with
// Reply to a message that has no correlation id correlates the reply with
// the message's own id.
func TestReplyCorrelatesWithTheMessageIDWhenThereIsNoCorrelationID(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		server := e.bus("server", bus.Options{})
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error { return server.Reply(ctx, Pong{p.N}) }))
		e.start(server)
		client := e.bus("client", bus.Options{})
		var pongs recorder[Pong]
		must(t, bus.Handle(client, pongs.handle))
		e.start(client)
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "server", Mandatory: true, Message: transport.Message{
			ID: "foreign-1", ReplyTo: "client", Type: "Ping", Body: []byte(`{"N":3}`),
		}}))
		idle()
		if in := pongs.incoming(); len(in) != 1 || in[0].CorrelationID != "foreign-1" || in[0].Message.CorrelationID != "foreign-1" {
			t.Fatalf("replies %+v, want one correlated with foreign-1", in)
		}
	})
}

// A message sent by a handler inherits the correlation id as Incoming
// reads it, and as Reply correlates: the CorrelationId header when it is
// text (an AMQP long string may arrive as bytes), else the correlation_id
// property, as when the header is of another type or empty.
func TestSendInHandlerInheritsTheCorrelationID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header any
		want   string
	}{
		{"bytes", []byte("from-header"), "from-header"},
		{"integer", int32(7), "from-property"},
		{"empty", "", "from-property"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T, e *env) {
				server := e.bus("server", bus.Options{})
				var seen string
				must(t, bus.Handle(server, func(ctx context.Context, p Ping) error {
					in, _ := bus.IncomingFrom(ctx)
					seen = in.CorrelationID
					return server.Send(ctx, "client", Pong{p.N})
				}))
				e.start(server)
				client := e.bus("client", bus.Options{})
				var pongs recorder[Pong]
				must(t, bus.Handle(client, pongs.handle))
				e.start(client)
				must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "server", Mandatory: true, Message: transport.Message{
					ID: "foreign-1", CorrelationID: "from-property", ReplyTo: "client", Type: "Ping",
					Headers: transport.Headers{"PikaBus.CorrelationId": tc.header}, Body: []byte(`{"N":3}`),
				}}))
				idle()
				if seen != tc.want {
					t.Errorf("Incoming.CorrelationID = %q, want %q", seen, tc.want)
				}
				if in := pongs.incoming(); len(in) != 1 || in[0].CorrelationID != tc.want || in[0].Message.CorrelationID != tc.want {
					t.Fatalf("replies %+v, want one correlated with %q", in, tc.want)
				}
			})
		})
	}
}

// A reply from a responder that sets only the AMQP correlation_id property
// (no CorrelationId header, as a plain AMQP client replies) reaches its
// Request.
func TestRequestMatchesTheCorrelationIDProperty(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		must(t, e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "plain"}}))
		_, err := e.tr.Consume(ctx, "plain", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: d.ReplyTo, Mandatory: true, Message: transport.Message{
				ID: "reply-1", CorrelationID: d.ID, ContentType: "application/json", Body: []byte(`{"N":42}`),
			}}))
			must(t, d.Ack())
		})
		must(t, err)
		client := e.bus("client", bus.Options{})
		r, err := bus.Request[Pong](after(t, time.Minute), client, "plain", Ping{1})
		if err != nil || r.N != 42 {
			t.Fatalf("Request = %v, %v; want the plain reply 42", r, err)
		}
	})
}

// Two requests waiting with one message id would steal each other's reply:
// the second is refused at once.
func TestConcurrentRequestsWithOneMessageID(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		must(t, e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "silent"}})) // never answers
		client := e.bus("client", bus.Options{})
		first := make(chan error, 1)
		go func() {
			_, err := bus.Request[Pong](after(t, time.Minute), client, "silent", Ping{}, bus.WithMessageID("same"))
			first <- err
		}()
		idle()
		_, err := bus.Request[Pong](after(t, time.Minute), client, "silent", Ping{}, bus.WithMessageID("same"))
		if err == nil || !strings.Contains(err.Error(), "another request") {
			t.Errorf("second request with the same id: %v, want a refusal", err)
		}
		if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("first request: %v, want its deadline", err)
		}
	})
}
