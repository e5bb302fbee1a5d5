package amqp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// seqHeader carries the publish sequence number (the confirm delivery tag)
// of a mandatory message on its channel when another mandatory message with
// the same exchange, routing key and message id is in flight on it, so that
// a basic.return is matched to its publish exactly even then (a retried copy
// keeps its message id). Consumers strip it.
//
// Most messages go without it: among the mandatory messages in flight on a
// channel that share exchange, routing key and message id, at most one is
// sent untagged (the one published while no other was in flight), so a
// return without the header belongs to that one. The header is not free:
// measured here, a header table on a message that had none costs RabbitMQ
// over 10% of its confirmed throughput.
const seqHeader = "x-busline-publish-seq"

// returnKey identifies the mandatory messages a return could belong to. A
// struct of the three strings, not their concatenation: it costs no
// allocation per message.
type returnKey struct{ exchange, key, id string }

// publisher owns the publishing channels of the publishing connection.
//
// A channel is not safe for concurrent publishing, and a confirm is a round
// trip, so each channel has a mutex held only while a message is written
// (never while waiting for a confirm) and a window of confirms in flight.
// Concurrent Dispatch calls share the channels and their confirms overlap.
// Each channel has one listener goroutine that reads its confirms and
// returns in the order the broker sent them; see pubChannel.listen.
type publisher struct {
	t     *Transport
	slots []*pubSlot
	next  atomic.Uint32
}

type pubSlot struct {
	mu   sync.Mutex
	pc   *pubChannel
	live atomic.Pointer[pubChannel] // pc, for the lock-free fast path
}

func newPublisher(t *Transport) *publisher {
	p := &publisher{t: t, slots: make([]*pubSlot, t.opts.PublishChannels)}
	for i := range p.slots {
		p.slots[i] = &pubSlot{}
	}
	return p
}

// channel returns a live publishing channel on session s, opening one if
// its slot is empty or holds a dead one.
func (p *publisher) channel(s *session) (*pubChannel, error) {
	return p.channelIn(s, p.slots[int(p.next.Add(1))%len(p.slots)])
}

