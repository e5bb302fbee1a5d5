package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// RunTransport checks that the transports h.New makes honour the contract
// of package transport. Each subtest opens a transport of its own, declares
// queues with unique names and cleans up after itself; subtests run in
// parallel, except the first group's goroutine check. A subtest that needs
// an optional capability the transport lacks skips, naming the interface.
// See the package documentation for the list of subtests.
func RunTransport(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	// Close comes first: its goroutine check runs while no other subtest
	// of the suite is running.
	s.groups(t, namedGroup{"Close", s.closeGroup},
		namedGroup{"Declare", s.declareGroup},
		namedGroup{"Bind", s.bindGroup},
		namedGroup{"Routing", s.routing},
		namedGroup{"Dispatch", s.dispatchGroup},
		namedGroup{"Messages", s.messagesGroup},
		namedGroup{"Names", s.namesGroup},
		namedGroup{"Consume", s.consumeGroup},
		namedGroup{"Settle", s.settleGroup},
		namedGroup{"Deferral", s.deferralGroup},
		namedGroup{"QueueArguments", s.queueArgumentsGroup},
		namedGroup{"Capabilities", s.capabilitiesGroup})
}

func (s *suite) declareGroup(t *testing.T) {
	s.leaf(t, "Idempotent", func(e *env) {
		q := e.name("q")
		topo := transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}, Topics: []string{"idem.*"}}
		e.declare(topo)
		e.send(q, "before")
		e.declare(topo)
		in := e.inbox(q, transport.ConsumeOptions{})
		in.expect("before")
		e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "idem.x", Mandatory: true, Message: msg("topic")})
		if ids := in.drainTo(); !slices.Equal(ids, []string{"topic"}) {
			e.t.Errorf("after declaring the same binding twice, the queue received %q, want one copy", ids)
		}
	})
	s.leaf(t, "KeepsBindings", func(e *env) {
		q := e.name("q")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}, Topics: []string{"keep.a"}})
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}, Topics: []string{"keep.b"}})
		in := e.inbox(q, transport.ConsumeOptions{})
		for _, key := range []string{"keep.a", "keep.b"} {
			e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: key, Mandatory: true, Message: msg(key)})
		}
		in.expect("keep.a", "keep.b")
	})
	s.leaf(t, "Conflict", func(e *env) {
		t := e.t
		qa := e.name("args")
		e.declare(transport.Topology{Queue: transport.Queue{Name: qa, Type: s.h.QueueType,
			Arguments: transport.Headers{"x-max-length": int32(10)}}})
		err := e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: qa, Type: s.h.QueueType,
			Arguments: transport.Headers{"x-max-length": int32(20)}}})
		is(t, err, transport.ErrTopologyConflict, "Declare(%q) again with another x-max-length", qa)

		qt := e.name("type")
		e.declare(transport.Topology{Queue: transport.Queue{Name: qt, Type: transport.Quorum}})
		err = e.tr.Declare(e.ctx(), transport.Topology{Queue: transport.Queue{Name: qt, Type: transport.Classic}})
		is(t, err, transport.ErrTopologyConflict, "Declare(%q) again as a classic queue", qt)

		// The refused declarations changed nothing, and the transport
		// still works.
		in := e.inbox(qa, transport.ConsumeOptions{})
		e.send(qa, "still-there")
		in.expect("still-there")
	})
	s.leaf(t, "Shared", func(e *env) {
		t := e.t
		q := e.name("shared")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic,
			Arguments: transport.Headers{"x-max-length": int32(10)}}})
		err := e.tr.Declare(e.ctx(), transport.Topology{
			Queue:  transport.Queue{Name: q, Type: transport.Quorum, Shared: true},
			Topics: []string{"shared.t"},
		})
		if err != nil {
			t.Errorf("Declare of an existing queue as Shared with another type and arguments = %v, want nil (used as found)", err)
		}
		in := e.inbox(q, transport.ConsumeOptions{})
		e.send(q, "direct")
		e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "shared.t", Mandatory: true, Message: msg("topic")})
		in.expect("direct", "topic")

		fresh := e.name("fresh")
		e.declare(transport.Topology{Queue: transport.Queue{Name: fresh, Type: s.h.QueueType, Shared: true}})
		in2 := e.inbox(fresh, transport.ConsumeOptions{})
		e.send(fresh, "created")
		in2.expect("created")
	})
	s.leaf(t, "Temporary", func(e *env) {
		t := e.t
		q := e.name("temp")
		e.declare(transport.Topology{Queue: transport.Queue{Name: q, Temporary: true}, Topics: []string{"temp.t"}})
		in := e.inbox(q, transport.ConsumeOptions{})
		e.send(q, "direct")
		e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "temp.t", Mandatory: true, Message: msg("topic")})
		in.expect("direct", "topic")

		// Another transport may bind it and publish to it, as a PikaBus 2
		// service replying to a Request does (it binds the reply queue
		// before publishing).
		peer := e.newTransport()
		if err := peer.Bind(e.ctx(), q, "temp.peer"); err != nil {
			t.Errorf("another transport's Bind(%q): %v", q, err)
		} else {
			if err := peer.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "temp.peer", Mandatory: true, Message: msg("peer")}); err != nil {
				t.Errorf("another transport's Dispatch through its binding: %v", err)
			} else {
				in.expect("peer")
			}
		}
		if err := closeBounded(peer, s.h.Timeout); err != nil {
			t.Errorf("Close: %v", err)
		}

		if err := e.bounded("Consumer.Close", in.c.Close); err != nil {
			t.Fatal(err)
		}
		e.closeTransport()

		// A temporary queue lives as long as its transport.
		other := e.newTransport()
		defer func() {
			if err := closeBounded(other, s.h.Timeout); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		var err error
		poll(e, func() bool {
			err = other.Bind(e.ctx(), q, "temp.probe")
			return errors.Is(err, transport.ErrNotFound)
		})
		is(t, err, transport.ErrNotFound, "Bind(%q) after the transport that declared the temporary queue was closed", q)
	})
	s.leaf(t, "Canceled", func(e *env) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		q := e.name("canceled")
		e.remember(q)
		err := e.tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: s.h.QueueType}})
		is(e.t, err, context.Canceled, "Declare with a canceled context")
	})
}

