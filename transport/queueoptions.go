package transport

import (
	"fmt"
	"time"
)

// Overflow is what a queue with a length limit ([QueueOptions.MaxLength],
// [QueueOptions.MaxLengthBytes]) does when it is full: RabbitMQ's
// x-overflow argument.
type Overflow string

// The overflow behaviours. The zero value is DropHead, RabbitMQ's default.
const (
	// DropHead drops (or dead-letters, reason "maxlen") the oldest ready
	// messages until the queue is within its limits again. Publishers
	// never learn of it.
	DropHead Overflow = "drop-head"
	// RejectPublish refuses new messages while the queue is full: the
	// broker nacks them, and Dispatch fails with [ErrRejected] unless the
	// queue makes room before its context ends. A classic queue refuses a
	// message that would take it over a limit; a quorum queue (RabbitMQ
	// 3.10) takes the message that takes it over, then refuses until it
	// is down to 80% of its limits.
	RejectPublish Overflow = "reject-publish"
	// RejectPublishDLX is RejectPublish that also dead-letters each
	// refused message (reason "maxlen"). Classic queues only: RabbitMQ
	// 3.10's quorum queues accept it and silently drop the head instead,
	// so a Queue that asks for it on a quorum queue is refused.
	RejectPublishDLX Overflow = "reject-publish-dlx"
)

// QueueOptions are the queue arguments busline declares by name. The zero
// value declares none of them. Each one is a queue argument of RabbitMQ's,
// compared on a redeclaration like the others: a queue that exists with
// other values fails [Transport.Declare] with [ErrTopologyConflict]. The
// memory broker enforces them exactly as RabbitMQ 3.10 does (see
// docs/architecture.md for the facts measured).
//
// Where a message goes when a queue drops it (expired, over its length
// limit, rejected without requeue, over its delivery limit):
// DeadLetterQueue, or nowhere.
type QueueOptions struct {
	// MaxPriority, between 1 and 255, makes a priority queue
	// (x-max-priority): messages with a higher [Message.Priority] are
	// delivered first, those of one priority in order, and a priority
	// above MaxPriority counts as MaxPriority. A message nacked with
	// requeue goes back to its place among those of its priority. Classic
	// queues only: RabbitMQ 3.10's quorum queues refuse x-max-priority.
	// Zero: no priorities.
	MaxPriority int

	// DeliveryLimit, when positive, is how many times a message of a
	// quorum queue may go back to the queue (x-delivery-limit): nacked
	// with requeue, or left unsettled by a consumer that stopped or a
	// connection that was lost, say by a crash. The delivery after the
	// last allowed return never comes: the message is dead-lettered
	// (reason "delivery_limit") or dropped. So a message that crashes
	// its handler's process is delivered DeliveryLimit+1 times, not for
	// ever. Every return counts, those of an orderly shutdown that gives
	// back messages its handlers had not finished included: leave room
	// for restarts. Quorum queues only (classic queues refuse it). Zero:
	// no limit.
	DeliveryLimit int

	// MaxLength, when positive, bounds the ready messages of the queue
	// (x-max-length); Overflow says what happens past it. Messages
	// delivered and not yet settled do not count. Zero: no limit.
	MaxLength int64

	// MaxLengthBytes, when positive, bounds the total body size of the
	// ready messages (x-max-length-bytes; headers and properties do not
	// count). Zero: no limit.
	MaxLengthBytes int64

	// Overflow is what a full queue does. Empty means DropHead.
	Overflow Overflow

	// MessageTTL, when positive, is how long a message may wait in the
	// queue (x-message-ttl, whole milliseconds), counted from when it
	// entered it; a message nacked with requeue keeps its original
	// expiry. An expired message is dropped, or dead-lettered with reason
	// "expired", when it reaches the head of the queue (at once, without a
	// consumer), never delivered. Zero: messages do not expire.
	MessageTTL time.Duration

	// DeadLetterQueue, when set, is the queue dropped messages go to, with
	// an x-death header that says why (x-dead-letter-exchange "" and
	// x-dead-letter-routing-key). The queue must exist when a message is
	// dead-lettered, or the message is lost. Empty: dropped messages are
	// lost.
	DeadLetterQueue string
}

// IsZero reports whether o declares no argument.
func (o QueueOptions) IsZero() bool { return o == QueueOptions{} }

