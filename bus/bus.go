package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Bus is an endpoint: a queue of its own (unless send-only), the handlers of
// the messages that arrive there, and the calls that send messages. Make
// one with [New]. A Bus is safe for concurrent use.
type Bus struct {
	t       transport.Transport
	delayer transport.Delayer // nil if the transport cannot defer
	// recycler takes handled deliveries back; nil if the transport does
	// not reuse their memory.
	recycler transport.Recycler
	opts     Options
	log      *slog.Logger
	names    middleware.HeaderNames
	times    middleware.TimeFormat
	codec    Codec
	// defaultJSON: codec is JSON, which post encodes into pooled buffers.
	defaultJSON bool
	codecs      codecs
	// selective are the codecs of Options.Codecs that claim some values
	// to encode (SelectiveCodec), tried before codec.
	selective []SelectiveCodec
	// exchanges are Options.Exchanges by name, and binder the transport
	// that binds on them; nil without.
	exchanges map[string]*exchange
	binder    transport.ExchangeBinder

	queue      string // with the prefix; "" for a send-only Bus
	queueOpts  transport.QueueOptions
	name       string // what errors call the Bus: `bus "orders"`, or "send-only bus"
	queueBox   any
	errorQueue string
	ctString   string // the codec's content type and the same boxed, for headers
	ctBox      any

	dispatch middleware.Dispatcher // the transport's Dispatch wrapped in DispatchMiddleware
	batch    middleware.Dispatcher // dispatch, wrapped in Hooks.Dispatch: for scopes' batches
	sender   middleware.Sender     // dispatch, plus Delayer when the transport has it
	pipeline middleware.Handler    // the stages, then terminal
	hooks    Hooks                 // from Options.Instrument

	handlers atomic.Pointer[handlerTable]
	regMu    sync.Mutex
	derived  sync.Map // derived message type name → the Go type that claimed it (see claim)

	replies  replies
	posts    posts           // SendAsync's and PublishAsync's
	gate     byteGate        // FlowControl.MaxUnackedBytes
	pikaBus1 pikaBus1Senders // senders warned about; see timeformat.go
	evOnce   sync.Once
	ev       *events // created on the first event, if OnNotice is set

	closed    atomic.Bool    // Shutdown or Close began
	finishing chan struct{}  // closed when the Bus stops waiting for its consumers
	done      chan struct{}  // closed when the Bus has stopped
	wg        sync.WaitGroup // consumer monitors
	// running counts the handler calls under way; abandoned is set when
	// Shutdown or Close returned without waiting for some of them, whose
	// messages then go back to the queue whatever they return.
	running   atomic.Int64
	abandoned atomic.Bool
	holds     holds // messages given back after a failure, to pace them
	// released is closed when Shutdown, Close or Pause begins, which ends
	// the holds under way (see Bus.hold); Resume makes a new one. Guarded
	// by mu.
	released chan struct{}

	opMu sync.Mutex // serializes Start, Pause, Resume and Shutdown
	mu   sync.Mutex // guards the fields below
	st   state
	cons transport.Consumer // the endpoint queue's consumer while running
	flow FlowControl        // in effect, defaults applied
	// suspended: Options.HealthMonitor says the host is unhealthy, and the
	// Bus consumes nothing, whether running or paused.
	suspended bool
	subs      []string         // subscription patterns, prefixed
	lost      map[string]error // queues whose consumer failed, and why
	stop      func()           // stops watching the transport's events

	finishOnce sync.Once
}

type state uint8

const (
	created state = iota
	running
	paused
	stopped
)