// poll calls cond until it returns true, for at most the harness's timeout.
func poll(e *env, cond func() bool) bool {
	deadline := time.Now().Add(e.h.Timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

func (s *suite) bindGroup(t *testing.T) {
	s.leaf(t, "MissingQueue", func(e *env) {
		q := e.name("missing")
		is(e.t, e.tr.Bind(e.ctx(), q, "a.b"), transport.ErrNotFound, "Bind(%q) of a queue that does not exist", q)
	})
	s.leaf(t, "Twice", func(e *env) {
		q := e.queue("q")
		for range 2 {
			if err := e.tr.Bind(e.ctx(), q, "twice.*"); err != nil {
				e.t.Fatalf("Bind(%q, %q): %v", q, "twice.*", err)
			}
		}
		in := e.inbox(q, transport.ConsumeOptions{})
		e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "twice.x", Mandatory: true, Message: msg("once")})
		if ids := in.drainTo(); !slices.Equal(ids, []string{"once"}) {
			e.t.Errorf("queue bound twice under one pattern received %q, want one copy", ids)
		}
	})
	s.leaf(t, "Unbind", func(e *env) {
		t := e.t
		q := e.queue("q", "un.a")
		in := e.inbox(q, transport.ConsumeOptions{})
		if err := e.tr.Bind(e.ctx(), q, "un.b"); err != nil {
			t.Fatalf("Bind: %v", err)
		}
		topic := func(key, id string) error {
			return e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Topic, RoutingKey: key, Mandatory: true, Message: msg(id)})
		}
		if err := topic("un.b", "bound"); err != nil {
			t.Fatalf("Dispatch to a bound pattern: %v", err)
		}
		in.expect("bound")
		if err := e.tr.Unbind(e.ctx(), q, "un.b"); err != nil {
			t.Fatalf("Unbind(%q, %q): %v", q, "un.b", err)
		}
		is(t, topic("un.b", "unbound"), transport.ErrUnroutable, "mandatory Dispatch with key %q after Unbind", "un.b")
		if err := topic("un.a", "other"); err != nil {
			t.Errorf("Dispatch to the binding Unbind did not touch: %v", err)
		}
		in.expect("other")
		for _, p := range []string{"un.b", "never.bound", q} {
			if err := e.tr.Unbind(e.ctx(), q, p); err != nil {
				t.Errorf("Unbind(%q, %q) of a binding that does not exist = %v, want nil", q, p, err)
			}
		}
		// Unbind touches the topic exchange only: the queue's binding on
		// the direct exchange under its own name stays.
		e.send(q, "direct")
		in.expect("direct")
		in.empty("after Unbind")
	})
}