// channelFor is channel, always the same one for a routing key, so that
// the messages posted to one destination with DispatchAsync, which does
// not wait for each confirm, keep their order.
func (p *publisher) channelFor(s *session, key string) (*pubChannel, error) {
	if len(p.slots) == 1 {
		return p.channelIn(s, p.slots[0])
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return p.channelIn(s, p.slots[int(h.Sum32()%uint32(len(p.slots)))])
}

func (p *publisher) channelIn(s *session, slot *pubSlot) (*pubChannel, error) {
	if pc := slot.live.Load(); pc != nil && pc.sess == s && !pc.isDead() {
		return pc, nil
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if pc := slot.pc; pc != nil && pc.sess == s && !pc.isDead() {
		return pc, nil
	}
	if err := p.t.checkOpen(); err != nil {
		return nil, err
	}
	pc, err := openPubChannel(p.t, s)
	if err != nil {
		return nil, err
	}
	if old := slot.pc; old != nil {
		old.close(nil)
	}
	slot.pc = pc
	slot.live.Store(pc)
	return pc, nil
}

// retire replaces pc, which keeps nacking: the next caller opens a fresh
// channel in its slot. Its other messages in flight fail as if the
// connection was lost, and are published again.
func (p *publisher) retire(pc *pubChannel) {
	if !pc.retired.CompareAndSwap(false, true) {
		return
	}
	for _, slot := range p.slots {
		slot.mu.Lock()
		if slot.pc == pc {
			slot.pc = nil
			slot.live.Store(nil)
		}
		slot.mu.Unlock()
	}
	pc.t.log("replacing a publishing channel the broker keeps nacking", "nacks", pc.nacks.Load())
	// Not inline: closing a channel is a round trip.
	if !pc.t.spawn(func() { pc.close(nil) }) {
		pc.close(nil)
	}
}

// close closes every channel; their pending publishes fail with ErrClosed.
func (p *publisher) close() {
	for _, slot := range p.slots {
		slot.mu.Lock()
		if slot.pc != nil {
			slot.pc.close(transport.ErrClosed)
		}
		slot.mu.Unlock()
	}
}

// pubChannel is one publishing channel in confirm mode.
type pubChannel struct {
	t      *Transport
	ch     amqpChannel
	sess   *session
	window chan struct{} // a token per message published and not yet settled

	reqs       chan *pubReq  // to the writer
	writerDone chan struct{} // closed when the writer has ended
	seq        uint64        // delivery tag of the last message published; the writer's

	pmu sync.Mutex // guards pending, inFlight and deadErr; never held during I/O
	// pending holds the publishes awaiting their confirm by delivery tag
	// modulo the window: at most a window of them is unsettled, each
	// holding a token, and their tags are consecutive (confirms settle
	// them in order, and a publish amqp091 refused gives its tag back), so
	// no two share a slot. A slice indexed so costs no hashing and no
	// allocation per message, as a map did.
	pending  []*pubReq
	inFlight map[returnKey]inFlight // mandatory messages in flight
	deadErr  error
	dead     chan struct{}

	confirms <-chan amqp091.Confirmation
	returns  <-chan amqp091.Return
	closing  <-chan *amqp091.Error
	stop     chan error

	// nacks counts the nacks received since the last ack: a channel that
	// keeps nacking is replaced (see Dispatch).
	nacks   atomic.Int32
	retired atomic.Bool
}

// inFlight counts the mandatory messages in flight with one returnKey, and
// names the one sent without seqHeader (0: none is in flight). One map of
// both costs one lookup and one store per message where two maps cost
// three.
type inFlight struct {
	n        int
	untagged uint64
}

// pubReq is one message handed to a channel's writer, then waiting for its
// confirm.
type pubReq struct {
	exchange, key string
	mandatory     bool
	msg           amqp091.Publishing
	ctx           context.Context
	state         atomic.Int32 // reqQueued, reqTaken, reqWriting, reqWritten or reqAbandoned
	res           chan error   // receives the outcome once, unless async is set
	// async, set for DispatchAsync, takes the outcome instead of res. It
	// is called on the channel's writer or listener goroutine and must
	// not block.
	async    func(error)
	returned *amqp091.Return // set by the listener, under pmu
	rkey     returnKey       // for mandatory messages
	seq      uint64          // delivery tag, once in pending
	// wrote is set when the message was handed to amqp091 to be written:
	// from then on, failing to get its confirm means its outcome is
	// unknown (the broker may have enqueued it).
	wrote atomic.Bool
}

// The states of a pubReq. Its message belongs to the Dispatch call that
// queued it, whose caller may reuse the body and headers once Dispatch
// returns: so the writer only writes a request it moved from reqTaken to
// reqWriting, and a caller that gives up waits while one is reqWriting.
const (
	reqQueued    int32 = iota // in the writer's queue
	reqTaken                  // taken by the writer, not written yet
	reqWriting                // amqp091 is writing its message
	reqWritten                // written, or failed by the writer without writing
	reqAbandoned              // given up by its caller before it was written
)

// finish hands r its outcome.
func (r *pubReq) finish(err error) {
	if r.async != nil {
		r.async(err)
		return
	}
	r.res <- err
}

// abandon gives r up because its caller's context ended; r.wrote then
// tells whether it was written. A request being written is waited for
// (amqp091 writes a message in microseconds; a write stuck on a dead socket
// ends when the connection's supervisor closes it), so that Dispatch never
// returns while a message of its caller is still being read.
func (r *pubReq) abandon() {
	if r.state.CompareAndSwap(reqQueued, reqAbandoned) || r.state.CompareAndSwap(reqTaken, reqAbandoned) {
		return
	}
	for r.state.Load() == reqWriting {
		time.Sleep(20 * time.Microsecond)
	}
}

func openPubChannel(t *Transport, s *session) (*pubChannel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, classify("amqp: open a publishing channel", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, classify("amqp: put a channel in confirm mode", err)
	}
	w := t.opts.ConfirmWindow
	pc := &pubChannel{
		t:          t,
		ch:         ch,
		sess:       s,
		window:     make(chan struct{}, w),
		pending:    make([]*pubReq, w),
		inFlight:   make(map[returnKey]inFlight),
		reqs:       make(chan *pubReq, w),
		writerDone: make(chan struct{}),
		dead:       make(chan struct{}),
		// The confirm buffer holds a whole window, so the connection's
		// reader never waits for the listener. The return channel is
		// unbuffered on purpose: the reader hands a return over before it
		// reads the confirm that follows it, so the listener always sees
		// a message's return before its confirm.
		confirms: ch.NotifyPublish(make(chan amqp091.Confirmation, w)),
		returns:  ch.NotifyReturn(make(chan amqp091.Return)),
		closing:  ch.NotifyClose(make(chan *amqp091.Error, 1)),
		stop:     make(chan error, 1),
	}
	if !t.spawn(pc.listen) {
		_ = ch.Close()
		return nil, transport.ErrClosed
	}
	if !t.spawn(pc.write) {
		pc.close(transport.ErrClosed)
		close(pc.writerDone)
	}
	return pc, nil
}

func (pc *pubChannel) isDead() bool {
	select {
	case <-pc.dead:
		return true
	default:
		return false
	}
}

// close closes the channel; pending publishes fail with cause (nil: the
// channel was replaced, they fail as if the connection was lost).
func (pc *pubChannel) close(cause error) {
	select {
	case pc.stop <- cause:
	default:
	}
	_ = pc.ch.Close()
}

// listen settles pending publishes from the broker's confirms and returns,
// until the channel closes.
//
// amqp091 hands notifications over from the connection's single reader
// goroutine, in the order the frames arrived, and gives up on a listener
// that does not take one within 5 seconds; this loop therefore never blocks
// on anything but its own channels. Confirms come resequenced by amqp091
// (one per delivery tag, in order), so a gap means confirms were dropped:
// their messages fail as if the connection was lost.
func (pc *pubChannel) listen() {
	var expect uint64 = 1
	returns := pc.returns
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.pmu.Lock()
			var seq uint64
			if s, ok := r.Headers[seqHeader].(int64); ok {
				seq = uint64(s)
			} else {
				seq = pc.inFlight[returnKey{r.Exchange, r.RoutingKey, r.MessageId}].untagged
			}
			in := pc.lookup(seq)
			if in != nil {
				ret := r
				in.returned = &ret
			}
			pc.pmu.Unlock()
			if in == nil {
				// Cannot happen while the broker keeps its ordering
				// promises; say so rather than stay silent.
				pc.t.log("unmatched basic.return", "exchange", r.Exchange, "routing_key", r.RoutingKey, "message_id", r.MessageId)
			}
		case c, ok := <-pc.confirms:
			if !ok {
				pc.die(pc.closeCause())
				return
			}
			pc.confirm(c, &expect)
		case e := <-pc.closing:
			// Confirms the broker sent before the channel closed may still
			// sit in their buffer: take them first, so that a confirmed
			// message is not published again.
			timer := time.NewTimer(100 * time.Millisecond)
		drain:
			for {
				select {
				case c, ok := <-pc.confirms:
					if !ok {
						break drain
					}
					pc.confirm(c, &expect)
				case <-timer.C:
					break drain
				}
			}
			timer.Stop()
			pc.die(pc.cause(e))
			return
		case cause := <-pc.stop:
			if cause == nil {
				cause = fmt.Errorf("amqp: publishing channel replaced: %w", transport.ErrConnectionLost)
			}
			// Fail what is pending now, but keep draining until amqp091
			// closes the notification channels, so that its reader never
			// waits on them while the channel closes.
			pc.die(cause)
		}
	}
}

