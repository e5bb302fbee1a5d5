package brokertest_test

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/internal/brokertest"
)

// disruptEnv tells TestDisruptAndFail what to do to the node; TestHeal sets
// it for a child process.
const disruptEnv = "BUSLINE_BROKERTEST_DISRUPT"

// TestDisruptAndFail is run by TestHeal in a child process: it disrupts the
// node and fails without restoring it.
func TestDisruptAndFail(t *testing.T) {
	how := os.Getenv(disruptEnv)
	if how == "" {
		t.Skipf("run by TestHeal with %s set", disruptEnv)
	}
	switch how {
	case "stop_app":
		brokertest.Control(t, "ctl", "stop_app")
	case "kill":
		brokertest.Control(t, "kill")
	case "alarm":
		brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.0000001")
		// The memory monitor raises the alarm within a second or so.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(ctl(t, "eval", "rabbit_alarm:get_alarms()."), "memory") {
			if time.Now().After(deadline) {
				t.Log("no memory alarm within 10s")
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Fatal("disrupted the node, now failing without restoring it")
}

// TestHeal checks that a test that disrupts the node and fails half way
// leaves it serving, without alarms, to the tests that come after it.
// (A killed node is revived by the same script command that amqp's
// TestRecovery uses after its kill; it is left out here because a revival
// costs some 8 s of every test run's exclusive time.)
func TestHeal(t *testing.T) {
	if testing.Short() {
		t.Skip("disrupts the broker")
	}
	// This process must not hold the broker while the child disrupts it:
	// brokertest.URL would. They skip, or fail under CI=true, saying why.
	addr := os.Getenv("BUSLINE_AMQP_URL")
	if addr == "" {
		brokertest.URL(t)
	}
	if os.Getenv("BUSLINE_RABBITMQ_CTL") == "" {
		brokertest.Control(t)
	}
	for _, how := range []string{"stop_app", "alarm"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDisruptAndFail$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), disruptEnv+"="+how)
			out, err := cmd.CombinedOutput()
			if err == nil || !bytes.Contains(out, []byte("now failing without restoring it")) {
				t.Fatalf("the child test did not disrupt the node and fail (%v):\n%s", err, out)
			}
			// Checked holding the broker steady, as the next test would.
			t.Run("after", func(t *testing.T) {
				brokertest.Shared(t)
				if !serving(addr) {
					t.Errorf("after a test that did %s and failed, the node does not answer AMQP\n%s", how, out)
				}
				if alarms := ctl(t, "eval", "rabbit_alarm:get_alarms()."); strings.TrimSpace(alarms) != "[]" {
					t.Errorf("after a test that did %s and failed, the node has alarms %s", how, alarms)
				}
			})
		})
	}
}

// serving reports whether the broker at amqpURL answers the AMQP 0-9-1
// protocol header with a method frame (connection.start).
func serving(amqpURL string) bool {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return false
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return false
	}
	var frameType [1]byte
	_, err = c.Read(frameType[:])
	return err == nil && frameType[0] == 1
}

// ctl runs rabbitmqctl against the node, without taking the lock.
func ctl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, os.Getenv("BUSLINE_RABBITMQ_CTL"), append([]string{"ctl"}, args...)...).Output()
	if err != nil {
		t.Fatalf("rabbitmq.sh ctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
