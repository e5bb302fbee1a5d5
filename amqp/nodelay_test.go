package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// dialNoDelay is dial for DialNoDelay.
func dialNoDelay(t testing.TB, url string, opts amqp.Options) *amqp.NoDelayTransport {
	t.Helper()
	tr, err := amqp.DialNoDelay(testCtx(t, 30*time.Second), url, opts)
	if err != nil {
		t.Fatalf("DialNoDelay: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// noDeferral is a bus pipeline for a transport that cannot defer: the
// standard stages without deferral and without delayed retries.
func noDeferral(b *bus.Bus) (middleware.Middleware, error) {
	return middleware.Standard(b.Sender(), middleware.StandardOptions{
		NoDeferral: true,
		ErrorQueue: middleware.ErrorQueueOptions{Queue: b.ErrorQueue()},
		Retry:      middleware.RetryOptions{Immediate: 1, MaxRetries: middleware.NoRetries},
		Headers:    b.HeaderNames(),
	})
}

// TestNoDelay: DialNoDelay declares no delay levels, refuses deferred
// messages, and is not a transport.Delayer, so that package bus refuses its
// standard pipeline and works with one without deferral.
func TestNoDelay(t *testing.T) {
	url := brokertest.URL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "amqp-test-nodelay-" + hex.EncodeToString(b[:])
	tr := dialNoDelay(t, url, amqp.Options{DelayPrefix: prefix})
	ctx := testCtx(t, 30*time.Second)

	// Nothing of the delay levels was declared.
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, x := range []string{prefix + "-delivery", prefix + "-undelivered", prefix + "-00"} {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		err = ch.ExchangeDeclarePassive(x, amqp091.ExchangeTopic, true, false, false, false, nil)
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp091.NotFound {
			t.Errorf("passive declare of the delay exchange %q = %v, want NOT_FOUND", x, err)
		}
		_ = ch.Close()
	}

	var v any = tr
	if _, ok := v.(transport.Delayer); ok {
		t.Fatal("a NoDelayTransport is a transport.Delayer")
	}

	q := "amqp-test-nodelay-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _ = tr.DeleteQueue(context.Background(), q) })
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q}}); err != nil {
		t.Fatal(err)
	}
	err = tr.Dispatch(ctx,
		transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "now"}},
		transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(time.Minute), Message: transport.Message{ID: "later"}})
	if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), "DialNoDelay") {
		t.Fatalf("Dispatch of a deferred message = %v, want ErrNotSupported naming DialNoDelay", err)
	}
	// A NotBefore in the past is no deferral.
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(-time.Second),
		Message: transport.Message{ID: "past"}}); err != nil {
		t.Fatalf("Dispatch with a NotBefore in the past: %v", err)
	}
	if d, ok, err := tr.Get(ctx, q); err != nil || !ok || d.ID != "past" {
		t.Fatalf("Get = %v, %v, %v; want only the message \"past\" (the refused batch sends nothing)", d, ok, err)
	} else {
		_ = d.Ack()
	}

	// Package bus sees that the transport cannot defer and builds its
	// standard pipeline without deferral, with immediate retries.
	ep, err := bus.New(tr, q, bus.Options{ErrorQueue: q + "-error"})
	if err != nil {
		t.Fatalf("bus.New with the standard pipeline: %v", err)
	}
	t.Cleanup(func() { _ = tr.DeleteQueue(context.Background(), q+"-error") })
	got := make(chan PlaceOrder, 1)
	if err := bus.Handle(ep, func(ctx context.Context, o PlaceOrder) error { got <- o; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := ep.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer ep.Close()
	if err := ep.Send(ctx, q, PlaceOrder{OrderID: "1"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case o := <-got:
		if o.OrderID != "1" {
			t.Errorf("handled %+v", o)
		}
	case <-ctx.Done():
		t.Fatal("the command was not handled")
	}
	if err := ep.Defer(ctx, time.Minute, q, PlaceOrder{}); !errors.Is(err, bus.ErrNotSupported) {
		t.Errorf("Defer = %v, want ErrNotSupported", err)
	}
	if err := ep.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestNoDelayPermissions: a user who may not configure the delay levels
// cannot Dial, and can DialNoDelay, declare an endpoint queue, send and
// receive.
func TestNoDelayPermissions(t *testing.T) {
	base := brokertest.URL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	user, pass := "amqp-test-nodelay-"+hex.EncodeToString(b[:]), "secret"
	brokertest.Control(t, "ctl", "add_user", user, pass)
	t.Cleanup(func() { brokertest.Control(t, "ctl", "delete_user", user) })
	// Configure anything but the delay levels (Erlang's re is PCRE).
	brokertest.Control(t, "ctl", "set_permissions", "-p", "/", user, "^(?!busline-delay-).*", ".*", ".*")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	restricted := u.String()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if tr, err := amqp.Dial(ctx, restricted, amqp.Options{}); err == nil {
		tr.Close()
		t.Fatal("Dial as a user who may not configure the delay levels succeeded")
	} else if !strings.Contains(err.Error(), "ACCESS_REFUSED") || !strings.Contains(err.Error(), "DialNoDelay") {
		t.Errorf("Dial as a user who may not configure the delay levels = %v, want ACCESS_REFUSED and a hint at DialNoDelay", err)
	}

	tr := dialNoDelay(t, restricted, amqp.Options{})
	q := user
	t.Cleanup(func() { _ = tr.DeleteQueue(context.Background(), q) })
	declare(t, tr, transport.Queue{Name: q}, "nodelay.#")
	in := collect(t, tr, q, transport.ConsumeOptions{})
	if err := tr.Dispatch(ctx,
		transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: "direct"}},
		transport.Outgoing{Exchange: transport.Topic, RoutingKey: "nodelay.x", Mandatory: true, Message: transport.Message{ID: "topic"}},
	); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	for _, want := range []string{"direct", "topic"} {
		if d := next(t, in, 20*time.Second); d.ID != want {
			t.Errorf("delivered %q, want %q", d.ID, want)
		}
	}
}