// confirm settles the publish c confirms, and any whose confirm went missing
// before it.
func (pc *pubChannel) confirm(c amqp091.Confirmation, expect *uint64) {
	for ; *expect < c.DeliveryTag; *expect++ {
		pc.settle(*expect, fmt.Errorf("amqp: the confirm of message %d on a publishing channel was lost: %w",
			*expect, transport.ErrConnectionLost))
	}
	*expect = c.DeliveryTag + 1
	var err error
	if c.Ack {
		pc.nacks.Store(0)
	} else {
		pc.nacks.Add(1)
		err = errNacked
	}
	pc.settle(c.DeliveryTag, err)
}

func (pc *pubChannel) closeCause() error {
	select {
	case e := <-pc.closing:
		return pc.cause(e)
	case <-time.After(100 * time.Millisecond):
		return pc.cause(nil)
	}
}

func (pc *pubChannel) cause(e *amqp091.Error) error {
	if !pc.sess.alive() {
		return fmt.Errorf("amqp: publishing: %w", pc.sess.err)
	}
	if e == nil {
		return fmt.Errorf("amqp: publishing channel closed: %w: %w", transport.ErrConnectionLost, amqp091.ErrClosed)
	}
	if !e.Server || e.Code == amqp091.ConnectionForced {
		return fmt.Errorf("amqp: publishing channel closed: %w: %w", transport.ErrConnectionLost, e)
	}
	// A channel exception (the connection lives on). The message that
	// caused it and every other one in flight on the channel share the
	// outcome: unknown.
	return &channelError{err: fmt.Errorf("amqp: publishing channel closed by the broker: %w: %w", transport.ErrConnectionLost, e)}
}

