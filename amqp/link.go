package amqp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// A link is one supervised AMQP connection. It dials the configured URLs in
// turn, runs its setup on every new connection (for the consuming link:
// declare the exchanges and redeclare the recorded topology) before anyone
// can use it, and on loss reconnects with exponential backoff across the
// URLs until the transport closes.
//
// The transport keeps two links: one for publishing and one for consuming
// and topology, as RabbitMQ recommends, so that flow control applied to a
// fast publisher never holds back the acks of its consumers.
type link struct {
	t     *Transport
	role  string
	setup func(*session) error

	mu    sync.Mutex
	live  atomic.Pointer[session] // cur, for the lock-free fast path of wait
	cur   *session                // nil while disconnected
	ready chan struct{}           // closed while cur != nil
	gen   uint64
	next  int  // index of the URL to try first
	wasUp bool // a session has been up: the next ones are reconnections
	// blocked is non-nil while the broker blocks the connection (a
	// resource alarm), and closed when it unblocks it.
	blocked    chan struct{}
	hasBlocked atomic.Bool // blocked != nil
	stop       chan struct{}
	ctx        context.Context // cancelled with stop, for dialling
	quit       context.CancelFunc
	done       chan struct{}
}

// A session is one connection of a link. It is never reused after it dies.
type session struct {
	conn amqpConn
	raw  net.Conn       // its socket; nil with the unit tests' fake dialer
	wire *heartbeatConn // the same, to cork; nil with the fake dialer
	gen  uint64
	url  string // redacted
	// reconnection: the link had a session before this one.
	reconnection bool
	dead         chan struct{}
	err          error // why it died; set before dead is closed
	closing      chan *amqp091.Error
	blocked      chan amqp091.Blocking
}

// alive reports whether the session's connection is still up.
func (s *session) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

func newLink(t *Transport, role string, setup func(*session) error) *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{
		t:     t,
		role:  role,
		setup: setup,
		ready: make(chan struct{}),
		stop:  make(chan struct{}),
		ctx:   ctx,
		quit:  cancel,
		done:  make(chan struct{}),
	}
}

// placeURLs returns the order in which a transport tries urls: a random
// one, so that the instances of a service spread over a cluster's nodes,
// unless ordered.
func placeURLs(urls []string, ordered bool) []string {
	urls = slices.Clone(urls)
	if !ordered {
		rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	}
	return urls
}

// connect tries each URL once and runs the link's setup on the first
// connection that opens. The first connection starts with the first URL;
// a reconnection with the one after the URL whose connection was lost, so
// that a node that died or hangs is tried last.
func (l *link) connect(ctx context.Context) (*session, error) {
	urls := l.t.urls
	var errs []error
	first := l.next
	if l.gen > 0 {
		first++
	}
	for i := range urls {
		idx := (first + i) % len(urls)
		select {
		case <-l.stop:
			return nil, transport.ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := l.dialOne(ctx, urls[idx])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l.mu.Lock()
		s.reconnection = l.wasUp
		l.mu.Unlock()
		// Closing the link (or Dial's ctx ending) drops a set-up in
		// progress.
		stopSetup := context.AfterFunc(ctx, s.abort)
		err = l.setup(s)
		stopSetup()
		if err != nil {
			s.close(l.t.opts.DialTimeout)
			errs = append(errs, fmt.Errorf("%s: set up: %w", s.url, err))
			continue
		}
		l.next = idx
		return s, nil
	}
	return nil, fmt.Errorf("amqp: %s connection: no broker reachable: %w", l.role, errors.Join(errs...))
}

func (l *link) dialOne(ctx context.Context, url string) (*session, error) {
	o := &l.t.opts
	// amqp091 dials without a context: this dialer gives up when ctx is
	// done, during the TCP connection and, through a deadline, during the
	// TLS and AMQP handshakes (amqp091 clears the deadline once open).
	var abort func() bool
	var raw *heartbeatConn
	netDial := func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: o.DialTimeout}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := &heartbeatConn{Conn: c, timeout: o.Heartbeat}
		if err := conn.SetDeadline(time.Now().Add(o.DialTimeout)); err != nil {
			_ = conn.Close()
			return nil, err
		}
		abort = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		raw = conn
		return conn, nil
	}
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName(o.ConnectionName + " " + l.role)
	cfg := amqp091.Config{
		Heartbeat:       o.Heartbeat,
		TLSClientConfig: o.TLS,
		Properties:      props,
		Locale:          "en_US",
		Dial:            netDial,
	}
	redacted := RedactURL(url)
	conn, err := o.dial(url, cfg)
	if abort != nil && !abort() && err == nil {
		// ctx ended during the handshake: the deadline may have hit the
		// open connection.
		_ = conn.Close()
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redacted, l.t.secrets.wrap(err))
	}
	if raw != nil {
		// amqp091 clears the handshake deadline when the connection opens
		// and sets a read deadline only when a frame arrives: a broker
		// that goes silent before its first heartbeat would never be
		// noticed. Arm the deadline now; every frame read pushes it
		// further.
		_ = raw.SetReadDeadline(time.Now().Add(o.Heartbeat))
	}
	l.gen++
	s := &session{
		wire:    raw,
		conn:    conn,
		gen:     l.gen,
		url:     redacted,
		dead:    make(chan struct{}),
		closing: conn.NotifyClose(make(chan *amqp091.Error, 1)),
		blocked: conn.NotifyBlocked(make(chan amqp091.Blocking, 4)),
	}
	if raw != nil {
		s.raw = raw // not a nil *heartbeatConn in a non-nil interface
	}
	return s, nil
}