// New returns a Bus for the endpoint queue on transport t, or a send-only
// Bus if queue is empty. It checks the queue name, the subscription
// patterns and the options, builds the handling pipeline, and touches no
// broker: [Bus.Start] does. The transport remains the caller's: close it
// after the Bus.
//
// The standard pipeline (no [Options.Pipeline]) fits the transport: over
// one that implements transport.Delayer, failed handlings get delayed
// retries and deferred messages wait for their time; over one that does not
// (amqp.DialNoDelay), failed handlings are retried at once, in process, as
// many times as the delayed retries would have been, then go to the error
// queue, and Defer fails with [ErrNotSupported].
func New(t transport.Transport, queue string, opts Options) (*Bus, error) {
	if t == nil {
		return nil, errors.New("bus.New: nil transport")
	}
	b := &Bus{t: t, opts: opts, done: make(chan struct{}), released: make(chan struct{}),
		finishing: make(chan struct{}), name: "send-only bus"}
	if opts.Logger == nil {
		// Silence is a choice (slog.DiscardHandler), not the default: a
		// failing handler must show up before its message reaches the
		// error queue half a minute later.
		b.opts.Logger = slog.Default()
	}
	b.log = b.opts.Logger
	if d, ok := t.(transport.Delayer); ok && d.MaxDelay() > 0 {
		b.delayer = d
	}
	if opts.Pipeline == nil && len(opts.Middleware) == 0 && opts.UnitOfWork == nil {
		// Stages or a unit of work of the user's could keep a message
		// past its handling.
		b.recycler, _ = t.(transport.Recycler)
	}
	if opts.PostWindow < 0 {
		return nil, fmt.Errorf("bus.New: negative PostWindow (%d)", opts.PostWindow)
	}
	if opts.MaxUnackedBytes < 0 {
		return nil, fmt.Errorf("bus.New: negative MaxUnackedBytes (%d)", opts.MaxUnackedBytes)
	}
	if opts.Concurrency < 0 || opts.Prefetch < 0 {
		return nil, fmt.Errorf("bus.New: negative Concurrency (%d) or Prefetch (%d)", opts.Concurrency, opts.Prefetch)
	}
	if opts.Concurrency == 0 {
		b.opts.Concurrency = 1
	}
	if opts.Prefetch == 0 {
		b.opts.Prefetch = defaultPrefetchFactor * b.opts.Concurrency
	}
	if b.opts.Prefetch < b.opts.Concurrency {
		b.opts.Prefetch = b.opts.Concurrency
	}
	for _, qt := range []transport.QueueType{opts.QueueType, opts.ErrorQueueType} {
		switch qt {
		case "", transport.Quorum, transport.Classic:
		default:
			return nil, fmt.Errorf("bus.New: unknown queue type %q", qt)
		}
	}
	if opts.Unhandled > UnhandledDiscard {
		return nil, fmt.Errorf("bus.New: unknown Unhandled policy %d", opts.Unhandled)
	}
	prefix := opts.HeaderPrefix
	if prefix == "" {
		prefix = middleware.DefaultHeaderPrefix
	}
	b.names = middleware.NewHeaderNames(prefix)
	if opts.TimeFormat > middleware.TimePikaBus1 {
		return nil, fmt.Errorf("bus.New: unknown TimeFormat %d", opts.TimeFormat)
	}
	b.times = opts.TimeFormat
	b.opts.TimeFormatByQueue = maps.Clone(opts.TimeFormatByQueue) // the caller's map may change
	for q, f := range opts.TimeFormatByQueue {
		if f > middleware.TimePikaBus1 {
			return nil, fmt.Errorf("bus.New: TimeFormatByQueue[%q]: unknown TimeFormat %d", q, f)
		}
		if err := transport.ValidateQueueName(q); err != nil {
			return nil, fmt.Errorf("bus.New: TimeFormatByQueue: %w", err)
		}
	}

	if queue != "" {
		b.queue = opts.QueuePrefix + queue
		if opts.PerInstance {
			b.queue = instanceQueue(b.queue, opts.InstanceID)
		}
		if err := transport.ValidateQueueName(b.queue); err != nil {
			return nil, fmt.Errorf("bus.New: endpoint queue: %w", err)
		}
		if l, ok := b.delayer.(transport.DelayedQueueLimiter); ok && len(b.queue) > l.MaxDelayedQueueName() {
			return nil, fmt.Errorf("bus.New: endpoint queue %q is %d bytes long: the transport's deferred delivery, which delayed retries and Defer use, reaches queues of at most %d bytes",
				b.queue, len(b.queue), l.MaxDelayedQueueName())
		}
		b.queueBox = b.queue
		b.name = fmt.Sprintf("bus %q", b.queue)
	} else if len(opts.Subscriptions) > 0 {
		return nil, fmt.Errorf("bus.New: subscriptions need a queue: %w", ErrSendOnly)
	}
	eq := opts.ErrorQueue
	if eq == "" {
		eq = middleware.DefaultErrorQueue
	}
	b.errorQueue = opts.QueuePrefix + eq
	if err := transport.ValidateQueueName(b.errorQueue); err != nil {
		return nil, fmt.Errorf("bus.New: error queue: %w", err)
	}
	if err := b.setQueueOptions(opts); err != nil {
		return nil, err
	}
	for _, p := range opts.Subscriptions {
		full := opts.TopicPrefix + p
		if err := transport.ValidateTopicPattern(full); err != nil {
			return nil, fmt.Errorf("bus.New: subscription: %w", err)
		}
		if !slices.Contains(b.subs, full) {
			b.subs = append(b.subs, full)
		}
	}
	b.replies.queue = replyQueueName(b.queue, opts.QueuePrefix)
	b.replies.queueBox = b.replies.queue

	b.codec = opts.Codec
	if b.codec == nil {
		b.codec = JSON
	}
	_, b.defaultJSON = b.codec.(jsonCodec)
	extra, err := b.setupExchanges(t)
	if err != nil {
		return nil, err
	}
	if b.codecs, err = newCodecs(b.codec, append(slices.Clip(opts.Codecs), extra...)); err != nil {
		return nil, err
	}
	b.selective = selectiveCodecs(opts.Codecs)
	b.ctString = b.codec.ContentType()
	b.ctBox = b.ctString

	b.dispatch = middleware.ChainDispatch(opts.DispatchMiddleware...)(t.Dispatch)
	if b.delayer != nil {
		b.sender = delayingSender{b.dispatch, b.delayer}
	} else {
		b.sender = b.dispatch
	}
	if err := b.instrument(); err != nil {
		return nil, fmt.Errorf("bus.New: Instrument: %w", err)
	}
	b.batch = b.dispatch
	if b.hooks.Dispatch != nil {
		b.batch = b.hooks.Dispatch(b.dispatch)
	}

	var stages middleware.Middleware
	if opts.Pipeline != nil {
		stages, err = opts.Pipeline(b.plumbing())
		if err != nil {
			return nil, fmt.Errorf("bus.New: Pipeline: %w", err)
		}
		if stages == nil {
			return nil, errors.New("bus.New: Pipeline returned a nil middleware")
		}
	} else {
		retry := opts.Retry
		if retry.TimeFormat == middleware.TimeRFC3339 {
			retry.TimeFormat = b.times
		}
		if user := retry.OnRetry; user != nil {
			retry.OnRetry = func(ctx context.Context, f middleware.Failure) {
				user(ctx, f)
				b.onRetry(ctx, f)
			}
		} else {
			retry.OnRetry = b.onRetry
		}
		noDelay := b.delayer == nil
		if noDelay {
			retry = b.immediateOnly(retry)
		}
		stages, err = middleware.Standard(b.sender, middleware.StandardOptions{
			NoDeferral: noDelay,
			ErrorQueue: middleware.ErrorQueueOptions{Queue: b.errorQueue, OnForward: b.onForward},
			Retry:      retry,
			Timeout:    opts.HandlerTimeout,
			Headers:    b.names,
			Logger:     b.opts.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("bus.New: standard pipeline: %w", err)
		}
	}
	b.pipeline = middleware.Chain(stages, middleware.Chain(opts.Middleware...))(b.terminal)

	b.handlers.Store(&handlerTable{})
	b.posts.init(b)
	b.flow = FlowControl{Prefetch: b.opts.Prefetch, MaxUnackedBytes: opts.MaxUnackedBytes, Priority: opts.ConsumerPriority}
	b.gate.setLimit(int64(opts.MaxUnackedBytes))
	return b, nil
}

// immediateOnly adapts the retry options to a transport that cannot defer
// (amqp.DialNoDelay, say): delayed retries need deferred delivery, so the
// retries are made at once, in process, as many as the delayed ones would
// have been (Retry.Immediate, if larger), and then the message goes to the
// error queue. It says so in the log, once, at New.
func (b *Bus) immediateOnly(r middleware.RetryOptions) middleware.RetryOptions {
	r.Immediate = max(r.Immediate, r.MaxRetries.Count())
	r.MaxRetries = middleware.NoRetries
	b.log.Info("the transport cannot defer messages: failed handlings are retried at once, in process, then go to the error queue; incoming deferred messages are handled on arrival",
		"queue", b.queue, "immediate_retries", r.Immediate)
	return r
}

// delayingSender is the Bus's dispatcher offered to the pipeline's stages
// with the transport's Delayer capability.
type delayingSender struct {
	d middleware.Dispatcher
	transport.Delayer
}

func (s delayingSender) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	return s.d(ctx, msgs...)
}