// errNacked is a publisher nack. RabbitMQ nacks a message it could not
// take responsibility for, and that may or may not have been enqueued: a
// quorum queue nacks while it elects a leader (for a while, on a channel
// first used then), a queue with x-overflow=reject-publish while it is
// full. Both pass, so Dispatch publishes the message again.
var errNacked = fmt.Errorf("amqp: the broker nacked the message (a queue it routes to may be full, with x-overflow reject-publish, or a quorum queue may have no leader): %w", transport.ErrRejected)

// nackStreakLimit is the number of nacks in a row after which a publishing
// channel is replaced: after a quorum queue's leader died, a channel first
// used while the queue had no leader is nacked for a while, whereas a fresh
// one gets acks as soon as a new leader is elected (measured on RabbitMQ
// 3.10). A channel that acks in between is kept: its nacks come from the
// queues, not from its state.
const nackStreakLimit = 2

// channelError marks a publishing failure caused by a channel exception
// while the connection stayed up: Dispatch retries such failures a bounded
// number of times only, since the cause may be the message itself.
type channelError struct{ err error }

func (e *channelError) Error() string { return e.err.Error() }
func (e *channelError) Unwrap() error { return e.err }

func (pc *pubChannel) settle(tag uint64, err error) {
	pc.pmu.Lock()
	in := pc.forget(tag)
	pc.pmu.Unlock()
	if in == nil {
		return
	}
	<-pc.window
	if err == nil && in.returned != nil {
		err = fmt.Errorf("amqp: %w: returned by the broker: %d %s", transport.ErrUnroutable, in.returned.ReplyCode, in.returned.ReplyText)
	}
	in.finish(err)
}

// lookup returns the pending publish tag, or nil; pmu must be held.
func (pc *pubChannel) lookup(tag uint64) *pubReq {
	if tag == 0 {
		return nil
	}
	if r := pc.pending[tag%uint64(len(pc.pending))]; r != nil && r.seq == tag {
		return r
	}
	return nil
}

// forget removes the pending publish tag; pmu must be held.
func (pc *pubChannel) forget(tag uint64) *pubReq {
	r := pc.lookup(tag)
	if r == nil {
		return nil
	}
	pc.pending[tag%uint64(len(pc.pending))] = nil
	if r.mandatory {
		f := pc.inFlight[r.rkey]
		if f.n--; f.n == 0 {
			delete(pc.inFlight, r.rkey)
		} else {
			if f.untagged == tag {
				f.untagged = 0
			}
			pc.inFlight[r.rkey] = f
		}
	}
	return r
}

