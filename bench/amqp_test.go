package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/internal/cputime"
	"github.com/busline/busline/transport"
)

// The columns, on the same node and queue type within one run:
//
//   - bus: package bus over busline's RabbitMQ transport: Send from a
//     send-only client through the direct exchange, mandatory and
//     confirmed; an endpoint with a typed handler, one message at a time,
//     prefetch 100, acking each;
//   - watermill: watermill-amqp v3 with the same message body, marshalled
//     to and from JSON by the caller as a Watermill user does.
//
// watermill-amqp publishes through the default exchange (its durable queue
// configuration), which costs the broker a little less than the bus's
// direct exchange.

var queueTypes = []transport.QueueType{transport.Classic, transport.Quorum}

// quiet silences the bus's log records, which would break the lines of the
// benchmarks' results.
var quiet = slog.New(slog.DiscardHandler)

// Payload encodes to a 256-byte JSON body with either library.
type Payload struct {
	Data string
}

// MessageType names Payload on the bus.
func (Payload) MessageType() string { return "bench.Payload" }

var payload = Payload{Data: strings.Repeat("x", 256-len(`{"Data":""}`))}

// meter marks the start of a measurement.
type meter struct {
	wall time.Time
	cpu  time.Duration
}

func startMeter() meter { return meter{time.Now(), cputime.Used()} }

// reportRate reports msg/s, which RabbitMQ bounds and other load on a
// shared machine lowers, and the client's CPU time per message
// (client-cpu-ns/msg: the process's user and system time, amqp091-go's
// included), which measures the library's own cost.
func reportRate(b *testing.B, start meter) {
	rate := float64(b.N) / time.Since(start.wall).Seconds()
	record(b, rate)
	b.ReportMetric(rate, "msg/s")
	if used := cputime.Used() - start.cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "client-cpu-ns/msg")
	}
}

// dial connects busline's transport to the node of `make bench`.
func dial(b *testing.B) *amqp.Transport {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, brokertest.URL(b), amqp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	return tr
}

// queueName returns a fresh queue name, the queue deleted when b ends.
func queueName(b *testing.B, tr *amqp.Transport) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	q := "bench-" + strings.ReplaceAll(b.Name(), "/", "-") + "-" + hex.EncodeToString(r[:])
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tr.DeleteQueue(ctx, q)
	})
	return q
}

// busQueue declares a fresh endpoint queue of type typ, bound to the
// bus's direct exchange under its name.
func busQueue(b *testing.B, tr *amqp.Transport, typ transport.QueueType) string {
	q := queueName(b, tr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: typ}}); err != nil {
		b.Fatal(err)
	}
	return q
}

// sender returns a send-only bus client on tr.
func sender(b *testing.B, tr *amqp.Transport) *bus.Bus {
	c, err := bus.New(tr, "", bus.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// watermillConfig is watermill-amqp v3's best durable, confirmed
// configuration for point-to-point messages to queue type typ: its
// durable queue configuration (persistent messages, durable queues, the
// default exchange, the topic as queue name and routing key), with
// ConfirmDelivery (Publish waits for the broker's confirm), Mandatory (the
// flag is sent; watermill-amqp never reads the returns) and a pool of
// channels as large as the number of concurrent publishers, opened once
// (without one it opens and closes a channel per Publish call).
func watermillConfig(b *testing.B, typ transport.QueueType, senders int) wmamqp.Config {
	cfg := wmamqp.NewDurableQueueConfig(brokertest.URL(b))
	cfg.Publish.ConfirmDelivery = true
	cfg.Publish.Mandatory = true
	cfg.Publish.ChannelPoolSize = senders
	cfg.Queue.Arguments = amqp091.Table{"x-queue-type": string(typ)}
	cfg.Consume.Qos.PrefetchCount = 100
	return cfg
}

// watermillPublisher returns a publisher for senders goroutines and
// declares queue q with watermill-amqp's own topology, as its subscriber
// would.
func watermillPublisher(b *testing.B, typ transport.QueueType, senders int, q string) *wmamqp.Publisher {
	cfg := watermillConfig(b, typ, senders)
	sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.SubscribeInitialize(q); err != nil {
		b.Fatal(err)
	}
	_ = sub.Close()
	pub, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	return pub
}

// publishWatermill marshals payload as the bus does and publishes it.
func publishWatermill(pub *wmamqp.Publisher, q string) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return pub.Publish(q, message.NewMessage(watermill.NewUUID(), body))
}

// BenchmarkSendSerial: one goroutine sends and waits for each confirm.
func BenchmarkSendSerial(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b)
			q := busQueue(b, tr, typ)
			c := sender(b, tr)
			parallel(b, 1, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := queueName(b, dial(b))
			pub := watermillPublisher(b, typ, 1, q)
			parallel(b, 1, func() error { return publishWatermill(pub, q) })
		})
	}
}

// BenchmarkSend64: 64 goroutines send, each waiting for its message's
// confirm, so that up to 64 confirms are in flight. watermill-amqp has a
// pool of 64 channels, one per goroutine.
func BenchmarkSend64(b *testing.B) {
	const senders = 64
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b)
			q := busQueue(b, tr, typ)
			c := sender(b, tr)
			parallel(b, senders, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := queueName(b, dial(b))
			pub := watermillPublisher(b, typ, senders, q)
			parallel(b, senders, func() error { return publishWatermill(pub, q) })
		})
	}
}

// parallel runs b.N calls of f from n goroutines and reports the rate.
func parallel(b *testing.B, n int, f func() error) {
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	start := startMeter()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := f(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	reportRate(b, start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// fill sends n messages with f from 64 goroutines, untimed.
func fill(b *testing.B, n int, f func() error) {
	b.StopTimer()
	defer b.StartTimer()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := f(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// BenchmarkConsume: b.N messages waiting in the queue, consumed with
// prefetch 100 by one handler at a time, each decoded from JSON and
// acked.
func BenchmarkConsume(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b)
			q := queueName(b, tr)
			errQueue := queueName(b, tr)
			ep, err := bus.New(tr, q, bus.Options{QueueType: typ, Prefetch: 100, ErrorQueue: errQueue, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer ep.Close()
			done := make(chan struct{})
			var n atomic.Int64
			if err := bus.Handle(ep, func(ctx context.Context, m Payload) error {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			// Declare the queue, then stop consuming while it fills.
			ctx := context.Background()
			if err := ep.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if err := ep.Pause(ctx); err != nil {
				b.Fatal(err)
			}
			c := sender(b, tr)
			fill(b, b.N, func() error { return c.Send(ctx, q, payload) })
			settleGC()
			b.ResetTimer()
			start := startMeter()
			if err := ep.Resume(ctx); err != nil {
				b.Fatal(err)
			}
			<-done
			reportRate(b, start)
			b.StopTimer()
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := queueName(b, dial(b))
			pub := watermillPublisher(b, typ, 64, q)
			fill(b, b.N, func() error { return publishWatermill(pub, q) })
			sub, err := wmamqp.NewSubscriber(watermillConfig(b, typ, 1), watermill.NopLogger{})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			settleGC()
			b.ResetTimer()
			start := startMeter()
			msgs, err := sub.Subscribe(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				m := <-msgs
				var p Payload
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					b.Fatal(err)
				}
				m.Ack()
			}
			reportRate(b, start)
			b.StopTimer()
		})
	}
}

// settleGC collects the garbage of filling the queue before a consume
// benchmark starts its meters, so that sweeping it is not charged to the
// consumer.
func settleGC() { runtime.GC() }