// abort drops s's connection at once, without the closing handshake:
// every call waiting on it returns, whether or not the node answers.
func (s *session) abort() {
	if s.raw != nil {
		_ = s.raw.Close()
		return
	}
	_ = s.conn.Close()
}

// close closes s's connection with the closing handshake, or drops it
// if the handshake takes longer than timeout: a node that does not answer
// (hung, or with channels stuck behind a hung peer) holds nothing up.
func (s *session) close(timeout time.Duration) {
	timer := time.AfterFunc(timeout, s.abort)
	defer timer.Stop()
	_ = s.conn.Close()
}

// bounded runs op, a broker operation of a set-up or a subscription, and
// drops s's connection if op takes longer than timeout, so that op
// returns and the link tries another node, as after a dial timeout.
func (s *session) bounded(timeout time.Duration, op func() error) error {
	timer := time.AfterFunc(timeout, s.abort)
	err := op()
	if !timer.Stop() {
		return fmt.Errorf("amqp: %s did not answer within %v: %w", s.url, timeout, transport.ErrConnectionLost)
	}
	return err
}

// heartbeatConn caps the read deadlines amqp091 sets at timeout. amqp091
// declares a connection dead after three heartbeat intervals without a
// frame, and RabbitMQ sends one every half interval when it has nothing
// else to send: six missed heartbeats, 15 s with a 5 s heartbeat, while
// RabbitMQ itself gives a client two. With the cap, a connection is lost
// after the heartbeat timeout without a frame (two missed heartbeats;
// the negotiated interval is never longer than the one proposed).
type heartbeatConn struct {
	net.Conn
	timeout time.Duration
	cork    corkState
}

// A heartbeatConn also corks: between cork and uncork, what amqp091 writes
// is kept in a buffer, and written with one system call at uncork (or at
// flush). amqp091 flushes its buffered writer after each published message,
// a write(2) per message, which was a fifth of the client's CPU time per
// message sent; a publishing channel's writer corks while it publishes the
// messages queued for it, so that a burst of them costs one write. Writes
// while corked never block, so nothing waits for the socket while a
// writer holds the cork, and a writer never waits for a confirm while
// corked (see pubChannel.send). A write that fails at uncork closes the
// connection: amqp091 was told the bytes were written, and the messages
// among them fail as published on a lost connection (their confirms never
// come), which Dispatch publishes again.
type corkState struct {
	mu    sync.Mutex
	corks int
	buf   []byte
}

// corkLimit bounds the bytes kept while corked; past it they are written.
const corkLimit = 256 << 10

