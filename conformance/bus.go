package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// RunBus checks package bus over the transports h.New makes: the scenarios
// an application relies on, from sending a busCommand to the error queue,
// each run end to end through a real [bus.Bus]. It complements
// [RunTransport], whose contract the bus builds on; run both.
//
// Each subtest opens one transport and runs every endpoint it needs on it,
// with queue names and an error queue of its own, and a topic prefix of its
// own for the events it publishes. Waits are bounded by Harness.Timeout,
// the absence of a message is shown by a busMarker sent after it, and
// deferred and retried messages must not arrive early nor later than
// Harness.DelayTolerance after they are due. With a transport that is not
// a transport.Delayer, the endpoints run without deferral and delayed
// retries, and the subtests that need them skip.
//
// The subtests, whose names are stable:
//
//	Lifecycle/Goroutines          nothing is left running once the endpoints and their transport are closed
//	Lifecycle/Shutdown            Shutdown waits for in-flight handlers and dispatches what they sent; then ErrClosed
//	Lifecycle/Close               Close cancels handlers, their message goes back (redelivered), every call fails with ErrClosed
//	Lifecycle/PauseResume         a paused endpoint handles nothing until Resume
//	Send/Command                  a command reaches its typed handler with PikaBus's metadata
//	Send/Unroutable               a command to a missing queue: ErrUnroutable naming the queue
//	Send/InvalidName              amq. and over-long names: ErrInvalidName, nothing sent
//	Publish/Wildcards             "*", "#" and exact subscriptions, given before and at Start
//	Publish/Unsubscribe           Subscribe and Unsubscribe at run time
//	Publish/RequireSubscriber     an event nobody hears is dropped, or ErrUnroutable when a subscriber is required
//	Subscribers/PerInstance       every PerInstance queue gets every event; an instance's queue goes with it
//	Subscribers/OtherExchange     amq.topic: Publish WithExchange, a subscription there only, a headerless message typed by its routing key, its error-queue copy
//	Defer/NeverEarly              Defer, WithDelay and WithDeliverAt: never early, late within the tolerance, DeferredTime set
//	Defer/NotSupported            events cannot be deferred; nor anything without a Delayer
//	Reply/ToSender                a reply reaches the sender with its correlation id
//	Reply/NoAddress               Reply outside a handler, or to a message without an address: ErrNoReplyAddress
//	Request/Reply                 Request returns the reply
//	Request/Concurrent            concurrent requests each get their own reply
//	Request/Instances             two instances of one endpoint each get the replies to their requests
//	Request/Timeout               a reply too late: the context's error; it is dropped, later requests unaffected
//	Handlers/SendOnSuccessOnly    failed attempts send nothing; the successful one sends once
//	Handlers/SeveralAndRaw        every handler of a type runs, in order, typed and raw
//	Handlers/AfterStart           a handler registered after Start takes messages
//	Transaction/Commit            nothing leaves before the commit; everything after, in order
//	Transaction/Rollback          an error or a panic drops everything; the panic goes on
//	Recoverability/Retries        delayed retries counted and spaced by the backoff, then the error queue with its headers
//	Recoverability/Permanent      a permanent error goes to the error queue without retries
//	Recoverability/Panic          a panic goes to the error queue with its stack
//	Recoverability/Undecodable    a body that cannot be decoded: the error queue, no retries
//	Recoverability/UnknownContentType a content type without a codec: the error queue
//	Recoverability/Unhandled      a type without a handler: the error queue with the reason
//	Recoverability/UnhandledDiscard with UnhandledDiscard: acked, not forwarded
//	WireFormat/Headers            the exact PikaBus headers and the AMQP properties that mirror them
//	WireFormat/Inherited          a PikaBus 1.x message is read; what its handler sends inherits its correlation and trace
//	PikaBus/V1/Exchange           with a PikaBus 1.x service started first (queue unbound, strict 1.x times): send, commands back, publish, request, defer, replies in the request's form; no NO_ROUTE, no loop
//	PikaBus/V1/Failures           retries and the error queue of its message keep the 1.x form; its own error queue replayed to it
//	PikaBus/V2/Exchange           the same with a PikaBus 2.x service (ISO 8601 times) and default options
//	PikaBus/V2/Failures           the same failures with a PikaBus 2.x service
//	Flow/AsyncPost                SendAsync with a window: every receipt confirmed, every callback called, in order
//	Flow/AsyncUnroutable          the verdict of SendAsync to a missing queue, and of PublishAsync requiring a subscriber, wraps ErrUnroutable; Send refuses WithOnAck
//	Flow/AsyncCallbacks           a callback may call SendAsync, Wait, Send and Close without deadlock
//	Flow/Priority                 instances of one endpoint: the higher ConsumerPriority takes a message whenever it has room; SetFlowControl changes it once the handler under way finished
//	Flow/MaxUnackedBytes          a byte bound lets one message be handled at a time; lifting it at run time admits the waiting ones
//	Flow/HostHealth               an unhealthy HealthMonitor suspends consumption (Suspended), sends keep working, recovery resumes it (Unsuspended)
//
// The PikaBus subtests need Harness.DeclareUnbound for the 1.x service's
// queue, and skip the 1.x scenarios without it.
func RunBus(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	// Lifecycle comes first: its goroutine check runs while no other
	// subtest of the suite is running.
	s.groups(t, namedGroup{"Lifecycle", s.busLifecycle},
		namedGroup{"Send", s.busSend},
		namedGroup{"Publish", s.busPublish},
		namedGroup{"Subscribers", s.busSubscribers},
		namedGroup{"Defer", s.busDefer},
		namedGroup{"Reply", s.busReply},
		namedGroup{"Request", s.busRequest},
		namedGroup{"Handlers", s.busHandlers},
		namedGroup{"Transaction", s.busTransaction},
		namedGroup{"Recoverability", s.busRecoverability},
		namedGroup{"WireFormat", s.busWireFormat},
		namedGroup{"PikaBus", s.busPikaBus},
		namedGroup{"Flow", s.busFlow})
}

