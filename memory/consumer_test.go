package memory_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

type ctxKey struct{}

func TestDrainWaitsForHandlers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		release := make(chan struct{})
		started := make(chan string, 10)
		ctx := context.WithValue(context.Background(), ctxKey{}, "v")
		c, err := tr.Consume(ctx, "q", transport.ConsumeOptions{Concurrency: 1, Prefetch: 3}, func(ctx context.Context, d *transport.Delivery) {
			if ctx.Value(ctxKey{}) != "v" {
				t.Error("handler context lost the consume context's values")
			}
			started <- d.ID
			<-release
			if err := d.Ack(); err != nil {
				t.Errorf("ack while draining: %v", err)
			}
		})
		must(t, err)
		send(t, tr, "q", "1", "2", "3")
		if id := <-started; id != "1" {
			t.Fatalf("first handled %s", id)
		}
		drained := make(chan error, 1)
		go func() { drained <- c.Drain(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-drained:
			t.Fatalf("drain returned %v with a handler running", err)
		default:
		}
		// Messages not yet handed to the handler went back at once.
		if got := msgIDs(tr.Broker().Messages("q")); got != "2 3 " {
			t.Fatalf("queue holds %q while draining", got)
		}
		close(release)
		must(t, <-drained)
		<-c.Done()
		must(t, c.Err())
		must(t, c.Drain(context.Background()))
		must(t, c.Close())
		if tr.Broker().Depth("q") != 2 {
			t.Fatalf("depth %d", tr.Broker().Depth("q"))
		}
	})
}

func TestCloseDuringDrainCancelsHandlers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		c := consume(t, tr, "q", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			<-ctx.Done()
		})
		send(t, tr, "q", "1")
		synctest.Wait()
		drained := make(chan error, 1)
		go func() { drained <- c.Drain(context.Background()) }()
		synctest.Wait()
		must(t, c.Close()) // at once, though the Drain would wait forever
		must(t, <-drained)
		if n := tr.Broker().Depth("q"); n != 1 {
			t.Fatalf("depth %d", n)
		}
	})
}

func TestDrainTimeoutCancelsHandlers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		var handlerErr error
		c := consume(t, tr, "q", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			<-ctx.Done()
			handlerErr = ctx.Err()
		})
		send(t, tr, "q", "1")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		mustIs(t, c.Drain(ctx), context.DeadlineExceeded)
		mustIs(t, handlerErr, context.Canceled)
		ms := tr.Broker().Messages("q")
		if len(ms) != 1 {
			t.Fatalf("unsettled delivery not requeued: %v", ms)
		}
	})
}

func TestCloseCancelsHandlerContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		consumeCtx, cancelConsume := context.WithCancel(context.Background())
		var d0 *transport.Delivery
		c, err := tr.Consume(consumeCtx, "q", transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
			d0 = d
			<-ctx.Done()
		})
		must(t, err)
		cancelConsume() // bounds only the start
		send(t, tr, "q", "1")
		synctest.Wait()
		if d0 == nil {
			t.Fatal("not delivered after the consume context ended")
		}
		must(t, c.Close())
		mustIs(t, d0.Ack(), transport.ErrClosed)
		if got := msgIDs(tr.Broker().Messages("q")); got != "1 " {
			t.Fatalf("queue holds %q", got)
		}
	})
}

func TestSettleAfterHandlerReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		got := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Concurrency: 2}, got.handle)
		send(t, tr, "q", "1", "2", "3")
		ds := got.drain()
		if s := ids(ds...); s != "1 2 " && s != "2 1 " {
			t.Fatalf("delivered %s with prefetch 2", s)
		}
		go func() { ds[0].Ack() }()
		if d := got.next(t); d.ID != "3" {
			t.Fatalf("then %s", d.ID)
		}
	})
}

func TestConsumeWaitsForConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		declare(t, tr, "q")
		tr.Disconnect()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := tr.Consume(ctx, "q", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		cancel()
		mustIs(t, err, context.DeadlineExceeded)
		_, err = tr.Consume(context.Background(), "missing", transport.ConsumeOptions{}, nil)
		if err == nil {
			t.Fatal("nil handler accepted")
		}
		tr.Reconnect()
		_, err = tr.Consume(context.Background(), "missing", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		mustIs(t, err, transport.ErrNotFound)
	})
}

func TestRecoveryWithoutQueueFailsConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		defer b.Close()
		tr := newTransport(t, memory.Options{Broker: b})
		declare(t, tr, "q")
		c := consume(t, tr, "q", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {})
		b.Disconnect()
		must(t, b.DeleteQueue("q"))
		b.Reconnect()
		<-c.Done()
		mustIs(t, c.Err(), transport.ErrNotFound)
	})
}

func TestWatchStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		var log eventLog
		stop := tr.Watch(log.record)
		tr.Disconnect()
		synctest.Wait()
		stop()
		stop()
		tr.Reconnect()
		if got := log.String(); got != "disconnected" {
			t.Fatalf("events %s", got)
		}
		// The event's error says what happened.
		log.mu.Lock()
		ev := log.events[0]
		log.mu.Unlock()
		if !errors.Is(ev.Err, transport.ErrConnectionLost) || ev.Time.IsZero() {
			t.Fatalf("event %+v", ev)
		}
	})
}

// A settled delivery's acknowledger and tag cannot settle the delivery that
// reuses its place: the broker recycles its delivery records, and only the
// tag tells a stale Ack from the current one.
func TestStaleDeliveryCannotSettleItsSuccessor(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	declare(t, tr, "q")
	c := newCollector()
	_, err := tr.Consume(ctxT(t), "q", transport.ConsumeOptions{Prefetch: 1}, c.handle)
	must(t, err)
	send(t, tr, "q", "first", "second")
	first := c.next(t)
	ack, tag := first.Acknowledger, first.Tag
	must(t, first.Ack())
	second := c.next(t)
	if err := ack.Ack(tag); !errors.Is(err, transport.ErrSettled) {
		t.Fatalf("Ack of a stale copy of the first delivery = %v, want ErrSettled", err)
	}
	if err := second.Ack(); err != nil {
		t.Fatalf("the second delivery was settled by the stale Ack: its own Ack = %v", err)
	}
}
