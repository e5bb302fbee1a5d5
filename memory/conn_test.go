package memory_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// eventLog records a transport's events.
type eventLog struct {
	mu     sync.Mutex
	events []transport.Event
}

func (l *eventLog) record(ev transport.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

// String lists the events as "kind(queue)" in order, after letting the
// watcher run (in a bubble).
func (l *eventLog) String() string {
	synctest.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, ev := range l.events {
		s := ev.Kind.String()
		if ev.Queue != "" {
			s += "(" + ev.Queue + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func TestConnectionLossAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		defer b.Close()
		tr := newTransport(t, memory.Options{Broker: b, Name: "svc"})
		var log eventLog
		defer tr.Watch(log.record)()

		declare(t, tr, "q")
		must(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "reply-1", Temporary: true}, Topics: []string{"r.#"}}))
		send(t, tr, "reply-1", "kept")
		got := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 5}, got.handle)
		send(t, tr, "q", "1", "2", "3")
		ds := got.drain()
		must(t, ds[1].Ack())

		b.Disconnect()
		mustIs(t, ds[0].Ack(), transport.ErrConnectionLost)
		mustIs(t, ds[2].Nack(true), transport.ErrConnectionLost)
		mustIs(t, tr.Health(context.Background()), transport.ErrConnectionLost)
		if got := msgIDs(b.Messages("q")); got != "1 3 " {
			t.Fatalf("queue holds %q during the outage", got)
		}
		if got := msgIDs(b.Messages("reply-1")); got != "kept " {
			t.Fatalf("temporary queue holds %q during a short outage, want its message (x-expires)", got)
		}

		// Dispatch waits for the connection, bounded by its context.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "x"}})
		cancel()
		mustIs(t, err, context.DeadlineExceeded)
		dispatched := make(chan error, 1)
		go func() {
			dispatched <- tr.Dispatch(context.Background(), transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "4"}})
		}()
		synctest.Wait()
		select {
		case err := <-dispatched:
			t.Fatalf("dispatch returned %v during the outage", err)
		default:
		}

		b.Reconnect()
		must(t, <-dispatched)
		must(t, tr.Health(context.Background()))
		if got := ids(got.drain()...); got != "1* 3* 4 " {
			t.Fatalf("after recovery delivered %q", got)
		}
		if got := b.Bindings("reply-1"); fmt.Sprint(got) != "[{PikaBusDirect reply-1} {PikaBusTopic r.#}]" {
			t.Fatalf("temporary queue recovered with bindings %v", got)
		}
		if n := b.Depth("reply-1"); n != 1 {
			t.Fatalf("temporary queue holds %d messages after a short outage, want 1", n)
		}
		want := "consumer started(q), disconnected, consumer stopped(q), connected, consumer started(q)"
		if got := log.String(); got != want {
			t.Fatalf("events\n got %s\nwant %s", got, want)
		}
	})
}

// A temporary queue whose connection stays lost for memory.TemporaryExpiry
// is deleted with its messages, as RabbitMQ deletes the RabbitMQ
// transport's (x-expires), and declared again, empty and with its
// bindings, when the connection returns.
func TestTemporaryQueueExpiresDuringALongOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		defer b.Close()
		tr := newTransport(t, memory.Options{Broker: b})
		must(t, tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "reply-1", Temporary: true}, Topics: []string{"r.#"}}))
		send(t, tr, "reply-1", "m")
		b.Disconnect()
		time.Sleep(memory.TemporaryExpiry - time.Second)
		if !slices.Contains(b.Queues(), "reply-1") {
			t.Fatal("temporary queue deleted before TemporaryExpiry")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if slices.Contains(b.Queues(), "reply-1") {
			t.Fatal("temporary queue outlived TemporaryExpiry without its connection")
		}
		b.Reconnect()
		if got := b.Bindings("reply-1"); fmt.Sprint(got) != "[{PikaBusDirect reply-1} {PikaBusTopic r.#}]" {
			t.Fatalf("temporary queue declared again with bindings %v", got)
		}
		if n := b.Depth("reply-1"); n != 0 {
			t.Fatalf("temporary queue declared again with %d messages", n)
		}
		// A reconnection stops the expiry: the queue outlives the next
		// minute, and Close deletes it.
		b.Disconnect()
		time.Sleep(time.Second)
		b.Reconnect()
		time.Sleep(2 * memory.TemporaryExpiry)
		if !slices.Contains(b.Queues(), "reply-1") {
			t.Fatal("temporary queue expired after its connection came back")
		}
		must(t, tr.Close())
		if slices.Contains(b.Queues(), "reply-1") {
			t.Fatal("temporary queue outlived its transport")
		}
	})
}