func (s *suite) dispatchGroup(t *testing.T) {
	noUnbound := ""
	if s.h.DeclareUnbound == nil {
		noUnbound = "Harness.DeclareUnbound is not set"
	}
	s.leafUnless(t, "UnboundQueue", noUnbound, s.unboundQueue)
	s.leaf(t, "Empty", func(e *env) {
		if err := e.tr.Dispatch(e.ctx()); err != nil {
			e.t.Errorf("Dispatch of no messages = %v, want nil", err)
		}
	})
	s.leaf(t, "Order", func(e *env) {
		q1, q2 := e.queue("one"), e.queue("two")
		var batch []transport.Outgoing
		var want1, want2 []string
		for i := range 40 {
			q, id := q1, fmt.Sprintf("one-%02d", i)
			if i%3 == 1 {
				q, id = q2, fmt.Sprintf("two-%02d", i)
				want2 = append(want2, id)
			} else {
				want1 = append(want1, id)
			}
			batch = append(batch, direct(q, id)...)
		}
		e.dispatch(batch...)
		e.inbox(q1, transport.ConsumeOptions{}).expect(want1...)
		e.inbox(q2, transport.ConsumeOptions{}).expect(want2...)
	})
	s.leaf(t, "Mandatory", func(e *env) {
		t := e.t
		q := e.queue("q", "routed.*")
		missing := e.name("missing")
		in := e.inbox(q, transport.ConsumeOptions{})
		batch := []transport.Outgoing{
			{Exchange: transport.Direct, RoutingKey: q, Mandatory: true, Message: msg("m0")},
			{Exchange: transport.Direct, RoutingKey: missing, Mandatory: true, Message: msg("m1")},
			{Exchange: transport.Topic, RoutingKey: "routed.x", Message: msg("m2")},
			{Exchange: transport.Topic, RoutingKey: "unrouted.x", Mandatory: true, Message: msg("m3")},
			{Exchange: transport.Direct, RoutingKey: missing, Message: msg("m4")},
			{Exchange: transport.Topic, RoutingKey: "routed.y", Mandatory: true, Message: msg("m5")},
		}
		err := e.tr.Dispatch(e.ctx(), batch...)
		is(t, err, transport.ErrUnroutable, "Dispatch of a batch with two unroutable mandatory messages")
		checkDispatchErrors(t, err, map[int]string{1: missing, 3: "unrouted.x"})
		for _, de := range dispatchErrors(err) {
			if de.Index >= 0 && de.Index < len(batch) {
				b := batch[de.Index]
				if de.Exchange != b.Exchange || de.MessageID != b.Message.ID {
					t.Errorf("DispatchError for message %d names exchange %v and message %q, want %v and %q",
						de.Index, de.Exchange, de.MessageID, b.Exchange, b.Message.ID)
				}
			}
		}
		if ids := in.drainTo(); !slices.Equal(ids, []string{"m0", "m2", "m5"}) {
			t.Errorf("the routable messages of the batch arrived as %q, want [m0 m2 m5]", ids)
		}
	})
	s.leaf(t, "InvalidMessage", func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		long := strings.Repeat("p", transport.MaxNameLength+1)
		for i, bad := range []struct {
			what string
			out  transport.Outgoing
		}{
			{"a header of type struct{}", transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "bad", Headers: transport.Headers{"s": struct{}{}}}}},
			{"a nested header of type []int", transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "bad", Headers: transport.Headers{"t": map[string]any{"l": []int{1}}}}}},
			{"a header key of 256 bytes", transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "bad", Headers: transport.Headers{long: "v"}}}},
			{"a message ID of 256 bytes", transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: long}}},
			{"a content type of 256 bytes", transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "bad", ContentType: long}}},
			{"an unknown exchange", transport.Outgoing{Exchange: transport.Exchange(9), RoutingKey: q, Message: msg("bad")}},
		} {
			batch := append(direct(q, fmt.Sprintf("valid-%d", i)), bad.out)
			err := e.tr.Dispatch(e.ctx(), batch...)
			is(t, err, transport.ErrInvalidMessage, "Dispatch of a batch with %s", bad.what)
		}
		in.empty("a batch refused as invalid must send nothing")
	})
	s.leaf(t, "Ownership", func(e *env) {
		t := e.t
		q1, q2 := e.queue("one", "own.*"), e.queue("two", "own.*")
		in1, in2 := e.inbox(q1, transport.ConsumeOptions{}), e.inbox(q2, transport.ConsumeOptions{})
		h := transport.Headers{"n": 1, "table": map[string]any{"k": "v"}, "list": []string{"a"}, "bytes": []byte("b")}
		body := []byte("original")
		e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "own.x", Mandatory: true,
			Message: transport.Message{ID: "owned", Headers: h, Body: body}})
		if _, ok := h["n"].(int); !ok || string(body) != "original" || h["table"].(map[string]any)["k"] != "v" {
			t.Errorf("Dispatch modified the caller's message: headers %v, body %q", h, body)
		}
		// The caller may reuse its message once Dispatch returns.
		body[0] = 'X'
		h["n"] = 2
		h["table"].(map[string]any)["k"] = "changed"
		h["list"].([]string)[0] = "changed"
		h["bytes"].([]byte)[0] = 'X'
		h["new"] = "added"
		want := transport.Headers{"n": int32(1), "table": map[string]any{"k": "v"}, "list": []any{"a"}, "bytes": []byte("b")}

		d1 := in1.ack()
		if string(d1.Body) != "original" {
			t.Errorf("delivered body %q, want %q: the transport kept the caller's body", d1.Body, "original")
		}
		if d := diffHeaders(want, d1.Headers); d != "" {
			t.Errorf("the transport kept the caller's headers:\n%s", d)
		}
		// A handler owns what it was delivered: changing it changes no
		// other queue's copy.
		if len(d1.Body) > 0 {
			d1.Body[0] = 'Y'
		}
		if d1.Headers != nil {
			d1.Headers["n"] = "mine"
			if tbl, ok := d1.Headers["table"].(map[string]any); ok {
				tbl["k"] = "mine"
			}
		}
		d2 := in2.ack()
		if string(d2.Body) != "original" {
			t.Errorf("second queue's copy has body %q, want %q: deliveries share a body", d2.Body, "original")
		}
		if d := diffHeaders(want, d2.Headers); d != "" {
			t.Errorf("second queue's copy shares headers with the first:\n%s", d)
		}
	})
	s.leaf(t, "Canceled", func(e *env) {
		q := e.queue("q")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := e.tr.Dispatch(ctx, direct(q, "canceled")...)
		is(e.t, err, context.Canceled, "Dispatch with a canceled context")
	})
}