// Queue returns the endpoint's queue name, with the prefix; empty for a
// send-only Bus.
func (b *Bus) Queue() string { return b.queue }

// ErrorQueue returns the name of the error queue, with the prefix.
func (b *Bus) ErrorQueue() string { return b.errorQueue }

// HeaderNames returns the names of the standard headers the Bus writes and
// reads, to read the failure headers of the messages in the error queue
// (ErrorDetails, SourceQueue) when [Options.HeaderPrefix] changed them.
func (b *Bus) HeaderNames() middleware.HeaderNames { return b.names }

// Sender returns what the Bus dispatches through: the transport's Dispatch
// wrapped in [Options.DispatchMiddleware], with the transport's
// transport.Delayer capability if it has it (and no other: to replay the
// error queue, see [Bus.ReplayErrors]). Integrations that dispatch what the
// Bus prepared, such as the outbox's relay, use it.
func (b *Bus) Sender() middleware.Sender { return b.sender }

// ReplayErrors moves messages from the error queue back to the queues they
// failed in, with a fresh set of retries: it is [middleware.Replay] (see it
// for what is moved, what is left and why, and the guarantees) over the
// Bus's transport, with the Bus's defaults where opts leaves a field zero:
// the Bus's error queue ([Bus.ErrorQueue], with [Options.QueuePrefix]), its
// header names ([Bus.HeaderNames]) and its logger. A Queue or SourceQueues
// given in opts are full queue names, as the SourceQueue header holds them:
// no prefix is added.
//
// The transport must implement transport.Getter; otherwise ReplayErrors
// fails with an error wrapping [ErrNotSupported]. The replayed messages
// are dispatched at once, even inside a handler, through
// [Options.DispatchMiddleware]. ReplayErrors works on a send-only Bus, and
// before Start: an operations tool can be one. After Shutdown or Close it
// fails with [ErrClosed].
func (b *Bus) ReplayErrors(ctx context.Context, opts middleware.ReplayOptions) (middleware.ReplayResult, error) {
	if opts.Queue == "" {
		opts.Queue = b.errorQueue
	}
	if b.closed.Load() {
		return middleware.ReplayResult{}, fmt.Errorf("%s: replay errors from %q: %w", b.name, opts.Queue, ErrClosed)
	}
	g, ok := b.t.(transport.Getter)
	if !ok {
		return middleware.ReplayResult{}, fmt.Errorf("%s: replay errors from %q: the transport does not implement transport.Getter: %w",
			b.name, opts.Queue, ErrNotSupported)
	}
	if opts.Headers == (middleware.HeaderNames{}) {
		opts.Headers = b.names
	}
	if opts.Logger == nil {
		opts.Logger = b.opts.Logger
	}
	res, err := middleware.Replay(ctx, replaySender{b.dispatch, g}, opts)
	if err != nil {
		err = fmt.Errorf("%s: replay errors: %w", b.name, err)
	}
	return res, err
}