func TestOtherConnectionsKeepWorking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		defer b.Close()
		a := newTransport(t, memory.Options{Broker: b, Name: "a"})
		c := newTransport(t, memory.Options{Broker: b, Name: "c"})
		declare(t, a, "q")
		ga, gc := newCollector(), newCollector()
		consume(t, a, "q", transport.ConsumeOptions{Prefetch: 10}, ga.handle)
		send(t, a, "q", "1", "2")
		if got := ids(ga.drain()...); got != "1 2 " {
			t.Fatalf("a got %q", got)
		}
		consume(t, c, "q", transport.ConsumeOptions{Prefetch: 10}, gc.handle)
		a.Disconnect()
		// a's deliveries go to c's consumer at once.
		if got := ids(gc.drain()...); got != "1* 2* " {
			t.Fatalf("c got %q", got)
		}
		send(t, c, "q", "3")
		mustIs(t, a.Health(context.Background()), transport.ErrConnectionLost)
		must(t, c.Health(context.Background()))
		b.Reconnect() // does not end a's own disconnection
		mustIs(t, a.Health(context.Background()), transport.ErrConnectionLost)
		a.Reconnect()
		must(t, a.Health(context.Background()))
		send(t, a, "q", "4", "5")
		if got, other := ids(gc.drain()...), ids(ga.drain()...); got+other != "3 4 5 " && got+other != "3 5 4 " {
			t.Fatalf("c got %q, a got %q", got, other)
		}
	})
}

func TestDropConnectionsRedelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		b := tr.Broker()
		var log eventLog
		defer tr.Watch(log.record)()
		declare(t, tr, "q")
		var mu sync.Mutex
		seen := map[string]int{}
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 3, Concurrency: 3}, func(ctx context.Context, d *transport.Delivery) {
			mu.Lock()
			seen[d.ID]++
			n := seen[d.ID]
			mu.Unlock()
			if n == 1 {
				return // leave it unsettled: the connection drops first
			}
			if err := d.Ack(); err != nil {
				t.Errorf("ack %s: %v", d.ID, err)
			}
		})
		send(t, tr, "q", "1", "2", "3")
		synctest.Wait()
		b.DropConnections()
		synctest.Wait()
		if n := b.Depth("q"); n != 0 {
			t.Fatalf("depth %d after redelivery", n)
		}
		if fmt.Sprint(seen) != "map[1:2 2:2 3:2]" {
			t.Fatalf("handled %v", seen)
		}
		if got := log.String(); got != "consumer started(q), disconnected, consumer stopped(q), connected, consumer started(q)" {
			t.Fatalf("events %s", got)
		}
		var requeued int
		for _, r := range b.Journal() {
			if r.Op == memory.Requeued {
				requeued++
			}
		}
		if requeued != 3 {
			t.Fatalf("%d requeued records", requeued)
		}
	})
}

func TestTemporaryQueueBelongsToItsTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		defer b.Close()
		a := newTransport(t, memory.Options{Broker: b})
		c := memory.New(memory.Options{Broker: b})
		defer c.Close()
		tmp := transport.Topology{Queue: transport.Queue{Name: "tmp", Temporary: true}}
		must(t, a.Declare(ctxT(t), tmp))
		must(t, a.Declare(ctxT(t), tmp)) // idempotent
		must(t, c.Declare(ctxT(t), tmp)) // as on RabbitMQ: it is not exclusive
		mustIs(t, a.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "tmp"}}), transport.ErrTopologyConflict)
		// Another transport binds it, as a PikaBus 2 service does before
		// replying, sends to it, reads it, and unbinds it.
		must(t, c.Bind(ctxT(t), "tmp", "x"))
		send(t, c, "tmp", "r")
		must(t, c.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "x", Mandatory: true, Message: transport.Message{ID: "via-x"}}))
		if st, err := b.Stats("tmp"); err != nil || !st.Temporary || st.Type != transport.Classic || st.Ready != 2 {
			t.Fatalf("stats %+v %v", st, err)
		}
		if qi, err := c.Inspect(ctxT(t), "tmp"); err != nil || qi.Messages != 2 {
			t.Fatalf("Inspect by another transport: %+v, %v", qi, err)
		}
		d, ok, err := c.Get(ctxT(t), "tmp")
		if err != nil || !ok || d.Message.ID != "r" {
			t.Fatalf("Get by another transport: %v %v %v", d, ok, err)
		}
		must(t, d.Nack(true))
		must(t, c.Unbind(ctxT(t), "tmp", "x"))
		// Closing the other transport leaves it: it belongs to a.
		must(t, c.Close())
		if !slices.Contains(b.Queues(), "tmp") {
			t.Fatal("temporary queue deleted with a transport that did not declare it first")
		}
		must(t, a.Close())
		if slices.Contains(b.Queues(), "tmp") {
			t.Fatal("temporary queue outlived its transport")
		}
		c2 := memory.New(memory.Options{Broker: b})
		defer c2.Close()
		must(t, c2.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: "tmp"}})) // the name is free again
	})
}

