package middleware_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// endpoint consumes queue on tr through pipeline h the way package bus
// does: ack when h returns nil, nack with requeue when it returns an error.
func endpoint(t *testing.T, tr transport.Transport, queue string, h middleware.Handler) {
	t.Helper()
	ctx := t.Context()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: queue}}); err != nil {
		t.Fatal(err)
	}
	c, err := tr.Consume(ctx, queue, transport.ConsumeOptions{Concurrency: 2}, func(ctx context.Context, d *transport.Delivery) {
		m := &middleware.Message{Message: d.Message, Queue: d.Queue, Redelivered: d.Redelivered}
		if err := h(ctx, m); err != nil {
			t.Logf("pipeline returned %v; requeueing", err)
			_ = d.Nack(true)
			return
		}
		if err := d.Ack(); err != nil {
			t.Errorf("ack: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
}

func declareErrorQueue(t *testing.T, tr transport.Transport) {
	t.Helper()
	if err := tr.Declare(t.Context(), transport.Topology{Queue: transport.Queue{Name: "error", Shared: true}}); err != nil {
		t.Fatal(err)
	}
}

// waitFor sleeps in fake time until cond holds, at most max.
func waitFor(t *testing.T, max time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", max)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// On the memory transport: five delayed retries on PikaBus's schedule, the
// error queue with the exact headers, then Replay back to the source queue
// with a fresh retry count, where the handler now succeeds.
func TestMemoryRetriesErrorQueueAndReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.New(memory.Options{})
		defer tr.Close()
		declareErrorQueue(t, tr)
		pipeline := standard(t, tr, middleware.StandardOptions{})

		var mu sync.Mutex
		var attempts []time.Time
		var seen []transport.Headers
		healthy := false
		endpoint(t, tr, "orders", pipeline(func(ctx context.Context, m *middleware.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			seen = append(seen, m.Headers)
			if !healthy {
				return errors.New("database down")
			}
			return nil
		}))
		start := time.Now()
		if err := tr.Dispatch(t.Context(), transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: order("m1")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, func() bool { return tr.Broker().Depth("error") == 1 })
		mu.Lock()
		want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 12 * time.Second, 20 * time.Second, 30 * time.Second}
		if len(attempts) != len(want) {
			t.Fatalf("%d attempts, want %d", len(attempts), len(want))
		}
		for i, at := range attempts {
			if at.Sub(start) != want[i] {
				t.Errorf("attempt %d at +%v, want +%v", i+1, at.Sub(start), want[i])
			}
			if got, _, _ := middleware.HeaderInt(seen[i][names.ErrorRetries]); got != int64(i) {
				t.Errorf("attempt %d saw ErrorRetries %v", i+1, seen[i][names.ErrorRetries])
			}
		}
		healthy = true
		mu.Unlock()

		failed := tr.Broker().Messages("error")[0]
		wantHeaders := mustNormalize(t, order("m1").Headers)
		wantHeaders[names.ErrorRetries] = int32(6)
		wantHeaders[names.SourceQueue] = "orders"
		wantHeaders[names.DeferredTime] = middleware.FormatTime(start.Add(30 * time.Second))
		wantHeaders[names.ErrorDetails] = "database down (gave up after 5 delayed retries)"
		if !reflect.DeepEqual(failed.Headers, wantHeaders) {
			t.Fatalf("error queue headers:\n got %v\nwant %v", failed.Headers, wantHeaders)
		}

		res, err := middleware.Replay(t.Context(), tr, middleware.ReplayOptions{})
		if err != nil || len(res.Replayed) != 1 || res.Replayed[0] != (middleware.ReplayedMessage{ID: "m1", SourceQueue: "orders"}) {
			t.Fatalf("Replay: %+v, %v", res, err)
		}
		waitFor(t, time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return len(attempts) == 7 })
		if err := tr.Broker().WaitIdle(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !reflect.DeepEqual(seen[6], mustNormalize(t, order("m1").Headers)) {
			t.Fatalf("replayed message has headers %v, want the original's", seen[6])
		}
		if tr.Broker().Depth("error") != 0 || tr.Broker().Depth("orders") != 0 {
			t.Fatal("messages left behind")
		}
	})
}