// replaySender is what ReplayErrors gives middleware.Replay: the Bus's
// dispatcher, and the transport's Getter.
type replaySender struct {
	d middleware.Dispatcher
	transport.Getter
}

func (s replaySender) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	return s.d(ctx, msgs...)
}

// Start declares the endpoint's topology and starts consuming its queue:
// the queue ([Options.QueueType], quorum by default) bound on the direct
// exchange under its own name and on the topic exchange under
// [Options.Subscriptions] and the patterns given to Subscribe before Start;
// and the error queue, as a shared queue ([Options.ErrorQueueType], classic
// by default, if Start creates it). A send-only Bus declares nothing.
// Start may be called once; ctx bounds it.
func (b *Bus) Start(ctx context.Context) error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	st, subs := b.st, slices.Clone(b.subs)
	b.mu.Unlock()
	switch {
	case b.closed.Load() || st == stopped:
		return fmt.Errorf("%s: start: %w", b.name, ErrClosed)
	case st != created:
		return fmt.Errorf("%s: start: already started", b.name)
	}
	var c transport.Consumer
	if b.queue != "" {
		if err := b.t.Declare(ctx, transport.Topology{
			Queue:  b.endpointQueue(),
			Topics: subs,
		}); err != nil {
			return fmt.Errorf("%s: start: declaring the endpoint queue: %w", b.name, err)
		}
		if err := b.bindExchanges(ctx); err != nil {
			return fmt.Errorf("%s: start: %w", b.name, err)
		}
		if err := b.t.Declare(ctx, transport.Topology{
			Queue: transport.Queue{Name: b.errorQueue, Type: b.errorQueueType(), Shared: true},
		}); err != nil {
			return fmt.Errorf("%s: start: declaring the error queue %q: %w", b.name, b.errorQueue, err)
		}
		if m := b.opts.HealthMonitor; m != nil && !m.Healthy() {
			b.mu.Lock()
			b.suspended = true
			b.mu.Unlock()
		} else {
			var err error
			if c, err = b.consume(ctx); err != nil {
				return fmt.Errorf("%s: start: %w", b.name, err)
			}
		}
	}
	var stop func()
	if w, ok := b.t.(transport.Watcher); ok {
		stop = w.Watch(b.transportEvent)
	}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		if stop != nil {
			stop()
		}
		if c != nil {
			_ = c.Close()
		}
		return fmt.Errorf("%s: start: %w", b.name, ErrClosed)
	}
	b.st, b.cons, b.stop = running, c, stop
	if c != nil {
		b.monitorLocked(c, b.queue)
	}
	suspended := b.suspended
	b.mu.Unlock()
	b.emit(Notice{Kind: Started, Queue: b.queue})
	b.log.InfoContext(ctx, "endpoint started", "queue", b.queue, "subscriptions", subs)
	if suspended {
		b.emit(Notice{Kind: Suspended, Queue: b.queue})
		b.log.WarnContext(ctx, "the host is unhealthy: consumption suspended", "queue", b.queue)
	}
	b.watchHealth()
	return nil
}