// die fails every pending publish with err and marks the channel dead.
func (pc *pubChannel) die(err error) {
	pc.pmu.Lock()
	if pc.deadErr == nil {
		pc.deadErr = err
		close(pc.dead)
	}
	var pending []*pubReq
	for i, r := range pc.pending {
		if r != nil {
			pending = append(pending, r)
			pc.pending[i] = nil
		}
	}
	clear(pc.inFlight)
	pc.pmu.Unlock()
	for _, in := range pending {
		in.finish(err)
	}
}

func (pc *pubChannel) deadCause() error {
	pc.pmu.Lock()
	defer pc.pmu.Unlock()
	return pc.deadErr
}

// write publishes the requests callers queue, one after the other, as long
// as the channel lives. One goroutine writes, rather than each caller under
// a mutex: 64 concurrent callers then cost no lock convoy, and the delivery
// tags it assigns match the broker's.
func (pc *pubChannel) write() {
	defer close(pc.writerDone)
	for {
		select {
		case <-pc.dead:
			err := pc.deadCause()
			for {
				select {
				case r := <-pc.reqs:
					if r.state.CompareAndSwap(reqQueued, reqTaken) {
						r.finish(err)
					}
				default:
					return
				}
			}
		case r := <-pc.reqs:
			pc.burst(r)
		}
	}
}

// burst publishes r and the requests queued behind it, corked (see
// heartbeatConn): one write for all of them.
func (pc *pubChannel) burst(r *pubReq) {
	wire := pc.sess.wire
	wire.corkWrites()
	for n := cap(pc.reqs); ; n-- {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			pc.send(r)
		}
		if n <= 1 {
			break
		}
		select {
		case r = <-pc.reqs:
			continue
		default:
		}
		break
	}
	if err := wire.uncorkWrites(); err != nil {
		pc.lost(err)
	}
}

// lost closes the connection after a socket error: the connection is gone,
// whatever amqp091 and the broker think yet, and part of a message may
// have reached the broker. Closing it makes its supervisor reconnect now
// rather than when a read fails; the messages in flight fail as published
// on a lost connection.
func (pc *pubChannel) lost(err error) {
	pc.t.log("publishing connection write failed; reconnecting", "error", err)
	conn := pc.sess.conn
	pc.t.spawn(func() { _ = conn.Close() })
}

// send publishes r once the window has room; its outcome arrives on r.res,
// from here if it was not sent, else from the listener.
func (pc *pubChannel) send(r *pubReq) {
	select {
	case pc.window <- struct{}{}:
	default:
		// Confirms come for what the broker has, and other writers
		// (heartbeats, other channels) must not wait for them: uncork
		// while waiting.
		wire := pc.sess.wire
		if err := wire.flushWrites(); err != nil {
			pc.lost(err)
		}
		if err := wire.uncorkWrites(); err != nil {
			pc.lost(err)
		}
		pc.acquire(r)
		wire.corkWrites()
		return
	}
	pc.publish(r)
}

// acquire waits for room in the window, then publishes r.
func (pc *pubChannel) acquire(r *pubReq) {
	select {
	case pc.window <- struct{}{}:
	case <-pc.dead:
		r.finish(pc.deadCause())
		return
	case <-r.ctx.Done():
		r.finish(fmt.Errorf("amqp: dispatch: not sent: %w", r.ctx.Err()))
		return
	}
	pc.publish(r)
}