// A PikaBus service defers by sending at once with a DeferredTime header;
// the Deferral stage holds it in the broker, not in process, until then.
func TestMemoryDeferral(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := memory.New(memory.Options{})
		defer tr.Close()
		declareErrorQueue(t, tr)
		handled := make(chan time.Time, 1)
		endpoint(t, tr, "orders", standard(t, tr, middleware.StandardOptions{})(func(ctx context.Context, m *middleware.Message) error {
			handled <- time.Now()
			return nil
		}))
		due := time.Now().Add(time.Hour).Truncate(time.Second)
		m := order("m1")
		m.Headers[names.DeferredTime] = due.UTC().Format("01/02/2006 15:04:05") // PikaBus 1.x
		if err := tr.Dispatch(t.Context(), transport.Outgoing{RoutingKey: "orders", Mandatory: true, Message: m}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(tr.Broker().Deferred()) != 1 {
			t.Fatalf("deferred messages in the broker: %v", tr.Broker().Deferred())
		}
		if at := <-handled; !at.Equal(due) {
			t.Fatalf("handled at %v, want %v", at, due)
		}
	})
}

// asyncNacks models a RabbitMQ connection on the memory transport: a nack
// of a message pulled with Get is sent without waiting, and takes effect
// when the next command on the same channel (the next Get, or an ack)
// reaches the broker; Inspect goes through another channel and does not
// wait for it.
type asyncNacks struct {
	*memory.Transport
	mu      sync.Mutex
	pending []func() error
}

func (a *asyncNacks) flush() {
	a.mu.Lock()
	p := a.pending
	a.pending = nil
	a.mu.Unlock()
	for _, f := range p {
		_ = f()
	}
}

func (a *asyncNacks) Get(ctx context.Context, queue string) (*transport.Delivery, bool, error) {
	a.flush()
	d, ok, err := a.Transport.Get(ctx, queue)
	if ok {
		d.Acknowledger = lazyAcker{a, d.Acknowledger}
	}
	return d, ok, err
}

type lazyAcker struct {
	a     *asyncNacks
	inner transport.Acknowledger
}

func (l lazyAcker) Ack(tag uint64) error {
	l.a.flush()
	return l.inner.Ack(tag)
}

func (l lazyAcker) Nack(tag uint64, requeue bool) error {
	l.a.mu.Lock()
	defer l.a.mu.Unlock()
	l.a.pending = append(l.a.pending, func() error { return l.inner.Nack(tag, requeue) })
	return nil
}

// The race the examples met on RabbitMQ: a program looks at the error queue
// (Get, then Nack to give the messages back) and replays one of them at
// once. The nacks have not reached the broker when Replay starts, so a
// count of the queue taken then says it is empty; Replay must pull anyway,
// and find the message.
func TestReplayAfterAsynchronousNack(t *testing.T) {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	for _, q := range []string{"orders", "error"} {
		if err := tr.Declare(t.Context(), transport.Topology{Queue: transport.Queue{Name: q}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b"} {
		if err := tr.Dispatch(t.Context(), transport.Outgoing{RoutingKey: "error", Message: failed(id, "orders")}); err != nil {
			t.Fatal(err)
		}
	}
	conn := &asyncNacks{Transport: tr}
	var looked []*transport.Delivery
	for {
		d, ok, err := conn.Get(t.Context(), "error")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		looked = append(looked, d)
	}
	for _, d := range looked {
		if err := d.Nack(true); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := conn.Inspect(t.Context(), "error"); err != nil || info.Messages != 0 {
		t.Fatalf("the model is broken: Inspect says %+v, %v; want 0 ready while the nacks are in flight", info, err)
	}

	res, err := middleware.Replay(t.Context(), conn, middleware.ReplayOptions{MessageIDs: []string{"a"}})
	if err != nil || !reflect.DeepEqual(res.Replayed, []middleware.ReplayedMessage{{ID: "a", SourceQueue: "orders"}}) {
		t.Fatalf("Replay: %+v, %v; want a replayed", res, err)
	}
	conn.flush()
	if got := ids(tr.Broker().Messages("error")); !reflect.DeepEqual(got, []string{"b"}) {
		t.Errorf("error queue: %v", got)
	}
	if got := ids(tr.Broker().Messages("orders")); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("orders: %v", got)
	}
}
