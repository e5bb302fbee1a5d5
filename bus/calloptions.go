package bus

import (
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// SendOption tunes one Send, Publish, Defer, Reply or Request call.
type SendOption interface {
	applySend(*sendConfig)
}

// HandlerOption tunes one handler registration.
type HandlerOption interface {
	applyHandler(*handlerConfig)
}

type sendConfig struct {
	headers        transport.Headers
	messageType    string
	correlationID  string
	messageID      string
	deliverAt      time.Time
	delay          time.Duration
	delaySet       bool
	mandatory      bool
	mandatorySet   bool
	replyTo        string
	replyToSet     bool
	conversationID string
	timeFormat     middleware.TimeFormat
	timeFormatSet  bool
	priority       uint8

	fullQueue bool           // the queue argument is a full name: no QueuePrefix
	onAck     func(*Receipt) // WithOnAck: SendAsync and PublishAsync only
	exchange  string         // WithExchange: one of Options.Exchanges

	deferCall bool   // Defer: needs a Delayer whatever the delay
	requestID string // Request: the id it registered its reply under
}

type handlerConfig struct {
	messageType string
}

type sendOptionFunc func(*sendConfig)

func (f sendOptionFunc) applySend(c *sendConfig) { f(c) }

// WithHeaders adds headers to the message. A header of the same name as a
// standard one (PikaBus.MessageId and the like) replaces the value the Bus
// would write, as in PikaBus, and the AMQP property that mirrors it follows
// when the value is a string. Values must be of a type AMQP carries (see
// transport.Headers).
func WithHeaders(h transport.Headers) SendOption {
	return sendOptionFunc(func(c *sendConfig) {
		if c.headers == nil {
			c.headers = make(transport.Headers, len(h))
		}
		for k, v := range h {
			c.headers[k] = v
		}
	})
}

// WithCorrelationID sets the message's correlation id instead of inheriting
// it from the message being handled. Request refuses it: it correlates the
// reply with an id of its own.
func WithCorrelationID(id string) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.correlationID = id })
}

// WithMessageID sets the message's id instead of a new one: to know the id
// of a message sent (make one with [NewMessageID]), or to make a resend
// recognizable as a duplicate. The id goes into the MessageId header and
// the message_id property; any string of at most 255 bytes will do.
func WithMessageID(id string) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.messageID = id })
}

// WithTimeFormat writes the message's times (TimeSent, DeferredTime) in f,
// whatever [Options.TimeFormat] and [Options.TimeFormatByQueue] say: for
// example middleware.TimePikaBus1 for a message to a PikaBus 1.x service
// that the Bus cannot recognize as one.
func WithTimeFormat(f middleware.TimeFormat) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.timeFormat, c.timeFormatSet = f, true })
}

// WithConversationID sets the message's conversation id instead of
// inheriting it.
func WithConversationID(id string) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.conversationID = id })
}

// WithDelay defers the message: it is delivered no earlier than d from now.
// A d of zero or less sends at once. Only commands (Send, Reply, Defer) can
// be deferred, and only over a transport that implements transport.Delayer:
// otherwise the call fails with an error wrapping [ErrNotSupported], and
// nothing is sent.
func WithDelay(d time.Duration) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.delay, c.delaySet, c.deliverAt = d, true, time.Time{} })
}

// WithDeliverAt defers the message until t, as [WithDelay] does. A t in the
// past sends at once.
func WithDeliverAt(t time.Time) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.deliverAt, c.delaySet, c.delay = t, false, 0 })
}

// WithRequireSubscriber says whether a Publish must reach at least one
// subscriber (true: an event nobody subscribed to is an error wrapping
// [ErrUnroutable]) or may be dropped (false), overriding
// [Options.RequireSubscriber]. Other calls ignore it: commands must always
// reach their queue.
func WithRequireSubscriber(require bool) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.mandatory, c.mandatorySet = require, true })
}

// WithReplyTo sets the ReplyToAddress header (and reply_to property) to
// queue, taken as a full queue name (no prefix is added), instead of this
// endpoint's queue: replies go there. Request refuses it.
func WithReplyTo(queue string) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.replyTo, c.replyToSet = queue, true })
}

// WithFullQueueName makes Send and Defer take their queue argument as a
// full queue name, as [Bus.Reply] takes a reply address: [Options.QueuePrefix]
// is not prepended. It is for addresses that messages carried, such as a
// ReplyToAddress kept to answer later (package saga keeps its originator's),
// and for an endpoint's own queue as [Bus.Queue] names it. Other calls
// ignore it.
func WithFullQueueName() SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.fullQueue = true })
}

// WithPriority sets the message's priority (the AMQP priority property,
// transport.Message.Priority): a priority queue (one declared with
// transport.QueueOptions.MaxPriority) delivers messages of a higher
// priority first; other queues ignore it. Retry and error-queue copies
// keep it.
func WithPriority(p uint8) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.priority = p })
}

// MessageTypeOption is the option [WithMessageType] returns; it is both a
// [SendOption] and a [HandlerOption].
type MessageTypeOption string

func (o MessageTypeOption) applySend(c *sendConfig)       { c.messageType = string(o) }
func (o MessageTypeOption) applyHandler(c *handlerConfig) { c.messageType = string(o) }

// WithMessageType sets the message type: on a send, the MessageType header
// written instead of the Go type's name; on a handler registration, the
// type the handler takes instead of the name of its parameter's type. See
// [TypeName].
func WithMessageType(name string) MessageTypeOption { return MessageTypeOption(name) }