// publish publishes r, which holds a token of the window.
func (pc *pubChannel) publish(r *pubReq) {
	if !r.state.CompareAndSwap(reqTaken, reqWriting) {
		<-pc.window // abandoned by its caller meanwhile
		return
	}
	defer r.state.Store(reqWritten)
	seq := pc.seq + 1
	msg := r.msg
	tag := false
	pc.pmu.Lock()
	if pc.deadErr != nil {
		err := pc.deadErr
		pc.pmu.Unlock()
		<-pc.window
		r.finish(err)
		return
	}
	slot := seq % uint64(len(pc.pending))
	if old := pc.pending[slot]; old != nil {
		// Cannot happen while the window bounds what is pending (see
		// pubChannel.pending); fail the message rather than lose track.
		err := fmt.Errorf("amqp: publish: internal error: delivery tag %d still pending at %d", old.seq, seq)
		pc.pmu.Unlock()
		<-pc.window
		r.finish(err)
		return
	}
	r.seq = seq
	pc.pending[slot] = r
	if r.mandatory {
		r.rkey = returnKey{r.exchange, r.key, msg.MessageId}
		f := pc.inFlight[r.rkey]
		if tag = f.n > 0; !tag {
			f.untagged = seq
		}
		f.n++
		pc.inFlight[r.rkey] = f
	}
	r.wrote.Store(true)
	pc.pmu.Unlock()
	if tag {
		h := make(amqp091.Table, len(msg.Headers)+1)
		for k, v := range msg.Headers {
			h[k] = v
		}
		h[seqHeader] = int64(seq)
		msg.Headers = h
	}
	if err := pc.ch.Publish(r.exchange, r.key, r.mandatory, false, msg); err != nil {
		pc.pmu.Lock()
		mine := pc.forget(seq) != nil
		pc.pmu.Unlock()
		if !mine {
			return // the channel died meanwhile, and r with it
		}
		<-pc.window
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) {
			// A socket error (a reset, a broken pipe, a timeout): the
			// connection is gone, whatever amqp091 and the broker think
			// yet, and part of the message may have reached the broker.
			// Close the connection, so that its supervisor reconnects
			// now rather than when a read fails, and let Dispatch wait
			// for the next one and publish again.
			r.finish(fmt.Errorf("amqp: publish: %w: %w", transport.ErrConnectionLost, err))
			pc.lost(err)
			return
		}
		if errors.Is(err, amqp091.ErrClosed) {
			r.wrote.Store(false) // refused before writing
		}
		r.finish(classify("amqp: publish", err))
		if pc.sess.alive() {
			// amqp091 refused before sending (a closed channel): replace it.
			pc.close(nil)
		}
		return
	}
	pc.seq = seq
}

// delivery describes where one validated message of a batch goes.
type delivery struct {
	exchange  string
	key       string
	mandatory bool
	msg       amqp091.Publishing
	hops      uint64 // the delay in seconds of a message routed by hop keys, else 0
	rot       uint64 // and the rotation of its levels (see delays.path)
}

