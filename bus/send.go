package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Send sends the command msg to queue (with [Options.QueuePrefix] prepended)
// through the direct exchange. The message is mandatory: if no queue of that
// name exists, Send fails with an error wrapping [ErrUnroutable].
//
// Inside a handler or a [Bus.Transaction] (ctx is, or derives from, theirs)
// the message is dispatched when the handler or transaction succeeds, and
// Send returns nil once it is queued there; outside, Send returns once the
// broker has taken responsibility for the message. [WithDelay] and
// [WithDeliverAt] defer it, as [Bus.Defer] does.
//
// Every message sent gets a new id (see [NewMessageID]); to know it, give it
// with [WithMessageID]. This holds for Publish, Defer, Reply and Request too.
func (b *Bus) Send(ctx context.Context, queue string, msg any, opts ...SendOption) error {
	cfg := applySend(sendConfig{}, opts)
	return b.post(ctx, opSend, b.queueName(queue, &cfg), msg, &cfg)
}

// Publish publishes the event msg under topic (with [Options.TopicPrefix]
// prepended) through the topic exchange, to every queue subscribed under a
// matching pattern. An event no queue subscribed to is dropped, unless
// [WithRequireSubscriber] or [Options.RequireSubscriber] ask for an error
// wrapping [ErrUnroutable]. Events cannot be deferred. Inside a handler or
// transaction it is dispatched on success, as for [Bus.Send].
func (b *Bus) Publish(ctx context.Context, topic string, msg any, opts ...SendOption) error {
	cfg := applySend(sendConfig{mandatory: b.opts.RequireSubscriber}, opts)
	if cfg.exchange != "" {
		x, err := b.exchangeFor(cfg.exchange)
		if err != nil {
			return b.opError(opPublish, topic, msg, &cfg, err)
		}
		return b.post(ctx, opPublish, x.TopicPrefix+topic, msg, &cfg)
	}
	return b.post(ctx, opPublish, b.opts.TopicPrefix+topic, msg, &cfg)
}

// Defer sends the command msg to queue so that it is delivered no earlier
// than delay from now (a delay of zero or less sends it at once). It needs a
// transport that implements transport.Delayer, and otherwise fails with an
// error wrapping [ErrNotSupported]: a deferred message is never delivered
// early. The message carries its due time in the DeferredTime header; a
// delay beyond the transport's MaxDelay is scheduled in steps, the receiving
// endpoint deferring it again on arrival until it is due.
func (b *Bus) Defer(ctx context.Context, delay time.Duration, queue string, msg any, opts ...SendOption) error {
	cfg := applySend(sendConfig{delay: delay, delaySet: true, deferCall: true}, opts)
	return b.post(ctx, opDefer, b.queueName(queue, &cfg), msg, &cfg)
}

// queueName is the full name of the destination queue of Send or Defer.
func (b *Bus) queueName(queue string, cfg *sendConfig) string {
	if cfg.fullQueue {
		return queue
	}
	return b.opts.QueuePrefix + queue
}

// Reply sends msg to the sender of the message being handled: to its
// ReplyToAddress header, else its reply_to property, taken as a full queue
// name. The reply carries the message's correlation id (else its id), which
// is how [Request] recognizes it. ctx must be a handler's context; outside a
// handler, or for a message with no reply address, Reply fails with
// [ErrNoReplyAddress]. Like Send, it is dispatched when the handler succeeds.
func (b *Bus) Reply(ctx context.Context, msg any, opts ...SendOption) error {
	s := scopeFrom(ctx)
	hs := s.handlingScope()
	if hs == nil {
		return fmt.Errorf("%s: reply outside a handler: %w", b.name, ErrNoReplyAddress)
	}
	var in Incoming
	if !hs.withIncoming(false, func(m *middleware.Message) { in = b.readIncoming(m) }) {
		return fmt.Errorf("%s: reply: %w", b.name, ErrScopeEnded)
	}
	if in.ReplyTo == "" {
		return fmt.Errorf("%s: reply to message %q (%s): it has no %s header and no reply_to property: %w",
			b.name, in.MessageID, in.MessageType, b.names.ReplyToAddress, ErrNoReplyAddress)
	}
	corr := in.CorrelationID
	if corr == "" {
		corr = in.MessageID
	}
	cfg := applySend(sendConfig{correlationID: corr}, opts)
	return b.post(ctx, opReply, in.ReplyTo, msg, &cfg)
}

// applySend applies opts to c. It takes and returns the config by value so
// that the caller's copy stays on its stack when there are no options: the
// interface calls make the config escape.
func applySend(c sendConfig, opts []SendOption) sendConfig {
	if len(opts) == 0 {
		return c
	}
	return applySendOptions(c, opts)
}

