package brokertest

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClusterURLs returns the URLs of the 3-node cluster that `make test`
// starts (scripts/rabbitmq-cluster.sh) from BUSLINE_AMQP_CLUSTER_URLS, node
// 1 first, once the cluster is up: the script starts it in the background,
// so the first caller may wait for it. Without the variable, or when the
// cluster could not start, it skips the test, or fails it when CI=true.
func ClusterURLs(t testing.TB) []string {
	t.Helper()
	urls := os.Getenv("BUSLINE_AMQP_CLUSTER_URLS")
	if urls == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_AMQP_CLUSTER_URLS is not set and CI=true: run the tests with `make test`, which starts a RabbitMQ cluster")
		}
		t.Skip("BUSLINE_AMQP_CLUSTER_URLS is not set: no RabbitMQ cluster to test against (`make test` starts one)")
	}
	if os.Getenv("BUSLINE_RABBITMQ_CLUSTER_CTL") != "" {
		cluster.once.Do(func() {
			cluster.out, cluster.err = runFor(10*time.Minute, os.Getenv("BUSLINE_RABBITMQ_CLUSTER_CTL"), "await")
		})
		if cluster.err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the RabbitMQ cluster could not start, and CI=true: %v\n%s", cluster.err, cluster.out)
			}
			t.Skipf("the RabbitMQ cluster could not start: %v\n%s", cluster.err, cluster.out)
		}
	}
	return strings.Split(urls, ",")
}

var cluster struct {
	once sync.Once
	out  []byte
	err  error
}

// ClusterControl runs scripts/rabbitmq-cluster.sh against the cluster:
// ClusterControl(t, "kill", "1"), ClusterControl(t, "freeze", "2"),
// ClusterControl(t, "ctl", "3", "stop_app"). It skips the test (fails it
// when CI=true) if the cluster was not started by the script. When t ends,
// passed or failed half way, every node is thawed, revived and started
// again (rabbitmq-cluster.sh heal). Tests that disrupt the cluster must not
// run in parallel with each other; nothing else uses the cluster.
func ClusterControl(t testing.TB, args ...string) []byte {
	t.Helper()
	script := os.Getenv("BUSLINE_RABBITMQ_CLUSTER_CTL")
	if script == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_RABBITMQ_CLUSTER_CTL is not set and CI=true: the cluster must be started by scripts/rabbitmq-cluster.sh")
		}
		t.Skip("BUSLINE_RABBITMQ_CLUSTER_CTL is not set: this test disrupts the cluster, which needs one started by scripts/rabbitmq-cluster.sh")
	}
	healing.mu.Lock()
	if !healing.registered[t] {
		if healing.registered == nil {
			healing.registered = map[testing.TB]bool{}
		}
		healing.registered[t] = true
		t.Cleanup(func() {
			healing.mu.Lock()
			delete(healing.registered, t)
			healing.mu.Unlock()
			// Reviving a node and waiting for the three to run again takes
			// minutes on a loaded machine (rabbitmqctl alone starts a VM).
			if out, err := runFor(8*time.Minute, script, "heal"); err != nil {
				t.Errorf("brokertest: the cluster could not be healed after %s: %v\n%s", t.Name(), err, out)
			}
		})
	}
	healing.mu.Unlock()
	out, err := run(script, args...)
	if err != nil {
		t.Fatalf("rabbitmq-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var healing struct {
	mu         sync.Mutex
	registered map[testing.TB]bool
}