// dispatch is Dispatch (see routes.go) without the second try of a
// message whose destination binding went stale.
func (t *Transport) dispatch(ctx context.Context, msgs []transport.Outgoing) error {
	if err := t.checkOpen(); err != nil {
		return fmt.Errorf("amqp: dispatch: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	// A batch of one, the bus's usual, keeps its bookkeeping on the stack.
	var one struct {
		ds      [1]delivery
		errs    [1]error
		todo    [1]int
		written [1]bool
	}
	ds, errs, todo := one.ds[:], one.errs[:], one.todo[:0]
	var written []bool // messages written at least once; allocated when one was, but for a batch of one
	if len(msgs) > 1 {
		ds, errs, todo = make([]delivery, len(msgs)), make([]error, len(msgs)), make([]int, 0, len(msgs))
	} else {
		written = one.written[:]
	}
	now := time.Now()
	for i := range msgs {
		d, err := t.plan(&msgs[i], now)
		if err != nil {
			return dispatchError(&msgs[i], i, err)
		}
		ds[i] = d
	}
	if err := t.routes.ensure(ctx, msgs, errs); err != nil {
		return err
	}
	if err := t.routes.ensureHops(ctx, msgs, ds); err != nil {
		return err
	}
	for i := range msgs {
		if errs[i] == nil {
			todo = append(todo, i)
		}
	}
	channelFailures := 0
	pause := 50 * time.Millisecond
	for len(todo) > 0 {
		retry, s := t.publishRound(ctx, ds, todo, errs, &written)
		if len(retry) == 0 {
			break
		}
		var ce *channelError
		if errors.As(errs[retry[0]], &ce) {
			if channelFailures++; channelFailures >= 3 {
				for _, i := range retry {
					errs[i] = giveUp(nil, errs[i], written != nil && written[i])
				}
				break
			}
		}
		// Give the supervisor time to notice a dead connection, and the
		// broker time to elect a queue leader, without spinning on a live
		// connection.
		timer := time.NewTimer(pause)
		select {
		case <-s.dead:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		pause = min(2*pause, time.Second)
		todo = retry
	}
	var out []error
	for i, err := range errs {
		if err != nil {
			out = append(out, dispatchError(&msgs[i], i, err))
		}
	}
	return errors.Join(out...)
}

// giveUp returns the error of a message Dispatch stops trying to publish,
// because of cause (ctx's error, ErrClosed, or nil when last says it all),
// after an attempt that ended with last (nil if none did). The error says
// whether the message may have been delivered: it may as soon as one
// attempt was written without a confirm coming back.
func giveUp(cause, last error, written bool) error {
	switch {
	case errors.Is(cause, transport.ErrClosed):
		if written {
			return fmt.Errorf("amqp: dispatch: no confirm, the message may or may not have been delivered: %w", transport.ErrClosed)
		}
		return fmt.Errorf("amqp: dispatch: not sent: %w", transport.ErrClosed)
	case cause == nil:
		return fmt.Errorf("amqp: dispatch: no confirm, the message may or may not have been delivered: %w", last)
	case written && last != nil:
		return fmt.Errorf("amqp: dispatch: no confirm, the message may or may not have been delivered: %w (last attempt: %w)", cause, last)
	case written:
		return fmt.Errorf("amqp: dispatch: no confirm, the message may or may not have been delivered: %w", cause)
	case last != nil:
		return fmt.Errorf("amqp: dispatch: not sent: %w (last attempt: %w)", cause, last)
	default:
		return fmt.Errorf("amqp: dispatch: not sent: %w", cause)
	}
}

func dispatchError(o *transport.Outgoing, i int, err error) error {
	return &transport.DispatchError{Index: i, Exchange: o.Exchange, RoutingKey: o.RoutingKey, MessageID: o.Message.ID, Err: err}
}

// publishRound publishes the messages todo on one channel and waits for
// their outcome, recording it in errs, and in *written (allocated when
// needed, if the caller gave none) those written at least once. It
// returns the messages to publish again (their channel or connection was
// lost, or the broker nacked them) with the session they failed on; none
// when ctx is done or the transport closed, which fails every message
// left.
func (t *Transport) publishRound(ctx context.Context, ds []delivery, todo []int, errs []error, written *[]bool) ([]int, *session) {
	wrote := func(i int) bool { return *written != nil && (*written)[i] }
	stop := func(cause error, which []int) {
		for _, i := range which {
			errs[i] = giveUp(cause, errs[i], wrote(i))
		}
	}
	s, err := t.pub.wait(ctx, nil)
	if err == nil {
		err = t.pub.unblocked(ctx)
	}
	if err != nil {
		stop(err, todo)
		return nil, nil
	}
	pc, err := t.pool.channel(s)
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			stop(err, todo)
			return nil, s
		}
		for _, i := range todo {
			errs[i] = err
		}
		return todo, s
	}
	mark := func(i int, r *pubReq) {
		if r.wrote.Load() {
			if *written == nil {
				*written = make([]bool, len(ds))
			}
			(*written)[i] = true
		}
	}
	var oneReq [1]*pubReq
	reqs := oneReq[:0]
	if len(todo) > 1 {
		reqs = make([]*pubReq, 0, len(todo))
	}
	var retry []int
queue:
	for k, i := range todo {
		r := &pubReq{exchange: ds[i].exchange, key: ds[i].key, mandatory: ds[i].mandatory, msg: ds[i].msg,
			ctx: ctx, res: make(chan error, 1)}
		select {
		case pc.reqs <- r:
			reqs = append(reqs, r)
		case <-pc.writerDone:
			err := pc.deadCause()
			if errors.Is(err, transport.ErrClosed) {
				stop(err, todo[k:])
				break queue
			}
			for _, j := range todo[k:] {
				errs[j] = err
			}
			retry = append(retry, todo[k:]...)
			break queue
		case <-ctx.Done():
			stop(ctx.Err(), todo[k:])
			break queue
		}
	}
	nacked := false
	for k, r := range reqs {
		i := todo[k]
		var err error
		select {
		case err = <-r.res:
		case <-pc.writerDone:
			if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
				err = pc.deadCause()
			} else {
				err = <-r.res
			}
		case <-ctx.Done():
			for kk, rr := range reqs[k:] {
				j := todo[k+kk]
				rr.abandon()
				mark(j, rr)
				stop(ctx.Err(), []int{j})
			}
			return nil, s
		}
		mark(i, r)
		switch {
		case err == nil:
			errs[i] = nil
		case errors.Is(err, transport.ErrClosed) || (errors.Is(err, transport.ErrConnectionLost) && t.checkOpen() != nil):
			stop(transport.ErrClosed, []int{i})
		case errors.Is(err, transport.ErrConnectionLost):
			errs[i] = err
			retry = append(retry, i)
		case errors.Is(err, errNacked):
			errs[i] = err
			retry = append(retry, i)
			nacked = true
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			stop(ctx.Err(), []int{i})
		default:
			errs[i] = err
		}
	}
	if nacked && pc.nacks.Load() >= nackStreakLimit {
		t.pool.retire(pc)
	}
	if len(retry) > 0 && ctx.Err() != nil {
		stop(ctx.Err(), retry)
		return nil, s
	}
	slices.Sort(retry)
	return retry, s
}

