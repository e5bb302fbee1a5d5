package amqp

import (
	"errors"
	"slices"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// A fake broker behind the amqpConn and amqpChannel interfaces, for fault
// injection. Like amqp091, each connection hands notifications over from a
// single reader goroutine, in order, so a return reaches the transport
// before the confirm that follows it.

type publishCall struct {
	exchange, key string
	mandatory     bool
	msg           amqp091.Publishing
}

type fakeBroker struct {
	mu        sync.Mutex
	conns     []*fakeConn
	dialErr   error
	onPublish func(ch *fakeChannel, seq uint64, p publishCall)
	// writeErr, when set, makes Publish fail as a socket write does.
	writeErr func(p publishCall) error
	missing  map[string]bool // queues that do not exist: binding them fails with 404
	binds    map[string]int  // QueueBind calls per queue
	// hang, when set, makes the operations it returns true for wait until
	// their connection closes, as on a cluster waiting for a hung node.
	hang  func(c *fakeConn, op string) bool
	hangs int // operations hanging now
}

// hung blocks while b.hang says op hangs on c's connection, until it
// closes.
func (ch *fakeChannel) hung(op string) error {
	b := ch.c.b
	b.mu.Lock()
	hang := b.hang != nil && b.hang(ch.c, op)
	if hang {
		b.hangs++
	}
	b.mu.Unlock()
	if !hang {
		return nil
	}
	<-ch.c.done
	b.mu.Lock()
	b.hangs--
	b.mu.Unlock()
	return amqp091.ErrClosed
}

func (b *fakeBroker) hanging() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hangs
}

func (b *fakeBroker) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *fakeBroker) setHang(f func(c *fakeConn, op string) bool) {
	b.mu.Lock()
	b.hang = f
	b.mu.Unlock()
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{onPublish: func(ch *fakeChannel, seq uint64, _ publishCall) { ch.ack(seq) }}
}

func (b *fakeBroker) dial(string, amqp091.Config) (amqpConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dialErr != nil {
		return nil, b.dialErr
	}
	c := &fakeConn{b: b, events: make(chan func(), 1024), done: make(chan struct{})}
	go c.reader()
	b.conns = append(b.conns, c)
	return c, nil
}

func (b *fakeBroker) setDialErr(err error) {
	b.mu.Lock()
	b.dialErr = err
	b.mu.Unlock()
}

func (b *fakeBroker) publisher(f func(ch *fakeChannel, seq uint64, p publishCall)) {
	b.mu.Lock()
	b.onPublish = f
	b.mu.Unlock()
}

// channels returns every channel opened so far, in order.
func (b *fakeBroker) channels() []*fakeChannel {
	b.mu.Lock()
	conns := append([]*fakeConn(nil), b.conns...)
	b.mu.Unlock()
	var out []*fakeChannel
	for _, c := range conns {
		c.mu.Lock()
		out = append(out, c.chans...)
		c.mu.Unlock()
	}
	return out
}

// published returns every message published, on every channel, in order
// of the channels.
func (b *fakeBroker) published() []publishCall {
	var out []publishCall
	for _, ch := range b.channels() {
		ch.mu.Lock()
		out = append(out, ch.published...)
		ch.mu.Unlock()
	}
	return out
}

type fakeConn struct {
	url    string // set by tests that dial several
	b      *fakeBroker
	mu     sync.Mutex
	closed bool
	closes []chan *amqp091.Error
	blocks []chan amqp091.Blocking
	chans  []*fakeChannel
	events chan func()
	done   chan struct{}
}

func (c *fakeConn) reader() {
	defer close(c.done)
	for f := range c.events {
		f()
	}
}

// emit queues f on the reader; it is dropped once the connection is closed.
func (c *fakeConn) emit(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.events <- f
	}
}

func send[T any](c chan T, v T) {
	select {
	case c <- v:
	case <-time.After(5 * time.Second): // as amqp091: give up on a stuck listener
	}
}

func (c *fakeConn) Channel() (amqpChannel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, amqp091.ErrClosed
	}
	ch := &fakeChannel{c: c, deliveries: make(chan amqp091.Delivery, 100)}
	c.chans = append(c.chans, ch)
	return ch, nil
}

func (c *fakeConn) NotifyClose(r chan *amqp091.Error) chan *amqp091.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes = append(c.closes, r)
	return r
}

func (c *fakeConn) NotifyBlocked(r chan amqp091.Blocking) chan amqp091.Blocking {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocks = append(c.blocks, r)
	return r
}

func (c *fakeConn) Close() error { c.shutdown(nil); return nil }

// lose drops the connection as a broker restart would.
func (c *fakeConn) lose() {
	c.shutdown(&amqp091.Error{Code: amqp091.ConnectionForced, Reason: "CONNECTION_FORCED - broker forced connection closure", Server: true})
}

