package otelbus

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// The attributes of OpenTelemetry's semantic conventions for messaging (and
// RabbitMQ's), as of semantic conventions 1.40, and busline's own.
const (
	systemKey           = attribute.Key("messaging.system")
	operationNameKey    = attribute.Key("messaging.operation.name")
	operationTypeKey    = attribute.Key("messaging.operation.type")
	destinationNameKey  = attribute.Key("messaging.destination.name")
	destinationTmplKey  = attribute.Key("messaging.destination.template")
	destinationTempKey  = attribute.Key("messaging.destination.temporary")
	routingKeyKey       = attribute.Key("messaging.rabbitmq.destination.routing_key")
	deliveryTagKey      = attribute.Key("messaging.rabbitmq.message.delivery_tag")
	messageIDKey        = attribute.Key("messaging.message.id")
	conversationIDKey   = attribute.Key("messaging.message.conversation_id")
	batchCountKey       = attribute.Key("messaging.batch.message_count")
	errorTypeKey        = attribute.Key("error.type")
	exceptionMessageKey = attribute.Key("exception.message")

	// MessageTypeKey is the busline message type (the MessageType header).
	MessageTypeKey = attribute.Key("busline.message.type")
	// OperationKey is the bus call that sent a message: send, publish,
	// defer, reply or request.
	OperationKey = attribute.Key("busline.operation")
	// RetriesKey is the number of delayed retries a message had.
	RetriesKey = attribute.Key("busline.message.retries")
	// RedeliveredKey marks a message the broker delivered before.
	RedeliveredKey = attribute.Key("busline.message.redelivered")
	// RetryNumberKey is the number of the retry scheduled (1 for the first).
	RetryNumberKey = attribute.Key("busline.retry.number")
	// RetryDelayKey is how long until the retry is due, in seconds.
	RetryDelayKey = attribute.Key("busline.retry.delay")
	// ErrorQueueKey is the error queue a message was forwarded to.
	ErrorQueueKey = attribute.Key("busline.error_queue")
)

// Unexported aliases keep the code that builds spans short.
const (
	messageTypeKey      = MessageTypeKey
	buslineOperationKey = OperationKey
	retriesKey          = RetriesKey
	redeliveredKey      = RedeliveredKey
	retryNumberKey      = RetryNumberKey
	retryDelayKey       = RetryDelayKey
	errorQueueKey       = ErrorQueueKey
)

// The span events of a process span.
const (
	// EventRetryScheduled: the handling failed and a delayed retry was
	// scheduled. Attributes: busline.retry.number, busline.retry.delay,
	// error.type, exception.message.
	EventRetryScheduled = "busline.retry_scheduled"
	// EventSentToErrorQueue: the message failed for good and was forwarded
	// to the error queue. Attributes: busline.error_queue,
	// busline.message.retries, error.type, exception.message.
	EventSentToErrorQueue = "busline.sent_to_error_queue"
)

var systemRabbitMQ = systemKey.String("rabbitmq")

// operationName is the messaging.operation.name of a message sent to ex.
func operationName(ex transport.Exchange) string {
	if ex == transport.Topic {
		return "publish"
	}
	return "send"
}

// producerDestination is the messaging.destination.name of an outgoing
// message, as RabbitMQ's conventions have it: "{exchange}:{routing key}".
// A reply queue of Request (temporary, named at random) gives its template
// instead, "{exchange}:{queue}.reply-{id}", and temporary true, so that
// span names and metrics keep a bounded cardinality.
func (e *endpoint) producerDestination(o *transport.Outgoing) (string, bool) {
	ex := e.direct
	if o.Exchange == transport.Topic {
		ex = e.topic
	}
	if base, ok := replyQueueBase(o.RoutingKey); ok && o.Exchange == transport.Direct {
		return ex + ":" + base + ".reply-{id}", true
	}
	return joinDestination(ex, o.RoutingKey), false
}

// consumerDestination is the messaging.destination.name of a delivery:
// "{exchange}:{routing key}:{queue}", with the routing key left out when
// it is the queue's name, as a direct message's is. A reply arriving on a
// Request's reply queue gives the template "{exchange}:{queue}.reply-{id}"
// and temporary true.
func (e *endpoint) consumerDestination(d *transport.Delivery) (string, bool) {
	ex := e.direct
	if d.Exchange == transport.Topic {
		ex = e.topic
	}
	if base, ok := replyQueueBase(d.Queue); ok {
		return ex + ":" + base + ".reply-{id}", true
	}
	if d.RoutingKey == d.Queue {
		return joinDestination(ex, d.Queue), false
	}
	return joinDestination(joinDestination(ex, d.RoutingKey), d.Queue), false
}

func joinDestination(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ":" + b
}

// replyQueueBase recognizes the name of a Request's reply queue (see
// package bus): a base, ".reply-" and 12 hexadecimal digits.
func replyQueueBase(name string) (string, bool) {
	i := strings.LastIndex(name, ".reply-")
	if i < 0 || len(name)-i-len(".reply-") != 12 {
		return "", false
	}
	for _, c := range name[i+len(".reply-"):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return name[:i], true
}

func appendDestination(attrs []attribute.KeyValue, dest string, temporary bool) []attribute.KeyValue {
	switch {
	case dest == "":
	case temporary:
		attrs = append(attrs, destinationTmplKey.String(dest), destinationTempKey.Bool(true))
	default:
		attrs = append(attrs, destinationNameKey.String(dest))
	}
	return attrs
}

// spanName is "{operation} {destination}", the destination being the
// template of a temporary one.
func spanName(op, dest string, temporary bool) string {
	if dest == "" {
		return op
	}
	return op + " " + dest
}

// errorType is the error.type of err: one of a short list, so that metrics
// keep a bounded cardinality (see the package documentation).
func errorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, middleware.ErrUndecodable):
		return "undecodable"
	case errors.Is(err, middleware.ErrUnhandled):
		return "unhandled"
	case errors.As(err, new(*middleware.PanicError)):
		return "panic"
	case errors.As(err, new(*middleware.ForwardError)):
		return "forward_failed"
	case errors.Is(err, middleware.ErrPermanent):
		return "permanent"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, transport.ErrUnroutable):
		return "unroutable"
	case errors.Is(err, transport.ErrRejected):
		return "rejected"
	case errors.Is(err, transport.ErrConnectionLost):
		return "connection_lost"
	case errors.Is(err, transport.ErrClosed):
		return "closed"
	case errors.Is(err, bus.ErrScopeEnded):
		return "scope_ended"
	}
	return "_OTHER"
}

// setError marks span failed with err.
func setError(span trace.Span, err error) {
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(errorTypeKey.String(errorType(err)))
}

// headerCarrier carries a context in a message's headers, unprefixed.
type headerCarrier transport.Headers

func (c headerCarrier) Get(key string) string {
	s, _ := middleware.HeaderString(c[key])
	return s
}

func (c headerCarrier) Set(key, value string) { c[key] = value }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// headerOr returns the string header name of h if it is a non-empty
// string, else def.
func headerOr(h transport.Headers, name, def string) string {
	if s, ok := middleware.HeaderString(h[name]); ok && s != "" {
		return s
	}
	return def
}

func messageTypeOf(m *middleware.Message, names middleware.HeaderNames) string {
	if m == nil {
		return ""
	}
	return headerOr(m.Headers, names.MessageType, m.Type)
}