// setQueueOptions checks Options.QueueOptions against the endpoint queue's
// type, so that a queue RabbitMQ would refuse fails New rather than Start,
// and completes them: the dead-letter queue gets the QueuePrefix, and a
// delivery limit without one dead-letters to the error queue, since a
// message over the limit is otherwise lost.
func (b *Bus) setQueueOptions(opts Options) error {
	o := opts.QueueOptions
	if o.IsZero() {
		return nil
	}
	if b.queue == "" {
		return fmt.Errorf("bus.New: QueueOptions need a queue: %w", ErrSendOnly)
	}
	switch {
	case o.DeadLetterQueue != "":
		o.DeadLetterQueue = opts.QueuePrefix + o.DeadLetterQueue
	case o.DeliveryLimit > 0:
		o.DeadLetterQueue = b.errorQueue
	}
	tp := transport.Topology{Queue: transport.Queue{Name: b.queue, Type: b.queueType(), Options: o}}
	if err := tp.Validate(); err != nil {
		return fmt.Errorf("bus.New: QueueOptions: %w", err)
	}
	b.queueOpts = o
	return nil
}

func (b *Bus) queueType() transport.QueueType {
	if b.opts.QueueType == "" {
		return transport.Quorum
	}
	return b.opts.QueueType
}

func (b *Bus) errorQueueType() transport.QueueType {
	if b.opts.ErrorQueueType == "" {
		return transport.Classic
	}
	return b.opts.ErrorQueueType
}

func (b *Bus) consume(ctx context.Context) (transport.Consumer, error) {
	b.mu.Lock()
	f := b.flow
	b.mu.Unlock()
	c, err := b.t.Consume(ctx, b.queue, transport.ConsumeOptions{
		Concurrency: b.opts.Concurrency,
		Prefetch:    f.Prefetch,
		Priority:    f.Priority,
		Tag:         b.queue,
	}, b.deliver)
	if err != nil {
		return nil, fmt.Errorf("consuming %q: %w", b.queue, err)
	}
	return c, nil
}

// monitor watches consumer c of queue until it stops, and reports a stop
// nobody asked for.
func (b *Bus) monitor(c transport.Consumer, queue string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.monitorLocked(c, queue)
}

func (b *Bus) monitorLocked(c transport.Consumer, queue string) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-c.Done():
		case <-b.finishing:
			return // stopping: the consumer's end is not a loss
		}
		if err := c.Err(); err != nil {
			b.consumerLost(queue, err, transport.Event{})
		}
	}()
}

func (b *Bus) consumerLost(queue string, err error, te transport.Event) {
	b.mu.Lock()
	if b.lost == nil {
		b.lost = map[string]error{}
	}
	_, already := b.lost[queue]
	b.lost[queue] = err
	b.mu.Unlock()
	if !already {
		b.log.Error("consumer stopped", "queue", queue, "error", err)
		b.emit(Notice{Kind: ConsumerLost, Queue: queue, Err: err, Transport: te})
	}
}

// transportEvent turns a transport event into the Bus's.
func (b *Bus) transportEvent(e transport.Event) {
	switch e.Kind {
	case transport.ConsumerStarted, transport.ConsumerStopped:
		if e.Queue != b.queue && e.Queue != b.replies.queue {
			return // another endpoint's consumer on a shared transport
		}
		if e.Kind == transport.ConsumerStopped {
			if e.Err != nil {
				b.consumerLost(e.Queue, e.Err, e)
			}
			return
		}
		b.mu.Lock()
		_, was := b.lost[e.Queue]
		delete(b.lost, e.Queue)
		b.mu.Unlock()
		if was {
			b.log.Info("consumer resumed", "queue", e.Queue)
			b.emit(Notice{Kind: ConsumerResumed, Queue: e.Queue, Transport: e})
		}
	default:
		b.logTransportEvent(e)
		b.emit(Notice{Kind: TransportChanged, Queue: b.queue, Transport: e})
	}
}

// logTransportEvent logs a change of the transport's connection: losses
// and alarms at Warn, recoveries at Info.
func (b *Bus) logTransportEvent(e transport.Event) {
	switch e.Kind {
	case transport.Disconnected:
		b.log.Warn("connection to the broker lost; reconnecting", "queue", b.queue, "error", e.Err)
	case transport.Blocked:
		b.log.Warn("the broker blocks publishing (resource alarm); sends wait", "queue", b.queue, "error", e.Err)
	case transport.Connected:
		b.log.Info("connected to the broker", "queue", b.queue)
	case transport.Unblocked:
		b.log.Info("the broker accepts publishing again", "queue", b.queue)
	}
}

