package bus

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/busline/busline/transport"
)

// NoticeKind classifies a [Notice].
type NoticeKind uint8

// The kinds of [Notice].
const (
	// Started: Start declared the topology and the endpoint consumes.
	Started NoticeKind = iota + 1
	// Paused: Pause stopped consumption; handlers under way have finished.
	Paused
	// Resumed: Resume restarted consumption.
	Resumed
	// Stopping: Shutdown or Close began.
	Stopping
	// Stopped: the Bus stopped for good. It is the last event.
	Stopped
	// ConsumerLost: a consumer of the Bus (of its queue, or of its reply
	// queue) stopped without being asked to; Notice.Err says why. The
	// transport may restart it (ConsumerResumed follows); if not, Health
	// reports the failure.
	ConsumerLost
	// ConsumerResumed: a consumer of the Bus runs again after
	// ConsumerLost.
	ConsumerResumed
	// TransportChanged: the transport reported a change of its connection
	// (connected, disconnected, blocked, unblocked): Event.Transport.
	TransportChanged
	// Retried: a message's handling failed and a delayed retry was
	// scheduled (its copy is in the queue, due after Event.Delay).
	// Event.MessageID and MessageType say which message, Event.Err why,
	// Event.Retries which retry (1 for the first). Immediate retries are
	// not reported.
	Retried
	// SentToErrorQueue: a message failed for good (retries exhausted, a
	// permanent error, undecodable or unhandled) and was forwarded to the
	// error queue. Event.MessageID and MessageType say which message,
	// Event.Err why, Event.Retries how many delayed retries it had.
	SentToErrorQueue
	// ForwardFailed: a message's failure could not be dealt with: its
	// retry copy or its copy for the error queue (or a rescheduled
	// deferred message) could not be dispatched, because the broker
	// refuses publishes, the destination queue is gone, or the copy is
	// refused. The Bus holds the message for Event.Delay (its consumer
	// slowed meanwhile) and then gives it back to its queue, to be
	// delivered again; the hold doubles each time the same message comes
	// back, up to a minute. Event.MessageID and MessageType say which
	// message, Event.Err why (a *middleware.ForwardError), Event.Retries
	// how many times in a row this message could not be forwarded. If the
	// missing queue was the error queue, the Bus declared it again. Alert
	// on it: it repeats while the cause lasts.
	ForwardFailed
	// Suspended: [Options.HealthMonitor] reported the host unhealthy, and
	// the Bus stopped consuming its queue; the handlers under way have
	// finished (Notice.Err says if draining failed). Sends keep working.
	Suspended
	// Unsuspended: the host is healthy again, and the Bus consumes its
	// queue again (unless paused: then Resume starts it). Notice.Err says
	// if starting the consumer failed.
	Unsuspended
)

// String returns the kind's name, such as "started".
func (k NoticeKind) String() string {
	switch k {
	case Started:
		return "started"
	case Paused:
		return "paused"
	case Resumed:
		return "resumed"
	case Stopping:
		return "stopping"
	case Stopped:
		return "stopped"
	case ConsumerLost:
		return "consumer lost"
	case ConsumerResumed:
		return "consumer resumed"
	case TransportChanged:
		return "transport event"
	case Retried:
		return "retried"
	case SentToErrorQueue:
		return "sent to error queue"
	case ForwardFailed:
		return "forward failed"
	case Suspended:
		return "suspended"
	case Unsuspended:
		return "unsuspended"
	}
	return "unknown notice"
}

// Notice tells of a change in a Bus's life, given to [Options.OnNotice]:
// it started, paused or stopped, lost a consumer, the transport's
// connection changed, a message was retried or sent to the error queue.
// It is not a message: the events an application publishes are messages,
// handled by handlers.
type Notice struct {
	Kind NoticeKind
	// Time is when the Bus noticed the change.
	Time time.Time
	// Queue is the endpoint's queue, or for consumer events the queue of
	// the consumer concerned. For Retried and SentToErrorQueue it is the
	// queue the message failed in.
	Queue string
	// Err is the cause, for ConsumerLost, for Stopped after a Shutdown
	// that ran out of time, and for Retried and SentToErrorQueue the
	// handling error.
	Err error
	// Transport is the transport's event, for TransportChanged, and the one
	// that caused ConsumerLost or ConsumerResumed, if any.
	Transport transport.Event
	// MessageID and MessageType identify the message, for Retried and
	// SentToErrorQueue.
	MessageID, MessageType string
	// Retries is, for Retried, the number of the retry scheduled (1 for
	// the first); for SentToErrorQueue, the delayed retries the message
	// had (0 when it skipped them); for ForwardFailed, how many times in a
	// row the message could not be forwarded.
	Retries int
	// Delay is, for Retried, how long until the retry is due; for
	// ForwardFailed, how long the message is held before it goes back to
	// its queue.
	Delay time.Duration
}

// String describes the notice on one line, with the fields its kind uses:
// "retried: message 0192… (orders.PlaceOrder) in orders, retry 2 in 4s:
// gateway down".
func (e Notice) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.MessageID != "" || e.MessageType != "" {
		fmt.Fprintf(&b, ": message %s (%s)", e.MessageID, e.MessageType)
	}
	if e.Queue != "" {
		fmt.Fprintf(&b, " in %s", e.Queue)
	}
	switch e.Kind {
	case Retried:
		fmt.Fprintf(&b, ", retry %d in %v", e.Retries, e.Delay)
	case SentToErrorQueue:
		fmt.Fprintf(&b, " after %d retries", e.Retries)
	case ForwardFailed:
		fmt.Fprintf(&b, ", failed %d times in a row, held %v", e.Retries, e.Delay)
	case TransportChanged, ConsumerLost, ConsumerResumed:
		if e.Transport.Kind != 0 {
			fmt.Fprintf(&b, " (transport: %s)", e.Transport.Kind)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// events delivers events to OnNotice in order on a goroutine of its own, so
// that the callback may call the Bus (Health, Pause) without deadlocking on
// the caller that raised the event.
type events struct {
	f    func(Notice)
	mu   sync.Mutex
	q    []Notice
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newEvents(f func(Notice)) *events {
	if f == nil {
		return nil
	}
	e := &events{f: f, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go e.run()
	return e
}

func (e *events) emit(ev Notice) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *events) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		q := e.q
		e.q = nil
		e.mu.Unlock()
		for _, ev := range q {
			e.f(ev)
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-e.wake:
		case <-e.stop:
			e.mu.Lock()
			q := e.q
			e.q = nil
			e.mu.Unlock()
			for _, ev := range q {
				e.f(ev)
			}
			return
		}
	}
}

// close delivers the events queued so far and ends the goroutine.
func (e *events) close() {
	if e == nil {
		return
	}
	e.once.Do(func() { close(e.stop) })
	<-e.done
}
