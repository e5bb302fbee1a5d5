package outbox_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
)

// steps are the points of a unit of work at which the tests inject
// faults: after the handler's business write (in its transaction), after
// the commit, after the dispatch of what it sent, after marking that
// dispatched (before the ack).
var steps = []string{"business", "committed", "dispatched", "marked"}

// faultAtEveryStep runs, at each step and in each world, the shop with
// the fault injected once per message at that step, and checks that each
// order still has exactly one effect in orders and in billing and that no
// OrderPlaced is lost.
func faultAtEveryStep(t *testing.T, setup func(w *world), fault func(w *world)) {
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			worlds(t, func(t *testing.T, w *world) {
				if setup != nil {
					setup(w)
				}
				s := newShop(t, w)
				ob := w.outbox()
				var once sync.Map
				var injected atomic.Int64
				inject := func(source string) {
					if _, dup := once.LoadOrStore(source, true); !dup {
						injected.Add(1)
						fault(w)
					}
				}
				outbox.SetCrash(ob, func(at, source string) error {
					if at == step {
						inject(source)
					}
					return nil
				})
				if step == "business" {
					s.afterWrite = func(id string) { inject("place-" + id) }
				}
				s.addOrders(t, ob, bus.Options{}, false)
				s.relay(t, ob)
				s.place(t, 5)
				dups := s.check(t, ob, 5)
				if n := injected.Load(); n != 5 {
					t.Errorf("%d faults injected at step %s, want one per order: 5", n, step)
				}
				t.Logf("%d duplicate OrderPlaced deliveries absorbed by billing's inbox", dups)
			})
		})
	}
}

// The connections to the broker drop at each step: on RabbitMQ a proxy
// cuts the TCP connections of every client (the broker requeues what was
// not acked), on the memory broker DropConnections. The dispatch waits
// for the connection to come back, the unacked message is delivered again
// and absorbed by the inbox.
func TestBrokerConnectionLost(t *testing.T) {
	faultAtEveryStep(t, (*world).cuttable, (*world).cutBroker)
}

// Every connection to the database is killed at each step: PostgreSQL's
// with pg_terminate_backend, SQLite's through its connector (the
// transaction under way rolls back, the next use fails with
// driver.ErrBadConn). The handling or the marking fails and is retried;
// what was dispatched and not marked is dispatched again by the relay.
func TestDatabaseConnectionLost(t *testing.T) {
	faultAtEveryStep(t, nil, (*world).killDatabase)
}
