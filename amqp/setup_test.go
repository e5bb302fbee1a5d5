package amqp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// closeWithin closes tr, failing the test if Close has not returned after
// d: a deadlock guard, not a measurement.
func closeWithin(t *testing.T, tr *Transport, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_ = tr.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("Close waits on operations the broker does not answer")
	}
}

// TestSetupBindsDoNotHoldConsumers: after a reconnection, queue.bind
// waits (as every node of a RabbitMQ cluster does while one node hangs):
// the consumer resumes anyway, and Close does not wait for the binds.
func TestSetupBindsDoNotHoldConsumers(t *testing.T) {
	b := newFakeBroker()
	ctx := ctxFor(t, 10*time.Second)
	tr, err := Dial(ctx, "amqp://fake/", Options{dial: b.dial, ReconnectDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}, Topics: []string{"a.b"}}); err != nil {
		t.Fatal(err)
	}
	c, err := tr.Consume(ctx, "q", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b.setHang(func(_ *fakeConn, op string) bool { return op == "QueueBind" })
	b.mu.Lock()
	conns := append([]*fakeConn(nil), b.conns...)
	b.mu.Unlock()
	for _, c := range conns {
		c.lose()
	}
	waitFor(t, func() bool { return b.hanging() > 0 && tr.Health(ctx) == nil },
		func() string { return fmt.Sprintf("the consumer did not resume while binds hang: %v", tr.Health(ctx)) })
	closeWithin(t, tr, 10*time.Second)
}

// TestSetupHungNodeFailsOver: a node that accepts connections but never
// answers a declaration (hung, or waiting for a hung peer) costs a
// consuming connection one operation timeout; it then tries the next node.
func TestSetupHungNodeFailsOver(t *testing.T) {
	b := newFakeBroker()
	var mu sync.Mutex
	var dialled []string
	dial := func(url string, cfg amqp091.Config) (amqpConn, error) {
		c, err := b.dial(url, cfg)
		if err == nil {
			c.(*fakeConn).url = url
			mu.Lock()
			dialled = append(dialled, url)
			mu.Unlock()
		}
		return c, err
	}
	b.setHang(func(c *fakeConn, op string) bool { return c.url == "amqp://fake-1/" && op == "QueueDeclare" })
	ctx := ctxFor(t, 10*time.Second)
	tr, err := Dial(ctx, "amqp://fake-1/",
		Options{dial: dial, ClusterURLs: []string{"amqp://fake-2/"}, OrderedURLs: true, ReconnectDelay: time.Millisecond, opTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(dialled)
	mu.Unlock()
	// The publishing connection stays on fake-1; the consuming one gives
	// up on it.
	if len(dialled) != 3 || dialled[2] != "amqp://fake-2/" {
		t.Fatalf("dialled %s, want fake-1 twice then fake-2", got)
	}
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, tr, 10*time.Second)
}

// TestCloseDuringHungSetup: Close drops a set-up that waits on the broker.
func TestCloseDuringHungSetup(t *testing.T) {
	b := newFakeBroker()
	ctx := ctxFor(t, 10*time.Second)
	tr, err := Dial(ctx, "amqp://fake/", Options{dial: b.dial, ReconnectDelay: time.Millisecond, opTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b.setHang(func(_ *fakeConn, op string) bool { return op == "QueueDeclare" })
	b.mu.Lock()
	conns := append([]*fakeConn(nil), b.conns...)
	b.mu.Unlock()
	for _, c := range conns {
		c.lose()
	}
	waitFor(t, func() bool { return b.hanging() > 0 }, func() string { return "no set-up hangs" })
	closeWithin(t, tr, 10*time.Second)
}
