package outbox_test

import (
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/outbox"
	"github.com/busline/busline/transport"
)

// A real process, killed at each step of its unit of work (os.Exit: no
// deferred call runs, the operating system closes its connections), on
// RabbitMQ and PostgreSQL: RabbitMQ delivers the message again to another
// process, which finishes the work, with exactly one effect and no message
// lost.
func TestProcessKilled(t *testing.T) {
	if os.Getenv("OUTBOX_CHILD_STEP") != "" {
		t.Skip("in the child process")
	}
	for _, step := range []string{"committed", "dispatched", "marked"} {
		t.Run(step, func(t *testing.T) {
			w := rabbitWorld(t)
			s := newShop(t, w)
			must(t, w.transport("setup").Declare(ctx, transport.Topology{Queue: transport.Queue{Name: w.prefix + "orders", Type: transport.Classic}}))
			s.place(t, 3)

			cmd := exec.Command(os.Args[0], "-test.run=^TestProcessKilledChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "OUTBOX_CHILD_STEP="+step, "OUTBOX_CHILD_PREFIX="+w.prefix, "OUTBOX_CHILD_SCHEMA="+w.opts.Schema)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 {
				t.Fatalf("the child did not die at step %s (%v):\n%s", step, err, out)
			}
			// Another process takes over.
			ob := w.outbox()
			s.addOrders(t, ob, bus.Options{}, false)
			s.check(t, ob, 3)
		})
	}
}

// TestProcessKilledChild is the process TestProcessKilled kills: an orders
// endpoint that exits at the step it is told.
func TestProcessKilledChild(t *testing.T) {
	step := os.Getenv("OUTBOX_CHILD_STEP")
	if step == "" {
		t.Skip("run by TestProcessKilled")
	}
	db, err := sql.Open("pgx", os.Getenv("BUSLINE_POSTGRES_URL"))
	must(t, err)
	w := &world{t: t, db: db, prefix: os.Getenv("OUTBOX_CHILD_PREFIX"), url: os.Getenv("BUSLINE_AMQP_URL"),
		opts: outbox.Options{Dialect: outbox.Postgres, Schema: os.Getenv("OUTBOX_CHILD_SCHEMA")}}
	w.qual = w.opts.Schema + "."
	ob := w.outbox()
	outbox.SetCrash(ob, func(at, source string) error {
		if at == step {
			os.Exit(3)
		}
		return nil
	})
	s := &shop{w: w}
	s.addOrders(t, ob, bus.Options{}, false)
	select {} // until it dies
}
