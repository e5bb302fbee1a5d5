package memory

import (
	"time"

	"github.com/busline/busline/transport"
)

// DefaultJournalLimit is how many records a broker's journal keeps unless
// [Broker.SetJournalLimit] says otherwise: the newest ones.
const DefaultJournalLimit = 10_000

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

// String returns the operation's name, such as "dispatched".
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

// record is a Record as the journal keeps it, small because one is made at
// every step of every message: the exchange, routing key and message come
// from the entry (whose message is never modified, and copied only when the
// journal is read), the rare fields from extra.
//
// It has neither a sequence number (the journal's records are numbered
// without gaps, so their place gives it) nor a connection (the consumer's):
// 48 bytes with four pointers, which the garbage collector scans in every
// record it keeps, and which cost write barriers when it is copied in while
// the collector marks.
type record struct {
	op          Op
	redelivered bool
	requeue     bool
	at          stamp
	e           *entry
	// c is the consumer of a delivery's record, the connection's getter
	// (whose tag is empty) for a Get; for a publish, the getter of the
	// publishing connection, if any, which names it.
	c *consumer
	// q is the Queue of a delivery's record, or the one queue a Dispatched
	// or Due message entered.
	q     *queue
	extra *recordExtra
}

// publisher returns what a record of a message published on cn keeps to
// name it: its getter.
func (cn *conn) publisher() *consumer {
	if cn == nil {
		return nil
	}
	return cn.getter
}

// stamp is a time on the broker's clock: how long after the broker started.
type stamp time.Duration

type recordExtra struct {
	notBefore time.Time
	err       error
	queues    []string // when a message entered several queues
}

func (r *record) extras() *recordExtra {
	if r.extra == nil {
		r.extra = &recordExtra{}
	}
	return r.extra
}

func (r *record) setQueues(qs []*queue) {
	switch len(qs) {
	case 0:
	case 1:
		r.q = qs[0]
	default:
		x := r.extras()
		x.queues = make([]string, len(qs))
		for i, q := range qs {
			x.queues[i] = q.name
		}
	}
}

func (r *record) export(started time.Time, seq uint64) Record {
	out := Record{
		Seq: seq, Op: r.op, Time: started.Add(time.Duration(r.at)).Round(0),
		Exchange: r.e.exchange, RoutingKey: r.e.key,
		Redelivered: r.redelivered, Requeue: r.requeue, Message: r.e.message(),
	}
	if r.c != nil {
		out.Connection, out.Consumer = r.c.cn.name, r.c.tag
	}
	switch {
	case r.q == nil:
	case r.op == Dispatched || r.op == Due:
		out.Queues = []string{r.q.name}
	default:
		out.Queue = r.q.name
	}
	if x := r.extra; x != nil {
		out.NotBefore, out.Err = x.notBefore, x.err
		if x.queues != nil {
			out.Queues = append([]string(nil), x.queues...)
		}
	}
	return out
}

const journalChunk = 256

// journal keeps the newest records in chunks, so that neither growing nor
// dropping the oldest copies records around. It drops the oldest records a
// chunk at a time, once the whole chunk is older than the limit; until then
// it holds up to a chunk more than the limit, which it never shows.
//
// Records refer to their entries without holding references: an entry
// whose last reference goes while records the journal holds still refer to
// it is retired to held, in the order entries retire, and recycled once the
// journal has dropped its newest record (entry.jlast). So recording costs
// no atomic operation, and dropping records touches neither the records nor
// their entries (made thousands of messages earlier and no longer in the
// processor's caches): only held, in order.
type journal struct {
	limit  int // < 0: no limit; 0: off
	seq    uint64
	chunks [][]record
	n      int // records held, up to a chunk more than limit
	spare  []record
	// held are the retired entries records may still refer to, mostly in
	// the order of their jlast; held[heldHead:] are live.
	held     []*entry
	heldHead int
}

// add records r, which refers to its entry until it is dropped.
func (j *journal) add(r *record, now stamp) {
	j.seq++
	if j.limit == 0 {
		return
	}
	r.at = now
	if r.e != nil {
		r.e.jlast = j.seq
	}
	j.push(r)
}

// retire recycles e, which nothing holds any longer, or keeps it while
// records refer to it.
func (j *journal) retire(e *entry) {
	if e.jlast == 0 || e.jlast < j.first() {
		e.free()
		return
	}
	j.held = append(j.held, e)
}

