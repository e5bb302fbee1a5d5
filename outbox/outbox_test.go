package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

var errCrash = errors.New("crash (injected)")

// shop is the tests' scenario: "orders" handles PlaceOrder, records the
// order and publishes OrderPlaced; "billing" subscribes to it and records
// a bill. Both use the outbox.
type shop struct {
	w       *world
	orders  *bus.Bus
	billing *bus.Bus
	// billed counts the deliveries of each OrderPlaced to billing,
	// duplicates included; bills counts the calls of its handler.
	billed counter
	bills  atomic.Int64
	// killed: an instance is stuck, holding a delivery: the broker is
	// never idle.
	killed bool
	// afterWrite, if set, is called by the orders handler right after its
	// business write, in its transaction, with the order's id.
	afterWrite func(id string)
}

// newShop starts billing and returns the shop; orders endpoints are added
// with addOrders.
func newShop(t testing.TB, w *world) *shop { return newShopOpts(t, w, bus.Options{}) }

// newShopOpts is newShop with billing's options.
func newShopOpts(t testing.TB, w *world, opts bus.Options) *shop {
	s := &shop{w: w}
	ob := w.outbox()
	count := func(ctx context.Context, u *bus.Unit) error {
		s.billed.add(u.Incoming.MessageID)
		return ob.UnitOfWork(ctx, u)
	}
	opts.UnitOfWork, opts.Subscriptions = count, []string{"orders.placed"}
	s.billing = w.bus(w.transport("billing"), "billing", opts)
	must(t, bus.Handle(s.billing, func(ctx context.Context, m OrderPlaced) error {
		s.bills.Add(1)
		return w.effect(ctx, "billing", m.ID)
	}))
	must(t, s.billing.Start(ctx))
	return s
}

// addOrders starts an orders endpoint on its own connection and outbox;
// failFirst, if set, makes the handler fail once per order after its write.
func (s *shop) addOrders(t testing.TB, ob *outbox.Outbox, opts bus.Options, failFirst bool) (*bus.Bus, transport.Transport) {
	w := s.w
	tr := w.transport("orders")
	opts.UnitOfWork = ob.UnitOfWork
	b := w.bus(tr, "orders", opts)
	var attempts counter
	must(t, bus.Handle(b, func(ctx context.Context, m PlaceOrder) error {
		if err := w.effect(ctx, "orders", m.ID); err != nil {
			return err
		}
		if s.afterWrite != nil {
			s.afterWrite(m.ID)
		}
		if err := b.Publish(ctx, "orders.placed", OrderPlaced{ID: m.ID}); err != nil {
			return err
		}
		if failFirst && attempts.add(m.ID) == 1 {
			return errCrash // after the business write and the publish
		}
		return nil
	}))
	must(t, b.Start(ctx))
	if s.orders == nil {
		s.orders = b
	}
	return b, tr
}

// relay runs ob's relay through orders' sender until the test ends:
// messages whose marking failed after their dispatch are dispatched again.
func (s *shop) relay(t testing.TB, ob *outbox.Outbox) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Relay(rctx, s.orders.Sender(), outbox.RelayOptions{Interval: 20 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// place sends n orders, each twice (a duplicate with the same message id),
// from a client of its own.
func (s *shop) place(t testing.TB, n int) {
	client := s.w.bus(s.w.transport("client"), "", bus.Options{})
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		for range 2 {
			must(t, client.Send(ctx, "orders", PlaceOrder{ID: id}, bus.WithMessageID("place-"+id)))
		}
	}
}

// check waits until every order had its effect in orders and billing, and
// checks that each had exactly one, that nothing is left pending, and
// returns the number of OrderPlaced deliveries billing's inbox absorbed:
// deliveries that did not reach its handler (a delivery whose handling
// failed before the handler ran counts too).
func (s *shop) check(t testing.TB, ob *outbox.Outbox, n int) int {
	t.Helper()
	w := s.w
	waitProgress(t, "every order's effects", 2*n, func() int {
		return w.distinctEffects("orders") + w.distinctEffects("billing")
	})
	waitFor(t, "no pending message in the outbox", func() bool {
		p, err := ob.Pending(ctx)
		return err == nil && p == 0
	})
	if w.broker != nil && !s.killed {
		must(t, w.broker.WaitIdle(ctx))
	}
	for _, ep := range []string{"orders", "billing"} {
		for id, c := range w.effects(ep) {
			if c != 1 {
				t.Errorf("%s: order %s had %d effects", ep, id, c)
			}
		}
	}
	deliveries := 0
	s.billed.mu.Lock()
	for _, c := range s.billed.n {
		deliveries += c
	}
	s.billed.mu.Unlock()
	return deliveries - int(s.bills.Load())
}

func TestExactlyOnce(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		s := newShop(t, w)
		ob := w.outbox()
		s.addOrders(t, ob, bus.Options{}, false)
		s.place(t, 20)
		s.check(t, ob, 20)
	})
}

// A crash at each step of the unit of work, once per message: the handling
// stops there, and the message is handled again (an immediate retry, as a
// redelivery would be: a new unit of work with the same message id on the
// database as the crash left it).
func TestCrashAtEveryStep(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		for _, step := range []string{"business", "committed", "dispatched", "marked"} {
			t.Run(step, func(t *testing.T) {
				w := *w
				w.prefix += step + "."
				s := newShop(t, &w)
				ob := w.outbox()
				var crashed sync.Map
				outbox.SetCrash(ob, func(at, source string) error {
					if at == step {
						if _, dup := crashed.LoadOrStore(source, true); !dup {
							return errCrash
						}
					}
					return nil
				})
				s.addOrders(t, ob, bus.Options{}, step == "business")
				s.place(t, 10)
				dups := s.check(t, ob, 10)
				if step == "dispatched" && dups == 0 {
					t.Error("a crash after the dispatch led to no duplicate downstream: the test tests nothing")
				}
				t.Logf("%d duplicate OrderPlaced deliveries absorbed by billing's inbox", dups)
			})
		}
	})
}

// A process killed at each step: its connection to the broker drops (the
// message goes back to its queue, to the other instance) and it never goes
// on. On the memory broker, in process; TestProcessKilled kills real
// processes.
func TestKilledAtEveryStep(t *testing.T) {
	for _, step := range []string{"committed", "dispatched", "marked"} {
		t.Run(step, func(t *testing.T) {
			w := memoryWorld(t)
			s := newShop(t, w)
			survivor := w.outbox()
			s.addOrders(t, survivor, bus.Options{}, false)
			dying := w.outbox()
			s.killed = true
			release := make(chan struct{})
			var once sync.Once
			// When the test ends and it is released, its retry copy
			// finds its connection down: no need to wait long.
			_, tr := s.addOrders(t, dying, bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(1), DispatchTimeout: time.Millisecond}}, false)
			t.Cleanup(func() { close(release) })
			outbox.SetCrash(dying, func(at, source string) error {
				if at != step {
					return nil
				}
				killed := false
				once.Do(func() { killed = true })
				if !killed {
					return nil
				}
				// Its connection drops: its unacked messages go back to
				// the queue, to the survivor. It never goes on.
				tr.(*memory.Transport).Disconnect()
				<-release
				return errCrash
			})
			s.place(t, 10)
			s.check(t, survivor, 10)
			t.Log("checked")
		})
	}
}
