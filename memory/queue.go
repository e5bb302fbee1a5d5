package memory

import (
	"sort"
	"time"

	"github.com/busline/busline/transport"
)

type queue struct {
	name  string
	id    uint64
	spec  transport.Queue // Type and Arguments normalized
	owner *conn           // the connection of a temporary queue
	lim   limits          // the arguments the broker enforces

	// ready holds the messages waiting, in seq order (in a priority
	// queue, by priority, then seq).
	ready deque
	// readyBytes is the total body size of the ready messages, for
	// x-max-length-bytes.
	readyBytes int64
	// rejecting is set while a quorum queue with x-overflow
	// reject-publish refuses publishes (see refusesLocked).
	rejecting bool
	// ttlTimer fires when the message at the head expires (ttlDue);
	// ttlGen tells a stale firing from the current one.
	ttlTimer *time.Timer
	ttlDue   time.Time
	ttlGen   uint64
	// unacked counts the deliveries not yet settled.
	unacked int

	consumers []*consumer
	rr        int // the consumer whose turn it is

	bindings  map[binding]struct{}
	deleted   bool
	routeMark uint64
}

func (q *queue) readyLen() int { return q.ready.n }

// pushBack adds e to the ready messages: at the back, or in a priority
// queue behind the messages of its priority or higher.
func (q *queue) pushBack(e *entry) {
	q.readyBytes += int64(len(e.msg.Body))
	if q.lim.priority {
		q.insertOrdered(e)
		return
	}
	q.ready.pushBack(e)
}

func (q *queue) popFront() *entry {
	e := q.ready.popFront()
	q.readyBytes -= int64(len(e.msg.Body))
	return e
}

// insertOrdered puts e among the ready messages in delivery order: by seq,
// and in a priority queue by priority first. A requeued message keeps its
// seq, so it goes back to its original position among those of its
// priority, as RabbitMQ 3.10.8 puts it.
func (q *queue) insertOrdered(e *entry) {
	d := &q.ready
	var i int
	if q.lim.priority {
		i = sort.Search(d.n, func(i int) bool {
			x := d.at(i)
			return x.prio < e.prio || (x.prio == e.prio && x.seq > e.seq)
		})
	} else {
		i = sort.Search(d.n, func(i int) bool { return d.at(i).seq > e.seq })
	}
	d.insert(i, e)
}

// requeue puts e back among the ready messages at its original position,
// as RabbitMQ does with the messages of a consumer that stopped or lost its
// connection, and with every requeued message of a classic queue.
func (q *queue) requeue(e *entry) {
	e.redelivered = true
	if q.spec.Type == transport.Quorum {
		e.returns++
	}
	q.readyBytes += int64(len(e.msg.Body))
	q.insertOrdered(e)
}

// nackRequeue puts back e, nacked with requeue: at its original position
// in a classic queue, at the back of a quorum queue (where RabbitMQ 3.10
// enqueues it again, as checked on 3.10.8, so that a message that keeps
// failing does not block the ones behind it).
func (q *queue) nackRequeue(b *Broker, e *entry) {
	if q.spec.Type != transport.Quorum {
		q.requeue(e)
		return
	}
	e.redelivered = true
	e.returns++
	b.seq++
	e.seq = b.seq
	q.pushBack(e)
}

func (q *queue) clearReady() { q.ready, q.readyBytes = deque{}, 0 }

// deque is a ring buffer of entries: a queue mostly pushes at the back and
// pops at the front, and a requeued message usually goes back to the front.
type deque struct {
	buf  []*entry // len is a power of two, or zero
	head int
	n    int
}

func (d *deque) at(i int) *entry { return d.buf[(d.head+i)&(len(d.buf)-1)] }

func (d *deque) grow() {
	if d.n < len(d.buf) {
		return
	}
	buf := make([]*entry, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.at(i)
	}
	d.buf, d.head = buf, 0
}

func (d *deque) pushBack(e *entry) {
	d.grow()
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = e
	d.n++
}

func (d *deque) popFront() *entry {
	e := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return e
}

// insert puts e at position i, moving the shorter side.
func (d *deque) insert(i int, e *entry) {
	d.grow()
	mask := len(d.buf) - 1
	if i < d.n-i {
		d.head = (d.head - 1) & mask
		for k := 0; k < i; k++ {
			d.buf[(d.head+k)&mask] = d.buf[(d.head+k+1)&mask]
		}
	} else {
		for k := d.n; k > i; k-- {
			d.buf[(d.head+k)&mask] = d.buf[(d.head+k-1)&mask]
		}
	}
	d.buf[(d.head+i)&mask] = e
	d.n++
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
// window, until either runs out: to those of the highest priority with room,
// round robin among them, as RabbitMQ does.
// now stamps the journal's records.
// An expired message at the head is dropped, never delivered.
func (q *queue) pumpLocked(b *Broker, now stamp) {
	ttl := q.lim.ttl >= 0
	for q.readyLen() > 0 && len(q.consumers) > 0 {
		if ttl {
			if q.expireHeadLocked(b, now); q.readyLen() == 0 {
				break
			}
		}
		c := q.nextConsumer()
		if c == nil {
			break
		}
		c.deliverLocked(b, q, q.popFront(), now)
	}
	if ttl {
		q.armExpiryLocked(b)
	}
}

func (q *queue) nextConsumer() *consumer {
	n := len(q.consumers)
	top, found := 0, false
	for _, c := range q.consumers {
		if c.unacked.n < c.prefetch && (!found || c.priority > top) {
			top, found = c.priority, true
		}
	}
	if !found {
		return nil
	}
	for i := range n {
		j := (q.rr + i) % n
		if c := q.consumers[j]; c.unacked.n < c.prefetch && c.priority == top {
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
