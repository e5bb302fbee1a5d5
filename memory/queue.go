package memory

import (
	"sort"

	"github.com/busline/busline/transport"
)

// entry is one message in one queue. Its message is never modified once
// enqueued: deliveries get copies.
type entry struct {
	seq         uint64 // enqueue order, which a requeued message keeps
	msg         *transport.Message
	exchange    string
	kind        transport.Exchange
	key         string
	redelivered bool
}

type queue struct {
	name  string
	id    uint64
	spec  transport.Queue // Type and Arguments normalized
	owner *conn           // the connection of a temporary queue

	// ready[head:] are the messages waiting, in seq order.
	ready []*entry
	head  int
	// unacked counts the deliveries not yet settled.
	unacked int

	consumers []*consumer
	rr        int // the consumer whose turn it is

	bindings  map[binding]struct{}
	deleted   bool
	routeMark uint64
}

func (q *queue) readyLen() int { return len(q.ready) - q.head }

func (q *queue) pushBack(e *entry) { q.ready = append(q.ready, e) }

func (q *queue) popFront() *entry {
	e := q.ready[q.head]
	q.ready[q.head] = nil
	q.head++
	switch {
	case q.head == len(q.ready):
		q.ready, q.head = q.ready[:0], 0
	case q.head >= 64 && q.head >= len(q.ready)/2:
		n := copy(q.ready, q.ready[q.head:])
		clear(q.ready[n:])
		q.ready, q.head = q.ready[:n], 0
	}
	return e
}

// requeue puts e back among the ready messages at its original position.
func (q *queue) requeue(e *entry) {
	e.redelivered = true
	live := q.ready[q.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > e.seq })
	if i == 0 && q.head > 0 {
		q.head--
		q.ready[q.head] = e
		return
	}
	i += q.head
	q.ready = append(q.ready, nil)
	copy(q.ready[i+1:], q.ready[i:])
	q.ready[i] = e
}

func (q *queue) clearReady() {
	clear(q.ready)
	q.ready, q.head = q.ready[:0], 0
}

func (q *queue) stats() QueueStats {
	return QueueStats{
		Name:      q.name,
		Ready:     q.readyLen(),
		Unacked:   q.unacked,
		Consumers: len(q.consumers),
		Type:      q.spec.Type,
		Temporary: q.spec.Temporary,
	}
}

// pumpLocked hands ready messages to consumers with room in their prefetch
// window, round robin, until either runs out.
func (q *queue) pumpLocked(b *Broker) {
	for q.readyLen() > 0 && len(q.consumers) > 0 {
		c := q.nextConsumer()
		if c == nil {
			return
		}
		c.deliverLocked(b, q, q.popFront())
	}
}

func (q *queue) nextConsumer() *consumer {
	n := len(q.consumers)
	for i := range n {
		j := (q.rr + i) % n
		if c := q.consumers[j]; len(c.unacked) < c.prefetch {
			q.rr = (j + 1) % n
			return c
		}
	}
	return nil
}

func (q *queue) attach(c *consumer) { q.consumers = append(q.consumers, c) }

func (q *queue) detach(c *consumer) {
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if q.rr > i {
				q.rr--
			}
			if q.rr >= len(q.consumers) {
				q.rr = 0
			}
			return
		}
	}
}
