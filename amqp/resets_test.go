package amqp_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/internal/loadtest"
	"github.com/busline/busline/transport"
)

// TestSendRidesOutResets sends under load through a proxy that resets every
// connection (TCP RST) 20 times, then black-holes them for longer than the
// heartbeat timeout: every way a connection dies mid-publish (a write or a
// read failing, the channels closing with it, a heartbeat timeout) must be
// waited out and the message published again within the caller's context.
// Not one Dispatch may fail, and every confirmed message must be consumed.
func TestSendRidesOutResets(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	broker, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newFreezingProxy(t, broker.Host)
	u := *broker
	u.Host = p.addr
	ctx := testCtx(t, 30*time.Second)
	tr, err := amqp.Dial(ctx, u.String(), amqp.Options{
		Heartbeat: time.Second, DialTimeout: time.Second,
		ReconnectDelay: 20 * time.Millisecond, MaxReconnectDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})

	l := loadtest.Start(t, tr, q, 8, 2*time.Millisecond)
	l.WaitProgress(200, 30*time.Second)
	for range 20 {
		p.reset()
		l.Mark()
		l.WaitProgress(100, 30*time.Second)
	}
	failedByResets, lost := l.Failed()
	t.Logf("after 20 resets: %d failed Dispatch calls (%d wrapping ErrConnectionLost)", failedByResets, lost)

	p.freeze(true)
	l.Mark()
	time.Sleep(4 * time.Second) // beyond the heartbeat timeout
	p.freeze(false)
	l.WaitProgress(200, 30*time.Second)
	r := l.Finish(60 * time.Second)
	t.Logf("after 20 resets and a black hole of 4s: %v", r)
	if r.Failed != 0 {
		t.Errorf("%d Dispatch calls failed with 60s of context left (%d during the resets)", r.Failed, failedByResets)
	}
	if r.Lost != 0 {
		t.Errorf("%d confirmed messages never consumed", r.Lost)
	}
}
