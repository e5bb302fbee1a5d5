package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/benchkit"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// Benchmarks against the broker of `make bench`: persistent 256-byte
// messages, confirmed, on a classic and on a quorum queue. Each group has
// four columns, in one run on the same queue type:
//
//   - bus: package bus over this transport (Send from a send-only client;
//     an endpoint with a typed handler), JSON bodies of about 256 bytes;
//   - rawbus: amqp091-go publishing (or consuming) exactly what the bus
//     puts on the wire, PikaBus headers included: bus against rawbus is
//     the cost of busline itself, bus against raw includes the cost to
//     RabbitMQ of the PikaBus headers;
//   - transport: this package (Dispatch of a 1-message batch; Consume);
//   - raw: amqp091-go used directly, as well as it can be, publishing
//     what the transport publishes (persistent, mandatory, through the
//     same direct exchange, which costs the broker a little more than the
//     default exchange).
//
// The comparison with watermill-amqp v3 is in the nested module bench,
// which keeps Watermill out of this module's go.sum.
//
// Every benchmark reports msg/s and the client's and the RabbitMQ node's CPU
// time per message (see benchkit.Report).

var queueTypes = []transport.QueueType{transport.Classic, transport.Quorum}

var body = make([]byte, 256)

var payload = benchkit.Message

// capture records a copy of the first message a bus dispatches through it
// (the bus reuses its header map and body buffer once Dispatch returns).
type capture struct {
	*amqp.Transport
	mu  sync.Mutex
	out *transport.Outgoing
}

func (c *capture) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	c.mu.Lock()
	if c.out == nil && len(msgs) > 0 {
		m := msgs[0]
		m.Message.Headers = maps.Clone(m.Message.Headers)
		m.Message.Body = bytes.Clone(m.Message.Body)
		c.out = &m
	}
	c.mu.Unlock()
	return c.Transport.Dispatch(ctx, msgs...)
}

// busPublishing returns the message a bus Send of payload to q puts on the
// wire (PikaBus headers and properties), for raw amqp091-go to publish the
// same bytes; each copy gets its own message id.
func busPublishing(b *testing.B, tr *amqp.Transport, q string) func() amqp091.Publishing {
	c := &capture{Transport: tr}
	s, err := bus.New(c, "", bus.Options{Logger: benchkit.Quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(context.Background(), q, payload); err != nil {
		b.Fatal(err)
	}
	// Take the one message out of the queue again.
	if d, ok, err := tr.Get(context.Background(), q); err != nil || !ok {
		b.Fatalf("Get: %v %v", ok, err)
	} else {
		_ = d.Ack()
	}
	m := c.out.Message
	if len(m.Headers) == 0 {
		b.Fatal("the bus's message has no headers")
	}
	if len(m.Body) != len(body) {
		b.Fatalf("the bus's body has %d bytes, the other columns' %d", len(m.Body), len(body))
	}
	h := amqp091.Table{}
	for k, v := range m.Headers {
		h[k] = v
	}
	return func() amqp091.Publishing {
		return amqp091.Publishing{
			Headers: h, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
			DeliveryMode: amqp091.Persistent, CorrelationId: m.CorrelationID, ReplyTo: m.ReplyTo,
			MessageId: nextID(), Timestamp: m.Timestamp, Type: m.Type, Body: m.Body,
		}
	}
}

// benchQueue declares a fresh queue on tr (bound to the direct exchange
// under its name; also reachable through the default exchange).
func benchQueue(b *testing.B, tr *amqp.Transport, typ transport.QueueType) string {
	q := queueName(b, tr)
	declare(b, tr, transport.Queue{Name: q, Type: typ})
	return q
}

func rawConn(b *testing.B) *amqp091.Connection {
	conn, err := amqp091.Dial(brokertest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}

func rawConfirmChannel(b *testing.B, conn *amqp091.Connection) *amqp091.Channel {
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	return ch
}

var rawMsg = amqp091.Publishing{DeliveryMode: amqp091.Persistent, MessageId: "m", Body: body}

// ids gives every message of a benchmark its own id, as real senders do,
// for the transport and raw columns alike.
var ids atomic.Int64

func nextID() string { return strconv.FormatInt(ids.Add(1), 36) }

func transportMsg(q string) transport.Outgoing {
	return transport.Outgoing{RoutingKey: q, Mandatory: true, Message: transport.Message{ID: nextID(), Body: body}}
}

func rawPublishing() amqp091.Publishing {
	m := rawMsg
	m.MessageId = nextID()
	return m
}

// BenchmarkSendSerial: one goroutine sends and waits for each confirm.
func BenchmarkSendSerial(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			ctx := context.Background()
			start := benchkit.Start(b)
			for range b.N {
				if err := c.Send(ctx, q, payload); err != nil {
					b.Fatal(err)
				}
			}
			benchkit.Report(b, start)
		})
		b.Run("rawbus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			msg := busPublishing(b, tr, q)
			ch := rawConfirmChannel(b, rawConn(b))
			ctx := context.Background()
			start := benchkit.Start(b)
			for range b.N {
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, transport.DefaultDirectExchange, q, true, false, msg())
				if err != nil {
					b.Fatal(err)
				}
				if !dc.Wait() {
					b.Fatal("nack")
				}
			}
			benchkit.Report(b, start)
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			ctx := context.Background()
			start := benchkit.Start(b)
			for range b.N {
				if err := tr.Dispatch(ctx, transportMsg(q)); err != nil {
					b.Fatal(err)
				}
			}
			benchkit.Report(b, start)
		})
		b.Run("raw/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			ch := rawConfirmChannel(b, rawConn(b))
			ctx := context.Background()
			start := benchkit.Start(b)
			for range b.N {
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, transport.DefaultDirectExchange, q, true, false, rawPublishing())
				if err != nil {
					b.Fatal(err)
				}
				if !dc.Wait() {
					b.Fatal("nack")
				}
			}
			benchkit.Report(b, start)
		})
	}
}

