package memory

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// entry is one message in one queue (or waiting for its time, or only in
// the journal). Its message is never modified while anything refers to it:
// deliveries, the journal and the broker's accessors get copies.
//
// Entries are recycled. refs counts what holds one: the caller that made
// it until it is published, the queue that holds it (ready or delivered
// and not settled) or the scheduler, and each delivery whose handler's copy
// is being made. The journal's records hold none: when the last reference
// goes, an entry that records the journal still holds refer to (jlast) is
// kept by the journal until it drops them, and only then recycled (see
// journal.retire). A path that drops an entry without releasing it (a
// deleted queue, a consumer that stopped) only leaves it to the garbage
// collector; releasing too early is the mistake to avoid.
type entry struct {
	seq         uint64 // enqueue order, which a requeued message keeps
	msg         transport.Message
	hdrs        []header // msg's headers, normalized; msg.Headers is nil
	exchange    string
	kind        transport.Exchange
	key         string
	redelivered bool
	// returns counts the times the message went back to a quorum queue
	// (nacked with requeue, or unsettled when its consumer stopped): the
	// x-delivery-count header RabbitMQ adds to its later deliveries.
	returns int64
	// prio is the message's priority in a priority queue, capped at the
	// queue's x-max-priority; zero elsewhere.
	prio uint8
	// expires is when the message expires in its queue (x-message-ttl);
	// zero if it does not.
	expires time.Time

	buf  []byte // msg.Body's backing array, kept when e is recycled
	refs atomic.Int32
	// jlast is the sequence number of the newest journal record of e,
	// zero if none; guarded by the broker's lock.
	jlast uint64
}

// header is one header of an entry. A flat slice is cheaper to fill and to
// turn into a handler's map than a map is to clone.
type header struct {
	key   string
	value any
}

// maxPooledBody keeps the buffers of large bodies out of the pool.
const maxPooledBody = 64 << 10

var entryPool = sync.Pool{New: func() any { return new(entry) }}

// newEntry returns an empty entry holding one reference, its caller's.
//
// A recycled entry is cleaned here rather than when it is recycled: one
// the journal kept was made thousands of messages earlier and has left the
// processor's caches, and the broker recycles it under its lock, which a
// cache miss per message would lengthen; here the caller writes it anyway.
// Its message, exchange and key stay until set or clone overwrites them
// (zeroing them too would double the pointer writes, which cost write
// barriers while the garbage collector marks).
func newEntry() *entry {
	e := entryPool.Get().(*entry)
	if cap(e.buf) > maxPooledBody {
		e.buf, e.msg.Body = nil, nil
	}
	clear(e.hdrs)
	e.hdrs = e.hdrs[:0]
	if cap(e.hdrs) > 64 {
		e.hdrs = nil
	}
	e.seq, e.redelivered, e.kind, e.jlast, e.returns, e.prio, e.expires = 0, false, 0, 0, 0, 0, time.Time{}
	e.refs.Store(1)
	return e
}

func (e *entry) retain() { e.refs.Add(1) }

// free recycles an entry that nothing else refers to and that the journal
// never recorded (or whose records it dropped).
func (e *entry) free() { entryPool.Put(e) }

// releaseLocked drops a reference to e; the last one retires it.
func (b *Broker) releaseLocked(e *entry) {
	if e.refs.Add(-1) == 0 {
		b.journal.retire(e)
	}
}

// release is releaseLocked for a caller without the lock, which it takes
// only for the last reference.
func (b *Broker) release(e *entry) {
	if e.refs.Add(-1) == 0 {
		b.mu.Lock()
		b.journal.retire(e)
		b.mu.Unlock()
	}
}