func applySendOptions(c sendConfig, opts []SendOption) sendConfig {
	p := new(sendConfig)
	*p = c
	for _, o := range opts {
		o.applySend(p)
	}
	return *p
}

// handlingScope returns the scope of the handler s belongs to: s, or the
// scope enclosing a transaction; nil outside handlers.
func (s *scope) handlingScope() *scope {
	for s != nil && s.in == nil {
		s = s.outer
	}
	return s
}

type op uint8

const (
	opSend op = iota
	opPublish
	opDefer
	opReply
	opRequest
)

func (o op) String() string {
	switch o {
	case opSend:
		return "send"
	case opPublish:
		return "publish"
	case opDefer:
		return "defer"
	case opReply:
		return "reply"
	case opRequest:
		return "request"
	}
	return "op"
}

// opError names the operation, the message and its destination.
func (b *Bus) opError(k op, target string, msg any, cfg *sendConfig, err error) error {
	what := cfg.messageType
	if what == "" {
		if msg == nil {
			what = "nil message"
		} else if info, ierr := typeInfoOf(reflect.TypeOf(msg)); ierr == nil {
			what = info.name
		} else {
			what = fmt.Sprintf("%T", msg)
		}
	}
	dest := "queue"
	if k == opPublish {
		dest = "topic"
	}
	return fmt.Errorf("%s: %s %s to %s %q: %w", b.name, k, what, dest, target, err)
}

// outPool holds one-message batches for dispatching outside handlers, so
// that the variadic slice does not escape to the heap per call. Dispatchers
// do not keep the messages they are given.
var outPool = sync.Pool{New: func() any { return new([1]transport.Outgoing) }}

// post builds msg and adds it to the scope of ctx or, outside scopes (and
// always for requests), dispatches it.
func (b *Bus) post(ctx context.Context, k op, target string, msg any, cfg *sendConfig) error {
	s := scopeFrom(ctx)
	if (s == nil || k == opRequest) && b.closed.Load() {
		return b.opError(k, target, msg, cfg, ErrClosed)
	}
	if cfg.onAck != nil {
		return b.opError(k, target, msg, cfg, errors.New("WithOnAck is an option of SendAsync and PublishAsync only"))
	}
	one := outPool.Get().(*[1]transport.Outgoing)
	defer func() {
		one[0] = transport.Outgoing{}
		outPool.Put(one)
	}()
	o := &one[0]
	// A message dispatched at once can have its body encoded into a pooled
	// buffer, free again when Dispatch returns; one kept in a scope's
	// outbox cannot.
	var body *bytes.Buffer
	now := s == nil || k == opRequest
	var pooled **bytes.Buffer
	if now {
		pooled = &body
	}
	if err := b.build(s, k, target, msg, cfg, o, pooled); err != nil {
		releaseHeaders(o.Message.Headers)
		return b.opError(k, target, msg, cfg, err)
	}
	var sending Sending
	if b.hooks.Send != nil || b.hooks.Sent != nil {
		sending = Sending{Operation: k.String(), Message: o, Held: !now}
		if b.hooks.Send != nil {
			ctx = b.hooks.Send(ctx, sending)
		}
	}
	if !now {
		err := s.add(*o)
		if b.hooks.Sent != nil {
			b.hooks.Sent(ctx, sending, err)
		}
		if err != nil {
			releaseHeaders(o.Message.Headers)
			return b.opError(k, target, msg, cfg, err)
		}
		return nil
	}
	err := b.dispatch(ctx, one[:]...)
	if b.hooks.Sent != nil {
		b.hooks.Sent(ctx, sending, err)
	}
	releaseHeaders(o.Message.Headers)
	releaseBody(body)
	if err != nil {
		return b.opError(k, target, msg, cfg, err)
	}
	return nil
}

// headerPool recycles the header maps of outgoing messages: a map of more
// than eight entries costs four allocations, and Dispatch neither keeps nor
// modifies the messages it is given once it returns (nor may the
// DispatchMiddleware), so the map is free again then.
var headerPool = sync.Pool{New: func() any { return make(transport.Headers, headerCount) }}

// maxPooledHeaders keeps maps grown by many custom headers out of the pool.
const maxPooledHeaders = 4 * headerCount

// releaseHeaders gives the header map of a message built by build, and
// dispatched or dropped, back to the pool.
func releaseHeaders(h transport.Headers) {
	if h == nil || len(h) > maxPooledHeaders {
		return
	}
	clear(h)
	headerPool.Put(h)
}