// plan validates o and works out where it goes.
func (t *Transport) plan(o *transport.Outgoing, now time.Time) (delivery, error) {
	if err := o.Validate(); err != nil {
		return delivery{}, err
	}
	msg, err := publishing(&o.Message)
	if err != nil {
		return delivery{}, err
	}
	d := delivery{key: o.RoutingKey, mandatory: o.Mandatory, msg: msg}
	switch o.Exchange {
	case transport.Topic:
		d.exchange = t.opts.TopicExchange
		if o.ExchangeName != "" {
			d.exchange = o.ExchangeName
		}
	default:
		d.exchange = t.opts.DirectExchange
	}
	if o.Exchange == transport.Direct && !o.NotBefore.IsZero() && o.NotBefore.After(now) {
		if t.noDelay {
			return delivery{}, fmt.Errorf("%w: deferred delivery (NotBefore %s): the transport was dialed without delay levels (DialNoDelay)",
				transport.ErrNotSupported, o.NotBefore.UTC().Format(time.RFC3339))
		}
		delay := o.NotBefore.Sub(now)
		if delay > t.delays.max() {
			return delivery{}, fmt.Errorf("%w: a delay of %v is longer than the %v the %d delay levels allow",
				transport.ErrNotSupported, delay.Round(time.Second), t.delays.max(), t.delays.levels)
		}
		if !t.delays.fits(o.RoutingKey) {
			return delivery{}, fmt.Errorf("%w: queue name %d bytes long: deferred delivery needs it at most %d",
				transport.ErrNotSupported, len(o.RoutingKey), 255-2*t.delays.levels)
		}
		s := seconds(delay)
		// A message with CC or BCC headers of its own (a retry copy of a
		// foreign producer's message, say) goes the original way: through
		// the default exchange its keys would name queues, which would
		// receive it at once.
		if !sendersSelect(d.msg.Headers) {
			rot := t.deferred.Add(1)
			if r, ok := t.delays.route(s, rot, o.RoutingKey); ok {
				d.exchange, d.key, d.hops, d.rot = "", r.key, r.s, rot
				d.msg.Headers = withBCC(d.msg.Headers, r.bcc)
				d.msg.Expiration = t.delays.expiration(r.entry, r.s, delay)
				return d, nil
			}
		}
		d.exchange, d.key = t.delays.entry(s), t.delays.key(s, o.RoutingKey)
		d.msg.Expiration = t.delays.expiration(t.delays.top(s), s, delay)
	}
	return d, nil
}
