package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// dial connects to the test broker and closes the transport at the end of
// the test.
func dial(t testing.TB, opts amqp.Options) *amqp.Transport {
	t.Helper()
	url := brokertest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// queueName returns a fresh queue name, deleted at the end of the test.
func queueName(t testing.TB, tr *amqp.Transport) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "amqp-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tr.DeleteQueue(ctx, name)
	})
	return name
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// declare declares a queue of the given type with no topics.
func declare(t testing.TB, tr transport.Transport, q transport.Queue, topics ...string) {
	t.Helper()
	if err := tr.Declare(testCtx(t, 30*time.Second), transport.Topology{Queue: q, Topics: topics}); err != nil {
		t.Fatalf("Declare %q: %v", q.Name, err)
	}
}

// collect consumes queue and sends every delivery, acked, to the returned
// channel.
func collect(t testing.TB, tr transport.Transport, queue string, opts transport.ConsumeOptions) <-chan *transport.Delivery {
	t.Helper()
	out := make(chan *transport.Delivery, 10000)
	c, err := tr.Consume(testCtx(t, 10*time.Second), queue, opts, func(ctx context.Context, d *transport.Delivery) {
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
		out <- d
	})
	if err != nil {
		t.Fatalf("Consume %q: %v", queue, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return out
}

func next(t testing.TB, c <-chan *transport.Delivery, within time.Duration) *transport.Delivery {
	t.Helper()
	select {
	case d := <-c:
		return d
	case <-time.After(within):
		t.Fatalf("no delivery within %v", within)
		return nil
	}
}
