package amqp

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// ackState is what the fake broker saw on one channel.
type ackState struct {
	acks, nacks, unknown []uint64
	frames               int
	unacked              int
}

func (ch *fakeChannel) ackState() ackState {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	acks := slices.Clone(ch.acks)
	slices.Sort(acks)
	return ackState{acks, slices.Clone(ch.nacks), slices.Clone(ch.unknown), ch.ackFrames, len(ch.unacked)}
}

func (s ackState) String() string {
	return fmt.Sprintf("acks %v (%d frames) nacks %v unknown %v, %d outstanding", s.acks, s.frames, s.nacks, s.unknown, s.unacked)
}

// consumingChannel returns the channel the consumer consumes on now.
func consumingChannel(b *fakeBroker) *fakeChannel {
	var last *fakeChannel
	for _, ch := range b.channels() {
		ch.mu.Lock()
		if ch.consuming && !ch.closed {
			last = ch
		}
		ch.mu.Unlock()
	}
	return last
}

func tags(from, to uint64) []uint64 {
	var out []uint64
	for t := from; t <= to; t++ {
		out = append(out, t)
	}
	return out
}

func deliverTags(ch *fakeChannel, ts ...uint64) {
	for _, t := range ts {
		ch.deliver(amqp091.Delivery{DeliveryTag: t, MessageId: fmt.Sprint(t), Exchange: transport.DefaultDirectExchange, RoutingKey: "q"})
	}
}

