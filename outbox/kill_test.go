//go:build unix

package outbox_test

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// killedOrder is the order at whose handling the child process kills
// itself on the memory broker: the third, so that two were handled
// completely before.
const killedOrder = "o2"

// A real process, killed with SIGKILL at each step of its unit of work (no
// deferred call runs, nothing is flushed, the operating system closes its
// files and connections), then another process recovers from the same
// database: each order has exactly one effect in orders and in billing,
// no OrderPlaced is lost, and the duplicates are absorbed by the inboxes.
//
// On RabbitMQ and PostgreSQL the broker delivers the unacked message again
// to the second process. On the memory broker and SQLite the broker dies
// with the process; what it held is what a durable broker would deliver
// again, so the second process's client sends every order again with its
// message id, as an at-least-once sender would, and the child makes sure
// that what it dispatched and marked before dying was handled (a durable
// broker would keep it; the memory broker loses it).
func TestProcessKilled(t *testing.T) {
	if os.Getenv("OUTBOX_CHILD_STEP") != "" {
		t.Skip("in the child process")
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			t.Run("memory+sqlite", func(t *testing.T) { killSQLite(t, step) })
			t.Run("rabbitmq+postgres", func(t *testing.T) { killPostgres(t, step) })
		})
	}
}

// runChild runs TestProcessKilledChild in a new process of this test
// binary and checks that it died of SIGKILL.
func runChild(t *testing.T, step string, env ...string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessKilledChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), append(env, "OUTBOX_CHILD_STEP="+step)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child did not die at step %s (%v):\n%s", step, err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child did not die of SIGKILL at step %s (%v):\n%s", step, err, out)
	}
}

func killSQLite(t *testing.T, step string) {
	w := memoryWorld(t)
	const n = 6
	runChild(t, step, "OUTBOX_CHILD_WORLD=sqlite", "OUTBOX_CHILD_PREFIX="+w.prefix, "OUTBOX_CHILD_DB="+w.path, fmt.Sprint("OUTBOX_CHILD_N=", n))

	// What the killed process left in the file.
	handled := []string{"o0", "o1", killedOrder}
	pending := 0
	switch step {
	case "business":
		handled = handled[:2] // its transaction rolled back
	case "committed", "dispatched":
		pending = 1 // its OrderPlaced, stored and not marked
	}
	if got := slices.Sorted(maps.Keys(w.effects("orders"))); !slices.Equal(got, handled) {
		t.Errorf("orders handled by the killed process: %v, want %v", got, handled)
	}
	ob := w.outbox()
	if p, err := ob.Pending(ctx); err != nil || p != pending {
		t.Errorf("%d messages pending after the kill (%v), want %d", p, err, pending)
	}

	// Another process: a new broker, the same database file.
	s := newShop(t, w)
	s.addOrders(t, ob, bus.Options{}, false)
	s.relay(t, ob)
	s.place(t, n)
	checkKilled(t, s, ob, n, step)
}

// checkKilled checks the second process's work; after a kill between the
// dispatch and the marking, OrderPlaced goes to billing again.
func checkKilled(t *testing.T, s *shop, ob *outbox.Outbox, n int, step string) {
	dups := s.check(t, ob, n)
	t.Logf("%d duplicate OrderPlaced deliveries absorbed by billing's inbox", dups)
	if step == "dispatched" && dups == 0 {
		t.Error("killed after the dispatch, and billing had no duplicate: the test tests nothing")
	}
}

func killPostgres(t *testing.T, step string) {
	w := rabbitWorld(t)
	s := newShop(t, w)
	must(t, w.transport("setup").Declare(ctx, transport.Topology{Queue: transport.Queue{Name: w.prefix + "orders", Type: transport.Classic}}))
	const n = 3
	s.place(t, n)
	runChild(t, step, "OUTBOX_CHILD_WORLD=postgres", "OUTBOX_CHILD_PREFIX="+w.prefix, "OUTBOX_CHILD_SCHEMA="+w.opts.Schema)
	// Another process takes over.
	ob := w.outbox()
	s.addOrders(t, ob, bus.Options{}, false)
	s.relay(t, ob)
	checkKilled(t, s, ob, n, step)
}

// TestProcessKilledChild is the process TestProcessKilled kills: an orders
// endpoint that sends itself SIGKILL at the step it is told.
func TestProcessKilledChild(t *testing.T) {
	step := os.Getenv("OUTBOX_CHILD_STEP")
	if step == "" {
		t.Skip("run by TestProcessKilled")
	}
	w := &world{t: t, prefix: os.Getenv("OUTBOX_CHILD_PREFIX")}
	var err error
	if os.Getenv("OUTBOX_CHILD_WORLD") == "sqlite" {
		w.db, err = sql.Open("sqlite", sqliteDSN(os.Getenv("OUTBOX_CHILD_DB")))
		w.db.SetMaxOpenConns(1)
		w.opts = outbox.Options{Dialect: outbox.SQLite}
		w.broker = memory.NewBroker()
	} else {
		w.db, err = sql.Open("pgx", os.Getenv("BUSLINE_POSTGRES_URL"))
		w.opts = outbox.Options{Dialect: outbox.Postgres, Schema: os.Getenv("OUTBOX_CHILD_SCHEMA")}
		w.qual = w.opts.Schema + "."
		w.url = os.Getenv("BUSLINE_AMQP_URL")
	}
	must(t, err)

	var s *shop
	if w.broker != nil {
		s = newShop(t, w) // billing, on the same broker
	} else {
		s = &shop{w: w}
	}
	// die kills the process at the order it is given, on RabbitMQ at the
	// first one.
	die := func(id string) {
		if w.broker != nil && id != killedOrder {
			return
		}
		if w.broker != nil && (step == "marked" || step == "dispatched") {
			// After "marked": its OrderPlaced was marked dispatched, a
			// durable broker would deliver it after the crash, the
			// memory broker dies. After "dispatched": billing has it,
			// so the relay's dispatch of it again is a duplicate for
			// certain, which billing's inbox must absorb.
			waitFor(t, "billing to handle "+id, func() bool { return w.effects("billing")[id] == 1 })
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	ob := w.outbox()
	outbox.SetCrash(ob, func(at, source string) error {
		if at == step {
			die(source[len("place-"):])
		}
		return nil
	})
	if step == "business" {
		s.afterWrite = die
	}
	s.addOrders(t, ob, bus.Options{}, false)
	if w.broker != nil {
		// The orders before killedOrder are handled completely, by
		// billing too, before it is sent, so that the memory broker
		// holds nothing of theirs when the process dies.
		client := w.bus(w.transport("client"), "", bus.Options{})
		var n int
		fmt.Sscan(os.Getenv("OUTBOX_CHILD_N"), &n)
		for i := range n {
			id := fmt.Sprintf("o%d", i)
			for range 2 {
				must(t, client.Send(ctx, "orders", PlaceOrder{ID: id}, bus.WithMessageID("place-"+id)))
			}
			if i < 2 { // the orders before killedOrder
				waitFor(t, "billing to handle "+id, func() bool { return w.effects("billing")[id] == 1 })
			}
		}
	}
	time.Sleep(2 * time.Minute)
	t.Fatalf("not killed at step %s after 2 minutes", step)
}
