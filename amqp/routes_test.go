package amqp

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// A destination is bound once, however many messages and callers go to it,
// and bound again after a reconnection, when the broker may have lost it.
func TestRoutesBindOnce(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	to := func(dest, id string) transport.Outgoing {
		return transport.Outgoing{RoutingKey: dest, Mandatory: true, Message: transport.Message{ID: id}}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := tr.Dispatch(ctxFor(t, 5*time.Second), to("dest", "m"), to("dest", "n")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// One bind on the direct exchange, two on the delay levels' delivery
	// exchange (NServiceBus's pattern and the delivery key).
	if n := b.bindCount("dest"); n != 3 {
		t.Fatalf("dest bound %d times by 20 concurrent Dispatch calls, want 3 (direct, delivery twice)", n)
	}
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), to("dest", "later")); err != nil {
		t.Fatal(err)
	}
	if n := b.bindCount("dest"); n != 3 {
		t.Fatalf("dest bound again (%d binds) by a later Dispatch", n)
	}

	for _, c := range b.conns {
		c.lose()
	}
	// Both connections replaced (two more dials), and up again.
	waitFor(t, func() bool {
		b.mu.Lock()
		n := len(b.conns)
		b.mu.Unlock()
		return n >= 4 && tr.Health(ctxFor(t, time.Second)) == nil
	}, func() string { return "reconnection" })
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), to("dest", "after")); err != nil {
		t.Fatal(err)
	}
	if n := b.bindCount("dest"); n != 6 {
		t.Fatalf("dest bound %d times after a reconnection, want 6", n)
	}

	// A queue that does not exist: ErrUnroutable, nothing published.
	b.setMissing("gone", true)
	before := len(b.published())
	err := tr.Dispatch(ctxFor(t, 5*time.Second), to("gone", "lost"))
	var de *transport.DispatchError
	if !errors.Is(err, transport.ErrUnroutable) || !errors.As(err, &de) || de.Index != 0 {
		t.Fatalf("Dispatch to a missing queue = %v, want a DispatchError wrapping ErrUnroutable", err)
	}
	if n := len(b.published()) - before; n != 0 {
		t.Fatalf("%d messages published to a missing queue", n)
	}
}

// A message that comes back unroutable from a destination believed bound
// (deleted and declared again without its binding) is bound and published
// again, once.
func TestRoutesStaleBinding(t *testing.T) {
	b := newFakeBroker()
	var mu sync.Mutex
	returnNext := false
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		mu.Lock()
		ret := returnNext
		returnNext = false
		mu.Unlock()
		if ret {
			ch.ret(p)
		}
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	out := transport.Outgoing{RoutingKey: "dest", Mandatory: true, Message: transport.Message{ID: "m"}}
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), out); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	returnNext = true
	mu.Unlock()
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), out); err != nil {
		t.Fatalf("Dispatch to a destination whose binding went stale = %v, want it bound again and delivered", err)
	}
	if n := b.bindCount("dest"); n != 6 {
		t.Fatalf("dest bound %d times, want 6 (each of its three bindings twice)", n)
	}
	if n := len(b.published()); n != 3 {
		t.Fatalf("%d publishes, want 3 (the second message twice)", n)
	}
}
