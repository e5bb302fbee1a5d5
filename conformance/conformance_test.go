package conformance_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/conformance"
	"github.com/busline/busline/internal/memtest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// brokenEnv tells TestBrokenTransport which breakage to run the suite
// against; TestSuiteBites sets it for a child process.
const brokenEnv = "BUSLINE_CONFORMANCE_BROKEN"

// broken wraps the memory transport, with all its capabilities, and breaks
// one rule of the contract.
type broken struct {
	*memory.Transport
	how string
}

func (b *broken) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	msgs = slices.Clone(msgs)
	for i := range msgs {
		switch b.how {
		case "ignore-mandatory":
			msgs[i].Mandatory = false
		case "deliver-early":
			msgs[i].NotBefore = time.Time{}
		}
	}
	return b.Transport.Dispatch(ctx, msgs...)
}

func (b *broken) Consume(ctx context.Context, queue string, opts transport.ConsumeOptions, h transport.Handler) (transport.Consumer, error) {
	if b.how == "drop-acks" {
		inner := h
		h = func(ctx context.Context, d *transport.Delivery) {
			d.Acknowledger = dropAcks{d.Acknowledger}
			inner(ctx, d)
		}
	}
	return b.Transport.Consume(ctx, queue, opts, h)
}

// dropAcks reports success for an Ack it never passes on.
type dropAcks struct{ transport.Acknowledger }

func (dropAcks) Ack(uint64) error { return nil }

// forever is never closed: a goroutine waiting on it is leaked.
var forever = make(chan struct{})

func harness(how string) conformance.Harness {
	h := conformance.Harness{
		New: func(_ context.Context, t testing.TB) (transport.Transport, error) {
			if how == "leak-goroutine" {
				go func() { <-forever }()
			}
			return &broken{Transport: memtest.New(t), how: how}, nil
		},
	}
	switch how {
	case "none":
		// The suite's own run in real time, as against a broker.
	case "leak-goroutine":
		// A bubble would panic on the leaked goroutine: run in real time,
		// with a short timeout for the goroutine check to give up.
		h.Timeout = time.Second
	default:
		// A broken transport fails waits; in a bubble they end at once.
		h.Bubble = synctest.Test
	}
	return h
}

// TestBrokenTransport is run by TestSuiteBites in a child process.
func TestBrokenTransport(t *testing.T) {
	how := os.Getenv(brokenEnv)
	if how == "" {
		t.Skipf("run by TestSuiteBites with %s set", brokenEnv)
	}
	conformance.RunTransport(t, harness(how))
}

// TestSuiteBites runs the suite against wrappers of the memory transport
// that each break one rule, and checks that the subtests for that rule
// fail, and that the unbroken wrapper passes.
func TestSuiteBites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite five times in child processes")
	}
	for _, tc := range []struct {
		how      string
		mustFail []string
	}{
		{"none", nil},
		{"drop-acks", []string{"Settle/Ack", "Consume/Prefetch", "Consume/Competing"}},
		{"ignore-mandatory", []string{"Routing/Direct", "Routing/Topic/star_not_empty", "Routing/Random",
			"Dispatch/Mandatory", "Bind/Unbind", "Capabilities/QueueDeleter"}},
		{"deliver-early", []string{"Deferral/NotBefore", "Deferral/Topic", "Deferral/MaxDelay"}},
		{"leak-goroutine", []string{"Close/Goroutines"}},
	} {
		t.Run(tc.how, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenTransport$", "-test.v", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), brokenEnv+"="+tc.how)
			out, err := cmd.CombinedOutput()
			failed := failedSubtests(string(out))
			if tc.mustFail == nil {
				if err != nil {
					t.Fatalf("the suite failed on the unbroken wrapper (%v); failed: %q\n%s", err, failed, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("the suite passed a transport that breaks %s\n%s", tc.how, out)
			}
			for _, name := range tc.mustFail {
				if !slices.Contains(failed, name) {
					t.Errorf("subtest %s did not fail for %s; failed: %q", name, tc.how, failed)
				}
			}
			t.Logf("%s failed %d subtests: %s", tc.how, len(failed), strings.Join(failed, " "))
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

var failLine = regexp.MustCompile(`--- FAIL: TestBrokenTransport/(\S+)`)

// failedSubtests lists the leaf and group subtests that -test.v reported
// as failed.
func failedSubtests(out string) []string {
	var names []string
	for _, m := range failLine.FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// withoutDelayer is the memory transport without the transport.Delayer
// capability: it refuses deferred messages, as the contract asks of a
// transport that cannot defer.
type withoutDelayer struct {
	transport.Transport
	transport.QueueDeleter
}

func (w withoutDelayer) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	for _, m := range msgs {
		if m.NotBefore.After(time.Now()) {
			return transport.ErrNotSupported
		}
	}
	return w.Transport.Dispatch(ctx, msgs...)
}

// TestWithoutDelayer runs both suites against a transport that is not a
// transport.Delayer: the subtests that need deferral skip, the others pass.
func TestWithoutDelayer(t *testing.T) {
	h := conformance.Harness{
		New: func(_ context.Context, t testing.TB) (transport.Transport, error) {
			m := memtest.New(t)
			return withoutDelayer{Transport: m, QueueDeleter: m}, nil
		},
		Bubble: synctest.Test,
	}
	t.Run("Transport", func(t *testing.T) { conformance.RunTransport(t, h) })
	t.Run("Bus", func(t *testing.T) { conformance.RunBus(t, h) })
}
