package memory

import (
	"time"

	"github.com/busline/busline/transport"
)

// DefaultJournalLimit is how many records a broker's journal keeps unless
// [Broker.SetJournalLimit] says otherwise: the newest ones.
const DefaultJournalLimit = 100_000

// Op is what a journal [Record] records.
type Op uint8

// The operations the journal records.
const (
	// Dispatched: a message was accepted by an exchange. Queues lists the
	// queues it entered, none if it was unroutable and not mandatory; a
	// deferred message has NotBefore set and enters its queues later (see
	// Due).
	Dispatched Op = iota + 1
	// Failed: a dispatch was refused (Err says why) and the message entered
	// no queue.
	Failed
	// Due: a deferred message fell due and was routed to Queues (none if
	// it had become unroutable; it was dropped).
	Due
	// Delivered: a message was delivered from Queue to a consumer (tagged
	// Consumer) or to Get (Consumer empty).
	Delivered
	// Acked: a delivery was acked.
	Acked
	// Nacked: a delivery was nacked, with Requeue or not.
	Nacked
	// Requeued: an unsettled delivery went back to Queue because its
	// consumer stopped or its connection was lost.
	Requeued
)

func (o Op) String() string {
	switch o {
	case Dispatched:
		return "dispatched"
	case Failed:
		return "failed"
	case Due:
		return "due"
	case Delivered:
		return "delivered"
	case Acked:
		return "acked"
	case Nacked:
		return "nacked"
	case Requeued:
		return "requeued"
	}
	return "unknown op"
}

// Record is one entry of a broker's journal.
type Record struct {
	// Seq numbers the records of a broker from 1, in the order they were
	// made.
	Seq uint64
	// Op is what happened.
	Op Op
	// Time is when it happened, on the broker's clock.
	Time time.Time
	// Connection is the name of the transport involved ([Options.Name]),
	// empty for [Broker.Publish] and timers.
	Connection string
	// Exchange and RoutingKey are where the message was published.
	Exchange   string
	RoutingKey string
	// Queues are the queues a Dispatched or Due message entered.
	Queues []string
	// Queue is the queue of a Delivered, Acked, Nacked or Requeued message.
	Queue string
	// Consumer is the consumer's tag, for deliveries to a consumer.
	Consumer string
	// Redelivered is the delivery's redelivered flag.
	Redelivered bool
	// Requeue is set on a Nacked record when the message was requeued.
	Requeue bool
	// NotBefore is the time a deferred message is due.
	NotBefore time.Time
	// Err is why a dispatch Failed.
	Err error
	// Message is a copy of the message as the broker holds it (normalized).
	Message transport.Message
}

type record struct {
	Op          Op
	Connection  string
	Exchange    string
	RoutingKey  string
	Queues      []string
	Queue       string
	Consumer    string
	Redelivered bool
	Requeue     bool
	NotBefore   time.Time
	Err         error

	seq  uint64
	time time.Time
	msg  *transport.Message // shared with the queue: never modified
}

// journal is a ring of the newest records.
type journal struct {
	limit int // < 0: no limit; 0: off
	seq   uint64
	recs  []record
	start int
}

func (j *journal) add(r record) {
	j.seq++
	if j.limit == 0 {
		return
	}
	r.seq, r.time = j.seq, time.Now()
	if j.limit < 0 || len(j.recs) < j.limit {
		j.recs = append(j.recs, r)
		return
	}
	j.recs[j.start] = r
	j.start = (j.start + 1) % len(j.recs)
}

func (j *journal) setLimit(n int) {
	old := j.ordered()
	j.recs, j.start, j.limit = nil, 0, n
	if n == 0 {
		return
	}
	if n > 0 && len(old) > n {
		old = old[len(old)-n:]
	}
	j.recs = append(j.recs, old...)
}

func (j *journal) ordered() []record {
	out := make([]record, 0, len(j.recs))
	out = append(out, j.recs[j.start:]...)
	return append(out, j.recs[:j.start]...)
}

// Journal returns the records of what the broker did, oldest first: the
// newest [DefaultJournalLimit] of them unless [Broker.SetJournalLimit] says
// otherwise. The records and their messages are copies.
func (b *Broker) Journal() []Record {
	b.mu.Lock()
	recs := b.journal.ordered()
	b.mu.Unlock()
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = Record{
			Seq: r.seq, Op: r.Op, Time: r.time, Connection: r.Connection,
			Exchange: r.Exchange, RoutingKey: r.RoutingKey, Queues: r.Queues,
			Queue: r.Queue, Consumer: r.Consumer, Redelivered: r.Redelivered,
			Requeue: r.Requeue, NotBefore: r.NotBefore, Err: r.Err,
		}
		if r.msg != nil {
			out[i].Message = r.msg.Clone()
		}
	}
	return out
}

// ClearJournal forgets every record made so far. Sequence numbers go on.
func (b *Broker) ClearJournal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.journal.recs)
	b.journal.recs, b.journal.start = b.journal.recs[:0], 0
}

// SetJournalLimit makes the journal keep the n newest records; 0 turns it
// off and a negative n keeps every record (memory grows with every message,
// so only for bounded tests).
func (b *Broker) SetJournalLimit(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.journal.setLimit(n)
}
