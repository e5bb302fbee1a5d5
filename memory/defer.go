package memory

import (
	"container/heap"
	"sync"
	"time"
)

// deferred is a message waiting for its NotBefore time.
type deferred struct {
	due  time.Time
	seq  uint64
	from *conn
	e    *entry
	// only, when set, is the one queue the message goes to when due: a
	// queue that refused it because it was full.
	only string
}

// refusedRetry is how long a deferred message that a full queue refused
// waits before it tries that queue again. RabbitMQ's delay levels
// dead-letter at least once, so the RabbitMQ transport's deferred message
// stays in the last level and RabbitMQ tries again 3 minutes later
// (measured on 3.10.8: due after 1 s, refused, delivered 3 min 1 s after
// it was sent); here it waits in the scheduler as long.
const refusedRetry = 3 * time.Minute

func (d *deferred) before(o *deferred) bool {
	if !d.due.Equal(o.due) {
		return d.due.Before(o.due)
	}
	return d.seq < o.seq
}

type deferredHeap []*deferred

func (h deferredHeap) Len() int           { return len(h) }
func (h deferredHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h deferredHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deferredHeap) Push(x any)        { *h = append(*h, x.(*deferred)) }
func (h *deferredHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}

// scheduler holds a broker's deferred messages with one timer for the
// soonest. Each timer it arms counts once in wg until it is stopped or its
// function has run, so that Close can wait for a firing in progress.
type scheduler struct {
	heap    deferredHeap
	timer   *time.Timer
	wg      sync.WaitGroup
	stopped bool
}

func (s *scheduler) addLocked(b *Broker, d *deferred) {
	heap.Push(&s.heap, d)
	if s.heap[0] == d {
		s.armLocked(b)
	}
}

func (s *scheduler) armLocked(b *Broker) {
	if s.timer != nil && s.timer.Stop() {
		s.wg.Done()
	}
	s.timer = nil
	if len(s.heap) == 0 || s.stopped {
		return
	}
	s.wg.Add(1)
	s.timer = time.AfterFunc(time.Until(s.heap[0].due), func() {
		defer s.wg.Done()
		b.fireDue()
	})
}

func (s *scheduler) stopLocked() {
	s.stopped = true
	if s.timer != nil && s.timer.Stop() {
		s.wg.Done()
	}
	s.timer = nil
	s.heap = nil
}

func (s *scheduler) wait() { s.wg.Wait() }

// fireDue routes the deferred messages that are due.
func (b *Broker) fireDue() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.sched.stopped {
		return
	}
	now, st := time.Now(), b.stamp()
	for len(b.sched.heap) > 0 && !b.sched.heap[0].due.After(now) {
		d := heap.Pop(&b.sched.heap).(*deferred)
		e := d.e
		var ex *exchange
		if e.exchange != "" {
			ex = b.exchanges[e.exchange]
		}
		var qs []*queue
		switch {
		case d.only != "":
			if q, ok := b.queues[d.only]; ok {
				qs = []*queue{q}
			}
		case ex != nil || e.exchange == "":
			qs = b.routeLocked(ex, e.key)
		}
		r := record{op: Due, c: d.from.publisher(), e: e}
		r.extras().notBefore = d.due
		r.setQueues(qs)
		b.journal.add(&r, st)
		// Takes over the scheduler's reference; a full queue's copy waits.
		e.retain()
		for _, q := range b.enqueueLocked(ex, e, qs, st) {
			b.seq++
			heap.Push(&b.sched.heap, &deferred{due: now.Add(refusedRetry), seq: b.seq, from: d.from, e: e.clone(), only: q.name})
		}
		b.releaseLocked(e)
	}
	b.sched.armLocked(b)
	b.checkIdleLocked()
}
