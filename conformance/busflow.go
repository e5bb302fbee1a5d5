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
		events := make(chan bus.Notice, 64)
		b := e.bus("server", bus.Options{HealthMonitor: &m, OnNotice: func(ev bus.Notice) {
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
	s.busLeaf(t, "Priority", "", func(e *busEnv) {
		// Two instances of one endpoint, of consumer priorities 5 and 0,
		// each with room for one message: the higher takes a message
		// whenever it has room. SetFlowControl changes the priority of a
		// running instance once its handler under way has finished.
		t := e.t
		w := newWorkers(e)
		a := w.instance("a", bus.Options{ConsumerPriority: 5, Prefetch: 1})
		w.instance("b", bus.Options{Prefetch: 1})
		client := e.bus("", bus.Options{})
		w.send(client, "c1", "a")
		w.send(client, "c2", "b") // a is full
		set := make(chan error, 1)
		go func() { set <- a.SetFlowControl(e.ctx(), bus.FlowControl{Prefetch: 1, Priority: -5}) }()
		if err, silent := quiet(e.env, set); !silent {
			t.Fatalf("SetFlowControl returned %v while a handler of the endpoint was running", err)
		}
		w.release("a")
		w.release("b")
		e.ok(wait(e.env, set, "SetFlowControl"), "SetFlowControl")
		if f := a.FlowControl(); f != (bus.FlowControl{Prefetch: 1, Priority: -5}) {
			t.Errorf("FlowControl() = %+v after SetFlowControl", f)
		}
		// b acks c2 after its handler returns: wait for the ack to reach
		// the broker, or c3 finds b full and goes to a.
		if j, silent := quiet(e.env, w.got); !silent {
			t.Fatalf("instance %s took %s with nothing sent", j.who, j.id)
		}
		w.send(client, "c3", "b") // b is now the higher
		w.send(client, "c4", "a") // b is full
		w.release("a")
		w.release("b")
	})
	s.busLeaf(t, "MaxUnackedBytes", "", func(e *busEnv) {
		// A bound of one byte lets one message be handled at a time,
		// whatever the concurrency; lifting it at run time lets the
		// messages waiting for room be handled at once.
		t := e.t
		w := newWorkers(e)
		b := w.instance("a", bus.Options{Concurrency: 3, MaxUnackedBytes: 1})
		client := e.bus("", bus.Options{})
		for _, id := range []string{"c1", "c2", "c3"} {
			e.ok(client.Send(e.ctx(), b.Queue(), busCommand{ID: id}), "Send %s", id)
		}
		w.next("a")
		if j, silent := quiet(e.env, w.got); !silent {
			t.Fatalf("%s handled while the bytes of another filled MaxUnackedBytes", j.id)
		}
		e.ok(b.SetFlowControl(e.ctx(), bus.FlowControl{}), "SetFlowControl without a byte bound")
		w.next("a")
		w.next("a")
		for range 3 {
			w.release("a")
		}
	})
}

// workers are instances of one endpoint whose handlers record which
// instance took which busCommand and then wait to be released.
type workers struct {
	e     *busEnv
	queue string
	got   chan workerJob
	gates map[string]chan struct{}
}

type workerJob struct{ who, id string }

func newWorkers(e *busEnv) *workers {
	return &workers{e: e, got: make(chan workerJob, 64), gates: map[string]chan struct{}{}}
}

// instance starts an instance named who of the workers' endpoint.
func (w *workers) instance(who string, opts bus.Options) *bus.Bus {
	gate := make(chan struct{}, 64)
	w.gates[who] = gate
	b := w.e.bus("worker", opts)
	w.queue = b.Queue()
	busHandle(w.e, b, func(ctx context.Context, m busCommand) error {
		w.got <- workerJob{who, m.ID}
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nil
	})
	w.e.start(b)
	return b
}

// send sends busCommand id and waits for instance who to take it.
func (w *workers) send(client *bus.Bus, id, who string) {
	w.e.t.Helper()
	w.e.ok(client.Send(w.e.ctx(), w.queue, busCommand{ID: id}), "Send %s", id)
	if j := wait(w.e.env, w.got, "a handler to take %s", id); j != (workerJob{who, id}) {
		w.e.t.Fatalf("instance %s took %s, want %s to take %s", j.who, j.id, who, id)
	}
}

// next waits for instance who to take a message.
func (w *workers) next(who string) {
	w.e.t.Helper()
	if j := wait(w.e.env, w.got, "instance %s to take a message", who); j.who != who {
		w.e.t.Fatalf("instance %s took %s, want %s to", j.who, j.id, who)
	}
}

// release lets one handler of instance who return.
func (w *workers) release(who string) { w.gates[who] <- struct{}{} }