// TestAckCoalesced: one worker acking in order sends a multiple ack per
// half prefetch window, and the rest once the delay has passed.
func TestAckCoalesced(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	c, err := tr.Consume(ctxFor(t, 5*time.Second), "q", transport.ConsumeOptions{Prefetch: 10}, func(ctx context.Context, d *transport.Delivery) {
		if err := d.Ack(); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := consumingChannel(b)
	deliverTags(ch, tags(1, 12)...)
	waitFor(t, func() bool { return len(ch.ackState().acks) == 12 }, ch.ackState().String)
	s := ch.ackState()
	if !slices.Equal(s.acks, tags(1, 12)) || len(s.unknown) != 0 || s.unacked != 0 {
		t.Fatal(s)
	}
	// 12 acks: two batches of 5 when they fill, then the last 2 on time;
	// which acks a batch holds depends on when the loop tracked the
	// deliveries, so only bound the count.
	if s.frames > 4 {
		t.Fatalf("%d ack frames for 12 acks: not coalesced (%v)", s.frames, s)
	}
}

// TestAckOutOfOrder: with several workers, a delivery still in a handler
// is never covered by a multiple ack; the acks above it go out one by one
// when due, and a nack is exact and precedes any ack that could cover it.
func TestAckOutOfOrder(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	release := make(chan struct{})
	var held sync.WaitGroup
	held.Add(1)
	c, err := tr.Consume(ctxFor(t, 5*time.Second), "q", transport.ConsumeOptions{Concurrency: 4, Prefetch: 20}, func(ctx context.Context, d *transport.Delivery) {
		var err error
		switch d.Tag {
		case 3:
			held.Done()
			<-release
			err = d.Ack()
		case 2, 6:
			err = d.Nack(true)
		default:
			err = d.Ack()
		}
		if err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := consumingChannel(b)
	deliverTags(ch, tags(1, 8)...)
	held.Wait()
	waitFor(t, func() bool { return len(ch.ackState().acks) == 5 }, ch.ackState().String)
	s := ch.ackState()
	if !slices.Equal(s.acks, []uint64{1, 4, 5, 7, 8}) || len(s.unknown) != 0 || s.unacked != 1 {
		t.Fatalf("with tag 3 in a handler: %v", s)
	}
	if slices.Sort(s.nacks); !slices.Equal(s.nacks, []uint64{2, 6}) {
		t.Fatalf("nacks: %v", s)
	}
	close(release)
	waitFor(t, func() bool { return len(ch.ackState().acks) == 6 }, ch.ackState().String)
	if s := ch.ackState(); !slices.Equal(s.acks, []uint64{1, 3, 4, 5, 7, 8}) || len(s.unknown) != 0 || s.unacked != 0 {
		t.Fatal(s)
	}
}

// TestAckFlushedOnClose: acks waiting for their batch are sent before the
// channel closes, on Drain as on Close; an unsettled delivery is not acked.
func TestAckFlushedOnClose(t *testing.T) {
	for _, drain := range []bool{false, true} {
		t.Run(fmt.Sprint("drain=", drain), func(t *testing.T) {
			b := newFakeBroker()
			tr := dialFake(t, b)
			handled := make(chan struct{}, 10)
			c, err := tr.Consume(ctxFor(t, 5*time.Second), "q", transport.ConsumeOptions{Concurrency: 2, Prefetch: 100}, func(ctx context.Context, d *transport.Delivery) {
				if d.Tag != 2 { // 2 is left unsettled: requeued by the close
					if err := d.Ack(); err != nil {
						t.Error(err)
					}
				}
				handled <- struct{}{}
			})
			if err != nil {
				t.Fatal(err)
			}
			ch := consumingChannel(b)
			deliverTags(ch, 1, 2, 3)
			for range 3 {
				<-handled
			}
			if drain {
				err = c.Drain(ctxFor(t, 5*time.Second))
			} else {
				err = c.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := ch.ackState(); !slices.Equal(s.acks, []uint64{1, 3}) || len(s.unknown) != 0 {
				t.Fatal(s)
			}
		})
	}
}

// TestAckAcrossReconnect: delivery tags restart on the new channel; acks
// queued on the old one are dropped with it (the broker redelivers), and
// none is sent on the new channel.
func TestAckAcrossReconnect(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	got := make(chan *transport.Delivery, 10)
	c, err := tr.Consume(ctxFor(t, 5*time.Second), "q", transport.ConsumeOptions{Prefetch: 100}, func(ctx context.Context, d *transport.Delivery) {
		got <- d
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := consumingChannel(b)
	deliverTags(first, 1, 2, 3)
	for range 3 {
		if err := (<-got).Ack(); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	conns := slices.Clone(b.conns)
	b.mu.Unlock()
	for _, c := range conns {
		c.lose()
	}
	waitFor(t, func() bool { ch := consumingChannel(b); return ch != nil && ch != first }, func() string { return "not resumed" })
	second := consumingChannel(b)
	deliverTags(second, 1, 2)
	for range 2 {
		if err := (<-got).Ack(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(second.ackState().acks) == 2 }, second.ackState().String)
	if s := second.ackState(); !slices.Equal(s.acks, []uint64{1, 2}) || len(s.unknown) != 0 {
		t.Fatal(s)
	}
}

// TestAckExactOption: a negative AckDelay, or a prefetch below 3, sends
// every ack at once.
func TestAckExactOption(t *testing.T) {
	for _, tc := range []struct {
		delay    time.Duration
		prefetch int
	}{{-1, 100}, {0, 2}} {
		t.Run(fmt.Sprint(tc.delay, tc.prefetch), func(t *testing.T) {
			b := newFakeBroker()
			ctx := ctxFor(t, 5*time.Second)
			tr, err := Dial(ctx, "amqp://guest:guest@fake-1/", Options{dial: b.dial, AckDelay: tc.delay})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			got := make(chan *transport.Delivery, 10)
			c, err := tr.Consume(ctx, "q", transport.ConsumeOptions{Prefetch: tc.prefetch}, func(ctx context.Context, d *transport.Delivery) {
				got <- d
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ch := consumingChannel(b)
			deliverTags(ch, 1)
			if err := (<-got).Ack(); err != nil {
				t.Fatal(err)
			}
			// Sent before Ack returned: no waiting for a timer.
			if s := ch.ackState(); !slices.Equal(s.acks, []uint64{1}) || s.frames != 1 {
				t.Fatal(s)
			}
		})
	}
}
