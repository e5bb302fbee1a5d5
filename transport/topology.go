package transport

import "fmt"

// QueueType is the kind of queue a transport creates.
type QueueType string

// Queue types. The zero value lets the transport choose its default, which
// is Quorum for every transport of this module.
const (
	// Quorum is a replicated, durable queue (RabbitMQ's x-queue-type
	// "quorum"): the safe default.
	Quorum QueueType = "quorum"
	// Classic is RabbitMQ's classic durable queue.
	Classic QueueType = "classic"
)

// Queue describes a queue to declare.
type Queue struct {
	// Name is the queue's name, validated with [ValidateQueueName].
	Name string
	// Type is the queue type; empty means the transport's default.
	Type QueueType
	// Arguments are further queue arguments (such as "x-max-length"),
	// compared with the existing queue's on a redeclare. The
	// "x-queue-type" argument comes from Type and must not be given here,
	// nor the arguments Options sets.
	Arguments Headers
	// Options are the queue arguments busline declares by name: priority,
	// delivery limit, length limits and overflow, message TTL, dead
	// lettering. A transport declares them with Arguments, as
	// [Queue.ArgumentsFor] gives them.
	Options QueueOptions
	// Shared marks a queue several services use that may have been created
	// by someone else, such as the error queue of a PikaBus installation:
	// if it exists it is used as found, whatever its type and arguments;
	// if not it is created as described.
	Shared bool
	// Temporary makes a queue that lives only as long as the transport,
	// for replies to this one process (a non-durable classic queue on
	// RabbitMQ, deleted on Close). Type is ignored. Other transports may
	// publish to it and bind it: a PikaBus 2 service binds the queue it
	// replies to on the direct exchange before publishing, so a transport
	// must not refuse that bind (as RabbitMQ refuses it on an exclusive
	// queue) if busline's Request is to work with PikaBus services.
	Temporary bool
}

// Topology is what an endpoint declares with [Transport.Declare]: its queue,
// the binding of that queue on the direct exchange under its own name, and
// its bindings on the topic exchange.
type Topology struct {
	// Queue is the endpoint's queue.
	Queue Queue
	// Topics are patterns to bind Queue under on the topic exchange, in
	// addition to the bindings it already has. See [ValidateTopicPattern].
	Topics []string
}

// Validate reports whether t is well formed: a valid queue name, valid
// patterns, arguments of carriable types, options in range and fit for the
// queue type when it is given. The error wraps [ErrInvalidName],
// [ErrInvalidMessage] or, for an option the queue type lacks,
// [ErrNotSupported].
func (t *Topology) Validate() error {
	if err := ValidateQueueName(t.Queue.Name); err != nil {
		return err
	}
	switch t.Queue.Type {
	case "", Quorum, Classic:
	default:
		return fmt.Errorf("%w: queue %q: unknown queue type %q", ErrInvalidMessage, t.Queue.Name, t.Queue.Type)
	}
	if _, ok := t.Queue.Arguments["x-queue-type"]; ok {
		return fmt.Errorf("%w: queue %q: set the queue type with Queue.Type, not the x-queue-type argument", ErrInvalidMessage, t.Queue.Name)
	}
	if err := t.Queue.Arguments.Validate(); err != nil {
		return fmt.Errorf("queue %q arguments: %w", t.Queue.Name, err)
	}
	if err := t.Queue.validateOptions(); err != nil {
		return err
	}
	for _, p := range t.Topics {
		if err := ValidateTopicPattern(p); err != nil {
			return err
		}
	}
	return nil
}