func (c *fakeConn) shutdown(e *amqp091.Error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	chans := append([]*fakeChannel(nil), c.chans...)
	closes, blocks := c.closes, c.blocks
	c.closed = true
	close(c.events)
	c.mu.Unlock()
	<-c.done
	for _, ch := range chans {
		ch.shutdown(e)
	}
	for _, r := range closes {
		if e != nil {
			send(r, e)
		}
		close(r)
	}
	for _, r := range blocks {
		close(r)
	}
}

type fakeChannel struct {
	c          *fakeConn
	mu         sync.Mutex
	closed     bool
	seq        uint64
	confirms   []chan amqp091.Confirmation
	returns    []chan amqp091.Return
	closes     []chan *amqp091.Error
	cancels    []chan string
	deliveries chan amqp091.Delivery
	consuming  bool
	published  []publishCall
	unacked    map[uint64]bool // delivered, not settled, as the broker sees it
	acks       []uint64        // every tag acked, a multiple ack expanded
	ackFrames  int             // basic.ack frames received
	nacks      []uint64
	unknown    []uint64 // tags settled that were not outstanding (RabbitMQ: PRECONDITION_FAILED)
}

func (ch *fakeChannel) ack(seq uint64) {
	ch.c.emit(func() { ch.confirm(amqp091.Confirmation{DeliveryTag: seq, Ack: true}) })
}

func (ch *fakeChannel) nack(seq uint64) {
	ch.c.emit(func() { ch.confirm(amqp091.Confirmation{DeliveryTag: seq, Ack: false}) })
}

func (ch *fakeChannel) confirm(c amqp091.Confirmation) {
	ch.mu.Lock()
	ls := ch.confirms
	ch.mu.Unlock()
	for _, l := range ls {
		send(l, c)
	}
}

// ret returns p as unroutable; the confirm must follow.
func (ch *fakeChannel) ret(p publishCall) {
	if !p.mandatory {
		return // RabbitMQ drops an unroutable message that is not mandatory
	}
	ch.c.emit(func() {
		ch.mu.Lock()
		ls := ch.returns
		ch.mu.Unlock()
		r := amqp091.Return{ReplyCode: 312, ReplyText: "NO_ROUTE", Exchange: p.exchange, RoutingKey: p.key,
			Headers: p.msg.Headers, MessageId: p.msg.MessageId}
		for _, l := range ls {
			send(l, r)
		}
	})
}

// fail closes the channel with a channel exception; the connection lives.
func (ch *fakeChannel) fail(code int, reason string) {
	ch.c.emit(func() { ch.shutdown(&amqp091.Error{Code: code, Reason: reason, Server: true}) })
}

// deliver hands a delivery to the channel's consumer.
func (ch *fakeChannel) deliver(d amqp091.Delivery) {
	ch.c.emit(func() {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if !ch.closed && ch.consuming {
			d.Acknowledger = nil
			if ch.unacked == nil {
				ch.unacked = map[uint64]bool{}
			}
			ch.unacked[d.DeliveryTag] = true
			ch.deliveries <- d
		}
	})
}

func (ch *fakeChannel) shutdown(e *amqp091.Error) {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	confirms, returns, closes, cancels := ch.confirms, ch.returns, ch.closes, ch.cancels
	ch.confirms, ch.returns, ch.closes, ch.cancels = nil, nil, nil, nil
	close(ch.deliveries)
	ch.mu.Unlock()
	for _, l := range closes {
		if e != nil {
			send(l, e)
		}
		close(l)
	}
	for _, l := range confirms {
		close(l)
	}
	for _, l := range returns {
		close(l)
	}
	for _, l := range cancels {
		close(l)
	}
}

func (ch *fakeChannel) isClosed() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.closed
}

func (ch *fakeChannel) Confirm(bool) error { return ch.ok() }

func (ch *fakeChannel) ok() error {
	if ch.isClosed() {
		return amqp091.ErrClosed
	}
	return nil
}

func (ch *fakeChannel) Qos(int, int, bool) error { return ch.ok() }

func (ch *fakeChannel) NotifyPublish(c chan amqp091.Confirmation) chan amqp091.Confirmation {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.confirms = append(ch.confirms, c)
	return c
}

func (ch *fakeChannel) NotifyReturn(c chan amqp091.Return) chan amqp091.Return {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.returns = append(ch.returns, c)
	return c
}

func (ch *fakeChannel) NotifyClose(c chan *amqp091.Error) chan *amqp091.Error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.closes = append(ch.closes, c)
	return c
}

func (ch *fakeChannel) NotifyCancel(c chan string) chan string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.cancels = append(ch.cancels, c)
	return c
}

func (ch *fakeChannel) Publish(exchange, key string, mandatory, _ bool, msg amqp091.Publishing) error {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return amqp091.ErrClosed
	}
	p := publishCall{exchange, key, mandatory, msg}
	ch.c.b.mu.Lock()
	f, werr := ch.c.b.onPublish, ch.c.b.writeErr
	ch.c.b.mu.Unlock()
	if werr != nil {
		if err := werr(p); err != nil {
			ch.mu.Unlock()
			return err
		}
	}
	ch.seq++
	seq := ch.seq
	ch.published = append(ch.published, p)
	ch.mu.Unlock()
	f(ch, seq, p)
	return nil
}

