package saga

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/busline/busline/bus"
)

// Instance is one instance of a saga, as its handlers see it. It is not
// safe for concurrent use: a handler must not hand it to goroutines that
// outlive it.
type Instance[S any] struct {
	// State is the instance's state. A handler reads and changes it; it is
	// saved when the handler returns nil, and dropped with the handling's
	// other effects when it returns an error.
	State S

	id, correlation                     string
	isNew, completed                    bool
	originator, originatorCorrelationID string
	timeouts                            map[reflect.Type]bool
	effects                             []Effect
}

// NewInstance returns an instance detached from any bus and store, in
// state, with the id, correlation value and originator of r (its State
// is not read); a zero r.Version means it is not stored yet (the message
// being handled starts it). It is for tests and tools: package sagatest
// uses it with [Saga.Apply].
func NewInstance[S any](state S, r Record) *Instance[S] {
	return &Instance[S]{State: state, id: r.ID, correlation: r.Correlation, isNew: r.Version == 0,
		originator: r.Originator, originatorCorrelationID: r.OriginatorCorrelationID}
}

// ID returns the instance's id, which its timeouts carry.
func (in *Instance[S]) ID() string { return in.id }

// Correlation returns the instance's correlation value.
func (in *Instance[S]) Correlation() string { return in.correlation }

// IsNew reports whether the message being handled starts the instance.
func (in *Instance[S]) IsNew() bool { return in.isNew }

// Complete ends the instance when the handler succeeds: see
// [Options.KeepCompleted]. Its timeouts still pending are dropped when
// they come.
func (in *Instance[S]) Complete() { in.completed = true }

// Completed reports whether [Instance.Complete] was called.
func (in *Instance[S]) Completed() bool { return in.completed }

// Originator returns the reply address of the message that started the
// instance, empty if it had none.
func (in *Instance[S]) Originator() string { return in.originator }

// Effects returns what the handler asked for so far, in order.
func (in *Instance[S]) Effects() []Effect { return in.effects }

// EffectKind is what an [Effect] does.
type EffectKind uint8

// The kinds of effects, one per call of [Instance].
const (
	EffectSend EffectKind = iota + 1
	EffectPublish
	EffectDefer
	EffectReply
	EffectReplyToOriginator
	EffectTimeout
)

var effectNames = [...]string{"", "send", "publish", "defer", "reply", "reply to originator", "timeout"}

func (k EffectKind) String() string {
	if int(k) < len(effectNames) {
		return effectNames[k]
	}
	return fmt.Sprintf("EffectKind(%d)", k)
}

// Effect is a message a handler sent through its [Instance]: sent by the
// bus, in order, when the handling succeeds.
type Effect struct {
	Kind EffectKind
	// Destination is the queue (Send, Defer), the topic (Publish) or the
	// originator's reply address (ReplyToOriginator); empty for Reply and
	// Timeout.
	Destination string
	// Message is the message, as given.
	Message any
	// Delay is the delay of a Defer or a Timeout.
	Delay time.Duration
	// Options are the send options given.
	Options []bus.SendOption
}

func (in *Instance[S]) add(e Effect) error {
	if e.Message == nil {
		return fmt.Errorf("saga: %s: nil message", e.Kind)
	}
	in.effects = append(in.effects, e)
	return nil
}

// Send sends the command msg to queue (as bus.Bus.Send) when the handling
// succeeds.
func (in *Instance[S]) Send(queue string, msg any, opts ...bus.SendOption) error {
	if queue == "" {
		return errors.New("saga: send: empty queue name")
	}
	return in.add(Effect{Kind: EffectSend, Destination: queue, Message: msg, Options: opts})
}

// Publish publishes the event msg under topic (as bus.Bus.Publish) when
// the handling succeeds.
func (in *Instance[S]) Publish(topic string, msg any, opts ...bus.SendOption) error {
	if topic == "" {
		return errors.New("saga: publish: empty topic")
	}
	return in.add(Effect{Kind: EffectPublish, Destination: topic, Message: msg, Options: opts})
}

// Defer sends msg to queue no earlier than delay from now (as
// bus.Bus.Defer) when the handling succeeds. For a message to the saga
// itself, use [Instance.RequestTimeout].
func (in *Instance[S]) Defer(delay time.Duration, queue string, msg any, opts ...bus.SendOption) error {
	if queue == "" {
		return errors.New("saga: defer: empty queue name")
	}
	return in.add(Effect{Kind: EffectDefer, Destination: queue, Message: msg, Delay: delay, Options: opts})
}

// Reply replies msg to the sender of the message being handled (as
// bus.Bus.Reply) when the handling succeeds.
func (in *Instance[S]) Reply(msg any, opts ...bus.SendOption) error {
	return in.add(Effect{Kind: EffectReply, Message: msg, Options: opts})
}

// ReplyToOriginator replies msg to the sender of the message that started
// the instance, whichever message is being handled: to its reply address,
// with its correlation id (so that a bus.Request waiting for it
// recognizes it). It fails with an error wrapping bus.ErrNoReplyAddress if
// that message had no reply address.
func (in *Instance[S]) ReplyToOriginator(msg any, opts ...bus.SendOption) error {
	if in.originator == "" {
		return fmt.Errorf("saga: reply to originator: the message that started instance %q had no reply address: %w", in.id, bus.ErrNoReplyAddress)
	}
	o := append([]bus.SendOption{bus.WithCorrelationID(in.originatorCorrelationID)}, opts...)
	return in.add(Effect{Kind: EffectReplyToOriginator, Destination: in.originator, Message: msg, Options: o})
}

// RequestTimeout asks for msg to come back to this instance after delay,
// to the handler registered for its type with [Timeout]. It is deferred
// through the bus (bus.Bus.Defer to the endpoint's own queue) when the
// handling succeeds, carrying the instance's id; it is dropped if the
// instance completed by then. It fails if msg's type has no Timeout
// handler.
func (in *Instance[S]) RequestTimeout(delay time.Duration, msg any) error {
	if msg != nil && in.timeouts != nil && !in.timeouts[reflect.TypeOf(msg)] {
		return fmt.Errorf("saga: request timeout: no Timeout handler for %T", msg)
	}
	return in.add(Effect{Kind: EffectTimeout, Message: msg, Delay: delay})
}
