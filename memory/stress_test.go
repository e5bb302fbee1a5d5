package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestStress runs producers and competing consumers on real goroutines
// while connections drop and consumers come and go, and checks that every
// message is acked at least once and none is left behind.
func TestStress(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	b.SetJournalLimit(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	trs := []*memory.Transport{
		memory.New(memory.Options{Broker: b, Name: "a"}),
		memory.New(memory.Options{Broker: b, Name: "b"}),
	}
	defer func() {
		for _, tr := range trs {
			tr.Close()
		}
	}()
	queues := []string{"q1", "q2"}
	for _, q := range queues {
		must(t, trs[0].Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic}, Topics: []string{"all.#"}}))
	}

	var mu sync.Mutex
	acked := map[string]int{}
	var later sync.WaitGroup // deliveries settled after their handler returned
	handler := func(seed uint64) transport.Handler {
		r := rand.New(rand.NewPCG(seed, 1))
		var rmu sync.Mutex
		return func(ctx context.Context, d *transport.Delivery) {
			rmu.Lock()
			n := r.IntN(10)
			rmu.Unlock()
			switch {
			case n == 0:
				_ = d.Nack(true) // may fail: the connection dropped
			case n == 1:
				later.Add(1)
				go func() { // settled later, by another goroutine
					defer later.Done()
					if d.Ack() == nil {
						mu.Lock()
						acked[d.Queue+"/"+d.ID]++
						mu.Unlock()
					}
				}()
			default:
				if d.Ack() == nil {
					mu.Lock()
					acked[d.Queue+"/"+d.ID]++
					mu.Unlock()
				}
			}
		}
	}
	var consumers []transport.Consumer
	var cmu sync.Mutex
	start := func(i int) {
		tr := trs[i%2]
		c, err := tr.Consume(ctx, queues[i%2], transport.ConsumeOptions{Concurrency: 1 + i%3, Prefetch: 1 + i%5}, handler(uint64(i)))
		if err != nil {
			t.Error(err)
			return
		}
		cmu.Lock()
		consumers = append(consumers, c)
		cmu.Unlock()
	}
	for i := range 6 {
		start(i)
	}

	const producers, perProducer = 4, 400
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				id := fmt.Sprintf("%d-%d", p, i)
				var err error
				if i%2 == 0 {
					err = trs[p%2].Dispatch(ctx, transport.Outgoing{RoutingKey: queues[i%4/2], Mandatory: true, Message: transport.Message{ID: id}})
				} else {
					err = trs[p%2].Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, RoutingKey: "all.x", Mandatory: true, Message: transport.Message{ID: id}})
				}
				if err != nil {
					t.Errorf("dispatch %s: %v", id, err)
					return
				}
			}
		}()
	}
	// Chaos while the producers run.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 30 {
			time.Sleep(time.Millisecond)
			switch i % 3 {
			case 0:
				b.DropConnections()
			case 1:
				trs[i%2].Disconnect()
				time.Sleep(time.Millisecond)
				trs[i%2].Reconnect()
			case 2:
				cmu.Lock()
				c := consumers[0]
				consumers = consumers[1:]
				cmu.Unlock()
				c.Close()
				start(i)
			}
		}
	}()
	wg.Wait()
	must(t, b.WaitIdle(ctx))
	later.Wait()

	mu.Lock()
	defer mu.Unlock()
	for p := range producers {
		for i := range perProducer {
			id := fmt.Sprintf("%d-%d", p, i)
			want := []string{queues[i%4/2]}
			if i%2 == 1 {
				want = queues
			}
			for _, q := range want {
				if acked[q+"/"+id] == 0 {
					t.Errorf("message %s never acked on %s", id, q)
				}
			}
		}
	}
	for _, q := range queues {
		if n := b.Depth(q); n != 0 {
			t.Errorf("%s holds %d messages", q, n)
		}
	}
}
