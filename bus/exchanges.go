package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/busline/busline/transport"
)

// Exchange is a topic exchange other than the transport's own that an
// endpoint subscribes to and publishes on: RabbitMQ's predeclared
// "amq.topic", say, where tomodachi services publish and subscribe by
// default. It needs a transport that implements transport.ExchangeBinder
// ([New] fails with [ErrNotSupported] otherwise).
//
// A message that arrives through the exchange without a content type
// (tomodachi sends none) is given Codec's, and one without a message type
// is given its routing key, less TopicPrefix: tomodachi dispatches on the
// routing key, so a handler registered [WithMessageType]("order.created")
// takes what a tomodachi service publishes under "order.created". Both are
// written into the message's ContentType and MessageType headers as it
// arrives, so that its retry and error-queue copies, which come back
// through the direct exchange, are read the same way.
type Exchange struct {
	// Name is the exchange's name. Start declares it as a durable topic
	// exchange if it does not exist, as tomodachi does, except RabbitMQ's
	// own "amq." exchanges, which exist and may not be declared.
	Name string

	// Subscriptions are the topic patterns the endpoint's queue is bound
	// under on this exchange at Start (with TopicPrefix prepended). The
	// bindings outlive the Bus, as Subscribe's do; removing a pattern here
	// does not remove its binding (the transport's UnbindExchange does).
	Subscriptions []string

	// TopicPrefix is prepended to Subscriptions and to the topic of a
	// Publish [WithExchange](Name), and taken off the routing key of an
	// incoming message to make its message type: tomodachi's
	// options.amqp.routing_key_prefix. [Options.TopicPrefix] does not
	// apply to this exchange.
	TopicPrefix string

	// Codec decodes the messages that arrive through this exchange without
	// a content type, and encodes what is published on it with
	// WithExchange. Nil means [Options.Codec]. It is added to the codecs
	// of incoming messages, so its content type must not be another
	// codec's, unless that codec is this one (the same comparable value).
	Codec Codec
}

// exchange is an Exchange as the Bus uses it.
type exchange struct {
	Exchange
	codec Codec
	ctBox any // codec's content type, boxed once for the header
}

// setupExchanges checks Options.Exchanges and PerInstance, and returns the
// codecs the exchanges add to Options.Codecs.
func (b *Bus) setupExchanges(t transport.Transport) (extra []Codec, err error) {
	if len(b.opts.Exchanges) == 0 {
		return nil, nil
	}
	binder, ok := t.(transport.ExchangeBinder)
	if !ok {
		return nil, fmt.Errorf("bus.New: Options.Exchanges: %w: the transport does not implement transport.ExchangeBinder", ErrNotSupported)
	}
	b.binder = binder
	b.exchanges = make(map[string]*exchange, len(b.opts.Exchanges))
	for i, x := range b.opts.Exchanges {
		if err := transport.ValidateExchangeName(x.Name); err != nil {
			return nil, fmt.Errorf("bus.New: Options.Exchanges[%d]: %w", i, err)
		}
		if _, dup := b.exchanges[x.Name]; dup {
			return nil, fmt.Errorf("bus.New: Options.Exchanges[%d]: exchange %q given twice", i, x.Name)
		}
		if len(x.Subscriptions) > 0 && b.queue == "" {
			return nil, fmt.Errorf("bus.New: Options.Exchanges[%d]: subscriptions need a queue: %w", i, ErrSendOnly)
		}
		for _, p := range x.Subscriptions {
			if err := transport.ValidateTopicPattern(x.TopicPrefix + p); err != nil {
				return nil, fmt.Errorf("bus.New: Options.Exchanges[%d] subscription: %w", i, err)
			}
		}
		c := x.Codec
		if c == nil {
			c = b.codec
		} else {
			extra = appendCodec(extra, c, b.codec, b.opts.Codecs)
		}
		x.Subscriptions = append([]string(nil), x.Subscriptions...)
		b.exchanges[x.Name] = &exchange{Exchange: x, codec: c, ctBox: c.ContentType()}
	}
	return extra, nil
}