// first is the sequence number of the oldest record held; every record
// from it to seq is held.
func (j *journal) first() uint64 { return j.seq - uint64(j.n) + 1 }

func (j *journal) push(r *record) {
	if len(j.chunks) == 0 || len(j.chunks[len(j.chunks)-1]) == journalChunk {
		c := j.spare
		if c == nil {
			c = make([]record, 0, journalChunk)
		}
		j.spare = nil
		j.chunks = append(j.chunks, c)
	}
	last := len(j.chunks) - 1
	j.chunks[last] = append(j.chunks[last], *r)
	j.n++
	if j.limit > 0 && j.n-len(j.chunks[0]) >= j.limit {
		j.dropFirst()
	}
}

// dropFirst drops the oldest chunk, and recycles the retired entries only
// it referred to. The chunk's records are left as they are: the chunk is
// either garbage or the spare, whose records append overwrites (zeroing
// them first would double the pointer writes, and the write barriers they
// cost while the garbage collector marks).
func (j *journal) dropFirst() {
	c := j.chunks[0]
	j.n -= len(c)
	j.chunks[0] = nil
	j.chunks = j.chunks[1:]
	if cap(c) == journalChunk {
		j.spare = c[:0]
	}
	j.recycleHeld(j.first())
}

// recycleHeld recycles the held entries, from the oldest retired, whose
// newest record is older than first. An entry retired out of order waits
// for those before it, which only delays its reuse.
func (j *journal) recycleHeld(first uint64) {
	i := j.heldHead
	for ; i < len(j.held) && j.held[i].jlast < first; i++ {
		j.held[i].free()
		j.held[i] = nil
	}
	j.heldHead = i
	if i == len(j.held) {
		j.held, j.heldHead = j.held[:0], 0
	} else if i > len(j.held)/2 && i >= journalChunk {
		n := copy(j.held, j.held[i:])
		clear(j.held[n:])
		j.held, j.heldHead = j.held[:n], 0
	}
}

// newest returns the records the journal shows, the newest limit of those
// it holds, and the sequence number of the first.
func (j *journal) newest() ([]record, uint64) {
	skip := 0
	if j.limit > 0 && j.n > j.limit {
		skip = j.n - j.limit
	}
	out := make([]record, 0, j.n-skip)
	for _, c := range j.chunks {
		if skip >= len(c) {
			skip -= len(c)
			continue
		}
		out = append(out, c[skip:]...)
		skip = 0
	}
	return out, j.seq - uint64(len(out)) + 1
}

// reset drops every record.
func (j *journal) reset() {
	j.chunks, j.n, j.spare = nil, 0, nil
	j.recycleHeld(j.seq + 1)
}

func (j *journal) setLimit(n int) {
	if n == 0 {
		j.reset()
		j.limit = 0
		return
	}
	var old []record
	for _, c := range j.chunks {
		old = append(old, c...)
	}
	j.chunks, j.n, j.spare = nil, 0, nil
	j.limit = -1 // dropping needs every record back to know which is first
	for i := range old {
		j.push(&old[i])
	}
	j.limit = n
	for n > 0 && len(j.chunks) > 0 && j.n-len(j.chunks[0]) >= n {
		j.dropFirst()
	}
	j.recycleHeld(j.first())
}

// Journal returns the records of what the broker did, oldest first: the
// newest [DefaultJournalLimit] of them unless [Broker.SetJournalLimit] says
// otherwise. The records and their messages are copies.
func (b *Broker) Journal() []Record {
	b.mu.Lock()
	defer b.mu.Unlock() // the entries are recycled once no record holds them
	recs, first := b.journal.newest()
	out := make([]Record, len(recs))
	for i := range recs {
		out[i] = recs[i].export(b.started, first+uint64(i))
	}
	return out
}

// ClearJournal forgets every record made so far. Sequence numbers go on.
func (b *Broker) ClearJournal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.journal.reset()
}

// SetJournalLimit makes the journal keep the n newest records; 0 turns it
// off and a negative n keeps every record (memory grows with every message,
// so only for bounded tests). The journal drops its oldest records 256 at a
// time, so it may hold up to 255 more (and their messages) than it shows.
func (b *Broker) SetJournalLimit(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.journal.setLimit(n)
	b.journalOn.Store(n != 0)
}