// The message types of the bus scenarios.
type (
	busCommand struct {
		ID string
		N  int
	}
	busEvent struct{ ID string }
	busPing  struct{ N int }
	busPong  struct{ N int }
	// busMarker shows, when it is handled, that every message enqueued
	// before it in the same queue has been handled.
	busMarker struct{ ID string }
)

// busEnv is a subtest's env with what its endpoints share.
type busEnv struct {
	*env
	topicPrefix string
	errorQueue  string

	markerSeq int
}

// busLeaf is leaf for a bus scenario; skip, if not empty, skips it.
func (s *suite) busLeaf(t *testing.T, name, skip string, body func(e *busEnv)) {
	t.Helper()
	s.leafUnless(t, name, skip, func(e *env) {
		body(&busEnv{env: e, topicPrefix: e.id + ".", errorQueue: e.name("error")})
	})
}

// options completes opts with the subtest's error queue, topic prefix and
// queue type, and, without a Delayer, a pipeline without deferral or
// delayed retries.
func (e *busEnv) options(opts bus.Options) bus.Options {
	if opts.ErrorQueue == "" {
		opts.ErrorQueue = e.errorQueue
	}
	if opts.TopicPrefix == "" {
		opts.TopicPrefix = e.topicPrefix
	}
	if opts.QueueType == "" {
		opts.QueueType = e.h.QueueType
	}
	return opts
}

// bus returns an endpoint whose queue is named after tag ("" for a
// send-only one), closed at the end of the subtest.
func (e *busEnv) bus(tag string, opts bus.Options) *bus.Bus {
	e.t.Helper()
	queue := ""
	if tag != "" {
		queue = e.name(tag)
		e.remember(queue)
	}
	e.remember(e.errorQueue)
	b, err := bus.New(e.tr, queue, e.options(opts))
	if err != nil {
		e.t.Fatalf("bus.New(%q): %v", queue, err)
	}
	e.t.Cleanup(func() {
		if err := e.bounded("Bus.Close", b.Close); err != nil {
			e.t.Errorf("cleanup: %v", err)
		}
	})
	return b
}

// start starts b, failing the subtest on error.
func (e *busEnv) start(b *bus.Bus) {
	e.t.Helper()
	if err := b.Start(e.ctx()); err != nil {
		e.t.Fatalf("Start of %q: %v", b.Queue(), err)
	}
}

// endpoint returns a started endpoint whose handlers hand what they receive
// to the returned channels: typed handlers for busCommand, busEvent, busPing and
// busPong, and one for markers.
func (e *busEnv) endpoint(tag string, opts bus.Options) (*bus.Bus, *busReceived) {
	e.t.Helper()
	b := e.bus(tag, opts)
	r := e.receiver(b)
	e.start(b)
	return b, r
}

// busReceived collects what an endpoint's handlers were given.
type busReceived struct {
	e       *busEnv
	b       *bus.Bus
	mu      sync.Mutex
	all     []busDelivery
	ch      chan busDelivery
	markers chan string
}