func (c *heartbeatConn) Write(p []byte) (int, error) {
	c.cork.mu.Lock()
	defer c.cork.mu.Unlock()
	if c.cork.corks > 0 && len(c.cork.buf)+len(p) <= corkLimit {
		c.cork.buf = append(c.cork.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *heartbeatConn) flushLocked() error {
	if len(c.cork.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.cork.buf)
	c.cork.buf = c.cork.buf[:0]
	if cap(c.cork.buf) > corkLimit {
		c.cork.buf = nil
	}
	return err
}

// corkWrites holds writes back until the matching uncorkWrites. Nil-safe.
func (c *heartbeatConn) corkWrites() {
	if c == nil {
		return
	}
	c.cork.mu.Lock()
	c.cork.corks++
	c.cork.mu.Unlock()
}

// flushWrites writes what is held back, and keeps corking. Nil-safe.
func (c *heartbeatConn) flushWrites() error {
	if c == nil {
		return nil
	}
	c.cork.mu.Lock()
	defer c.cork.mu.Unlock()
	return c.flushLocked()
}

// uncorkWrites releases a cork; the last one writes what was held back.
// Nil-safe.
func (c *heartbeatConn) uncorkWrites() error {
	if c == nil {
		return nil
	}
	c.cork.mu.Lock()
	defer c.cork.mu.Unlock()
	if c.cork.corks--; c.cork.corks > 0 {
		return nil
	}
	return c.flushLocked()
}

func (c *heartbeatConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		if limit := time.Now().Add(c.timeout); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// start runs the supervisor for the session s that Dial opened.
func (l *link) start(s *session) {
	l.up(s)
	l.t.wg.Add(1)
	go func() {
		defer l.t.wg.Done()
		defer close(l.done)
		l.run(s)
	}()
}

func (l *link) up(s *session) {
	l.mu.Lock()
	l.cur = s
	l.wasUp = true
	l.live.Store(s)
	close(l.ready)
	l.mu.Unlock()
	l.t.log("connected", "connection", l.role, "url", s.url)
	l.t.events.emit(transport.Event{Kind: transport.Connected})
}

func (l *link) down(s *session, err error) {
	l.mu.Lock()
	if l.cur == s {
		l.cur = nil
		l.live.Store(nil)
		l.ready = make(chan struct{})
	}
	l.mu.Unlock()
	l.setBlocked(false)
	s.err = err
	close(s.dead)
}

func (l *link) setBlocked(active bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case active && l.blocked == nil:
		l.blocked = make(chan struct{})
	case !active && l.blocked != nil:
		close(l.blocked)
		l.blocked = nil
	}
	l.hasBlocked.Store(l.blocked != nil)
}

// unblocked waits while the broker blocks the connection, so that a
// publisher waits bounded by its context rather than in a socket write.
func (l *link) unblocked(ctx context.Context) error {
	if !l.hasBlocked.Load() {
		return nil
	}
	l.mu.Lock()
	b := l.blocked
	l.mu.Unlock()
	if b == nil {
		return nil
	}
	select {
	case <-b:
		return nil
	case <-l.stop:
		return transport.ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("amqp: the broker blocks publishing (resource alarm): %w", ctx.Err())
	}
}

func (l *link) run(s *session) {
	for {
		err := l.watch(s)
		if err == nil { // stopped
			l.down(s, transport.ErrClosed)
			s.close(l.t.opts.DialTimeout)
			return
		}
		l.down(s, err)
		l.t.log("connection lost", "connection", l.role, "url", s.url, "error", err)
		l.t.events.emit(transport.Event{Kind: transport.Disconnected, Err: err})
		if s = l.reconnect(); s == nil {
			return
		}
		l.up(s)
	}
}

// watch waits until s dies (returning why) or the link is stopped (nil).
func (l *link) watch(s *session) error {
	blocked := s.blocked
	for {
		select {
		case <-l.stop:
			return nil
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			l.setBlocked(b.Active)
			if b.Active {
				err := fmt.Errorf("amqp: %s connection blocked by the broker: %s", l.role, b.Reason)
				l.t.log("connection blocked", "connection", l.role, "reason", b.Reason)
				l.t.events.emit(transport.Event{Kind: transport.Blocked, Err: err})
			} else {
				l.t.log("connection unblocked", "connection", l.role)
				l.t.events.emit(transport.Event{Kind: transport.Unblocked})
			}
		case e, ok := <-s.closing:
			var cause error = amqp091.ErrClosed
			if ok && e != nil {
				cause = e
			}
			return fmt.Errorf("amqp: %s connection to %s: %w: %w", l.role, s.url, transport.ErrConnectionLost,
				l.t.secrets.wrap(cause))
		}
	}
}

// reconnect dials until a connection is up (returning it) or the link is
// stopped (nil).
func (l *link) reconnect() *session {
	delay := l.t.opts.ReconnectDelay
	for {
		// Full jitter on the upper half: several processes restarted by
		// the same broker outage do not stampede it together.
		pause := delay/2 + rand.N(delay/2+1)
		timer := time.NewTimer(pause)
		select {
		case <-l.stop:
			timer.Stop()
			return nil
		case <-timer.C:
		}
		s, err := l.connect(l.ctx)
		if err == nil {
			return s
		}
		if errors.Is(err, transport.ErrClosed) {
			return nil
		}
		l.t.log("reconnect failed", "connection", l.role, "error", err, "retry_in", delay)
		delay = min(delay*2, l.t.opts.MaxReconnectDelay)
	}
}

// wait returns the live session, waiting for one while disconnected, until
// ctx is done or the link is stopped. A caller whose operation failed on
// session failed passes it, so as not to be handed it again before the
// supervisor has noticed its death.
func (l *link) wait(ctx context.Context, failed *session) (*session, error) {
	if s := l.live.Load(); s != nil && s != failed {
		return s, nil
	}
	for {
		l.mu.Lock()
		s, ready := l.cur, l.ready
		l.mu.Unlock()
		var dead <-chan struct{}
		switch {
		case s != nil && s != failed:
			return s, nil
		case s != nil:
			ready, dead = nil, s.dead
		}
		select {
		case <-l.stop:
			return nil, transport.ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("amqp: waiting for the %s connection: %w: %w", l.role, transport.ErrConnectionLost, ctx.Err())
		case <-ready:
		case <-dead:
		}
	}
}

// current returns the live session or nil.
func (l *link) current() *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil && l.cur.alive() {
		return l.cur
	}
	return nil
}

// close stops the supervisor and closes the connection; it waits for the
// supervisor to end.
func (l *link) close() {
	close(l.stop)
	l.quit()
	<-l.done
}