// unboundQueue checks that Direct messages reach a queue declared without
// its direct binding, as PikaBus 1.x declares its own, from this transport
// and from another, deferred or not; and that a destination deleted and
// declared again so behind the transport's back still gets the next
// message.
func (s *suite) unboundQueue(e *env) {
	t := e.t
	unbound := func(tag string) string {
		q := e.name(tag)
		e.remember(q)
		if err := e.h.DeclareUnbound(e.ctx(), t, e.tr, transport.Queue{Name: q, Type: e.h.QueueType}); err != nil {
			t.Fatalf("Harness.DeclareUnbound(%q): %v", q, err)
		}
		return q
	}
	q := unbound("unbound")
	in := e.inbox(q, transport.ConsumeOptions{})
	e.send(q, "first")
	e.send(q, "second", "third")
	want := []string{"first", "second", "third"}
	if s.caps.delayer {
		e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(time.Second), Message: msg("deferred")})
		want = append(want, "deferred")
	}
	in.expect(want...)

	other := e.newTransport()
	defer func() {
		if err := closeBounded(other, e.h.Timeout); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := other.Dispatch(e.ctx(), direct(q, "from-another-connection")...); err != nil {
		t.Fatalf("Dispatch from another transport to the unbound queue %q: %v", q, err)
	}
	in.expect("from-another-connection")

	missing := e.name("missing")
	err := e.tr.Dispatch(e.ctx(), direct(missing, "lost")...)
	is(t, err, transport.ErrUnroutable, "mandatory Dispatch to a queue that does not exist")

	if !s.caps.deleter {
		return
	}
	again := unbound("again")
	e.send(again, "before")
	del := other.(transport.QueueDeleter)
	if err := del.DeleteQueue(e.ctx(), again); err != nil {
		t.Fatalf("DeleteQueue(%q): %v", again, err)
	}
	if err := e.h.DeclareUnbound(e.ctx(), t, other, transport.Queue{Name: again, Type: e.h.QueueType}); err != nil {
		t.Fatalf("Harness.DeclareUnbound(%q) again: %v", again, err)
	}
	e.send(again, "after")
	e.inbox(again, transport.ConsumeOptions{}).expect("after")
}