// appendCodec appends c to extra unless it is already among them, or is
// def or one of opts: a codec named both in Options.Codecs and as an
// exchange's Codec counts once.
func appendCodec(extra []Codec, c, def Codec, opts []Codec) []Codec {
	same := func(x Codec) bool {
		return reflect.TypeOf(x) == reflect.TypeOf(c) && reflect.TypeOf(c).Comparable() && x == c
	}
	if same(def) {
		return extra
	}
	for _, x := range opts {
		if x != nil && same(x) {
			return extra
		}
	}
	for _, x := range extra {
		if same(x) {
			return extra
		}
	}
	return append(extra, c)
}

// bindExchanges binds the endpoint's queue on the exchanges' subscriptions,
// for Start.
func (b *Bus) bindExchanges(ctx context.Context) error {
	for _, x := range b.opts.Exchanges {
		for _, p := range x.Subscriptions {
			full := x.TopicPrefix + p
			if err := b.binder.BindExchange(ctx, x.Name, b.queue, full); err != nil {
				return fmt.Errorf("subscribing to %q on exchange %q: %w", full, x.Name, err)
			}
		}
	}
	return nil
}

// adoptForeign gives a message that came through one of Options.Exchanges
// the content type and message type it lacks (see [Exchange]). The
// delivery's headers are the Bus's to change: the transport handed them
// over.
func (b *Bus) adoptForeign(d *transport.Delivery) {
	x, ok := b.exchanges[d.ExchangeName]
	if !ok {
		return
	}
	n := &b.names
	if d.ContentType == "" && headerOr(d.Headers, n.ContentType, "") == "" {
		if d.Headers == nil {
			d.Headers = make(transport.Headers, 2)
		}
		d.Headers[n.ContentType] = x.ctBox
	}
	if b.messageTypeOf(&d.Message) == "" {
		if d.Headers == nil {
			d.Headers = make(transport.Headers, 1)
		}
		d.Headers[n.MessageType] = strings.TrimPrefix(d.RoutingKey, x.TopicPrefix)
	}
}

// WithExchange publishes the event on the exchange of [Options.Exchanges]
// named name instead of the transport's topic exchange, under that
// exchange's TopicPrefix and encoded with its Codec: to reach tomodachi
// services on "amq.topic", say. A name not in Options.Exchanges fails the
// Publish; calls other than Publish refuse the option.
func WithExchange(name string) SendOption {
	return sendOptionFunc(func(c *sendConfig) { c.exchange = name })
}

// exchangeFor returns the exchange a Publish WithExchange names.
func (b *Bus) exchangeFor(name string) (*exchange, error) {
	x, ok := b.exchanges[name]
	if !ok {
		return nil, fmt.Errorf("exchange %q is not among Options.Exchanges", name)
	}
	return x, nil
}

// instanceQueue names the queue of an instance of the endpoint queue (see
// [Options.PerInstance]).
func instanceQueue(queue, id string) string {
	if id == "" {
		var r [6]byte
		_, _ = rand.Read(r[:])
		id = hex.EncodeToString(r[:])
	}
	return queue + ".instance-" + id
}

// endpointQueue is the endpoint's queue as Start declares it.
func (b *Bus) endpointQueue() transport.Queue {
	return transport.Queue{Name: b.queue, Type: b.queueType(), Options: b.queueOpts, Temporary: b.opts.PerInstance}
}

// instanceQueueDeleteTimeout bounds the deletion of a PerInstance queue
// when the Bus stops; x-expires (or the transport's Close) deletes it
// after a failure.
const instanceQueueDeleteTimeout = 5 * time.Second

// deleteInstanceQueue deletes a PerInstance endpoint's queue when the Bus
// stops, best effort: the instance goes away, and so do the events only it
// would have handled.
func (b *Bus) deleteInstanceQueue() {
	if !b.opts.PerInstance || b.queue == "" {
		return
	}
	del, ok := b.t.(transport.QueueDeleter)
	if !ok {
		return // the transport deletes its temporary queues on Close
	}
	ctx, cancel := context.WithTimeout(context.Background(), instanceQueueDeleteTimeout)
	defer cancel()
	if err := del.DeleteQueue(ctx, b.queue); err != nil && !errors.Is(err, transport.ErrClosed) {
		b.log.Warn("cannot delete the instance queue; it expires", "queue", b.queue, "error", err)
	}
}
