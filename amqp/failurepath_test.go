package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// failingEndpoint starts a Bus on a fresh queue of tr, with an error queue
// of its own, whose handler of "Fail" counts its calls and fails with err.
func failingEndpoint(t *testing.T, tr *amqp.Transport, err error, opts bus.Options) (*bus.Bus, *atomic.Int64) {
	t.Helper()
	q := queueName(t, tr)
	opts.ErrorQueue = q + "-error"
	t.Cleanup(func() { _ = tr.DeleteQueue(context.Background(), opts.ErrorQueue) })
	b, berr := bus.New(tr, q, opts)
	if berr != nil {
		t.Fatal(berr)
	}
	t.Cleanup(func() { _ = b.Close() })
	var n atomic.Int64
	if err := b.HandleRaw("Fail", func(ctx context.Context, m *transport.Message) error {
		n.Add(1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(testCtx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	return b, &n
}

// waitDepth waits up to a minute for queue to hold want ready messages.
func waitDepth(t *testing.T, tr *amqp.Transport, queue string, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := tr.Inspect(testCtx(t, 10*time.Second), queue)
		if err == nil && info.Messages == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %q: %+v (%v), want %d messages", queue, info, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// maxDeliveries is the most deliveries a message may have in window when
// each is held, from 1 s doubling, before it goes back; plus one for a
// delivery under way when the window ends.
func maxDeliveries(window time.Duration) int64 {
	n, held := int64(2), time.Duration(0)
	for d := time.Second; held+d <= window; d *= 2 {
		held += d
		n++
	}
	return n
}

// TestFailurePathBounded: on RabbitMQ, a message whose failure cannot be
// forwarded never cycles faster than the Bus's backoff (issue 9 §1 and §5;
// figures before: 158, 589 and 290 deliveries per second).
func TestFailurePathBounded(t *testing.T) {
	url := brokertest.URL(t)
	tr := dial(t, amqp.Options{})
	perm := middleware.Permanent(errors.New("bad order"))

	t.Run("InvalidUTF8HeaderKey", func(t *testing.T) {
		b, n := failingEndpoint(t, tr, perm, bus.Options{})
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		// RabbitMQ takes keys that are not valid UTF-8, at any depth.
		if err := ch.PublishWithContext(testCtx(t, 10*time.Second), "", b.Queue(), true, false, amqp091.Publishing{
			MessageId: "bad-key", Type: "Fail", DeliveryMode: 2, Body: []byte(`{}`),
			Headers: amqp091.Table{"x-\xff-key": "top", "t": amqp091.Table{"x-\xfe-inner": int32(1)}},
		}); err != nil {
			t.Fatal(err)
		}
		waitDepth(t, tr, b.ErrorQueue(), 1)
		if got := n.Load(); got != 1 {
			t.Errorf("%d deliveries, want 1: the copy must go to the error queue at once", got)
		}
		d, ok, err := tr.Get(testCtx(t, 10*time.Second), b.ErrorQueue())
		if err != nil || !ok {
			t.Fatalf("Get: %v %v", ok, err)
		}
		_ = d.Ack()
		if got := fmt.Sprint(d.Headers[middleware.SanitizedHeader]); !strings.Contains(got, `x-\xff-key`) || !strings.Contains(got, `t.x-\xfe-inner`) ||
			d.Headers[`x-\xff-key`] != "top" {
			t.Errorf("error queue copy: %s = %s, headers %v", middleware.SanitizedHeader, got, d.Headers)
		}
	})

	t.Run("QueueNameTooLongForDelayLevels", func(t *testing.T) {
		name := strings.Repeat("q", 200)
		_, err := bus.New(tr, name, bus.Options{})
		if err == nil || !strings.Contains(err.Error(), "at most 199 bytes") {
			t.Errorf("New with a 200-byte queue name: %v", err)
		}
		if _, err := bus.New(tr, name[:199], bus.Options{}); err != nil {
			t.Errorf("New with a 199-byte queue name: %v", err)
		}
	})

	t.Run("ErrorQueueDeleted", func(t *testing.T) {
		var forwardFailed atomic.Int64
		b, n := failingEndpoint(t, tr, perm, bus.Options{OnNotice: func(e bus.Notice) {
			if e.Kind == bus.ForwardFailed {
				forwardFailed.Add(1)
			}
		}})
		if err := tr.DeleteQueue(testCtx(t, 10*time.Second), b.ErrorQueue()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := b.Send(testCtx(t, 10*time.Second), b.Queue(), struct{}{}, bus.WithMessageType("Fail")); err != nil {
			t.Fatal(err)
		}
		waitDepth(t, tr, b.ErrorQueue(), 1)
		t.Logf("%d deliveries in %v before the message reached the re-declared error queue", n.Load(), time.Since(start))
		if got, limit := n.Load(), maxDeliveries(time.Since(start)); got > limit || got < 2 || forwardFailed.Load() < 1 {
			t.Errorf("%d deliveries (at most %d), %d ForwardFailed events", got, limit, forwardFailed.Load())
		}
	})

	t.Run("Shutdown", func(t *testing.T) {
		q := queueName(t, tr)
		b, err := bus.New(tr, q, bus.Options{HandlerTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		var returned atomic.Bool
		if err := b.HandleRaw("Slow", func(ctx context.Context, m *transport.Message) error {
			started <- struct{}{}
			<-release // ignores ctx
			returned.Store(true)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(testCtx(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(testCtx(t, 10*time.Second), q, struct{}{}, bus.WithMessageType("Slow")); err != nil {
			t.Fatal(err)
		}
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = b.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 handlers still running") || returned.Load() {
			t.Errorf("Shutdown: %v (handler returned first: %v)", err, returned.Load())
		}
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		close(release)
		// The message was not acked: it is back in the queue.
		waitDepth(t, tr, q, 1)
	})
}

// TestFailurePathBoundedWhileBrokerBlocks: while RabbitMQ refuses publishes
// (a memory alarm), a failing message's retry copy cannot be dispatched; the
// message is held before each nack instead of cycling (issue 9 §1).
func TestFailurePathBoundedWhileBrokerBlocks(t *testing.T) {
	tr := dial(t, amqp.Options{})
	// A memory alarm blocks publishes; the retry copy's dispatch gives
	// up after its DispatchTimeout, and the message is held before it
	// goes back.
	alarmed := make(chan struct{})
	b, n := failingEndpoint(t, tr, nil, bus.Options{
		Retry: middleware.RetryOptions{DispatchTimeout: 500 * time.Millisecond},
		Middleware: []middleware.Middleware{func(next middleware.Handler) middleware.Handler {
			return func(ctx context.Context, m *middleware.Message) error {
				<-alarmed // fail only once the broker refuses publishes
				_ = next(ctx, m)
				return errors.New("transient")
			}
		}},
	})
	if err := b.Send(testCtx(t, 10*time.Second), b.Queue(), struct{}{}, bus.WithMessageType("Fail")); err != nil {
		t.Fatal(err)
	}
	brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.0000001")
	start := time.Now()
	close(alarmed)
	const window = 6 * time.Second
	time.Sleep(window)
	got := n.Load()
	brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.4")
	t.Logf("%d deliveries in %v while the broker refused publishes", got, window)
	if limit := maxDeliveries(time.Since(start)); got > limit || got < 2 {
		t.Errorf("%d deliveries in %v while the broker refuses publishes, want 2 to %d", got, window, limit)
	}
}