// releaseAll releases the header maps of msgs.
func releaseAll(msgs []transport.Outgoing) {
	for i := range msgs {
		releaseHeaders(msgs[i].Message.Headers)
		msgs[i].Message.Headers = nil
	}
}

// headerCount is the number of standard headers of an outgoing message,
// DeferredTime and traceparent included, to size the map once.
const headerCount = 13

// build makes the wire message for msg: properties, standard headers, body.
//
// With pooled non-nil and the default JSON codec, the body is encoded into a
// pooled buffer, returned in *pooled for releaseBody once the message has
// been dispatched.
func (b *Bus) build(s *scope, k op, target string, msg any, cfg *sendConfig, o *transport.Outgoing, pooled **bytes.Buffer) error {
	// Names first: nothing is sent (or queued) to an invalid one.
	if k == opPublish {
		if err := transport.ValidateRoutingKey(target); err != nil {
			return err
		}
	} else if err := transport.ValidateQueueName(target); err != nil {
		return err
	}
	if msg == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	typeName := cfg.messageType
	var typeBox any
	if typeName == "" {
		info, err := typeInfoOf(reflect.TypeOf(msg))
		if err != nil {
			return err
		}
		if err := b.claim(info); err != nil {
			return err
		}
		typeName, typeBox = info.name, info.box
	} else {
		typeBox = typeName
	}

	now := time.Now()
	var due time.Time
	if cfg.delaySet {
		if cfg.delay > 0 {
			due = now.Add(cfg.delay)
		}
	} else if cfg.deliverAt.After(now) {
		due = cfg.deliverAt
	}
	if !due.IsZero() || cfg.deferCall {
		switch {
		case k == opPublish:
			return fmt.Errorf("%w: events cannot be deferred, only commands", ErrNotSupported)
		case k == opRequest:
			return fmt.Errorf("%w: requests cannot be deferred", ErrNotSupported)
		case b.delayer == nil:
			return fmt.Errorf("%w: the transport cannot defer messages (it does not implement transport.Delayer)", ErrNotSupported)
		}
	}

	times, err := b.timeFormat(s, k, target, cfg)
	if err != nil {
		return err
	}
	n := &b.names
	h := headerPool.Get().(transport.Headers)

	id := cfg.messageID
	var idBox, timeBox any
	switch {
	case cfg.requestID != "":
		id = cfg.requestID
	case id == "":
		id, idBox, timeBox = newIDAndTime(now, times)
	}
	if idBox == nil {
		idBox, timeBox = id, times.Format(now)
	}
	h[n.MessageID] = idBox

	// Correlation and conversation: inherited from the message being
	// handled, else this message's id. A request correlates its reply
	// with its own id.
	corr, corrBox, convBox := id, idBox, idBox
	if hs := s.handlingScope(); hs != nil {
		alive := hs.withIncoming(false, func(in *middleware.Message) {
			// As Incoming reads them: the header, else the property.
			if v, ok := stringHeader(in.Headers, n.CorrelationID); ok {
				corr, corrBox = v.(string), v
			} else if in.CorrelationID != "" {
				corr = in.CorrelationID
				corrBox = corr
			}
			convBox = corrBox
			if v, ok := stringHeader(in.Headers, n.ConversationID); ok {
				convBox = v
			}
			if v, ok := in.Headers[middleware.TraceParentHeader]; ok {
				h[middleware.TraceParentHeader] = v
			}
		})
		if !alive {
			return ErrScopeEnded
		}
	}
	switch {
	case k == opRequest:
		corr, corrBox = id, idBox
	case cfg.correlationID != "":
		corr = cfg.correlationID
		corrBox = corr
	}
	if cfg.conversationID != "" {
		convBox = cfg.conversationID
	}
	h[n.CorrelationID] = corrBox
	h[n.ConversationID] = convBox
	h[n.TimeSent] = timeBox

	replyTo, replyBox := b.queue, b.queueBox
	switch {
	case cfg.replyToSet:
		replyTo, replyBox = cfg.replyTo, cfg.replyTo
	case k == opRequest:
		replyTo, replyBox = b.replies.queue, b.replies.queueBox
	}
	if replyTo != "" {
		h[n.ReplyToAddress] = replyBox
	}
	if b.queue != "" {
		h[n.OriginatingAddress] = b.queueBox
	}
	if k == opPublish {
		h[n.Intent] = middleware.IntentEvent
	} else {
		h[n.Intent] = middleware.IntentCommand
	}
	h[n.MessageType] = typeBox

	o.Exchange, o.RoutingKey, o.Mandatory = transport.Direct, target, true
	if k == opPublish {
		o.Exchange, o.Mandatory = transport.Topic, cfg.mandatory
	}
	if !due.IsZero() {
		h[n.DeferredTime] = times.Format(due)
		o.NotBefore = due
		if max := b.delayer.MaxDelay(); due.Sub(now) > max {
			o.NotBefore = now.Add(max)
		}
	}

	m := &o.Message
	m.ID, m.CorrelationID, m.ReplyTo, m.Type, m.Timestamp, m.Headers = id, corr, replyTo, typeName, now, h
	m.Priority = cfg.priority
	c, topic, err := b.encoderFor(k, target, msg, cfg, o)
	if err != nil {
		m.Headers = h
		return err
	}
	switch te, _ := c.(TopicEncoder); {
	case b.defaultJSON && pooled != nil && c == b.codec: // c == b.codec only when b.codec is bus.JSON: a codec of an uncomparable type would panic
		*pooled, err = encodeJSON(msg, m)
	case te != nil && k == opPublish:
		err = te.EncodeTopic(msg, topic, m)
	default:
		err = c.Encode(msg, m)
	}
	if err != nil {
		m.Headers = h
		return fmt.Errorf("%w: encoding as %s: %v", ErrInvalidMessage, c.ContentType(), err)
	}
	if reflect.ValueOf(m.Headers).UnsafePointer() != reflect.ValueOf(h).UnsafePointer() {
		// The codec replaced the map: keep the pooled one, with its
		// entries, so that the map released later is ours.
		for k, v := range m.Headers {
			h[k] = v
		}
		m.Headers = h
	}
	if m.ContentType == b.ctString {
		h[n.ContentType] = b.ctBox
	} else if m.ContentType != "" {
		h[n.ContentType] = m.ContentType
	}
	switch m.ContentEncoding {
	case "":
	case "utf-8":
		h[n.ContentEncoding] = "utf-8"
	default:
		h[n.ContentEncoding] = m.ContentEncoding
	}

	if len(cfg.headers) > 0 {
		for k, v := range cfg.headers {
			h[k] = v
		}
		b.mirror(m)
	}
	if len(cfg.headers) > 0 || cfg.messageID != "" || cfg.correlationID != "" || cfg.messageType != "" || cfg.replyToSet || len(typeName) > transport.MaxNameLength {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// encoderFor returns the codec that encodes msg, and for a Publish the
// topic without its prefix; it sets o's exchange name for WithExchange. A
// Publish on one of Options.Exchanges uses that exchange's codec; any other
// message the first SelectiveCodec that claims it, else Options.Codec.
func (b *Bus) encoderFor(k op, target string, msg any, cfg *sendConfig, o *transport.Outgoing) (Codec, string, error) {
	topic := strings.TrimPrefix(target, b.opts.TopicPrefix)
	if cfg.exchange != "" {
		if k != opPublish {
			return nil, "", fmt.Errorf("WithExchange applies to Publish only, not to %s", k)
		}
		x, err := b.exchangeFor(cfg.exchange)
		if err != nil {
			return nil, "", err
		}
		o.ExchangeName = x.Name
		return x.codec, strings.TrimPrefix(target, x.TopicPrefix), nil
	}
	for _, c := range b.selective {
		if c.Encodes(msg) {
			return c, topic, nil
		}
	}
	return b.codec, topic, nil
}

// mirror copies the standard headers that have AMQP properties into them,
// after WithHeaders may have replaced some.
func (b *Bus) mirror(m *transport.Message) {
	n := &b.names
	for _, p := range [...]struct {
		header string
		prop   *string
	}{
		{n.MessageID, &m.ID},
		{n.CorrelationID, &m.CorrelationID},
		{n.ReplyToAddress, &m.ReplyTo},
		{n.MessageType, &m.Type},
		{n.ContentType, &m.ContentType},
		{n.ContentEncoding, &m.ContentEncoding},
	} {
		if s, ok := m.Headers[p.header].(string); ok {
			*p.prop = s
		}
	}
	if t, ok, err := middleware.HeaderTime(m.Headers[n.TimeSent]); ok && err == nil {
		m.Timestamp = t
	}
}

// stringHeader returns the header name of h as a non-empty string in an
// interface value, the header's own when it is a string (no allocation),
// or false if it is absent, empty or not text.
func stringHeader(h transport.Headers, name string) (any, bool) {
	v, ok := h[name]
	if !ok {
		return nil, false
	}
	if str, ok := v.(string); ok {
		return v, str != ""
	}
	if str, ok := middleware.HeaderString(v); ok && str != "" {
		return str, true
	}
	return nil, false
}
