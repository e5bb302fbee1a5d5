package brokertest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// URL returns the broker address in BUSLINE_AMQP_URL. When it is unset, URL
// skips the test, or fails it when CI=true. It holds the broker steady for
// the rest of t, as [Shared] does: a test of another package that restarts
// the node waits until t ends.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("BUSLINE_AMQP_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_AMQP_URL is not set and CI=true: run the tests with `make test`, which starts RabbitMQ")
		}
		t.Skip("BUSLINE_AMQP_URL is not set: no RabbitMQ to test against (`make test` starts one)")
	}
	lock(t, shared)
	return url
}

// Control runs scripts/rabbitmq.sh against the node `make test` started:
// Control(t, "ctl", "stop_app"), Control(t, "kill"), Control(t, "revive").
// It skips the test (fails it when CI=true) if the node was not started by
// the script, for example when BUSLINE_AMQP_URL points at a shared broker.
//
// From its first Control call to its end, t holds the broker exclusively:
// tests of other packages that called [URL] or [Shared] are not running
// meanwhile, nor other tests of its own package (t waits for them; a test
// that calls Control must not run in parallel with tests that use the
// broker, except its own subtests).
// When t ends, passed or failed half way, the node is healed before the
// others run again: revived if it is down, its app started if stopped, its
// memory watermark reset and its alarms cleared (rabbitmq.sh heal).
func Control(t testing.TB, args ...string) {
	t.Helper()
	script := os.Getenv("BUSLINE_RABBITMQ_CTL")
	if script == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_RABBITMQ_CTL is not set and CI=true: the broker must be started by scripts/rabbitmq.sh")
		}
		t.Skip("BUSLINE_RABBITMQ_CTL is not set: this test restarts the broker, which needs a node started by scripts/rabbitmq.sh")
	}
	lock(t, exclusive)
	if out, err := run(script, args...); err != nil {
		t.Fatalf("rabbitmq.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// heal undoes what the tests that held the broker exclusively did to it.
func heal(t testing.TB) {
	script := os.Getenv("BUSLINE_RABBITMQ_CTL")
	if script == "" {
		return
	}
	if out, err := run(script, "heal"); err != nil {
		t.Errorf("brokertest: the node could not be healed after %s disrupted it: %v\n%s", t.Name(), err, out)
	}
}

func run(script string, args ...string) ([]byte, error) {
	return runFor(2*time.Minute, script, args...)
}

func runFor(timeout time.Duration, script string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return exec.CommandContext(ctx, script, args...).CombinedOutput()
}