// BenchmarkSend64: 64 messages in flight. The bus and the transport are
// called from 64 goroutines, each sending one message at a time; raw
// amqp091-go publishes from one goroutine on one channel and keeps 64
// confirms in flight.
func BenchmarkSend64(b *testing.B) {
	const inFlight = 64
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Parallel(b, inFlight, func() error { return c.Send(context.Background(), q, payload) })
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			benchkit.Parallel(b, inFlight, func() error { return tr.Dispatch(context.Background(), transportMsg(q)) })
		})
		b.Run("rawbus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			rawWindow(b, q, inFlight, busPublishing(b, tr, q))
		})
		b.Run("raw/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			rawWindow(b, q, inFlight, rawPublishing)
		})
	}
}

// rawWindow publishes b.N messages to q through the direct exchange from
// one goroutine on one channel, keeping n confirms in flight.
func rawWindow(b *testing.B, q string, n int, msg func() amqp091.Publishing) {
	rawWindowTo(b, transport.DefaultDirectExchange, q, n, msg)
}

// rawWindowTo is rawWindow to any exchange and routing key.
func rawWindowTo(b *testing.B, exchange, key string, n int, msg func() amqp091.Publishing) {
	ch := rawConfirmChannel(b, rawConn(b))
	start := benchkit.Start(b)
	if err := publishWindow(ch, exchange, key, n, b.N, msg); err != nil {
		b.Fatal(err)
	}
	benchkit.Report(b, start)
}

// publishWindow publishes count mandatory messages made by msg to exchange
// with routing key on ch, from one goroutine, keeping n confirms in flight,
// and waits for the last confirm; it fails on a nack.
func publishWindow(ch *amqp091.Channel, exchange, key string, n, count int, msg func() amqp091.Publishing) error {
	ctx := context.Background()
	window := make([]*amqp091.DeferredConfirmation, 0, n)
	for range count {
		if len(window) == n {
			if !window[0].Wait() {
				return errors.New("nack")
			}
			window = window[1:]
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg())
		if err != nil {
			return err
		}
		window = append(window, dc)
	}
	for _, dc := range window {
		if !dc.Wait() {
			return errors.New("nack")
		}
	}
	return nil
}

