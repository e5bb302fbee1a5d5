package clustertest_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/internal/brokertest"
)

// TestClusterHungNodeProbe shows which broker operations a hung node
// holds up, and for how long, with amqp091 alone (no busline code): node 1
// leads one quorum queue and node 2 another; node 1 is frozen (SIGSTOP)
// for BUSLINE_CLUSTER_FREEZE seconds (default 30); meanwhile each
// operation the consuming connection's recovery makes runs on a
// connection of its own to node 2 (basic.consume on the queue node 1 led
// is when a client can use that queue again), and node 2 reports when Ra
// elected another leader for it and when the queue's record (which
// channels route by) names it. It runs only with BUSLINE_CLUSTER_MEASURE=1
// and asserts nothing.
func TestClusterHungNodeProbe(t *testing.T) {
	if os.Getenv("BUSLINE_CLUSTER_MEASURE") != "1" {
		t.Skip("a measurement: set BUSLINE_CLUSTER_MEASURE=1")
	}
	freeze := 30 * time.Second
	if s := os.Getenv("BUSLINE_CLUSTER_FREEZE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("BUSLINE_CLUSTER_FREEZE=%q: %v", s, err)
		}
		freeze = time.Duration(n) * time.Second
	}
	urls := brokertest.ClusterURLs(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	q1, q2, x := "probe-n1-"+suffix, "probe-n2-"+suffix, "probe-x-"+suffix
	quorum := amqp091.Table{"x-queue-type": "quorum"}
	setup := func(url, q string) {
		c, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, quorum); err != nil {
			t.Fatal(err)
		}
		if err := ch.ExchangeDeclare(x, "topic", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q, "old", x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	setup(urls[0], q1)
	setup(urls[1], q2)
	defer func() {
		c, err := amqp091.Dial(urls[1])
		if err != nil {
			return
		}
		defer c.Close()
		ch, _ := c.Channel()
		_, _ = ch.QueueDelete(q1, false, false, false)
		_, _ = ch.QueueDelete(q2, false, false, false)
		_ = ch.ExchangeDelete(x, false, false)
	}()

	ops := []struct {
		name string
		f    func(ch *amqp091.Channel) error
	}{
		{"exchange.declare (exists)", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare(x, "topic", true, false, false, false, nil)
		}},
		{"exchange.declare (new)", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare(x+"-new", "topic", true, false, false, false, nil)
		}},
		{"queue.declare (exists, led by node 2)", func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare(q2, true, false, false, false, quorum)
			return err
		}},
		{"queue.declare (exists, led by hung node 1)", func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare(q1, true, false, false, false, quorum)
			return err
		}},
		{"queue.bind (exists, queue on node 2)", func(ch *amqp091.Channel) error {
			return ch.QueueBind(q2, "old", x, false, nil)
		}},
		{"queue.bind (new, queue on node 2)", func(ch *amqp091.Channel) error {
			return ch.QueueBind(q2, "new", x, false, nil)
		}},
		{"basic.qos", func(ch *amqp091.Channel) error { return ch.Qos(10, 0, false) }},
		{"basic.consume (led by node 2)", func(ch *amqp091.Channel) error {
			_, err := ch.Consume(q2, "", false, false, false, false, nil)
			return err
		}},
		{"basic.consume (led by hung node 1)", func(ch *amqp091.Channel) error {
			_, err := ch.Consume(q1, "", false, false, false, false, nil)
			return err
		}},
		{"queue.declare (new classic)", func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare(q2+"-tmp", false, true, false, false, nil)
			return err
		}},
	}
	type result struct {
		name string
		took time.Duration
		err  error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	conns := make([]*amqp091.Connection, len(ops))
	for i := range ops {
		c, err := amqp091.Dial(urls[1])
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	// The election, as node 2 sees it: when its Ra leaderboard names
	// another leader than node 1 for q1, and when q1's record (which
	// channels route by) does.
	node1 := strings.TrimSpace(string(brokertest.ClusterControl(t, "node", "1")))
	watch := fmt.Sprintf(`QN = rabbit_misc:r(<<"/">>, queue, <<"%s">>), Old = '%s',
		{ok, Q} = rabbit_amqqueue:lookup(QN),
		{Name, _} = amqqueue:get_pid(Q),
		Elected = fun() -> case ra_leaderboard:lookup_leader(Name) of {_, N} -> N =/= Old; _ -> false end end,
		Recorded = fun() -> case rabbit_amqqueue:lookup(QN) of {ok, Q1} -> element(2, amqqueue:get_pid(Q1)) =/= Old; _ -> false end end,
		Loop = fun L(N, E, R) ->
			Now = os:system_time(millisecond),
			E1 = case E of undefined -> case Elected() of true -> Now; false -> E end; _ -> E end,
			R1 = case R of undefined -> case Recorded() of true -> Now; false -> R end; _ -> R end,
			if E1 =/= undefined, R1 =/= undefined; N =:= 0 -> {elected, E1, recorded, R1};
			   true -> timer:sleep(50), L(N - 1, E1, R1) end end,
		Loop(2400, undefined, undefined).`, q1, node1)
	leader := make(chan string, 1)
	go func() {
		out, err := exec.Command(os.Getenv("BUSLINE_RABBITMQ_CLUSTER_CTL"), "ctl", "2", "eval", watch).CombinedOutput()
		leader <- fmt.Sprintf("%s %v", strings.TrimSpace(string(out)), err)
	}()
	time.Sleep(2 * time.Second) // the eval's VM starts
	brokertest.ClusterControl(t, "freeze", "1")
	frozen := time.Now()
	t.Logf("node 1 frozen for %v", freeze)
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ch, err := conns[i].Channel()
			if err == nil {
				err = op.f(ch)
			}
			mu.Lock()
			results = append(results, result{op.name, time.Since(start), err})
			mu.Unlock()
		}()
	}
	time.Sleep(freeze)
	brokertest.ClusterControl(t, "thaw", "1")
	t.Logf("node 1 thawed after %v", time.Since(frozen).Round(time.Millisecond))
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Log("some operations still blocked 30 s after the thaw")
	}
	mu.Lock()
	for _, r := range results {
		t.Logf("%-45s %8v  %v", r.name, r.took.Round(time.Millisecond), r.err)
	}
	mu.Unlock()
	saw := <-leader
	var elected, recorded int64
	if _, err := fmt.Sscanf(saw, "{elected,%d,recorded,%d}", &elected, &recorded); err == nil {
		t.Logf("node 2: Ra elected another leader %v after the freeze, the queue's record named it %v after",
			time.Duration(elected-frozen.UnixMilli())*time.Millisecond, time.Duration(recorded-frozen.UnixMilli())*time.Millisecond)
	} else {
		t.Logf("node 2's report: %s", saw)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}