func (ch *fakeChannel) Consume(string, string, bool, bool, bool, bool, amqp091.Table) (<-chan amqp091.Delivery, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return nil, amqp091.ErrClosed
	}
	ch.consuming = true
	return ch.deliveries, nil
}

func (ch *fakeChannel) Cancel(string, bool) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return amqp091.ErrClosed
	}
	if ch.consuming {
		ch.consuming = false
		close(ch.deliveries)
		ch.deliveries = make(chan amqp091.Delivery, 100)
	}
	return nil
}

func (ch *fakeChannel) Get(string, bool) (amqp091.Delivery, bool, error) {
	return amqp091.Delivery{}, false, ch.ok()
}

// Ack settles as RabbitMQ does: a multiple ack settles every outstanding
// delivery up to tag, which must itself be outstanding. A tag that is not
// outstanding (settled already, or never delivered) is recorded in unknown
// where RabbitMQ would close the channel; tests check it stays empty.
func (ch *fakeChannel) Ack(tag uint64, multiple bool) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return amqp091.ErrClosed
	}
	ch.ackFrames++
	if ch.unacked != nil && !ch.unacked[tag] {
		ch.unknown = append(ch.unknown, tag)
		return nil
	}
	if !multiple {
		delete(ch.unacked, tag)
		ch.acks = append(ch.acks, tag)
		return nil
	}
	var settled []uint64
	for t := range ch.unacked {
		if t <= tag {
			settled = append(settled, t)
		}
	}
	slices.Sort(settled)
	for _, t := range settled {
		delete(ch.unacked, t)
	}
	ch.acks = append(ch.acks, settled...)
	return nil
}

func (ch *fakeChannel) Nack(tag uint64, _, _ bool) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return amqp091.ErrClosed
	}
	if ch.unacked != nil && !ch.unacked[tag] {
		ch.unknown = append(ch.unknown, tag)
		return nil
	}
	delete(ch.unacked, tag)
	ch.nacks = append(ch.nacks, tag)
	return nil
}

func (ch *fakeChannel) ExchangeDeclare(string, string, bool, bool, bool, bool, amqp091.Table) error {
	return ch.ok()
}

func (ch *fakeChannel) ExchangeDeclarePassive(string, string, bool, bool, bool, bool, amqp091.Table) error {
	return ch.ok()
}

func (ch *fakeChannel) ExchangeBind(string, string, string, bool, amqp091.Table) error {
	return ch.ok()
}

func (ch *fakeChannel) QueueDeclare(name string, _, _, _, _ bool, _ amqp091.Table) (amqp091.Queue, error) {
	if err := ch.hung("QueueDeclare"); err != nil {
		return amqp091.Queue{}, err
	}
	return amqp091.Queue{Name: name}, ch.ok()
}

func (ch *fakeChannel) QueueDeclarePassive(name string, _, _, _, _ bool, _ amqp091.Table) (amqp091.Queue, error) {
	return amqp091.Queue{Name: name}, ch.ok()
}

// setMissing makes queue not exist (or exist again) for QueueBind.
func (b *fakeBroker) setMissing(queue string, missing bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.missing == nil {
		b.missing = make(map[string]bool)
	}
	b.missing[queue] = missing
}

// bindCount returns how many times queue was bound, on any exchange.
func (b *fakeBroker) bindCount(queue string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.binds[queue]
}

func (ch *fakeChannel) QueueBind(queue, _, _ string, _ bool, _ amqp091.Table) error {
	if err := ch.ok(); err != nil {
		return err
	}
	if err := ch.hung("QueueBind"); err != nil {
		return err
	}
	b := ch.c.b
	b.mu.Lock()
	missing := b.missing[queue]
	if b.binds == nil {
		b.binds = make(map[string]int)
	}
	b.binds[queue]++
	b.mu.Unlock()
	if missing {
		ch.shutdown(nil)
		return &amqp091.Error{Code: amqp091.NotFound, Reason: "NOT_FOUND - no queue '" + queue + "'", Server: true}
	}
	return nil
}

func (ch *fakeChannel) QueueUnbind(string, string, string, amqp091.Table) error { return ch.ok() }

func (ch *fakeChannel) QueueDelete(string, bool, bool, bool) (int, error) { return 0, ch.ok() }

func (ch *fakeChannel) Close() error {
	if ch.isClosed() {
		return amqp091.ErrClosed
	}
	ch.c.mu.Lock()
	closed := ch.c.closed
	ch.c.mu.Unlock()
	if closed {
		ch.shutdown(nil)
		return nil
	}
	done := make(chan struct{})
	ch.c.emit(func() { ch.shutdown(nil); close(done) })
	select {
	case <-done:
	case <-ch.c.done:
		ch.shutdown(nil)
	}
	return nil
}

var errDialRefused = errors.New("dial tcp 127.0.0.1:5672: connect: connection refused")