// Plumbing is what a pipeline of one's own ([Options.Pipeline]) is built
// with: the Bus's dispatcher, names and hooks, to give package middleware's
// stages.
type Plumbing struct {
	// Sender dispatches retry and error-queue copies as the Bus does: it
	// is [Bus.Sender].
	Sender middleware.Sender
	// ErrorQueue is [Bus.ErrorQueue], Headers [Bus.HeaderNames].
	ErrorQueue string
	Headers    middleware.HeaderNames
	// OnRetry and OnForward raise the Bus's [Retried] and
	// [SentToErrorQueue] notices (and its Instrument hooks): give them as
	// middleware.RetryOptions.OnRetry and
	// middleware.ErrorQueueOptions.OnForward.
	OnRetry, OnForward func(ctx context.Context, f middleware.Failure)
}

func (b *Bus) plumbing() Plumbing {
	return Plumbing{Sender: b.sender, ErrorQueue: b.errorQueue, Headers: b.names, OnRetry: b.onRetry, OnForward: b.onForward}
}

// onRetry raises a [Retried] notice for f: the Retry stage's hook.
func (b *Bus) onRetry(ctx context.Context, f middleware.Failure) {
	if b.hooks.Retry != nil {
		b.hooks.Retry(ctx, f)
	}
	b.emitFailure(Retried, f)
}

// onForward raises a [SentToErrorQueue] notice for f: the ErrorQueue stage's
// hook.
func (b *Bus) onForward(ctx context.Context, f middleware.Failure) {
	if b.hooks.Forward != nil {
		b.hooks.Forward(ctx, f)
	}
	b.emitFailure(SentToErrorQueue, f)
}

func (b *Bus) emitFailure(k NoticeKind, f middleware.Failure) {
	if b.opts.OnNotice == nil && b.hooks.Event == nil {
		return
	}
	e := Notice{Kind: k, Queue: f.Message.Queue, Err: f.Err, MessageID: f.MessageID, Retries: f.Retries, Delay: f.Delay}
	e.MessageType = b.messageTypeOf(&f.Message.Message)
	b.emit(e)
}

func (b *Bus) emit(e Notice) {
	if b.opts.OnNotice == nil && b.hooks.Event == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if b.hooks.Event != nil {
		b.hooks.Event(e)
	}
	if b.opts.OnNotice == nil {
		return
	}
	b.evOnce.Do(func() { b.ev = newEvents(b.opts.OnNotice) })
	b.ev.emit(e)
}