// busDelivery is one handled message.
type busDelivery struct {
	msg any
	in  bus.Incoming
	at  time.Time
}

func (e *busEnv) receiver(b *bus.Bus) *busReceived {
	r := &busReceived{e: e, b: b, ch: make(chan busDelivery, inboxCapacity), markers: make(chan string, inboxCapacity)}
	record := func(ctx context.Context, m any) {
		in, ok := bus.IncomingFrom(ctx)
		if !ok {
			e.t.Errorf("IncomingFrom of a handler's context: not ok")
		}
		d := busDelivery{msg: m, in: in, at: time.Now()}
		r.mu.Lock()
		r.all = append(r.all, d)
		r.mu.Unlock()
		r.ch <- d
	}
	busHandle(e, b, func(ctx context.Context, m busCommand) error { record(ctx, m); return nil })
	busHandle(e, b, func(ctx context.Context, m busEvent) error { record(ctx, m); return nil })
	busHandle(e, b, func(ctx context.Context, m busPing) error { record(ctx, m); return nil })
	busHandle(e, b, func(ctx context.Context, m busPong) error { record(ctx, m); return nil })
	busHandle(e, b, func(ctx context.Context, m busMarker) error { r.markers <- m.ID; return nil })
	return r
}

// busHandle registers h, failing the subtest on error.
func busHandle[T any](e *busEnv, b *bus.Bus, h func(context.Context, T) error, opts ...bus.HandlerOption) {
	e.t.Helper()
	if err := bus.Handle(b, h, opts...); err != nil {
		e.t.Fatalf("Handle: %v", err)
	}
}

// next returns the next message handled.
func (r *busReceived) next() busDelivery {
	r.e.t.Helper()
	return wait(r.e.env, r.ch, "a message handled by %q", r.b.Queue())
}

// drain sends a busMarker to the endpoint's queue from sender and returns what
// was handled before it, beyond what next took.
func (r *busReceived) drain(sender *bus.Bus) []busDelivery {
	r.e.t.Helper()
	r.e.markerSeq++
	id := fmt.Sprintf("marker-%d", r.e.markerSeq)
	if err := sender.Send(r.e.ctx(), r.b.Queue(), busMarker{ID: id}); err != nil {
		r.e.t.Fatalf("sending marker to %q: %v", r.b.Queue(), err)
	}
	for {
		got := wait(r.e.env, r.markers, "marker %q in %q", id, r.b.Queue())
		if got == id {
			break
		}
	}
	var out []busDelivery
	for {
		select {
		case d := <-r.ch:
			out = append(out, d)
		default:
			return out
		}
	}
}

// none checks that nothing more was handled, with a busMarker.
func (r *busReceived) none(sender *bus.Bus, why string) {
	r.e.t.Helper()
	if got := r.drain(sender); len(got) > 0 {
		r.e.t.Errorf("%s: %q handled %v", why, r.b.Queue(), describeHandled(got))
	}
}

func describeHandled(ds []busDelivery) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %+v", d.in.MessageType, d.msg))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ok fails the subtest if err is not nil.
func (e *busEnv) ok(err error, call string, args ...any) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", fmt.Sprintf(call, args...), err)
	}
}

// errorInbox consumes the subtest's error queue (which a started endpoint
// declared).
func (e *busEnv) errorInbox() *inbox {
	e.t.Helper()
	return e.inbox(e.errorQueue, transport.ConsumeOptions{})
}

// busHeader returns a busHeader of m as a string, "" if it is absent or not a
// string.
func busHeader(m *transport.Message, name string) string {
	s, _ := middleware.HeaderString(m.Headers[middleware.DefaultHeaderPrefix+"."+name])
	return s
}

// busErrorRetries reads the ErrorRetries busHeader.
func busErrorRetries(m *transport.Message) int64 {
	n, _, _ := middleware.HeaderInt(m.Headers[middleware.DefaultHeaderNames.ErrorRetries])
	return n
}

// busTypeName is the message type the bus gives v.
func busTypeName(e *busEnv, v any) string {
	n, err := bus.TypeName(v)
	if err != nil {
		e.t.Fatalf("TypeName(%T): %v", v, err)
	}
	return n
}

// errorsIs is is for a busEnv.
func (e *busEnv) is(err, target error, call string, args ...any) bool {
	e.t.Helper()
	return is(e.t, err, target, call, args...)
}

var errBusBoom = errors.New("boom")
