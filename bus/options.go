package bus

import (
	"log/slog"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Options configure a [Bus]. The zero value is PikaBus's defaults: one
// message handled at a time, a quorum queue, the error queue "error", JSON,
// five delayed retries, PikaBus's header names.
type Options struct {
	// Concurrency is how many messages the endpoint handles at once. Zero
	// means 1: messages are handled one at a time, in queue order.
	Concurrency int

	// Prefetch bounds how many messages the broker hands the endpoint
	// before they are acked. Zero means 3 × Concurrency; a value below
	// Concurrency is raised to it.
	Prefetch int

	// MaxUnackedBytes bounds the bytes (message bodies) of the messages
	// being handled at once; zero means no bound. It is the client's bound
	// (RabbitMQ does not implement a byte prefetch): see
	// [FlowControl.MaxUnackedBytes] for what it bounds exactly.
	// [Bus.SetFlowControl] changes it at run time.
	MaxUnackedBytes int

	// ConsumerPriority is the endpoint's consumer priority among the
	// consumers of its queue (RabbitMQ's x-priority): instances of lower
	// priority get messages only while those above them have no room in
	// their prefetch window. Zero is the default. [Bus.SetFlowControl]
	// changes it at run time.
	ConsumerPriority int

	// QueueType is the type of the endpoint's queue. Empty means
	// transport.Quorum.
	QueueType transport.QueueType

	// QueueOptions are the endpoint queue's arguments: priorities
	// (classic queues), a delivery limit (quorum queues), length limits
	// and what a full queue does, message TTL, a dead-letter queue. See
	// transport.QueueOptions; New refuses options the QueueType lacks.
	// DeadLetterQueue gets the QueuePrefix like the other queue names,
	// and defaults to the error queue when DeliveryLimit is set, so that
	// a message that crashed its consumer DeliveryLimit+1 times lands
	// there (with the x-death header saying why, and no ErrorDetails)
	// instead of being lost. They are compared with the existing queue's
	// at Start: changing them on a queue that exists fails Start with
	// ErrTopologyConflict, as RabbitMQ cannot change a queue's arguments.
	// A full queue with transport.RejectPublish makes Send to it wait
	// until it has room, within the call's context, and then fail with an
	// error wrapping ErrRejected. Zero: none.
	QueueOptions transport.QueueOptions

	// Subscriptions are topic patterns the endpoint's queue is bound under
	// at Start ("*" matches one word, "#" zero or more), in addition to
	// the bindings it already has. [Bus.Subscribe] and [Bus.Unsubscribe]
	// change them at run time.
	Subscriptions []string

	// PerInstance gives this instance of the endpoint a queue of its own,
	// so that every instance of a service receives every event it
	// subscribes to (tomodachi's competing=False: cache invalidation, local
	// read models) instead of competing with the other instances for the
	// messages of one queue. The queue is named after the endpoint's:
	// "orders.instance-" and InstanceID. It is temporary
	// (transport.Queue.Temporary): it outlives a short loss of the
	// connection, with its messages and bindings (RabbitMQ's x-expires of a
	// minute), and is deleted when the Bus stops or its transport closes.
	// Commands sent to the endpoint's name do not reach it: give those a
	// second Bus, without PerInstance, on the same transport.
	PerInstance bool

	// InstanceID names this instance's queue when PerInstance is set; it
	// must differ between instances. Empty means 12 random hex digits.
	InstanceID string

	// Exchanges are topic exchanges besides the transport's own that the
	// endpoint subscribes to and publishes on ([WithExchange]), such as
	// RabbitMQ's amq.topic where tomodachi services talk. See [Exchange].
	Exchanges []Exchange

	// ErrorQueue is the queue failed messages go to. Empty means "error",
	// which PikaBus services share. Start declares it as a shared queue:
	// used as found if it exists, created with ErrorQueueType if not.
	ErrorQueue string

	// ErrorQueueType is the type of the error queue when Start creates
	// it. Empty means transport.Classic, the type PikaBus 2 declares it
	// with (durable, no arguments) whenever one of its handlers fails: on
	// RabbitMQ before 4.0 a quorum "error" makes that declaration fail
	// with PRECONDITION_FAILED, and the failed message then loops on the
	// Python service. Choose transport.Quorum where no PikaBus service
	// shares the error queue, or where they declare it as a quorum queue
	// too. It has no effect on an error queue that exists.
	ErrorQueueType transport.QueueType

	// QueuePrefix is prepended to the endpoint's queue name, to the
	// destination queue of Send, Defer and Request, to the error queue and
	// to the reply queue, so that environments or tenants can share a
	// broker. It is not prepended to the address of a Reply, which is the
	// full queue name the requester wrote. Include the separator:
	// "staging.".
	QueuePrefix string

	// TopicPrefix is prepended to the topic of Publish and to every
	// subscription pattern, in Subscriptions and given to Subscribe.
	// Include the separator: "staging.".
	TopicPrefix string

	// HeaderPrefix is the prefix of the standard header names. Empty means
	// "PikaBus" (middleware.DefaultHeaderPrefix).
	HeaderPrefix string

	// TimeFormat is how the TimeSent and DeferredTime headers are written,
	// on every message the Bus sends, retry copies included, unless one of
	// the more precise choices below applies. The zero value,
	// middleware.TimeRFC3339, is what PikaBus 2 writes and reads
	// ("2026-11-22T09:30:00.000000+00:00"); middleware.TimePikaBus1 is
	// PikaBus 1.x's "%m/%d/%Y %H:%M:%S", which is all 1.x reads: it fails
	// on any other form and requeues the message, for ever. No form is
	// read by both lines. Incoming times are read in either form whatever
	// this says.
	//
	// A message sent to a PikaBus 1.x service therefore needs the 1.x
	// form. The Bus picks it by itself where it can tell: a [Bus.Reply],
	// and a Send or Defer from a handler to the queue the handled
	// message came from (its ReplyToAddress or OriginatingAddress), are
	// written in the form of the handled message's TimeSent; and a retry
	// copy of a message that came in the 1.x form keeps it. For the rest,
	// name the 1.x services' queues in TimeFormatByQueue, or pass
	// [WithTimeFormat] on the call. The Bus logs a warning the first
	// time a message in the 1.x form comes from a queue that neither this
	// option nor TimeFormatByQueue names as 1.x.
	TimeFormat middleware.TimeFormat

	// TimeFormatByQueue is the time format of the messages sent to
	// particular queues (Send, Defer, Request, Reply), by full queue name
	// (QueuePrefix included): set middleware.TimePikaBus1 for the queue of
	// each PikaBus 1.x service this endpoint sends to. It takes precedence
	// over TimeFormat and over the form of a handled message; a
	// [WithTimeFormat] on the call takes precedence over it.
	TimeFormatByQueue map[string]middleware.TimeFormat

	// Codec encodes outgoing messages and decodes incoming ones that carry
	// its content type or none. Nil means [JSON].
	Codec Codec

	// Codecs are further codecs for incoming messages, picked by content
	// type. Two codecs may not share a content type. A codec here that is a
	// [SelectiveCodec] also encodes the outgoing messages it claims: a
	// protobuf codec the generated message types, while Codec encodes the
	// rest.
	Codecs []Codec

	// DefaultMessageType is the message type of incoming messages that
	// carry none: no MessageType header, and no AMQP type property (or one
	// that only repeats the content type, as PikaBus 1.x wrote it). Python
	// PikaBus services send such messages unless given a messageType,
	// since PikaBus calls every handler for every message. Set it to the
	// type of the handler that takes them, for example the name given to
	// [Handle] with [WithMessageType], when a Python service sends one kind
	// of message to this endpoint's queue. Empty means such messages have
	// no type, and only a fallback handler ([Bus.HandleFallback]) takes
	// them.
	DefaultMessageType string

	// Unhandled says what happens to a message no handler takes, when no
	// fallback handler ([Bus.HandleFallback]) is registered. The zero
	// value, [UnhandledToErrorQueue], forwards it to the error queue with
	// the reason.
	Unhandled UnhandledPolicy

	// RequireSubscriber makes Publish fail (with an error wrapping
	// [ErrUnroutable]) when no queue is subscribed to the topic, unless the
	// call says otherwise with [WithRequireSubscriber]. By default an event
	// nobody listens to is dropped.
	RequireSubscriber bool

	// Retry configures the retry stage of the standard pipeline: immediate
	// retries, the number of delayed retries and their backoff. The zero
	// value is five delayed retries with PikaBus's backoff (2 s, 4 s, ...
	// 10 s). Its Headers and Logger default to the Bus's; its OnRetry, if
	// set, is called before the Bus raises its Retried event.
	Retry middleware.RetryOptions

	// HandlerTimeout, when positive, ends the handlers' context after this
	// long; a handler that returns because of it fails and is retried.
	HandlerTimeout time.Duration

	// Middleware are stages added to the handling pipeline inside the
	// standard ones (closest to the handlers), first outermost.
	Middleware []middleware.Middleware

	// Pipeline, when set, replaces the standard stages (deferral, error
	// queue, retry, panic recovery, timeout): messages pass Pipeline, then
	// Middleware, then the handlers. New calls it once with the
	// [Plumbing] to build package middleware's stages with. Few need it:
	// the standard stages are configured by Retry, ErrorQueue and
	// HandlerTimeout, and fit a transport that cannot defer messages by
	// themselves (see [New]).
	// Without a stage that deals with errors, a failed handling is given
	// back to the broker (nack with requeue) and delivered again.
	Pipeline func(p Plumbing) (middleware.Middleware, error)

	// DispatchMiddleware wrap the transport's Dispatch for every message
	// the Bus sends, including retry and error-queue copies; first
	// outermost. Like a transport, a dispatcher must not keep the
	// messages it is given, or their headers and bodies, once it returns:
	// the Bus reuses header maps and body buffers. Copy what you keep.
	DispatchMiddleware []middleware.DispatchMiddleware

	// UnitOfWork, when set, wraps the handling of each message (each
	// attempt, after the pipeline's stages) and each [Bus.Transaction]
	// outside handlers: it runs the handlers, or the function, and takes
	// charge of the messages they sent instead of the Bus dispatching them
	// (see [UnitOfWork]). Package outbox's Outbox.UnitOfWork stores them in
	// a database transaction with the handler's own writes and an inbox
	// record of the message, for exactly-once effects. Nil: the Bus
	// dispatches what the handlers sent, as one batch, before the ack.
	UnitOfWork UnitOfWork

	// PostWindow bounds how many messages posted with [Bus.SendAsync] and
	// [Bus.PublishAsync] may await their verdict at once. Zero means
	// [DefaultPostWindow].
	PostWindow int

	// PostWindowFailFast makes SendAsync and PublishAsync fail at once with
	// [ErrPostWindowFull] when PostWindow posts are pending. By default
	// they wait for a verdict to free a place, bounded by their context.
	PostWindowFailFast bool

	// HealthMonitor, if set, suspends the endpoint's consumption while it
	// reports the host unhealthy, as BlazingMQ suspends the queues that
	// opt in: the broker stops delivering, the handlers under way finish,
	// the messages prefetched and not yet handled go back to the queue
	// (for other instances to take), and sends keep working; once healthy
	// again, consumption resumes. Suspended and Unsuspended notices report
	// both. Pause and Resume are independent of it: a paused Bus stays
	// paused when the host recovers, and a Bus resumed while the host is
	// unhealthy waits for it. [BasicHealthMonitor] is one a program or a
	// test sets by hand.
	HealthMonitor HealthMonitor

	// OnNotice, if set, is called with each [Notice]: the Bus starting,
	// pausing, resuming, stopping, its consumer failing, the transport's
	// connection events, and messages retried or sent to the error queue.
	// Calls come one at a time, in order, on a goroutine of the Bus;
	// OnNotice must not block for long and must not call Shutdown or
	// Close.
	OnNotice func(Notice)

	// Logger receives the Bus's and its pipeline's log records: each
	// delayed retry at Warn, each message sent to the error queue (and
	// each forward that failed) at Error, the loss of the broker connection
	// and alarms at Warn, recoveries and the endpoint's lifecycle at Info,
	// decisions at Debug. Nil means slog.Default(); for silence, give
	// slog.New(slog.DiscardHandler).
	Logger *slog.Logger

	// Instrument, if set, is called once by New with the Bus (its names
	// set, its pipeline not yet built) and its transport, and returns the
	// [Hooks] through which an instrumentation observes the endpoint; an
	// error fails New. Package otelbus provides one for OpenTelemetry:
	// Instrument: otelbus.Instrument().
	Instrument func(b *Bus, t transport.Transport) (Hooks, error)
}

// UnhandledPolicy says what the Bus does with a message no handler takes,
// when it has no fallback handler ([Bus.HandleFallback]).
type UnhandledPolicy uint8

const (
	// UnhandledToErrorQueue fails the message with [ErrUnhandled], which is
	// permanent: it goes to the error queue without retries, with the
	// reason in ErrorDetails. The default.
	UnhandledToErrorQueue UnhandledPolicy = iota
	// UnhandledDiscard acks the message and logs it at Warn level.
	UnhandledDiscard
)

// defaultPrefetchFactor: NServiceBus's prefetch multiplier.
const defaultPrefetchFactor = 3
