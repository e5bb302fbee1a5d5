// Package loadtest sends numbered messages through a transport under load
// while a consumer takes them, and accounts for every one, for the tests
// that inject faults: connection resets and black holes (package amqp) and
// the loss of cluster nodes (package amqp/clustertest).
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// Run sends numbered messages to one queue from several goroutines, each
// message with a Dispatch call of its own (as bus.Send does), while a
// consumer takes them, and accounts for every one: confirmed, consumed,
// lost (confirmed, never consumed), failed Dispatch calls, duplicates, and
// the longest stall of publishing and of consuming after a fault began.
type Run struct {
	t     *testing.T
	tr    transport.Transport
	queue string
	// sendTimeout is each Dispatch call's context: failures are counted
	// only while it lives.
	sendTimeout time.Duration

	next, stopAt atomic.Int64
	confirmed    sync.Map // id → struct{}
	sentN        atomic.Int64
	confirmedN   atomic.Int64
	failedN      atomic.Int64
	failedLost   atomic.Int64 // failures that wrap ErrConnectionLost
	wg           sync.WaitGroup

	mu       sync.Mutex
	seen     map[int64]int
	failures []error // the first few
	// The longest gap between two confirms and between two deliveries
	// since Mark, when the last of each happened, and how many since.
	lastConfirm, lastRecv       time.Time
	stallPub, stallConsume      time.Duration
	sinceMarkPub, sinceMarkRecv int64
}

// Start starts senders goroutines sending to queue, each at most one
// message every pace, each with a minute of context, and a consumer. Stop
// them with Finish.
func Start(t *testing.T, tr transport.Transport, queue string, senders int, pace time.Duration) *Run {
	t.Helper()
	l := &Run{t: t, tr: tr, queue: queue, sendTimeout: 60 * time.Second, seen: map[int64]int{}}
	l.stopAt.Store(1 << 62)
	now := time.Now()
	l.lastConfirm, l.lastRecv = now, now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tr.Consume(ctx, queue, transport.ConsumeOptions{Concurrency: 4, Prefetch: 200},
		func(ctx context.Context, d *transport.Delivery) {
			id, err := strconv.ParseInt(d.ID, 10, 64)
			if err != nil {
				t.Errorf("delivery with id %q", d.ID)
			}
			l.mu.Lock()
			l.seen[id]++
			now := time.Now()
			l.stallConsume = max(l.stallConsume, now.Sub(l.lastRecv))
			l.lastRecv = now
			l.sinceMarkRecv++
			l.mu.Unlock()
			// An ack lost with its channel is fine: the message comes again.
			if err := d.Ack(); err != nil && !errors.Is(err, transport.ErrConnectionLost) && !errors.Is(err, transport.ErrClosed) {
				t.Errorf("Ack: %v", err)
			}
		})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for range senders {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for {
				id := l.next.Add(1) - 1
				if id >= l.stopAt.Load() {
					return
				}
				l.send(id)
				<-tick.C
			}
		}()
	}
	return l
}

func (l *Run) send(id int64) {
	l.sentN.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), l.sendTimeout)
	defer cancel()
	err := l.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: l.queue, Mandatory: true,
		Message: transport.Message{ID: strconv.FormatInt(id, 10), Body: make([]byte, 256)}})
	if err != nil {
		l.failedN.Add(1)
		if errors.Is(err, transport.ErrConnectionLost) {
			l.failedLost.Add(1)
		}
		l.mu.Lock()
		if len(l.failures) < 3 {
			l.failures = append(l.failures, err)
		}
		l.mu.Unlock()
		return
	}
	l.confirmed.Store(id, struct{}{})
	l.confirmedN.Add(1)
	l.mu.Lock()
	now := time.Now()
	l.stallPub = max(l.stallPub, now.Sub(l.lastConfirm))
	l.lastConfirm = now
	l.sinceMarkPub++
	l.mu.Unlock()
}

// Mark starts measuring stalls: call it when the fault begins.
func (l *Run) Mark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.lastConfirm, l.lastRecv = now, now
	l.stallPub, l.stallConsume = 0, 0
	l.sinceMarkPub, l.sinceMarkRecv = 0, 0
}

// WaitProgress waits until n messages were confirmed and n consumed since
// Mark (or Start), failing the test if that takes longer than within.
func (l *Run) WaitProgress(n int64, within time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		l.mu.Lock()
		p, r := l.sinceMarkPub, l.sinceMarkRecv
		l.mu.Unlock()
		if p >= n && r >= n {
			return
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			failures := l.failures
			l.mu.Unlock()
			l.t.Fatalf("no progress within %v: %d confirmed and %d consumed since the fault began (failed Dispatch calls: %d, the first: %v)",
				within, p, r, l.failedN.Load(), failures)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Result is what a run amounts to.
type Result struct {
	Sent, Confirmed int64
	Consumed        int64 // distinct messages
	Lost            int64 // confirmed, never consumed
	Failed          int64 // failed Dispatch calls
	FailedLost      int64 // of which wrap transport.ErrConnectionLost
	Duplicates      int64 // deliveries beyond the first of each message
	// StallPublish and StallConsume are the longest gaps between two
	// confirms and between two deliveries after the last Mark.
	StallPublish, StallConsume time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("sent %d, confirmed %d, consumed %d distinct, lost %d, failed Sends %d (%d wrapping ErrConnectionLost), duplicates %d, publishing stalled %v, consuming stalled %v",
		r.Sent, r.Confirmed, r.Consumed, r.Lost, r.Failed, r.FailedLost, r.Duplicates,
		r.StallPublish.Round(time.Millisecond), r.StallConsume.Round(time.Millisecond))
}

// Finish stops the senders, waits up to drain for every confirmed message
// to be consumed, and returns the figures. The stalls are measured from the
// last Mark to the moment the senders stopped. It logs the first failures.
func (l *Run) Finish(drain time.Duration) Result {
	l.t.Helper()
	l.stopAt.Store(0)
	l.wg.Wait()
	l.mu.Lock()
	stallPub := max(l.stallPub, time.Since(l.lastConfirm))
	stallConsume := l.stallConsume
	l.mu.Unlock()
	sent := l.sentN.Load()
	lost := func() int64 {
		var n int64
		l.mu.Lock()
		defer l.mu.Unlock()
		l.confirmed.Range(func(k, _ any) bool {
			if l.seen[k.(int64)] == 0 {
				n++
			}
			return true
		})
		return n
	}
	deadline := time.Now().Add(drain)
	n := lost()
	for n > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = lost()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Result{Sent: sent, Confirmed: l.confirmedN.Load(), Consumed: int64(len(l.seen)), Lost: n,
		Failed: l.failedN.Load(), FailedLost: l.failedLost.Load(), StallPublish: stallPub, StallConsume: stallConsume}
	for _, c := range l.seen {
		r.Duplicates += int64(c - 1)
	}
	for _, err := range l.failures {
		l.t.Logf("a failed Dispatch: %v", err)
	}
	return r
}

// Failed returns the number of failed Dispatch calls so far, and how many
// of them wrap transport.ErrConnectionLost.
func (l *Run) Failed() (n, lost int64) { return l.failedN.Load(), l.failedLost.Load() }
