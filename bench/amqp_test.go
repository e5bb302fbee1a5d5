package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchkit"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// The columns, on the same node and queue type within one run:
//
//   - bus: package bus over busline's RabbitMQ transport: Send from a
//     send-only client through the direct exchange, mandatory and
//     confirmed; an endpoint with a typed handler, one message at a time,
//     prefetch 100, acking each;
//   - watermill: watermill-amqp v3 with the same message body, marshalled
//     to and from JSON by the caller as a Watermill user does;
//   - watermill-busheaders (Send only): the same, with the bus's eleven
//     PikaBus headers as metadata, so that both put as much on the wire:
//     bus against it is busline's own part, bus against watermill also
//     holds what RabbitMQ charges for the headers of PikaBus's format.
//
// watermill-amqp publishes through the default exchange (its durable queue
// configuration), which costs the broker a little less than the bus's
// direct exchange.

var queueTypes = []transport.QueueType{transport.Classic, transport.Quorum}

// Payload is the message both libraries send.
type Payload = benchkit.Payload

var payload = benchkit.Message

// busQueue declares a fresh endpoint queue of type typ, bound to the
// bus's direct exchange under its name.
func busQueue(b *testing.B, tr *amqp.Transport, typ transport.QueueType) string {
	q := benchkit.QueueName(b, tr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: typ}}); err != nil {
		b.Fatal(err)
	}
	return q
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

// publishWatermillAs is publishWatermill with metadata md, which
// watermill-amqp sends as headers.
func publishWatermillAs(pub *wmamqp.Publisher, q string, md message.Metadata) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	m := message.NewMessage(watermill.NewUUID(), body)
	m.Metadata = maps.Clone(md)
	return pub.Publish(q, m)
}

// busMetadata returns the headers the bus sends with payload (PikaBus's
// wire format), as Watermill metadata: the watermill-busheaders column
// sends them, so that against it the bus's ratio is busline's own, with
// the cost to RabbitMQ of the larger header table on both sides.
func busMetadata(b *testing.B) message.Metadata {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q"}}); err != nil {
		b.Fatal(err)
	}
	s, err := bus.New(tr, "", bus.Options{Logger: benchkit.Quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(ctx, "q", payload); err != nil {
		b.Fatal(err)
	}
	d, ok, err := tr.Get(ctx, "q")
	if err != nil || !ok {
		b.Fatalf("Get: %v %v", ok, err)
	}
	md := message.Metadata{}
	for k, v := range d.Message.Headers {
		md[k] = fmt.Sprint(v)
	}
	if len(md) < 8 {
		b.Fatalf("the bus sent %d headers", len(md))
	}
	return md
}

// BenchmarkSendSerial: one goroutine sends and waits for each confirm.
func BenchmarkSendSerial(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := benchkit.Dial(b, amqp.Options{})
			q := busQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, 1, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := benchkit.QueueName(b, benchkit.Dial(b, amqp.Options{}))
			pub := watermillPublisher(b, typ, 1, q)
			benchkit.Parallel(b, 1, func() error { return publishWatermill(pub, q) })
		})
		b.Run("watermill-busheaders/"+string(typ), func(b *testing.B) {
			md := busMetadata(b)
			q := benchkit.QueueName(b, benchkit.Dial(b, amqp.Options{}))
			pub := watermillPublisher(b, typ, 1, q)
			benchkit.Parallel(b, 1, func() error { return publishWatermillAs(pub, q, md) })
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
			tr := benchkit.Dial(b, amqp.Options{})
			q := busQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, senders, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := benchkit.QueueName(b, benchkit.Dial(b, amqp.Options{}))
			pub := watermillPublisher(b, typ, senders, q)
			benchkit.Parallel(b, senders, func() error { return publishWatermill(pub, q) })
		})
		b.Run("watermill-busheaders/"+string(typ), func(b *testing.B) {
			md := busMetadata(b)
			q := benchkit.QueueName(b, benchkit.Dial(b, amqp.Options{}))
			pub := watermillPublisher(b, typ, senders, q)
			benchkit.Parallel(b, senders, func() error { return publishWatermillAs(pub, q, md) })
		})
	}
}

// BenchmarkConsume: b.N messages waiting in the queue, consumed with
// prefetch 100 by one handler at a time, each decoded from JSON and
// acked.
func BenchmarkConsume(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := benchkit.Dial(b, amqp.Options{})
			q := benchkit.QueueName(b, tr)
			errQueue := benchkit.QueueName(b, tr)
			ep, err := bus.New(tr, q, bus.Options{QueueType: typ, Prefetch: 100, ErrorQueue: errQueue, Logger: benchkit.Quiet})
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
			c := benchkit.Sender(b, tr)
			benchkit.Fill(b, b.N, func() error { return c.Send(ctx, q, payload) })
			benchkit.SettleGC()
			start := benchkit.Start(b)
			if err := ep.Resume(ctx); err != nil {
				b.Fatal(err)
			}
			<-done
			benchkit.Report(b, start)
			b.StopTimer()
		})
		b.Run("watermill/"+string(typ), func(b *testing.B) {
			q := benchkit.QueueName(b, benchkit.Dial(b, amqp.Options{}))
			pub := watermillPublisher(b, typ, 64, q)
			benchkit.Fill(b, b.N, func() error { return publishWatermill(pub, q) })
			sub, err := wmamqp.NewSubscriber(watermillConfig(b, typ, 1), watermill.NopLogger{})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			benchkit.SettleGC()
			start := benchkit.Start(b)
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
			benchkit.Report(b, start)
			b.StopTimer()
		})
	}
}
