package transport

import (
	"fmt"
	"time"
)

// The exchange names PikaBus uses, and busline's defaults, so that Go and
// Python services share a broker.
const (
	DefaultDirectExchange = "PikaBusDirect"
	DefaultTopicExchange  = "PikaBusTopic"
)

// Exchange selects which of a transport's two exchanges a message is
// published to.
type Exchange uint8

const (
	// Direct is the direct exchange, on which each endpoint queue is bound
	// under its own name: the routing key is the destination queue's name.
	Direct Exchange = iota
	// Topic is the topic exchange: the routing key is a topic, delivered to
	// every queue bound under a matching pattern.
	Topic
)

func (e Exchange) String() string {
	switch e {
	case Direct:
		return "direct"
	case Topic:
		return "topic"
	}
	return fmt.Sprintf("Exchange(%d)", uint8(e))
}

// Outgoing is one message handed to [Transport.Dispatch].
type Outgoing struct {
	// Exchange is the exchange to publish to; the zero value is Direct.
	Exchange Exchange
	// RoutingKey is the destination queue's name for Direct, the topic for
	// Topic. It is validated with [ValidateRoutingKey], and for Direct also
	// with [ValidateQueueName].
	RoutingKey string
	// ExchangeName, for a Topic message, names a topic exchange other than
	// the transport's own to publish to, such as RabbitMQ's amq.topic where
	// tomodachi services publish (see [ExchangeBinder]); empty means the
	// transport's topic exchange. An exchange that does not exist fails
	// the message with [ErrNotFound]. Only a transport that implements
	// ExchangeBinder publishes to other exchanges; any other refuses the
	// message with [ErrNotSupported].
	ExchangeName string
	// Mandatory makes Dispatch fail with [ErrUnroutable] when the message
	// reaches no queue, instead of the broker dropping it silently.
	Mandatory bool
	// NotBefore, when in the future, defers delivery: the message enters its
	// queue no earlier than NotBefore. Only Direct messages can be deferred,
	// and only by a transport that implements [Delayer]; any other transport
	// refuses them with [ErrNotSupported]. For a deferred mandatory message
	// routability is checked when it is dispatched: the destination queue
	// must exist then.
	NotBefore time.Time
	// Message is the message itself. Dispatch neither keeps nor modifies
	// it after it returns.
	Message Message
}

// Validate reports whether o can be dispatched: its routing key (and, for
// Direct, its destination queue name) is valid and its message passes
// [Message.Validate]. Transports call it before sending anything.
func (o *Outgoing) Validate() error {
	switch o.Exchange {
	case Direct:
		if err := ValidateQueueName(o.RoutingKey); err != nil {
			return err
		}
	case Topic:
		if err := ValidateRoutingKey(o.RoutingKey); err != nil {
			return err
		}
		if !o.NotBefore.IsZero() && o.NotBefore.After(time.Now()) {
			return fmt.Errorf("%w: deferred delivery of a message published to the topic exchange", ErrNotSupported)
		}
	default:
		return fmt.Errorf("%w: unknown exchange %v", ErrInvalidMessage, o.Exchange)
	}
	if o.ExchangeName != "" {
		if o.Exchange != Topic {
			return fmt.Errorf("%w: exchange name %q given for a %v message: only topic messages go to other exchanges", ErrInvalidMessage, o.ExchangeName, o.Exchange)
		}
		if err := ValidateExchangeName(o.ExchangeName); err != nil {
			return err
		}
	}
	return o.Message.Validate()
}