func TestDeleteQueueStopsConsumers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		var log eventLog
		defer tr.Watch(log.record)()
		declare(t, tr, "q", "a.b")
		got := newCollector()
		c := consume(t, tr, "q", transport.ConsumeOptions{}, got.handle)
		send(t, tr, "q", "1", "2")
		d := got.next(t)
		must(t, tr.DeleteQueue(ctxT(t), "q"))
		must(t, tr.DeleteQueue(ctxT(t), "q")) // harmless
		<-c.Done()
		mustIs(t, c.Err(), transport.ErrNotFound)
		mustIs(t, d.Ack(), transport.ErrNotFound)
		if got := log.String(); got != "consumer started(q), consumer stopped(q)" {
			t.Fatalf("events %s", got)
		}
		_, err := tr.Inspect(ctxT(t), "q")
		mustIs(t, err, transport.ErrNotFound)
		mustIs(t, tr.Bind(ctxT(t), "q", "x"), transport.ErrNotFound)
		must(t, tr.Unbind(ctxT(t), "q", "x"))
		// A queue of the same name starts empty and unbound.
		declare(t, tr, "q")
		if got := fmt.Sprint(tr.Broker().Bindings("q")); got != "[{PikaBusDirect q}]" {
			t.Fatalf("bindings %s", got)
		}
	})
}

func TestCloseTransportRequeuesGets(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	tr := memory.New(memory.Options{Broker: b})
	declare(t, tr, "q")
	send(t, tr, "q", "1")
	d, ok, err := tr.Get(ctxT(t), "q")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, ok, _ := tr.Get(ctxT(t), "q"); ok {
		t.Fatal("second get found a message")
	}
	must(t, tr.Close())
	mustIs(t, d.Ack(), transport.ErrClosed)
	if ms := b.Messages("q"); len(ms) != 1 || ms[0].ID != "1" {
		t.Fatalf("queue holds %v", ms)
	}
	other := newTransport(t, memory.Options{Broker: b})
	d, ok, err = other.Get(ctxT(t), "q")
	if err != nil || !ok || !d.Redelivered {
		t.Fatalf("get after close: %v %v %+v", ok, err, d)
	}
	must(t, d.Ack())
}

func TestBrokerCloseClosesTransports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.NewBroker()
		tr := memory.New(memory.Options{Broker: b})
		declare(t, tr, "q")
		got := newCollector()
		c := consume(t, tr, "q", transport.ConsumeOptions{}, got.handle)
		must(t, b.Close())
		<-c.Done()
		mustIs(t, tr.Dispatch(context.Background(), transport.Outgoing{RoutingKey: "q"}), transport.ErrClosed)
		mustIs(t, b.DeclareQueue(transport.Queue{Name: "x"}), transport.ErrClosed)
		mustIs(t, b.WaitIdle(context.Background()), transport.ErrClosed)
		late := memory.New(memory.Options{Broker: b})
		mustIs(t, late.Declare(context.Background(), transport.Topology{Queue: transport.Queue{Name: "q"}}), transport.ErrClosed)
		must(t, late.Close())
		must(t, tr.Close())
		must(t, b.Close())
	})
}

func TestBlockedBrokerHoldsDispatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, memory.Options{})
		b := tr.Broker()
		var log eventLog
		defer tr.Watch(log.record)()
		declare(t, tr, "q")
		got := newCollector()
		consume(t, tr, "q", transport.ConsumeOptions{Prefetch: 10}, got.handle)
		send(t, tr, "q", "1")
		b.Block("disk alarm")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "x"}})
		cancel()
		mustIs(t, err, context.DeadlineExceeded)
		if !strings.Contains(err.Error(), "disk alarm") {
			t.Fatalf("error %q does not say why", err)
		}
		// Consumers and Broker.Publish go on.
		must(t, b.Publish("", "q", transport.Message{ID: "2"}, memory.PublishOptions{}))
		if got := ids(got.drain()...); got != "1 2 " {
			t.Fatalf("delivered %q", got)
		}
		dispatched := make(chan error, 1)
		go func() {
			dispatched <- tr.Dispatch(context.Background(), transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: "3"}})
		}()
		synctest.Wait()
		b.Unblock()
		must(t, <-dispatched)
		if got := ids(got.drain()...); got != "3 " {
			t.Fatalf("delivered %q after unblock", got)
		}
		if got := log.String(); got != "consumer started(q), blocked, unblocked" {
			t.Fatalf("events %s", got)
		}
	})
}
