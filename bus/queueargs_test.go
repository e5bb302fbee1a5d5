package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// TestQueueOptionsCheckedAtNew: options the queue type lacks, bad values
// and options on a send-only Bus fail New, before any broker is touched.
func TestQueueOptionsCheckedAtNew(t *testing.T) {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	for _, c := range []struct {
		queue  string
		opts   bus.Options
		target error
	}{
		{"q", bus.Options{QueueOptions: transport.QueueOptions{MaxPriority: 3}}, bus.ErrNotSupported},
		{"q", bus.Options{QueueType: transport.Classic, QueueOptions: transport.QueueOptions{DeliveryLimit: 3}}, bus.ErrNotSupported},
		{"q", bus.Options{QueueOptions: transport.QueueOptions{MaxLength: 3, Overflow: transport.RejectPublishDLX}}, bus.ErrNotSupported},
		{"q", bus.Options{QueueOptions: transport.QueueOptions{MessageTTL: time.Microsecond}}, bus.ErrInvalidMessage},
		{"q", bus.Options{QueueOptions: transport.QueueOptions{MaxLength: -1}}, bus.ErrInvalidMessage},
		{"q", bus.Options{QueueOptions: transport.QueueOptions{Overflow: "drop-tail"}}, bus.ErrInvalidMessage},
		{"q", bus.Options{QueueOptions: transport.QueueOptions{DeadLetterQueue: "amq.nope"}}, bus.ErrInvalidName},
		{"", bus.Options{QueueOptions: transport.QueueOptions{MaxLength: 3}}, bus.ErrSendOnly},
	} {
		_, err := bus.New(tr, c.queue, c.opts)
		if !errors.Is(err, c.target) {
			t.Errorf("bus.New(%q, %+v) = %v, want %v", c.queue, c.opts.QueueOptions, err, c.target)
		}
	}
}

// TestQueueOptionsDeclared: Start declares the options, the dead-letter
// queue with the QueuePrefix, and the error queue as the dead-letter queue
// of a delivery limit; another Bus of the same queue with other options
// fails Start with ErrTopologyConflict.
func TestQueueOptionsDeclared(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		a := e.bus("a", bus.Options{QueuePrefix: "p.", QueueOptions: transport.QueueOptions{DeliveryLimit: 4, MaxLength: 10}})
		e.start(a)
		b := e.bus("b", bus.Options{QueuePrefix: "p.", QueueOptions: transport.QueueOptions{MessageTTL: time.Second, DeadLetterQueue: "b-expired"}})
		e.start(b)
		must(t, e.broker.DeclareQueue(transport.Queue{Name: "p.a", Arguments: transport.Headers{
			"x-delivery-limit": int32(4), "x-max-length": int32(10), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "p.error"}}))
		must(t, e.broker.DeclareQueue(transport.Queue{Name: "p.b", Arguments: transport.Headers{
			"x-message-ttl": int32(1000), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "p.b-expired"}}))
		other := e.bus("a", bus.Options{QueuePrefix: "p.", QueueOptions: transport.QueueOptions{DeliveryLimit: 5}})
		if err := other.Start(ctx); !errors.Is(err, bus.ErrTopologyConflict) {
			t.Errorf("Start with another DeliveryLimit = %v, want ErrTopologyConflict", err)
		}
	})
}

// TestSendToFullQueue: a message a full queue refuses is not reported as
// sent: Send waits for room within its context, then fails with an error
// that wraps ErrRejected and says the queue is full; it is sent as soon as
// the queue has room.
func TestSendToFullQueue(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		must(t, e.broker.DeclareQueue(transport.Queue{Name: "thumbs", Type: transport.Classic,
			Options: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublish}}))
		s := e.bus("", bus.Options{})
		must(t, s.Send(ctx, "thumbs", PlaceOrder{ID: "1"}))
		err := s.Send(after(t, 10*time.Second), "thumbs", PlaceOrder{ID: "2"})
		if !errors.Is(err, bus.ErrRejected) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `queue "thumbs" is full`) {
			t.Errorf("Send to a full queue = %v, want ErrRejected saying the queue is full", err)
		}
		if d := e.broker.Depth("thumbs"); d != 1 {
			t.Errorf("the full queue holds %d messages, want 1", d)
		}
		// Room appears while Send waits: it goes through.
		go func() {
			time.Sleep(3 * time.Second)
			_, _ = e.broker.PurgeQueue("thumbs")
		}()
		must(t, s.Send(after(t, 10*time.Second), "thumbs", PlaceOrder{ID: "3"}))
		if msgs := e.broker.Messages("thumbs"); len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), `"3"`) {
			t.Errorf("after the purge the queue holds %d messages, want message 3", len(msgs))
		}
	})
}

