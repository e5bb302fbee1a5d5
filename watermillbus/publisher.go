package watermillbus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/transport"
)

// PublisherOptions configure a [Publisher]. The zero value publishes every
// message on the transport's topic exchange, without Mandatory.
type PublisherOptions struct {
	// Direct publishes on the direct exchange instead: the Watermill
	// topic is then the name of the queue the message goes to, as with
	// bus.Send.
	Direct bool

	// Mandatory makes Publish fail, with an error wrapping
	// transport.ErrUnroutable, for a message that reaches no queue. Without
	// it such a message is dropped, as Watermill's pub/subs drop a message
	// nobody subscribed to.
	Mandatory bool
}

// Publisher is a Watermill message.Publisher over a busline transport.
type Publisher struct {
	tr     transport.Transport
	opts   PublisherOptions
	closed atomic.Bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher that publishes through tr. The caller
// keeps tr and closes it after the Publisher.
func NewPublisher(tr transport.Transport, opts PublisherOptions) (*Publisher, error) {
	if tr == nil {
		return nil, errors.New("watermillbus: NewPublisher: the transport is nil")
	}
	return &Publisher{tr: tr, opts: opts}, nil
}

// Publish dispatches msgs as one batch under topic (the routing key) and
// returns once the broker has taken responsibility for every one, as
// transport.Dispatch does. The context of the first message bounds the
// call. Each message's UUID becomes the busline message ID and its
// metadata its headers; the keys of [MetadataPrefix] set its properties.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("watermillbus: Publish to %q: %w", topic, transport.ErrClosed)
	}
	if len(msgs) == 0 {
		return nil
	}
	ex := transport.Topic
	if p.opts.Direct {
		ex = transport.Direct
	}
	out := make([]transport.Outgoing, len(msgs))
	for i, wm := range msgs {
		m, err := fromWatermill(wm)
		if err != nil {
			return fmt.Errorf("watermillbus: Publish to %q: message %s: %w", topic, wm.UUID, err)
		}
		out[i] = transport.Outgoing{Exchange: ex, RoutingKey: topic, Mandatory: p.opts.Mandatory, Message: m}
	}
	ctx := msgs[0].Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := p.tr.Dispatch(ctx, out...); err != nil {
		return fmt.Errorf("watermillbus: Publish to %q: %w", topic, err)
	}
	return nil
}

// Close makes further Publish calls fail. It does not close the
// transport, which belongs to the caller.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}
