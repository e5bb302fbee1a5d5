package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// ExchangeKind is the routing algorithm of an exchange.
type ExchangeKind string

// The exchange kinds a [Broker] supports (RabbitMQ's headers exchange is not
// among them).
const (
	// ExchangeDirect routes a message to the queues bound under exactly its
	// routing key.
	ExchangeDirect ExchangeKind = "direct"
	// ExchangeTopic routes a message to the queues bound under a pattern
	// that matches its routing key (see [transport.ValidateTopicPattern]).
	ExchangeTopic ExchangeKind = "topic"
	// ExchangeFanout routes a message to every bound queue, whatever its
	// routing key.
	ExchangeFanout ExchangeKind = "fanout"
)

// Broker is an in-process broker with RabbitMQ's exchanges, queues and
// bindings. The zero value is not usable; call [NewBroker]. Its methods do
// not block (except [Broker.WaitIdle] and [Broker.Close]) and are safe for
// concurrent use; see the package documentation for the model.
type Broker struct {
	mu sync.Mutex

	started    time.Time
	journalOn  atomic.Bool // journal.limit != 0, for stamp without the lock
	closed     bool
	closedFlag atomic.Bool // closed, for checks without the lock
	exchanges  map[string]*exchange
	queues     map[string]*queue
	conns      map[*conn]struct{}
	// offline is set by Disconnect: every connection is down until
	// Reconnect.
	offline bool
	// blocked is closed by Unblock; nil while publishing is allowed.
	blocked    chan struct{}
	blockedErr error

	seq      uint64   // enqueue order of messages, broker-wide
	queueSeq uint64   // creation order of queues
	route    routeSet // the queues a message reaches, reused

	failN   int
	failErr error

	journal journal

	sched scheduler

	// running counts handler calls under way, read by the idle check.
	running     atomic.Int64
	idleWaiting atomic.Int32
	idleWaiters []chan struct{}
}

type exchange struct {
	name string
	kind ExchangeKind
	// direct: routing key → queues; fanout: queue → binding keys; topic:
	// the pattern trie.
	direct map[string][]*queue
	fanout map[*queue]map[string]struct{}
	topic  *topicTrie
}

type binding struct {
	ex  *exchange
	key string
}

// Binding is a binding of a queue to an exchange.
type Binding struct {
	// Exchange is the exchange's name.
	Exchange string
	// Key is the binding key (a pattern for a topic exchange).
	Key string
}

// QueueStats is a queue's state at one moment.
type QueueStats struct {
	// Name is the queue's name.
	Name string
	// Ready is the number of messages waiting for delivery.
	Ready int
	// Unacked is the number of messages delivered and not yet settled.
	Unacked int
	// Consumers is the number of consumers attached.
	Consumers int
	// Type is the queue's type; Temporary queues are Classic.
	Type transport.QueueType
	// Temporary reports a queue owned by one transport's connection.
	Temporary bool
}

// NewBroker returns an empty broker: only the default exchange and
// RabbitMQ's predeclared amq.direct, amq.topic and amq.fanout exist. It
// shares nothing with other brokers. Timers it starts run on the clock of
// the goroutine that creates it, which is the fake clock inside a
// testing/synctest bubble.
func NewBroker() *Broker {
	b := &Broker{
		started:   time.Now(),
		exchanges: make(map[string]*exchange),
		queues:    make(map[string]*queue),
		conns:     make(map[*conn]struct{}),
	}
	b.journal.limit = DefaultJournalLimit
	b.journalOn.Store(true)
	for name, kind := range map[string]ExchangeKind{
		"amq.direct": ExchangeDirect,
		"amq.topic":  ExchangeTopic,
		"amq.fanout": ExchangeFanout,
	} {
		b.exchanges[name] = newExchange(name, kind)
	}
	return b
}

