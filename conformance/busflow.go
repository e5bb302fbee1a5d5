package conformance

import (
	"context"
	"fmt"
	"testing"

	"github.com/busline/busline/bus"
)

// busFlow: what BlazingMQ's users rely on: posts acknowledged
// asynchronously, flow control per consumer, host health.
func (s *suite) busFlow(t *testing.T) {
	s.busLeaf(t, "AsyncPost", "", func(e *busEnv) {
		t := e.t
		server, r := e.endpoint("server", bus.Options{})
		client := e.bus("", bus.Options{PostWindow: 8})
		const n = 40
		acked := make(chan *bus.Receipt, n)
		var receipts []*bus.Receipt
		for i := range n {
			rc, err := client.SendAsync(e.ctx(), server.Queue(), busCommand{ID: fmt.Sprint(i), N: i},
				bus.WithOnAck(func(rc *bus.Receipt) { acked <- rc }))
			e.ok(err, "SendAsync %d", i)
			receipts = append(receipts, rc)
		}
		for i, rc := range receipts {
			wait(e.env, rc.Done(), "the verdict of post %d", i)
			if err := rc.Err(); err != nil || rc.MessageID() == "" {
				t.Errorf("post %d: Err() = %v, MessageID() = %q; want nil and an id", i, err, rc.MessageID())
			}
		}
		seen := map[*bus.Receipt]bool{}
		for i := range n {
			seen[wait(e.env, acked, "callback %d of %d", i+1, n)] = true
		}
		for i, rc := range receipts {
			if !seen[rc] {
				t.Errorf("no callback for post %d", i)
			}
		}
		for i := range n {
			if d := r.next(); d.msg != (busCommand{ID: fmt.Sprint(i), N: i}) {
				t.Fatalf("handled %+v as message %d: one caller's posts arrive in order", d.msg, i)
			}
		}
	})
	s.busLeaf(t, "AsyncUnroutable", "", func(e *busEnv) {
		client := e.bus("", bus.Options{})
		rc, err := client.SendAsync(e.ctx(), e.name("missing"), busCommand{})
		e.ok(err, "SendAsync to a queue that does not exist")
		e.is(rc.Wait(e.ctx()), bus.ErrUnroutable, "the verdict of SendAsync to a queue that does not exist")
		rc, err = client.PublishAsync(e.ctx(), "nobody.listens", busEvent{}, bus.WithRequireSubscriber(true))
		e.ok(err, "PublishAsync WithRequireSubscriber(true)")
		e.is(rc.Wait(e.ctx()), bus.ErrUnroutable, "the verdict of PublishAsync WithRequireSubscriber(true) without subscribers")
		rc, err = client.PublishAsync(e.ctx(), "nobody.listens", busEvent{})
		e.ok(err, "PublishAsync")
		e.ok(rc.Wait(e.ctx()), "the verdict of PublishAsync without subscribers (dropped, confirmed)")
		if err := client.Send(e.ctx(), e.name("q"), busCommand{}, bus.WithOnAck(func(*bus.Receipt) {})); err == nil {
			e.t.Error("Send WithOnAck = nil, want an error: the option is for SendAsync and PublishAsync")
		}
	})
	s.busLeaf(t, "AsyncCallbacks", "", func(e *busEnv) {
		// A callback may call the Bus, Close included, without deadlock.
		t := e.t
		server, r := e.endpoint("server", bus.Options{})
		client := e.bus("", bus.Options{PostWindow: 1})
		const calls = 5
		returned := make(chan error, calls)
		_, err := client.SendAsync(e.ctx(), server.Queue(), busCommand{ID: "first"}, bus.WithOnAck(func(rc *bus.Receipt) {
			ctx, cancel := context.WithTimeout(context.Background(), e.s.h.Timeout)
			defer cancel()
			// The window of one is free again: the callback runs after
			// the verdict released the place.
			inner, err := client.SendAsync(ctx, server.Queue(), busCommand{ID: "from callback"}, bus.WithOnAck(func(rc *bus.Receipt) {
				returned <- rc.Err()
			}))
			returned <- err
			if err == nil {
				returned <- inner.Wait(ctx)
			}
			returned <- client.Send(ctx, server.Queue(), busCommand{ID: "sent from callback"})
			returned <- client.Close()
		}))
		e.ok(err, "SendAsync")
		for i := range calls {
			if err := wait(e.env, returned, "call %d of the callback to return", i+1); err != nil {
				t.Errorf("call %d from a callback: %v", i+1, err)
			}
		}
		got := map[string]bool{}
		for range 3 {
			got[r.next().msg.(busCommand).ID] = true
		}
		if !got["first"] || !got["from callback"] || !got["sent from callback"] {
			t.Errorf("handled %v, want the three messages", got)
		}
		_, err = client.SendAsync(e.ctx(), server.Queue(), busCommand{})
		e.is(err, bus.ErrClosed, "SendAsync after Close")
	})
	s.busLeaf(t, "HostHealth", "", func(e *busEnv) {
		// An unhealthy host suspends consumption: the handler under way
		// finishes, what is sent meanwhile waits in the queue, and
		// consumption resumes once the host is healthy.
		t := e.t
		var m bus.BasicHealthMonitor
		events := make(chan bus.Event, 64)
		b := e.bus("server", bus.Options{HealthMonitor: &m, OnEvent: func(ev bus.Event) {
			if ev.Kind == bus.Suspended || ev.Kind == bus.Unsuspended {
				events <- ev
			}
		}})
		r := e.receiver(b)
		e.start(b)
		client := e.bus("", bus.Options{})
		e.ok(client.Send(e.ctx(), b.Queue(), busCommand{ID: "before"}), "Send")
		r.next()
		m.SetUnhealthy()
		if ev := wait(e.env, events, "the Suspended event"); ev.Kind != bus.Suspended || ev.Err != nil {
			t.Fatalf("event %v, want Suspended without error", ev)
		}
		e.ok(client.Send(e.ctx(), b.Queue(), busCommand{ID: "while unhealthy"}), "Send while the host is unhealthy")
		e.ok(b.Send(e.ctx(), b.Queue(), busCommand{ID: "sent by the suspended endpoint"}), "Send by a suspended endpoint")
		if d, silent := quiet(e.env, r.ch); !silent {
			t.Fatalf("handled %+v while suspended", d.msg)
		}
		m.SetHealthy()
		if ev := wait(e.env, events, "the Unsuspended event"); ev.Kind != bus.Unsuspended || ev.Err != nil {
			t.Fatalf("event %v, want Unsuspended without error", ev)
		}
		got := map[string]bool{}
		for range 2 {
			got[r.next().msg.(busCommand).ID] = true
		}
		if !got["while unhealthy"] || !got["sent by the suspended endpoint"] {
			t.Errorf("handled %v after the host recovered", got)
		}
	})
}