// set makes e hold a normalized copy of m, as [transport.Message.Normalized]
// makes one, in a single pass over the headers. m's properties must have
// been validated; its headers are validated here, with the errors Normalized
// gives.
func (e *entry) set(m *transport.Message) error {
	e.msg = *m
	e.msg.Headers = nil
	if !m.Timestamp.IsZero() {
		e.msg.Timestamp = m.Timestamp.Truncate(time.Second).UTC()
	}
	e.setBody(m.Body)
	e.hdrs = e.hdrs[:0]
	for k, v := range m.Headers {
		if len(k) > transport.MaxNameLength || !utf8.ValidString(k) {
			return headersError(m.Headers)
		}
		switch x := v.(type) {
		case nil, bool, string, int8, uint8, int16, uint16, int32, uint32, int64, float32, float64, transport.Decimal:
		case int:
			v = normalizeInt(int64(x))
		default:
			// Rare types go through the transport's own normalization.
			n, err := transport.Headers{k: v}.Normalize()
			if err != nil {
				return err
			}
			v = n[k]
		}
		e.hdrs = append(e.hdrs, header{k, v})
	}
	return nil
}

// setBody makes msg.Body a copy of body in e's buffer; an empty body is
// delivered as nil, as Normalized gives it.
func (e *entry) setBody(body []byte) {
	if len(body) == 0 {
		e.msg.Body = nil
		return
	}
	e.buf = append(e.buf[:0], body...)
	e.msg.Body = e.buf
}

// headersError returns the error [transport.Headers.Validate] gives for h.
func headersError(h transport.Headers) error {
	if err := h.Validate(); err != nil {
		return err
	}
	return transport.ErrInvalidMessage // not reached: set found a bad key
}

func normalizeInt(v int64) any {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		return int32(v)
	}
	return v
}

// clone returns a new entry with a copy of e's message, exchange and key,
// holding one reference. The header values are shared: neither entry ever
// modifies them, and the copies handed out are deep.
func (e *entry) clone() *entry {
	c := newEntry()
	c.msg = e.msg
	c.setBody(e.msg.Body)
	c.hdrs = append(c.hdrs[:0], e.hdrs...)
	c.exchange, c.kind, c.key = e.exchange, e.kind, e.key
	return c
}

// headers returns a deep copy of e's headers as a map, nil if it has none.
func (e *entry) headers() transport.Headers {
	if len(e.hdrs) == 0 {
		return nil
	}
	h, _ := headerMaps.Get().(transport.Headers)
	if h == nil {
		h = make(transport.Headers, len(e.hdrs))
	}
	for _, kv := range e.hdrs {
		h[kv.key] = cloneValue(kv.value)
	}
	return h
}

// headerMaps holds the header maps of deliveries given back through
// [Transport.Recycle], emptied: a map keeps the room it grew, so that
// filling it again for the next delivery allocates nothing (a map of more
// than eight entries, such as PikaBus's ten headers, costs four
// allocations when made afresh).
var headerMaps sync.Pool

// maxRecycledHeaders keeps maps that grew large out of the pool.
const maxRecycledHeaders = 64

// Recycle implements [transport.Recycler]: the delivery and its body's
// buffer go back to a pool for a later delivery, and its header map, emptied,
// to another. The caller promises that nothing reads or writes d or its
// message afterwards.
func (t *Transport) Recycle(d *transport.Delivery) {
	if d == nil {
		return
	}
	r, ours := d.Acknowledger.(recyclable)
	if !ours {
		return
	}
	h := d.Message.Headers
	d.Message.Headers = nil
	if h != nil && len(h) <= maxRecycledHeaders {
		clear(h)
		headerMaps.Put(h)
	}
	r.recycle(d)
}

// message returns a deep copy of e's message.
func (e *entry) message() transport.Message {
	m := e.msg
	m.Headers = e.headers()
	if e.msg.Body != nil {
		m.Body = append([]byte(nil), e.msg.Body...)
	}
	return m
}

// copyMessage sets *m to a deep copy of e's message, with its body in buf,
// which has the body's length.
func (e *entry) copyMessage(m *transport.Message, buf []byte) {
	*m = e.msg
	m.Headers = e.headers()
	if e.msg.Body != nil {
		copy(buf, e.msg.Body)
		m.Body = buf
	}
}

// cloneValue deep-copies a normalized header value: byte slices, nested
// tables and arrays are copied, other values are immutable.
func cloneValue(v any) any {
	switch v := v.(type) {
	case []byte:
		return append([]byte(nil), v...)
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = cloneValue(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = cloneValue(x)
		}
		return c
	}
	return v
}