func newExchange(name string, kind ExchangeKind) *exchange {
	ex := &exchange{name: name, kind: kind}
	switch kind {
	case ExchangeDirect:
		ex.direct = make(map[string][]*queue)
	case ExchangeFanout:
		ex.fanout = make(map[*queue]map[string]struct{})
	case ExchangeTopic:
		ex.topic = newTopicTrie()
	}
	return ex
}

// Close closes every transport connected to the broker (as
// [Transport.Close] does), stops its timers, and drops its messages. Every
// later call on the broker or its transports fails with
// [transport.ErrClosed]. A second Close returns nil.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.closedFlag.Store(true)
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.sched.stopLocked()
	for _, q := range b.queues {
		q.stopExpiryLocked(b)
	}
	b.releaseIdleWaitersLocked()
	b.mu.Unlock()

	for _, c := range conns {
		c.t.close()
	}
	b.sched.wait()

	b.mu.Lock()
	for _, q := range b.queues {
		q.deleted = true
	}
	b.queues = map[string]*queue{}
	b.exchanges = map[string]*exchange{}
	b.mu.Unlock()
	return nil
}

func (b *Broker) errClosedLocked(op string) error {
	if b.closed {
		return fmt.Errorf("memory: %s: broker %w", op, transport.ErrClosed)
	}
	return nil
}

func validateExchangeName(op, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: name, Reason: "the default exchange cannot be declared, bound or deleted"})
	case len(name) > transport.MaxNameLength:
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: name, Reason: "longer than 255 bytes"})
	case !utf8.ValidString(name):
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: name, Reason: "not valid UTF-8"})
	}
	return nil
}

// DeclareExchange ensures an exchange of the given kind exists. Declaring
// an existing exchange with its kind is harmless; with another kind it fails
// with an error wrapping [transport.ErrTopologyConflict]. The default
// exchange "" cannot be declared, and names starting with "amq." are
// reserved ([transport.ErrInvalidName]).
func (b *Broker) DeclareExchange(name string, kind ExchangeKind) error {
	op := fmt.Sprintf("declare exchange %q", name)
	if err := validateExchangeName(op, name); err != nil {
		return err
	}
	switch kind {
	case ExchangeDirect, ExchangeTopic, ExchangeFanout:
	default:
		return fmt.Errorf("memory: %s: %w: unknown exchange kind %q", op, transport.ErrNotSupported, kind)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	return b.declareExchangeLocked(op, name, kind)
}

func (b *Broker) declareExchangeLocked(op, name string, kind ExchangeKind) error {
	if ex, ok := b.exchanges[name]; ok {
		if ex.kind != kind {
			return fmt.Errorf("memory: %s: %w: it exists with kind %s, declared %s", op, transport.ErrTopologyConflict, ex.kind, kind)
		}
		return nil
	}
	if strings.HasPrefix(name, "amq.") {
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: name, Reason: `the prefix "amq." is reserved by RabbitMQ`})
	}
	b.exchanges[name] = newExchange(name, kind)
	return nil
}

// DeleteExchange deletes an exchange and its bindings. Deleting an exchange
// that does not exist is harmless; the default exchange cannot be deleted.
func (b *Broker) DeleteExchange(name string) error {
	op := fmt.Sprintf("delete exchange %q", name)
	if err := validateExchangeName(op, name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	ex, ok := b.exchanges[name]
	if !ok {
		return nil
	}
	if strings.HasPrefix(name, "amq.") {
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: name, Reason: `the prefix "amq." is reserved by RabbitMQ`})
	}
	delete(b.exchanges, name)
	for _, q := range b.queues {
		for bd := range q.bindings {
			if bd.ex == ex {
				delete(q.bindings, bd)
			}
		}
	}
	return nil
}

// Exchanges returns the names and kinds of the exchanges that exist, the
// default exchange excluded.
func (b *Broker) Exchanges() map[string]ExchangeKind {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]ExchangeKind, len(b.exchanges))
	for name, ex := range b.exchanges {
		m[name] = ex.kind
	}
	return m
}