// TestFullErrorQueueHeldWithBackoff: a message that fails for good while the
// error queue is full (x-overflow reject-publish) is held with the failure
// path's backoff, never cycled faster, and reaches the error queue once it
// has room. Its retry copies wait for a full endpoint queue the same way.
func TestFullErrorQueueHeldWithBackoff(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		must(t, e.broker.DeclareQueue(transport.Queue{Name: "error", Type: transport.Classic,
			Options: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublish}}))
		must(t, e.broker.Inject("error", transport.Message{ID: "old failure"}))
		var evs eventLog
		b, n := failing(e, middleware.Permanent(errors.New("bad order")), &evs)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "1"}, bus.WithMessageID("m1")))
		const window = 10 * time.Minute
		time.Sleep(window)
		if got, limit := n.Load(), maxDeliveries(window); got > limit || got < 2 {
			t.Errorf("%d deliveries in %v while the error queue is full, want 2 to %d", got, window, limit)
		}
		ff := evs.of(bus.ForwardFailed)
		if len(ff) == 0 || !errors.Is(ff[0].Err, bus.ErrRejected) || !strings.Contains(ff[0].Err.Error(), `queue "error" is full`) {
			t.Fatalf("ForwardFailed events: %+v", ff)
		}
		_, _ = e.broker.PurgeQueue("error")
		time.Sleep(2 * time.Minute)
		idle()
		if msgs := e.broker.Messages("error"); len(msgs) != 1 || msgs[0].ID != "m1" || e.broker.Depth("orders") != 0 {
			t.Errorf("once the error queue had room: error queue %d messages, orders %d", len(msgs), e.broker.Depth("orders"))
		}
	})
}

// TestRetryIntoFullQueue: a delayed retry whose endpoint queue is full
// (reject-publish) waits and tries again 3 minutes later, as the RabbitMQ
// transport's delay levels (at-least-once dead-lettering) keep it; it is
// neither lost nor cycled.
func TestRetryIntoFullQueue(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var evs eventLog
		var n atomic.Int64
		b := e.bus("orders", bus.Options{OnNotice: evs.add, QueueType: transport.Classic,
			QueueOptions: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublish},
			Retry:        middleware.RetryOptions{MaxRetries: middleware.Retries(1)}})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			n.Add(1)
			return errors.New("db down")
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "1"}))
		idle()
		must(t, b.Pause(ctx))
		// The queue fills up while the retry copy waits for its time.
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "filler"}))
		time.Sleep(time.Minute)
		idle()
		if d := e.broker.Depth("orders"); d != 1 || len(e.broker.Deferred()) != 1 {
			t.Fatalf("orders holds %d, %d deferred; want the filler, and the retry copy waiting", d, len(e.broker.Deferred()))
		}
		must(t, b.Resume(ctx))
		time.Sleep(5 * time.Minute)
		idle()
		if n.Load() < 3 || e.broker.Depth("error") != 2 {
			t.Errorf("%d handlings, error queue %d; want the retry handled, both messages in the error queue", n.Load(), e.broker.Depth("error"))
		}
	})
}

// TestDeliveryLimitCrashLoop: a message whose handling never completes
// because its process keeps crashing (here: the connection drops while the
// handler runs) is delivered DeliveryLimit+1 times, then dead-lettered to
// the error queue with x-death saying why, instead of coming back for ever.
func TestDeliveryLimitCrashLoop(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var n atomic.Int64
		release := make(chan struct{})
		b := e.bus("payments", bus.Options{QueueOptions: transport.QueueOptions{DeliveryLimit: 2}})
		must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
			n.Add(1)
			<-release
			return nil
		}))
		e.start(b)
		must(t, b.Send(ctx, "payments", PlaceOrder{ID: "1"}))
		for i := range 3 {
			idle()
			if n.Load() != int64(i+1) {
				t.Fatalf("%d deliveries before crash %d, want %d", n.Load(), i+1, i+1)
			}
			e.broker.DropConnections() // the process crashed while handling it
			release <- struct{}{}
		}
		time.Sleep(time.Minute)
		idle()
		if n.Load() != 3 {
			t.Errorf("%d deliveries, want 3 (x-delivery-limit 2)", n.Load())
		}
		msgs := e.broker.Messages("error")
		if len(msgs) != 1 || msgs[0].Headers["x-first-death-reason"] != "delivery_limit" || msgs[0].Headers["x-first-death-queue"] != "payments" {
			t.Fatalf("error queue: %+v, want the message dead-lettered for its delivery limit", msgs)
		}
		// Replayed, it starts afresh.
		res, err := b.ReplayErrors(ctx, middleware.ReplayOptions{})
		if err != nil || len(res.Replayed) != 1 {
			t.Fatalf("ReplayErrors = %+v, %v", res, err)
		}
		idle()
		if n.Load() != 4 {
			t.Errorf("%d deliveries after the replay, want 4", n.Load())
		}
		close(release)
	})
}
