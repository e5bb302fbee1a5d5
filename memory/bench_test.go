package memory

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// The end-to-end benchmarks move b.N messages of 256 bytes from one
// producer to one consumer that acks each: through the memory transport
// (Dispatch → handler → Ack) and, as the yardstick, through a bare Go
// channel whose consumer acks over a second channel. The prefetch window
// (the channels' capacity) is the same for both.
//
// The transport's producer keeps at most window messages in flight
// (dispatched and not yet acked), as the bus benchmarks do: a queue that
// grows as fast as the producer can fill it measures a backlog of hundreds of
// thousands of messages (and the page faults of a growing heap), whose size
// and cost grow with b.N, not a per-message cost. The bare channel needs no
// such bound (its capacity is one) and gets none: the yardstick stays bare.
// The flood variants keep the unbounded producer, for comparison.

// window bounds the messages the transport's producer has in flight.
const window = 256

func BenchmarkEndToEnd(b *testing.B) {
	for _, prefetch := range []int{1, 64} {
		b.Run(fmt.Sprintf("transport/prefetch=%d", prefetch), func(b *testing.B) {
			benchmarkTransport(b, prefetch, DefaultJournalLimit, window)
		})
		b.Run(fmt.Sprintf("transport-nojournal/prefetch=%d", prefetch), func(b *testing.B) {
			benchmarkTransport(b, prefetch, 0, window)
		})
		b.Run(fmt.Sprintf("transport-flood/prefetch=%d", prefetch), func(b *testing.B) {
			benchmarkTransport(b, prefetch, DefaultJournalLimit, 0)
		})
		b.Run(fmt.Sprintf("channel/prefetch=%d", prefetch), func(b *testing.B) {
			benchmarkChannel(b, prefetch)
		})
	}
}

// benchmarkTransport runs the transport's trip with at most inFlight
// messages dispatched and not acked; zero means no bound.
func benchmarkTransport(b *testing.B, prefetch, journal, inFlight int) {
	ctx := context.Background()
	tr := New(Options{})
	defer tr.Close()
	tr.Broker().SetJournalLimit(journal)
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "bench"}}); err != nil {
		b.Fatal(err)
	}
	n := int64(b.N)
	var acked atomic.Int64
	done := make(chan struct{})
	var slots chan struct{}
	if inFlight > 0 {
		slots = make(chan struct{}, inFlight)
	}
	_, err := tr.Consume(ctx, "bench", transport.ConsumeOptions{Prefetch: prefetch}, func(ctx context.Context, d *transport.Delivery) {
		if err := d.Ack(); err != nil {
			b.Error(err)
		}
		if slots != nil {
			<-slots
		}
		if acked.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if slots != nil {
			slots <- struct{}{}
		}
		if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "bench", Message: transport.Message{Body: body}}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time per message since start, in
// every goroutine, garbage collection included.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func benchmarkChannel(b *testing.B, prefetch int) {
	msgs := make(chan []byte, prefetch)
	acks := make(chan struct{}, prefetch)
	done := make(chan struct{})
	n := b.N
	go func() { // the consumer: receive, ack
		for m := range msgs {
			_ = m
			acks <- struct{}{}
		}
	}()
	go func() { // the ack side: count acks
		for range n {
			<-acks
		}
		close(done)
	}()
	body := make([]byte, 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		msgs <- body
	}
	<-done
	b.StopTimer()
	reportCPU(b, cpu)
	close(msgs)
}

// BenchmarkTopicRouting routes a routing key that five bindings match
// through a topic exchange with 10 and with 10,000 bindings: the cost must
// not grow with the bindings that do not match.
func BenchmarkTopicRouting(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			br := NewBroker()
			defer br.Close()
			if err := br.DeclareExchange("t", ExchangeTopic); err != nil {
				b.Fatal(err)
			}
			queues := min(n, 100)
			for i := range queues {
				if err := br.DeclareQueue(transport.Queue{Name: fmt.Sprint("q", i)}); err != nil {
					b.Fatal(err)
				}
			}
			patterns := []string{"svc7.*.created", "#.created", "svc7.#", "*.eu.*", "#.eu.#"}
			for i := len(patterns); i < n; i++ {
				switch i % 3 {
				case 0:
					patterns = append(patterns, fmt.Sprintf("f%d.*.created", i))
				case 1:
					patterns = append(patterns, fmt.Sprintf("*.r%d.#", i))
				case 2:
					patterns = append(patterns, fmt.Sprintf("f%d.#.shipped", i))
				}
			}
			for i, p := range patterns {
				if err := br.Bind("t", fmt.Sprint("q", i%queues), p); err != nil {
					b.Fatal(err)
				}
			}
			br.mu.Lock()
			defer br.mu.Unlock()
			ex := br.exchanges["t"]
			if got := len(br.routeLocked(ex, "svc7.eu.created")); got != 5 {
				b.Fatalf("routed to %d queues, want 5", got)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				br.routeLocked(ex, "svc7.eu.created")
			}
		})
	}
}