// Pause stops consuming: the broker stops delivering, and Pause waits for
// the handlers under way to finish (and dispatch what they sent), or for
// ctx. Messages keep arriving in the queue. Resume starts again. Pausing a
// paused Bus does nothing.
func (b *Bus) Pause(ctx context.Context) error {
	if b.queue == "" {
		return fmt.Errorf("%s: pause: %w", b.name, ErrSendOnly)
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	st, c := b.st, b.cons
	b.mu.Unlock()
	switch {
	case b.closed.Load() || st == stopped:
		return fmt.Errorf("%s: pause: %w", b.name, ErrClosed)
	case st == created:
		return fmt.Errorf("%s: pause: not started", b.name)
	case st == paused:
		return nil
	}
	var err error
	if c != nil { // nil while suspended
		b.releaseHolds()
		err = c.Drain(ctx)
	}
	b.mu.Lock()
	b.st, b.cons = paused, nil
	b.mu.Unlock()
	b.emit(Notice{Kind: Paused, Queue: b.queue, Err: err})
	if err != nil {
		return fmt.Errorf("%s: pause: %w", b.name, err)
	}
	b.log.InfoContext(ctx, "endpoint paused", "queue", b.queue)
	return nil
}

// Resume starts consuming again after Pause. Resuming a running Bus does
// nothing.
func (b *Bus) Resume(ctx context.Context) error {
	if b.queue == "" {
		return fmt.Errorf("%s: resume: %w", b.name, ErrSendOnly)
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	switch {
	case b.closed.Load() || st == stopped:
		return fmt.Errorf("%s: resume: %w", b.name, ErrClosed)
	case st == created:
		return fmt.Errorf("%s: resume: not started", b.name)
	case st == running:
		return nil
	}
	b.mu.Lock()
	suspended := b.suspended
	if suspended {
		// Consumption starts when the host is healthy again.
		b.st = running
	}
	b.mu.Unlock()
	if !suspended {
		if err := b.startConsuming(ctx); err != nil {
			return fmt.Errorf("%s: resume: %w", b.name, err)
		}
	}
	b.emit(Notice{Kind: Resumed, Queue: b.queue})
	b.log.InfoContext(ctx, "endpoint resumed", "queue", b.queue)
	return nil
}

// startConsuming starts the endpoint queue's consumer and makes the Bus
// running; opMu must be held.
func (b *Bus) startConsuming(ctx context.Context) error {
	c, err := b.consume(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		_ = c.Close()
		return ErrClosed
	}
	b.st, b.cons = running, c
	b.released = make(chan struct{})
	delete(b.lost, b.queue)
	b.monitorLocked(c, b.queue)
	return nil
}

// Health returns nil when the Bus is doing its work: started (or paused on
// request), its consumers running, and the transport healthy if it can tell
// (transport.HealthChecker). Otherwise it says what is wrong: not started,
// closed ([ErrClosed]), consumption suspended because
// [Options.HealthMonitor] says the host is unhealthy ([ErrSuspended]), a
// consumer lost, the transport's error. A readiness probe that should keep
// a suspended instance in service can tell it with errors.Is.
func (b *Bus) Health(ctx context.Context) error {
	b.mu.Lock()
	st, suspended := b.st, b.suspended
	var lost error
	for q, err := range b.lost {
		lost = errors.Join(lost, fmt.Errorf("consumer of %q stopped: %w", q, err))
	}
	b.mu.Unlock()
	switch {
	case b.closed.Load() || st == stopped:
		return fmt.Errorf("%s: %w", b.name, ErrClosed)
	case st == created:
		return fmt.Errorf("%s: not started", b.name)
	case lost != nil:
		return fmt.Errorf("%s: %w", b.name, lost)
	case suspended:
		return fmt.Errorf("%s: %w", b.name, ErrSuspended)
	}
	if hc, ok := b.t.(transport.HealthChecker); ok {
		if err := hc.Health(ctx); err != nil {
			return fmt.Errorf("%s: transport: %w", b.name, err)
		}
	}
	return nil
}

// Subscribe binds the endpoint's queue on the topic exchange under pattern
// (with [Options.TopicPrefix] prepended): events published under a matching
// topic arrive in the queue. Before Start it adds to the patterns Start
// binds; after, it binds at once. Bindings outlive the Bus: they stay on the
// broker until Unsubscribe.
func (b *Bus) Subscribe(ctx context.Context, pattern string) error {
	return b.subscription(ctx, pattern, true)
}

// Unsubscribe removes the binding Subscribe (or Options.Subscriptions, or
// an earlier run) made under pattern. Removing one that does not exist is
// harmless.
func (b *Bus) Unsubscribe(ctx context.Context, pattern string) error {
	return b.subscription(ctx, pattern, false)
}

func (b *Bus) subscription(ctx context.Context, pattern string, add bool) error {
	what := "subscribe"
	if !add {
		what = "unsubscribe"
	}
	full := b.opts.TopicPrefix + pattern
	if b.queue == "" {
		return fmt.Errorf("%s: %s %q: %w", b.name, what, full, ErrSendOnly)
	}
	if err := transport.ValidateTopicPattern(full); err != nil {
		return fmt.Errorf("%s: %s: %w", b.name, what, err)
	}
	b.mu.Lock()
	st := b.st
	if st == created {
		// Not started: Start binds what the list holds.
		if add && !slices.Contains(b.subs, full) {
			b.subs = append(b.subs, full)
		} else if !add {
			b.subs = slices.DeleteFunc(b.subs, func(s string) bool { return s == full })
		}
		b.mu.Unlock()
		if b.closed.Load() {
			return fmt.Errorf("%s: %s %q: %w", b.name, what, full, ErrClosed)
		}
		return nil
	}
	b.mu.Unlock()
	if b.closed.Load() || st == stopped {
		return fmt.Errorf("%s: %s %q: %w", b.name, what, full, ErrClosed)
	}
	var err error
	if add {
		err = b.t.Bind(ctx, b.queue, full)
	} else {
		err = b.t.Unbind(ctx, b.queue, full)
	}
	if err != nil {
		return fmt.Errorf("%s: %s %q: %w", b.name, what, full, err)
	}
	b.mu.Lock()
	if add && !slices.Contains(b.subs, full) {
		b.subs = append(b.subs, full)
	} else if !add {
		b.subs = slices.DeleteFunc(b.subs, func(s string) bool { return s == full })
	}
	b.mu.Unlock()
	return nil
}

// Subscriptions returns the topic patterns (with the prefix) the Bus binds
// or bound: Options.Subscriptions and Subscribe's, minus Unsubscribe's.
func (b *Bus) Subscriptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.subs)
}