// BenchmarkSendQueues: raw amqp091-go, 64 confirms in flight in all, spread
// over 1, 2 or 4 queues of one type, each with its own connection, channel
// and goroutine keeping 64/k in flight. It measures how far one queue
// bounds the node: with one queue RabbitMQ keeps about one core busy
// however fast the client is (see the README's "Whose CPU time a message
// costs"); `make bench-rabbitmq` does not run it.
func BenchmarkSendQueues(b *testing.B) {
	const inFlight = 64
	for _, typ := range queueTypes {
		for _, k := range []int{1, 2, 4} {
			b.Run(strconv.Itoa(k)+"/"+string(typ), func(b *testing.B) {
				tr := dial(b, amqp.Options{})
				qs := make([]string, k)
				chs := make([]*amqp091.Channel, k)
				for i := range k {
					qs[i] = benchQueue(b, tr, typ)
					chs[i] = rawConfirmChannel(b, rawConn(b))
				}
				start := benchkit.Start(b)
				errs := make([]error, k)
				var wg sync.WaitGroup
				for i := range k {
					n := b.N / k
					if i == 0 {
						n += b.N % k
					}
					wg.Go(func() {
						errs[i] = publishWindow(chs[i], transport.DefaultDirectExchange, qs[i], inFlight/k, n, rawPublishing)
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					b.Fatal(err)
				}
				benchkit.Report(b, start)
			})
		}
	}
}

// preload fills q with n messages as fast as possible (not timed).
func preload(b *testing.B, q string, n int) {
	ch := rawConfirmChannel(b, rawConn(b))
	defer ch.Close()
	ctx := context.Background()
	window := make([]*amqp091.DeferredConfirmation, 0, 1000)
	for range n {
		if len(window) == cap(window) {
			window[0].Wait()
			window = window[1:]
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, rawMsg)
		if err != nil {
			b.Fatal(err)
		}
		window = append(window, dc)
	}
	for _, dc := range window {
		dc.Wait()
	}
}

// BenchmarkConsume: prefetch 100, every message acked one by one.
func BenchmarkConsume(b *testing.B) {
	for _, typ := range queueTypes {
		b.Run("bus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := queueName(b, tr)
			errQueue := queueName(b, tr)
			ep, err := bus.New(tr, q, bus.Options{QueueType: typ, Prefetch: 100, ErrorQueue: errQueue, Logger: benchkit.Quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer ep.Close()
			done := make(chan struct{})
			var n atomic.Int64
			if err := bus.Handle(ep, func(ctx context.Context, m benchkit.Payload) error {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			// Declare the queue, then stop consuming while it fills.
			if err := ep.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			if err := ep.Pause(context.Background()); err != nil {
				b.Fatal(err)
			}
			c := benchkit.Sender(b, tr)
			benchkit.Fill(b, b.N, func() error { return c.Send(context.Background(), q, payload) })
			benchkit.SettleGC()
			start := benchkit.Start(b)
			if err := ep.Resume(context.Background()); err != nil {
				b.Fatal(err)
			}
			<-done
			benchkit.Report(b, start)
			b.StopTimer()
		})
		b.Run("transport/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			preload(b, q, b.N)
			done := make(chan struct{})
			var n atomic.Int64
			benchkit.SettleGC()
			start := benchkit.Start(b)
			c, err := tr.Consume(context.Background(), q, transport.ConsumeOptions{Prefetch: 100}, func(ctx context.Context, d *transport.Delivery) {
				if err := d.Ack(); err != nil {
					b.Error(err)
				}
				if n.Add(1) == int64(b.N) {
					close(done)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			<-done
			benchkit.Report(b, start)
			b.StopTimer()
			_ = c.Close()
		})
		b.Run("rawbus/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			c := benchkit.Sender(b, tr)
			benchkit.Fill(b, b.N, func() error { return c.Send(context.Background(), q, payload) })
			rawConsume(b, q)
		})
		b.Run("raw/"+string(typ), func(b *testing.B) {
			tr := dial(b, amqp.Options{})
			q := benchQueue(b, tr, typ)
			preload(b, q, b.N)
			rawConsume(b, q)
		})
	}
}

// rawConsume consumes b.N messages of q with amqp091-go, prefetch 100,
// acking each.
func rawConsume(b *testing.B, q string) {
	ch, err := rawConn(b).Channel()
	if err != nil {
		b.Fatal(err)
	}
	benchkit.SettleGC()
	start := benchkit.Start(b)
	if err := ch.Qos(100, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		d := <-ds
		if err := d.Ack(false); err != nil {
			b.Fatal(err)
		}
	}
	benchkit.Report(b, start)
}