// validate checks the values of o that do not depend on the queue type.
func (o *QueueOptions) validate(queue string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: queue %q: %s", ErrInvalidMessage, queue, fmt.Sprintf(format, args...))
	}
	switch {
	case o.MaxPriority < 0 || o.MaxPriority > 255:
		return bad("MaxPriority %d is not between 1 and 255", o.MaxPriority)
	case o.DeliveryLimit < 0:
		return bad("DeliveryLimit %d is negative", o.DeliveryLimit)
	case o.MaxLength < 0:
		return bad("MaxLength %d is negative", o.MaxLength)
	case o.MaxLengthBytes < 0:
		return bad("MaxLengthBytes %d is negative", o.MaxLengthBytes)
	case o.MessageTTL < 0:
		return bad("MessageTTL %v is negative", o.MessageTTL)
	case o.MessageTTL%time.Millisecond != 0:
		return bad("MessageTTL %v is not a whole number of milliseconds (RabbitMQ's x-message-ttl is in milliseconds)", o.MessageTTL)
	}
	switch o.Overflow {
	case "", DropHead, RejectPublish, RejectPublishDLX:
	default:
		return bad("unknown Overflow %q (want %q, %q or %q)", o.Overflow, DropHead, RejectPublish, RejectPublishDLX)
	}
	if o.DeadLetterQueue != "" {
		if err := ValidateQueueName(o.DeadLetterQueue); err != nil {
			return fmt.Errorf("queue %q: DeadLetterQueue: %w", queue, err)
		}
	}
	return nil
}

// checkType checks the options of o that only one queue type accepts.
func (o *QueueOptions) checkType(queue string, typ QueueType) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: queue %q: %s", ErrNotSupported, queue, fmt.Sprintf(format, args...))
	}
	switch {
	case o.MaxPriority > 0 && typ != Classic:
		return refuse("MaxPriority needs a classic queue (RabbitMQ 3.10's %s queues refuse x-max-priority)", typ)
	case o.DeliveryLimit > 0 && typ != Quorum:
		return refuse("DeliveryLimit needs a quorum queue (RabbitMQ's %s queues refuse x-delivery-limit)", typ)
	case o.Overflow == RejectPublishDLX && typ != Classic:
		return refuse("Overflow reject-publish-dlx needs a classic queue (RabbitMQ 3.10's %s queues accept it but drop the head instead)", typ)
	}
	return nil
}

// optionArguments are the queue arguments QueueOptions set, which
// Queue.Arguments may not give as well.
var optionArguments = []string{
	"x-max-priority", "x-delivery-limit", "x-max-length", "x-max-length-bytes",
	"x-overflow", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
}

// ArgumentsFor returns the queue arguments a transport declares for q when
// its type is typ (the transport's default when q.Type is empty; Classic
// for a temporary queue): q.Arguments with q.Options added, integers as
// int64. It fails, wrapping [ErrNotSupported], if an option needs another
// queue type, and as [Topology.Validate] does otherwise. x-queue-type is
// not among them: the transport adds it as it declares typ.
func (q *Queue) ArgumentsFor(typ QueueType) (Headers, error) {
	if err := q.validateOptions(); err != nil {
		return nil, err
	}
	o := &q.Options
	if err := o.checkType(q.Name, typ); err != nil {
		return nil, err
	}
	if o.IsZero() {
		return q.Arguments.Clone(), nil
	}
	args := q.Arguments.Clone()
	if args == nil {
		args = make(Headers)
	}
	if o.MaxPriority > 0 {
		args["x-max-priority"] = int64(o.MaxPriority)
	}
	if o.DeliveryLimit > 0 {
		args["x-delivery-limit"] = int64(o.DeliveryLimit)
	}
	if o.MaxLength > 0 {
		args["x-max-length"] = o.MaxLength
	}
	if o.MaxLengthBytes > 0 {
		args["x-max-length-bytes"] = o.MaxLengthBytes
	}
	if o.Overflow != "" {
		args["x-overflow"] = string(o.Overflow)
	}
	if o.MessageTTL > 0 {
		args["x-message-ttl"] = o.MessageTTL.Milliseconds()
	}
	if o.DeadLetterQueue != "" {
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = o.DeadLetterQueue
	}
	return args, nil
}

// validateOptions checks q.Options' values, against q.Type when it is set,
// and that q.Arguments does not give an argument an option sets.
func (q *Queue) validateOptions() error {
	o := &q.Options
	if o.IsZero() {
		return nil
	}
	if err := o.validate(q.Name); err != nil {
		return err
	}
	for _, k := range optionArguments {
		if _, ok := q.Arguments[k]; ok {
			return fmt.Errorf("%w: queue %q: argument %q is given in Arguments while Options sets queue arguments: give it in one place", ErrInvalidMessage, q.Name, k)
		}
	}
	typ := q.Type
	if q.Temporary {
		typ = Classic
	}
	if typ != "" {
		return o.checkType(q.Name, typ)
	}
	return nil
}
