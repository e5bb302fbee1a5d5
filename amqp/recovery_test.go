package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// TestRecovery restarts the broker while thousands of messages flow, and
// checks that every confirmed message is consumed and that the consumer
// resumes by itself. Duplicates are allowed (at least once) and reported.
func TestRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the broker")
	}
	brokertest.URL(t)
	brokertest.Control(t, "ctl", "ping") // skips unless the node is ours to restart
	for _, tc := range []struct {
		name   string
		typ    transport.QueueType
		outage func(t *testing.T)
	}{
		{"stop_app/quorum", transport.Quorum, func(t *testing.T) {
			brokertest.Control(t, "ctl", "stop_app")
			time.Sleep(time.Second)
			brokertest.Control(t, "ctl", "start_app")
		}},
		{"kill/classic", transport.Classic, func(t *testing.T) {
			brokertest.Control(t, "kill")
			brokertest.Control(t, "revive")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testRecovery(t, tc.typ, tc.outage) })
	}
}

func testRecovery(t *testing.T, typ transport.QueueType, outage func(t *testing.T)) {
	// Messages flow before, during and after the outage: at least 6,000,
	// and at least 1,000 after the broker is back.
	const minTotal, maxTotal = 6000, 200000
	tr := dial(t, amqp.Options{ReconnectDelay: 50 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond, Heartbeat: 2 * time.Second})
	var disconnects, starts atomic.Int32
	stopWatch := tr.Watch(func(e transport.Event) {
		t.Logf("event at %s: %v %v", e.Time.Format("15:04:05.000"), e.Kind, e.Err)
		switch e.Kind {
		case transport.Disconnected:
			disconnects.Add(1)
		case transport.ConsumerStarted:
			starts.Add(1)
		}
	})
	defer stopWatch()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q, Type: typ})
	// A temporary queue dies with its connection: the transport declares it
	// again and its consumer resumes.
	temp := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: temp, Temporary: true})
	tempGot := collect(t, tr, temp, transport.ConsumeOptions{})

	var mu sync.Mutex
	seen := make(map[string]int, minTotal)
	var ackErrs atomic.Int32
	c, err := tr.Consume(testCtx(t, 10*time.Second), q, transport.ConsumeOptions{Concurrency: 8, Prefetch: 200}, func(ctx context.Context, d *transport.Delivery) {
		mu.Lock()
		seen[d.ID]++
		mu.Unlock()
		if err := d.Ack(); err != nil {
			if !errors.Is(err, transport.ErrConnectionLost) {
				t.Errorf("Ack: %v", err)
			}
			ackErrs.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var nextID, confirmedN, stopAt atomic.Int64
	stopAt.Store(maxTotal)
	confirmed := make([]atomic.Bool, maxTotal)
	var failures atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := nextID.Add(5) - 5
				if start >= stopAt.Load() {
					return
				}
				batch := make([]transport.Outgoing, 0, 5)
				for i := start; i < start+5; i++ {
					batch = append(batch, transport.Outgoing{RoutingKey: q, Mandatory: true,
						Message: transport.Message{ID: fmt.Sprint(i), Body: make([]byte, 256)}})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				err := tr.Dispatch(ctx, batch...)
				cancel()
				failedIdx := map[int]bool{}
				if err != nil {
					if n := failures.Add(1); n <= 3 {
						t.Logf("Dispatch failed (allowed, the message is not confirmed): %v", err)
					}
					for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
						var de *transport.DispatchError
						if errors.As(e, &de) {
							failedIdx[de.Index] = true
						}
					}
				}
				for k := range batch {
					if !failedIdx[k] {
						confirmed[start+int64(k)].Store(true)
						confirmedN.Add(1)
					}
				}
			}
		}()
	}

	deadline := time.Now().Add(60 * time.Second)
	for confirmedN.Load() < minTotal/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("outage after %d confirmed messages", confirmedN.Load())
	outage(t)
	t.Logf("broker back after %d messages dispatched", nextID.Load())
	stopAt.Store(max(minTotal, nextID.Load()+1000))
	wg.Wait()
	total := int(nextID.Load())
	t.Logf("all dispatched: %d confirmed, %d Dispatch calls failed", confirmedN.Load(), failures.Load())

	missing := func() (n int, first string) {
		mu.Lock()
		defer mu.Unlock()
		for i := range total {
			id := fmt.Sprint(i)
			if confirmed[i].Load() && seen[id] == 0 {
				if n == 0 {
					first = id
				}
				n++
			}
		}
		return n, first
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		n, first := missing()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d confirmed messages never consumed (the first: %s)", n, first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	dups, unconfirmedSeen := 0, 0
	for i := range total {
		n := seen[fmt.Sprint(i)]
		if n > 1 {
			dups += n - 1
		}
		if n > 0 && !confirmed[i].Load() {
			unconfirmedSeen++
		}
	}
	mu.Unlock()
	t.Logf("every confirmed message consumed; %d duplicate deliveries, %d consumed without a confirm, %d acks failed on a lost channel, %d disconnections, consumer started %d times",
		dups, unconfirmedSeen, ackErrs.Load(), disconnects.Load(), starts.Load())
	if confirmedN.Load() < int64(total)*9/10 {
		t.Errorf("only %d of %d messages confirmed within their 90 s", confirmedN.Load(), total)
	}
	if disconnects.Load() == 0 || starts.Load() < 4 { // two consumers, each started twice
		t.Errorf("the outage went unnoticed: %d disconnections, %d consumer starts", disconnects.Load(), starts.Load())
	}
	if err := tr.Dispatch(testCtx(t, 30*time.Second), transport.Outgoing{RoutingKey: temp, Mandatory: true, Message: transport.Message{ID: "temp"}}); err != nil {
		t.Fatalf("Dispatch to the temporary queue after recovery: %v", err)
	}
	if d := next(t, tempGot, 30*time.Second); d.ID != "temp" {
		t.Fatalf("temporary queue delivered %q", d.ID)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := tr.Health(testCtx(t, 5*time.Second))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Health after recovery: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
