package amqp

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/busline/transport"
)

// acker settles the deliveries of one channel. Once the channel is gone,
// settling fails with ErrConnectionLost (or ErrClosed after the consumer
// or transport was closed): the broker requeued the message.
//
// A consumer's acker coalesces acks (see [ackBatch]); Get's sends each at
// once.
type acker struct {
	t     *Transport
	ch    amqpChannel
	queue string
	state atomic.Pointer[error] // nil while the channel is usable
	batch *ackBatch             // nil: every ack is sent at once
}

// ackBatch coalesces the acks of one consuming channel, so that a consumer
// does not pay a socket write for every message. An ack waits at most
// delay, then goes out with those queued before it as one basic.ack with
// multiple set, which acknowledges every unsettled delivery up to its tag.
// That is right only up to the lowest tag a handler still holds: the
// deliveries of one channel carry consecutive tags, but with several
// workers they are settled out of order. So the batch knows the tags
// delivered and not yet settled (open), and sends the acks below the
// lowest of them as one; an ack above it that comes due is sent alone.
// Nacks are sent at once, each on its own, and only then leave open, so
// that no multiple ack sent later can cover a nacked tag before the nack.
//
// Acks are also sent as soon as max of them wait, so that the prefetch
// window the broker keeps for unacknowledged deliveries never fills with
// handled messages.
type ackBatch struct {
	delay time.Duration
	max   int

	mu      sync.Mutex // held while sending, so that acks go out in order
	open    []uint64   // delivered, not settled, ascending
	pending []pendingAck
	timer   *time.Timer
	done    bool // the channel was closed or lost: nothing more is sent
}

type pendingAck struct {
	tag uint64
	due time.Time
}

// newAcker returns the acker of a consuming channel with the given
// prefetch. Acks wait up to delay; a negative delay, or a prefetch so
// small that the window would fill before a batch does, sends each at
// once.
func newAcker(t *Transport, ch amqpChannel, queue string, prefetch int, delay time.Duration) *acker {
	a := &acker{t: t, ch: ch, queue: queue}
	if n := (prefetch + 1) / 2; delay > 0 && n >= 2 {
		a.batch = &ackBatch{delay: delay, max: n}
	}
	return a
}

func (a *acker) lost(why error) {
	err := fmt.Errorf("amqp: settle a delivery of queue %q: the channel is gone, the message will be delivered again: %w: %w",
		a.queue, transport.ErrConnectionLost, why)
	a.state.CompareAndSwap(nil, &err)
	a.stopBatch(false)
}

// close closes the channel on purpose, after sending the acks that wait;
// later settlements fail with ErrClosed.
func (a *acker) close() {
	err := fmt.Errorf("amqp: settle a delivery of queue %q: the consumer was closed, the message will be delivered again: %w",
		a.queue, transport.ErrClosed)
	flush := a.state.CompareAndSwap(nil, &err)
	a.stopBatch(flush)
	_ = a.ch.Close()
}

// stopBatch stops the batch, after sending what waits if flush is set
// (in the same critical section, so that no ack queued meanwhile is
// dropped unsent after its Ack returned nil).
func (a *acker) stopBatch(flush bool) {
	b := a.batch
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if flush && !b.done {
		_ = a.flushLocked(time.Time{}, true)
	}
	b.done = true
	b.open, b.pending = nil, nil
	if b.timer != nil {
		b.timer.Stop()
	}
}

func (a *acker) settle(f func() error) error {
	if p := a.state.Load(); p != nil {
		return *p
	}
	if err := f(); err != nil {
		if p := a.state.Load(); p != nil {
			return *p
		}
		if a.t.checkOpen() != nil {
			return fmt.Errorf("amqp: settle a delivery of queue %q: %w: %w", a.queue, transport.ErrClosed, err)
		}
		return fmt.Errorf("amqp: settle a delivery of queue %q: %w: %w", a.queue, transport.ErrConnectionLost, err)
	}
	return nil
}

// track records a delivery handed to the consumer; the consumer's loop
// calls it in delivery order, before any worker sees the delivery.
func (a *acker) track(tag uint64) {
	b := a.batch
	if b == nil {
		return
	}
	b.mu.Lock()
	if !b.done {
		b.open = append(b.open, tag)
	}
	b.mu.Unlock()
}

// untrackLocked removes tag from the open deliveries.
func (b *ackBatch) untrackLocked(tag uint64) {
	if i, ok := slices.BinarySearch(b.open, tag); ok {
		b.open = slices.Delete(b.open, i, i+1)
	}
}

// Ack implements [transport.Acknowledger]. With a batch, a nil error means
// the ack is queued: if the channel is lost before it is sent, the broker
// delivers the message again, as it does when an ack is lost in transit.
func (a *acker) Ack(tag uint64) error {
	if a.batch == nil {
		return a.settle(func() error { return a.ch.Ack(tag, false) })
	}
	err := a.settle(func() error { return a.queueAck(tag) })
	if err != nil && !errors.Is(err, errAckerDone) {
		a.lost(err)
	}
	return err
}

// errAckerDone: the batch stopped between the state check and the ack.
var errAckerDone = errors.New("the channel is closing")

func (a *acker) queueAck(tag uint64) error {
	b := a.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return errAckerDone
	}
	b.untrackLocked(tag)
	now := time.Now()
	b.pending = append(b.pending, pendingAck{tag, now.Add(b.delay)})
	if len(b.pending) >= b.max {
		return a.flushLocked(now, false)
	}
	if len(b.pending) == 1 {
		a.arm(b.delay)
	}
	return nil
}

// Nack implements [transport.Acknowledger]. Nacks are never coalesced.
func (a *acker) Nack(tag uint64, requeue bool) error {
	err := a.settle(func() error { return a.ch.Nack(tag, false, requeue) })
	if b := a.batch; b != nil {
		b.mu.Lock()
		b.untrackLocked(tag)
		b.mu.Unlock()
	}
	return err
}

// arm sets the batch's timer to fire in d; the batch's lock is held.
func (a *acker) arm(d time.Duration) {
	b := a.batch
	if b.timer == nil {
		b.timer = time.AfterFunc(d, a.fire)
		return
	}
	b.timer.Reset(d)
}

// fire sends the acks that are due.
func (a *acker) fire() {
	b := a.batch
	b.mu.Lock()
	var err error
	if !b.done && len(b.pending) > 0 {
		err = a.flushLocked(time.Now(), false)
	}
	b.mu.Unlock()
	if err != nil {
		a.lost(err)
	}
}

// flushLocked sends the acks below the lowest open tag as one multiple
// ack, and those above it that are due (all of them if all is set) one by
// one; the rest wait, and the timer is set for the first of them.
func (a *acker) flushLocked(now time.Time, all bool) error {
	b := a.batch
	lowest := uint64(math.MaxUint64)
	if len(b.open) > 0 {
		lowest = b.open[0]
	}
	var upTo uint64
	var next time.Time
	keep := b.pending[:0]
	for _, p := range b.pending {
		switch {
		case p.tag < lowest:
			upTo = max(upTo, p.tag)
		case all || !p.due.After(now):
			if err := a.ch.Ack(p.tag, false); err != nil {
				b.pending = b.pending[:0]
				return err
			}
		default:
			keep = append(keep, p)
			if next.IsZero() || p.due.Before(next) {
				next = p.due
			}
		}
	}
	b.pending = keep
	if len(keep) > 0 {
		a.arm(next.Sub(now))
	}
	if upTo > 0 {
		return a.ch.Ack(upTo, true)
	}
	return nil
}