// DeclareQueue ensures a queue exists, as [transport.Transport.Declare]
// does for the queue alone (no bindings): a queue declared again with
// another type or other arguments fails with an error wrapping
// [transport.ErrTopologyConflict], unless q is Shared, in which case an
// existing queue is used as found. An empty Type means Quorum. Temporary
// queues belong to a connection: declare them through a [Transport].
func (b *Broker) DeclareQueue(q transport.Queue) error {
	if q.Temporary {
		return fmt.Errorf("memory: declare queue %q: %w: temporary queues belong to a connection; declare them with a Transport", q.Name, transport.ErrNotSupported)
	}
	top := transport.Topology{Queue: q}
	if err := top.Validate(); err != nil {
		return fmt.Errorf("memory: declare queue %q: %w", q.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	op := fmt.Sprintf("declare queue %q", q.Name)
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	_, err := b.declareQueueLocked(op, q, nil)
	return err
}

// declareQueueLocked creates or checks the queue q for the connection owner
// (nil for the broker itself).
func (b *Broker) declareQueueLocked(op string, spec transport.Queue, owner *conn) (*queue, error) {
	if spec.Type == "" {
		spec.Type = transport.Quorum
	}
	if spec.Temporary {
		spec.Type = transport.Classic
	}
	declared, err := spec.ArgumentsFor(spec.Type)
	if err != nil {
		return nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	args, err := declared.Normalize()
	if err != nil {
		return nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	spec.Arguments, spec.Options = args, transport.QueueOptions{}
	if q, ok := b.queues[spec.Name]; ok {
		if spec.Shared {
			return q, nil
		}
		if q.spec.Temporary != spec.Temporary {
			return nil, fmt.Errorf("memory: %s: %w: temporary %v, declared temporary %v (RabbitMQ's RESOURCE_LOCKED)", op, transport.ErrTopologyConflict, q.spec.Temporary, spec.Temporary)
		}
		if q.spec.Type != spec.Type {
			return nil, fmt.Errorf("memory: %s: %w: it exists with type %s, declared %s", op, transport.ErrTopologyConflict, q.spec.Type, spec.Type)
		}
		if k, ok := argumentsDiffer(q.spec.Arguments, spec.Arguments); ok {
			return nil, fmt.Errorf("memory: %s: %w: argument %q is %v, declared %v", op, transport.ErrTopologyConflict, k, q.spec.Arguments[k], spec.Arguments[k])
		}
		return q, nil
	}
	lim, err := parseLimits(spec.Type, spec.Arguments)
	if err != nil {
		return nil, fmt.Errorf("memory: %s: %w", op, err)
	}
	b.queueSeq++
	q := &queue{
		name:     spec.Name,
		id:       b.queueSeq,
		spec:     spec,
		owner:    owner,
		lim:      lim,
		bindings: make(map[binding]struct{}),
	}
	b.queues[spec.Name] = q
	return q, nil
}

// checkedArguments are the queue arguments RabbitMQ 3.10 compares when a
// queue is declared again (rabbit_amqqueue:declare_args, and x-delivery-limit
// for quorum queues, as checked on RabbitMQ 3.10.8); it ignores others.
var checkedArguments = []string{
	"x-delivery-limit",
	"x-expires", "x-message-ttl", "x-dead-letter-exchange",
	"x-dead-letter-routing-key", "x-dead-letter-strategy", "x-max-length",
	"x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
	"x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer",
	"x-quorum-initial-group-size", "x-max-age",
	"x-stream-max-segment-size-bytes", "x-initial-cluster-size",
	"x-queue-leader-locator",
}

// argumentsDiffer reports the first checked argument on which a and b
// differ. Integers compare by value whatever their width, as RabbitMQ
// compares them by type class.
func argumentsDiffer(a, b transport.Headers) (string, bool) {
	for _, k := range checkedArguments {
		va, oka := a[k]
		vb, okb := b[k]
		if oka != okb {
			return k, true
		}
		if !oka {
			continue
		}
		ia, inta := asInt(va)
		ib, intb := asInt(vb)
		if inta && intb {
			if ia != ib {
				return k, true
			}
			continue
		}
		if fmt.Sprintf("%T %v", va, va) != fmt.Sprintf("%T %v", vb, vb) {
			return k, true
		}
	}
	return "", false
}

func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case int16:
		return int64(v), true
	case uint16:
		return int64(v), true
	case int32:
		return int64(v), true
	case uint32:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

// DeleteQueue deletes a queue with its messages and bindings. Its consumers
// stop with an error wrapping [transport.ErrNotFound]. Deleting a queue that
// does not exist is harmless.
func (b *Broker) DeleteQueue(name string) error {
	op := fmt.Sprintf("delete queue %q", name)
	if err := transport.ValidateQueueName(name); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	if q, ok := b.queues[name]; ok {
		b.deleteQueueLocked(q)
	}
	return nil
}

func (b *Broker) deleteQueueLocked(q *queue) {
	delete(b.queues, q.name)
	q.deleted = true
	for bd := range q.bindings {
		bd.ex.unbind(q, bd.key)
	}
	q.bindings = nil
	for _, c := range slices.Clone(q.consumers) {
		c.failLocked(fmt.Errorf("memory: consume queue %q: %w: the queue was deleted", q.name, transport.ErrNotFound))
	}
	if q.owner != nil {
		delete(q.owner.temps, q.name)
	}
	q.clearReady()
	q.stopExpiryLocked(b)
	b.checkIdleLocked()
}

// PurgeQueue removes every ready message from a queue (not the ones
// delivered and not yet settled) and returns how many it removed.
func (b *Broker) PurgeQueue(name string) (int, error) {
	op := fmt.Sprintf("purge queue %q", name)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return 0, err
	}
	q, ok := b.queues[name]
	if !ok {
		return 0, fmt.Errorf("memory: %s: %w", op, transport.ErrNotFound)
	}
	n := q.readyLen()
	q.clearReady()
	b.checkIdleLocked()
	return n, nil
}

// Bind binds a queue to an exchange under key (a pattern for a topic
// exchange; ignored by a fanout exchange but part of the binding's
// identity). Binding twice is harmless. It fails with an error wrapping
// [transport.ErrNotFound] if the queue or the exchange does not exist; the
// default exchange cannot be bound.
func (b *Broker) Bind(exchangeName, queueName, key string) error {
	op := fmt.Sprintf("bind queue %q to exchange %q under %q", queueName, exchangeName, key)
	if err := b.validateBinding(op, exchangeName, queueName, key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	return b.bindLocked(op, exchangeName, queueName, key)
}

func (b *Broker) validateBinding(op, exchangeName, queueName, key string) error {
	if err := validateExchangeName(op, exchangeName); err != nil {
		return err
	}
	if err := transport.ValidateQueueName(queueName); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := transport.ValidateTopicPattern(key); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

func (b *Broker) bindLocked(op, exchangeName, queueName, key string) error {
	ex, ok := b.exchanges[exchangeName]
	if !ok {
		return fmt.Errorf("memory: %s: %w: no exchange %q", op, transport.ErrNotFound, exchangeName)
	}
	q, ok := b.queues[queueName]
	if !ok {
		return fmt.Errorf("memory: %s: %w: no queue %q", op, transport.ErrNotFound, queueName)
	}
	ex.bind(q, key)
	q.bindings[binding{ex, key}] = struct{}{}
	return nil
}

// Unbind removes a binding. Removing a binding, queue or exchange that
// does not exist is harmless.
func (b *Broker) Unbind(exchangeName, queueName, key string) error {
	op := fmt.Sprintf("unbind queue %q from exchange %q under %q", queueName, exchangeName, key)
	if err := b.validateBinding(op, exchangeName, queueName, key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		return err
	}
	b.unbindLocked(exchangeName, queueName, key)
	return nil
}

func (b *Broker) unbindLocked(exchangeName, queueName, key string) {
	ex, ok := b.exchanges[exchangeName]
	if !ok {
		return
	}
	q, ok := b.queues[queueName]
	if !ok {
		return
	}
	ex.unbind(q, key)
	delete(q.bindings, binding{ex, key})
}

func (ex *exchange) bind(q *queue, key string) {
	switch ex.kind {
	case ExchangeDirect:
		if !slices.Contains(ex.direct[key], q) {
			ex.direct[key] = append(ex.direct[key], q)
		}
	case ExchangeFanout:
		keys := ex.fanout[q]
		if keys == nil {
			keys = make(map[string]struct{})
			ex.fanout[q] = keys
		}
		keys[key] = struct{}{}
	case ExchangeTopic:
		ex.topic.add(key, q)
	}
}

func (ex *exchange) unbind(q *queue, key string) {
	switch ex.kind {
	case ExchangeDirect:
		qs := slices.DeleteFunc(ex.direct[key], func(x *queue) bool { return x == q })
		if len(qs) == 0 {
			delete(ex.direct, key)
		} else {
			ex.direct[key] = qs
		}
	case ExchangeFanout:
		if keys := ex.fanout[q]; keys != nil {
			delete(keys, key)
			if len(keys) == 0 {
				delete(ex.fanout, q)
			}
		}
	case ExchangeTopic:
		ex.topic.remove(key, q)
	}
}

// Bindings returns the bindings of a queue, sorted by exchange and key, or
// nil if it does not exist. The binding every queue has on the default
// exchange is not listed.
func (b *Broker) Bindings(queueName string) []Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[queueName]
	if !ok {
		return nil
	}
	out := make([]Binding, 0, len(q.bindings))
	for bd := range q.bindings {
		out = append(out, Binding{Exchange: bd.ex.name, Key: bd.key})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Exchange != out[j].Exchange {
			return out[i].Exchange < out[j].Exchange
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Queues returns the names of the queues that exist, sorted.
func (b *Broker) Queues() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.queues))
	for name := range b.queues {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// routeLocked returns the queues a message published to ex (nil for the
// default exchange) under key reaches, each once, in the order the queues
// were created. The slice is reused by the next call.
func (b *Broker) routeLocked(ex *exchange, key string) []*queue {
	b.route.epoch++
	rs := &b.route
	rs.out = rs.out[:0]
	switch {
	case ex == nil:
		if q, ok := b.queues[key]; ok {
			rs.add(q)
		}
	case ex.kind == ExchangeDirect:
		for _, q := range ex.direct[key] {
			rs.add(q)
		}
	case ex.kind == ExchangeFanout:
		for q := range ex.fanout {
			rs.add(q)
		}
	case ex.kind == ExchangeTopic:
		ex.topic.match(key, rs)
	}
	if len(rs.out) > 1 {
		slices.SortFunc(rs.out, func(a, b *queue) int { return cmp.Compare(a.id, b.id) })
	}
	return rs.out
}

// PublishOptions are the optional parts of [Broker.Publish].
type PublishOptions struct {
	// Mandatory makes Publish fail with [transport.ErrUnroutable] when the
	// message reaches no queue.
	Mandatory bool
	// NotBefore defers the message: it is routed when it is due.
	NotBefore time.Time
}

// Publish publishes msg to an exchange ("" is the default exchange) under
// key, as a client of the broker would, but without a connection: it is
// not affected by [Broker.Disconnect]. The message is normalized and copied
// ([transport.Message.Normalized]). It fails with an error wrapping
// [transport.ErrNotFound] if the exchange does not exist,
// [transport.ErrUnroutable] if the message is mandatory and reaches no
// queue, [transport.ErrRejected] at once if a full queue (x-overflow
// reject-publish) refuses it (it still reaches the other queues it is
// routed to), or the error given to [Broker.FailDispatches].
func (b *Broker) Publish(exchangeName, key string, msg transport.Message, opts PublishOptions) error {
	op := fmt.Sprintf("publish to exchange %q with routing key %q", exchangeName, key)
	if len(exchangeName) > transport.MaxNameLength || !utf8.ValidString(exchangeName) {
		return fmt.Errorf("memory: %s: %w", op, &transport.NameError{Kind: "exchange name", Name: exchangeName, Reason: "longer than 255 bytes or not valid UTF-8"})
	}
	if err := transport.ValidateRoutingKey(key); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := msg.Validate(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	e := newEntry()
	if err := e.set(&msg); err != nil {
		e.free()
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	e.exchange, e.key = exchangeName, key
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked(op); err != nil {
		e.free()
		return err
	}
	if err := b.publishLocked(nil, e, opts.Mandatory, opts.NotBefore, b.stamp()); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

// stamp is the time for the journal's records: zero when there is no
// journal, since asking the clock is a good part of a message's cost, and
// otherwise the broker's start plus the time elapsed since, which reads
// one clock instead of two.
//
// It may be called without the lock, so that callers read the clock before
// they take it.
func (b *Broker) stamp() stamp {
	if !b.journalOn.Load() {
		return 0
	}
	return stamp(time.Since(b.started))
}

// publishLocked routes and enqueues e (its message normalized and copied,
// its exchange and key set), or schedules it when notBefore is in the
// future. It takes over the caller's reference to e, whatever happens: the
// first queue or the scheduler keeps it, so that a message that goes to one
// queue costs no reference counting. from is the publishing connection,
// nil for Broker.Publish; now stamps the journal. The error wraps a
// sentinel and says no more than why.
func (b *Broker) publishLocked(from *conn, e *entry, mandatory bool, notBefore time.Time, now stamp) error {
	r := record{op: Dispatched, c: from.publisher(), e: e}
	fail := func(err error) error {
		r.op = Failed
		x := r.extras()
		x.err, x.notBefore = err, notBefore
		b.journal.add(&r, now)
		b.releaseLocked(e)
		return err
	}
	if b.failN > 0 {
		b.failN--
		return fail(fmt.Errorf("injected fault: %w", b.failErr))
	}
	var ex *exchange
	if e.exchange != "" {
		var ok bool
		if ex, ok = b.exchanges[e.exchange]; !ok {
			return fail(fmt.Errorf("%w: no exchange %q", transport.ErrNotFound, e.exchange))
		}
	}
	if !notBefore.IsZero() && notBefore.After(time.Now()) {
		if mandatory && len(b.routeLocked(ex, e.key)) == 0 {
			return fail(fmt.Errorf("%w: no queue is bound under this routing key", transport.ErrUnroutable))
		}
		b.seq++
		// The caller's reference becomes the scheduler's, handed to the
		// queues when the message is due.
		b.sched.addLocked(b, &deferred{due: notBefore, seq: b.seq, from: from, e: e})
		r.extras().notBefore = notBefore
		b.journal.add(&r, now)
		return nil
	}
	qs := b.routeLocked(ex, e.key)
	if len(qs) == 0 && mandatory {
		return fail(fmt.Errorf("%w: no queue is bound under this routing key", transport.ErrUnroutable))
	}
	r.setQueues(qs)
	b.journal.add(&r, now)
	if full := b.enqueueLocked(ex, e, qs, now); full != nil {
		return full[0].fullError()
	}
	return nil
}

// enqueueLocked puts e on the first of qs that takes it and copies of it
// on the others. That queue takes over the caller's reference to e
// (released if none takes it); each copy belongs to its queue. The lock
// keeps e alive while it is copied: only a settle, under the lock, drops
// the first queue's reference, and a queue that drops e at once (its
// limits) leaves it to the reference held here meanwhile.
//
// It returns the queues that refused the message because they are full
// (x-overflow reject-publish), nil if none did: the publisher's nack.
func (b *Broker) enqueueLocked(ex *exchange, e *entry, qs []*queue, now stamp) (full []*queue) {
	if len(qs) == 0 {
		b.releaseLocked(e)
		return nil
	}
	e.kind = transport.Direct
	if ex != nil && ex.kind == ExchangeTopic {
		e.kind = transport.Topic
	}
	e.retain()
	taken := false
	for _, q := range qs {
		if q.refusesLocked(len(e.msg.Body)) {
			full = append(full, q)
			if q.lim.overflow == transport.RejectPublishDLX {
				b.deadLetterLocked(q, e, reasonMaxLen, now)
			}
			continue
		}
		qe := e
		if taken {
			qe = e.clone()
		}
		taken = true
		b.seq++
		qe.seq = b.seq
		if q.lim.priority {
			qe.prio = min(qe.msg.Priority, q.lim.maxPriority)
		}
		if q.lim.ttl >= 0 {
			qe.expires = time.Now().Add(q.lim.ttl)
		}
		q.pushBack(qe)
		q.pumpLocked(b, now)
		q.enforceLocked(b, now)
	}
	if !taken {
		b.releaseLocked(e)
	}
	b.releaseLocked(e)
	return full
}

// FailDispatches makes the next n messages published to the broker (by any
// transport's Dispatch or by Publish) fail with an error wrapping err, or
// [transport.ErrRejected] if err is nil, without reaching any queue. n zero
// cancels faults still pending.
func (b *Broker) FailDispatches(n int, err error) {
	if err == nil {
		err = transport.ErrRejected
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failN, b.failErr = max(n, 0), err
}

// Stats returns a queue's state, or an error wrapping
// [transport.ErrNotFound].
func (b *Broker) Stats(queueName string) (QueueStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.errClosedLocked("stats"); err != nil {
		return QueueStats{}, err
	}
	q, ok := b.queues[queueName]
	if !ok {
		return QueueStats{}, fmt.Errorf("memory: stats of queue %q: %w", queueName, transport.ErrNotFound)
	}
	return q.stats(), nil
}

// Depth returns the number of messages in a queue, ready or delivered and
// not yet settled (RabbitMQ's "Total"); 0 if the queue does not exist.
func (b *Broker) Depth(queueName string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[queueName]
	if !ok {
		return 0
	}
	return q.readyLen() + q.unacked
}

// Messages returns copies of a queue's ready messages in the order they will
// be delivered (not the messages delivered and not yet settled), or nil if
// the queue does not exist.
func (b *Broker) Messages(queueName string) []transport.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[queueName]
	if !ok {
		return nil
	}
	out := make([]transport.Message, 0, q.readyLen())
	for i := range q.ready.n {
		out = append(out, q.ready.at(i).message())
	}
	return out
}

// Pending is a deferred message waiting in the broker for its time.
type Pending struct {
	// Exchange and RoutingKey are where it will be published.
	Exchange   string
	RoutingKey string
	// NotBefore is when it is due.
	NotBefore time.Time
	// Message is a copy of the message.
	Message transport.Message
}

// Deferred returns the deferred messages not yet due, soonest first.
func (b *Broker) Deferred() []Pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	ds := slices.Clone(b.sched.heap)
	sort.Slice(ds, func(i, j int) bool { return ds[i].before(ds[j]) })
	out := make([]Pending, len(ds))
	for i, d := range ds {
		out[i] = Pending{Exchange: d.e.exchange, RoutingKey: d.e.key, NotBefore: d.due, Message: d.e.message()}
	}
	return out
}

// WaitIdle waits until the broker is idle: no handler call is under way, no
// delivery is unsettled, and no queue with a consumer has a ready message.
// Messages in queues nobody consumes, and deferred messages not yet due, do
// not count. It returns ctx's error if ctx is done first, and an error
// wrapping [transport.ErrClosed] if the broker is closed.
func (b *Broker) WaitIdle(ctx context.Context) error {
	b.mu.Lock()
	if err := b.errClosedLocked("wait idle"); err != nil {
		b.mu.Unlock()
		return err
	}
	if b.idleLocked() {
		b.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	b.idleWaiters = append(b.idleWaiters, ch)
	b.idleWaiting.Add(1)
	b.mu.Unlock()

	select {
	case <-ch:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.errClosedLocked("wait idle")
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		if i := slices.Index(b.idleWaiters, ch); i >= 0 {
			b.idleWaiters = slices.Delete(b.idleWaiters, i, i+1)
			b.idleWaiting.Add(-1)
		}
		return fmt.Errorf("memory: wait idle: %w", ctx.Err())
	}
}

func (b *Broker) idleLocked() bool {
	if b.running.Load() > 0 {
		return false
	}
	for _, q := range b.queues {
		if q.unacked > 0 || (len(q.consumers) > 0 && q.readyLen() > 0) {
			return false
		}
	}
	return true
}

// checkIdleLocked wakes the WaitIdle callers if the broker is idle.
func (b *Broker) checkIdleLocked() {
	if b.idleWaiting.Load() == 0 || !b.idleLocked() {
		return
	}
	b.releaseIdleWaitersLocked()
}

func (b *Broker) releaseIdleWaitersLocked() {
	for _, ch := range b.idleWaiters {
		close(ch)
	}
	b.idleWaiting.Add(-int32(len(b.idleWaiters)))
	b.idleWaiters = nil
}

// handlerDone is called by a consumer after each handler call.
func (b *Broker) handlerDone() {
	if b.running.Add(-1) == 0 && b.idleWaiting.Load() > 0 {
		b.mu.Lock()
		b.checkIdleLocked()
		b.mu.Unlock()
	}
}

// Disconnect drops the connection of every transport on the broker, as a
// network failure or a broker restart would, and keeps them down until
// [Broker.Reconnect]. See the package documentation for what a transport
// does meanwhile.
func (b *Broker) Disconnect() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.offline {
		return
	}
	b.offline = true
	for _, c := range b.sortedConnsLocked() {
		c.updateLocked()
	}
}

// Reconnect ends a [Broker.Disconnect]: every transport not disconnected on
// its own ([Transport.Disconnect]) recovers its connection.
func (b *Broker) Reconnect() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !b.offline {
		return
	}
	b.offline = false
	for _, c := range b.sortedConnsLocked() {
		c.updateLocked()
	}
}

// Block makes the broker refuse publishes from its transports, as RabbitMQ
// does when a resource alarm goes off (connection.blocked): their Dispatch
// calls wait, bounded by their contexts, until [Broker.Unblock], and their
// watchers see [transport.Blocked] with reason in the event's error.
// Consumers go on. [Broker.Publish] is not affected.
func (b *Broker) Block(reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.blocked != nil {
		return
	}
	b.blocked = make(chan struct{})
	b.blockedErr = fmt.Errorf("memory: the broker blocks publishing: %s", reason)
	for _, c := range b.sortedConnsLocked() {
		c.emitLocked(transport.Event{Kind: transport.Blocked, Err: b.blockedErr})
	}
}

// Unblock ends a [Broker.Block]: waiting Dispatch calls go on and watchers
// see [transport.Unblocked].
func (b *Broker) Unblock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.blocked == nil {
		return
	}
	close(b.blocked)
	b.blocked, b.blockedErr = nil, nil
	for _, c := range b.sortedConnsLocked() {
		c.emitLocked(transport.Event{Kind: transport.Unblocked})
	}
}

// DropConnections drops the connection of every transport and lets each
// recover at once, as a brief network failure would: every consumer's
// unsettled deliveries are requeued and redelivered, and watchers see the
// connection go and come back.
func (b *Broker) DropConnections() {
	b.Disconnect()
	b.Reconnect()
}

func (b *Broker) sortedConnsLocked() []*conn {
	cs := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].id < cs[j].id })
	return cs
}
