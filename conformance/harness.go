package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// Harness describes the transport under test to the suites of this package.
// Only New is required; every other field has a documented default, so a
// Harness literal written today keeps compiling and meaning the same when
// fields are added.
type Harness struct {
	// New returns a new, open transport. The suites call it once per
	// subtest (and once more, first, to discover the transport's optional
	// capabilities), and close every transport it returns.
	//
	// Transports returned for one t must be connections to one broker: a
	// subtest may declare a queue with one and bind or publish to it with
	// another. Transports returned by different calls must not see each
	// other's topic routing: the routing subtests bind queues under patterns such as "#"
	// and expect a mandatory message that matches none of their own patterns
	// to be unroutable. On a shared broker, give each transport exchanges of
	// its own (for example the default names plus a random suffix) and
	// delete them in t.Cleanup. Queues need no such care: the suite names
	// every queue it declares uniquely.
	//
	// t is the subtest the transport is for; New may call t.Skip (for
	// example when no broker is reachable), t.Cleanup or t.Log. An error
	// fails the subtest.
	New func(ctx context.Context, t testing.TB) (transport.Transport, error)

	// Timeout bounds every wait of the suite: each call into the transport
	// and each wait for a delivery or an event. A wait that runs out fails
	// the subtest and says what it was waiting for. Zero means 10 seconds.
	Timeout time.Duration

	// QuietPeriod is how long the suite watches for something that must not
	// happen when nothing else can show its absence: a delivery beyond the
	// prefetch window or the concurrency limit, or Drain returning while a
	// handler still runs. A longer period catches more, never fails a
	// correct transport. Zero means 200 milliseconds.
	QuietPeriod time.Duration

	// DelayTolerance is how late a deferred message may enter its queue
	// after its NotBefore time and still pass. It is never early: a message
	// delivered before NotBefore always fails. Transports with coarse
	// scheduling (RabbitMQ's delay levels have a resolution of one second)
	// need more than precise ones. Zero means 2 seconds.
	DelayTolerance time.Duration

	// QueuePrefix starts the name of every queue the suite declares, so
	// that a shared broker's leftovers are easy to find. The rest of the
	// name is random, unique per subtest. Zero means "conformance".
	QueuePrefix string

	// QueueType is the type of the queues the suite declares, except where
	// a subtest needs a particular type. Empty means the transport's
	// default.
	QueueType transport.QueueType

	// Seed seeds the randomized subtests; each logs the seed it used. Zero
	// picks a new seed every run. Set it to repeat a failing run.
	Seed uint64

	// DeclareUnbound, if set, creates queue q on the broker of t's
	// transports (tr is one of them) the way PikaBus 1.x declares its
	// listener queue: durable, of type q.Type, and not bound on the direct
	// exchange (nor on any other). It must go to the broker directly, not
	// through tr.Declare, which binds. The Dispatch/UnboundQueue subtest,
	// which checks that Dispatch reaches such a queue (see
	// transport.Transport.Dispatch), needs it and skips without it.
	DeclareUnbound func(ctx context.Context, t testing.TB, tr transport.Transport, q transport.Queue) error

	// Bubble, if set, runs the body of every subtest (after its call to
	// t.Parallel), and the transports of that subtest are created inside
	// it. An in-memory transport sets it to [testing/synctest.Test],
	// so that every wait of the suite passes in fake time and every
	// goroutine the transport started must have ended when the subtest
	// does. The body never calls t.Run, t.Parallel or t.Deadline, and
	// subtests that skip do so before entering it; New should not skip
	// inside a bubble (synctest reports that as a pass).
	Bubble func(t *testing.T, body func(t *testing.T))

	// Unsupported declares what the transport cannot do: the names of
	// subtests as the package documentation lists them ("Consume/Prefetch"),
	// or of a group of them ("Settle"), each mapped to the reason. Those
	// subtests skip with the reason, so that a limit shows in the test
	// output instead of being hidden; every other subtest must pass. Nil
	// means the transport claims the whole contract.
	Unsupported map[string]string
}

// The defaults of the Harness fields.
const (
	defaultTimeout        = 10 * time.Second
	defaultQuietPeriod    = 200 * time.Millisecond
	defaultDelayTolerance = 2 * time.Second
	defaultQueuePrefix    = "conformance"
)

// withDefaults returns h with its zero fields set to their defaults.
func (h Harness) withDefaults() Harness {
	if h.Timeout <= 0 {
		h.Timeout = defaultTimeout
	}
	if h.QuietPeriod <= 0 {
		h.QuietPeriod = defaultQuietPeriod
	}
	if h.DelayTolerance <= 0 {
		h.DelayTolerance = defaultDelayTolerance
	}
	if h.QueuePrefix == "" {
		h.QueuePrefix = defaultQueuePrefix
	}
	return h
}