// Shutdown stops the Bus gracefully: it stops consuming (the broker stops
// delivering; messages received but not yet handled go back to the queue),
// waits for the handlers under way to finish and dispatch what they sent,
// stops the reply queue's consumer (requests still waiting fail with
// [ErrClosed]) and returns. If ctx is done first, the handlers' contexts are
// cancelled and Shutdown returns an error wrapping the context's error:
// their messages go back to the queue, and what they sent is not
// dispatched. Like http.Server.Shutdown, it returns by ctx's deadline (plus
// [StopGrace] for the cancelled handlers to return), even if a handler
// ignores its context: the error then says how many handlers were still
// running. Their messages stay unacked: the Bus nacks them (requeue),
// whatever the handlers return, when they return, and the broker redelivers
// them; the transport's Close waits for them (the transport owns the
// goroutines handlers run on), so a program that closes its transport after
// its endpoints leaves no goroutine behind once its handlers returned.
// Afterwards every call fails with [ErrClosed], except inside handlers
// still finishing. A second Shutdown or Close returns nil once the Bus has
// stopped. The transport is not closed.
//
// Shutdown does not wait for Send or Publish calls under way outside
// handlers, on other goroutines: they finish or fail on their own. It waits,
// until ctx is done, for the verdicts of the messages posted with SendAsync
// and PublishAsync; the receipts still pending then are done with an error
// wrapping ErrClosed before it returns.
func (b *Bus) Shutdown(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		select {
		case <-b.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: shutdown: waiting for the first Shutdown or Close: %w", b.name, ctx.Err())
		}
	}
	b.releaseHolds()
	b.emit(Notice{Kind: Stopping, Queue: b.queue})
	b.mu.Lock()
	c := b.cons
	b.mu.Unlock()
	var err error
	if c != nil {
		if derr := b.stopConsumer(ctx, c); derr != nil {
			err = fmt.Errorf("%s: shutdown: %w", b.name, derr)
		}
	}
	if rerr := b.closeReplies(ctx, true); rerr != nil && err == nil {
		err = fmt.Errorf("%s: shutdown: reply queue: %w", b.name, rerr)
	}
	if perr := b.posts.wait(ctx); perr != nil && err == nil {
		err = fmt.Errorf("%s: shutdown: waiting for the verdicts of asynchronous posts: %w", b.name, perr)
	}
	b.posts.close(b.name)
	b.finish(err)
	return err
}

// Close stops the Bus at once: the broker stops delivering, the handlers'
// contexts are cancelled, and Close waits for them to return, for
// [StopGrace] at most; their messages go back to the queue, and what they
// sent is not dispatched. A handler that ignores its context does not hold
// Close: it goes on, on the transport's goroutine, its message is nacked
// when it returns, and the transport's Close waits for it (see
// [Bus.Shutdown]). Requests still waiting fail with [ErrClosed], and so do
// the receipts of asynchronous posts still pending (SendAsync,
// PublishAsync), before Close returns. Afterwards
// every call fails with ErrClosed. A second Close returns nil. The transport
// is not closed.
func (b *Bus) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.releaseHolds()
		b.emit(Notice{Kind: Stopping, Queue: b.queue})
	}
	b.mu.Lock()
	c := b.cons
	b.mu.Unlock()
	if c != nil {
		_ = b.stopConsumer(nil, c)
	}
	_ = b.closeReplies(context.Background(), false)
	b.posts.close(b.name)
	b.finish(nil)
	return nil
}

// StopGrace is how long Shutdown, once its context is done, and Close give
// the handlers, whose contexts they cancelled, to return before they return
// without them.
const StopGrace = 250 * time.Millisecond

// stopConsumer drains c (ctx non-nil, for Shutdown) or closes it (Close),
// and returns once it stopped, or once ctx is done (for Close: at once) and
// the cancelled handlers had StopGrace to return. Then the handlers still
// running are abandoned: their messages are nacked when they return, and
// the goroutine left waiting for c ends when they have.
func (b *Bus) stopConsumer(ctx context.Context, c transport.Consumer) error {
	stopped := make(chan error, 1)
	var done <-chan struct{}
	if ctx != nil {
		go func() { stopped <- c.Drain(ctx) }()
		done = ctx.Done()
	} else {
		go func() { stopped <- c.Close() }()
		closed := make(chan struct{})
		close(closed)
		done = closed
	}
	select {
	case err := <-stopped:
		return err
	case <-done:
	}
	grace := time.NewTimer(StopGrace)
	defer grace.Stop()
	select {
	case err := <-stopped:
		return err
	case <-grace.C:
	}
	b.abandoned.Store(true)
	n := b.running.Load()
	b.log.Error("handlers still running after their contexts were cancelled; their messages go back to the queue when they return",
		"queue", b.queue, "handlers", n)
	err := fmt.Errorf("%d handlers still running after their contexts were cancelled (their messages go back to the queue when they return)", n)
	if ctx != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// finish releases what is left once consumption has stopped, once.
func (b *Bus) finish(err error) {
	b.finishOnce.Do(func() {
		b.mu.Lock()
		stop := b.stop
		b.st, b.stop, b.cons = stopped, nil, nil
		b.mu.Unlock()
		if stop != nil {
			stop()
		}
		close(b.finishing)
		b.wg.Wait()
		b.deleteInstanceQueue()
		close(b.done)
		b.emit(Notice{Kind: Stopped, Queue: b.queue, Err: err})
		b.evOnce.Do(func() {})
		b.ev.close()
		b.log.Info("endpoint stopped", "queue", b.queue)
	})
}
