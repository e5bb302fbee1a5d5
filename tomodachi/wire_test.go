package tomodachi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/protocodec/orderspb"
	"github.com/busline/busline/tomodachi"
	"github.com/busline/busline/transport"
)

// tomodachiSide plays a tomodachi service on a broker: it declares and binds
// its handlers' queues and publishes as tomodachi's AmqpTransport does.
type tomodachiSide interface {
	// subscribe declares the queue of a handler of routingKey (durable,
	// classic, x-expires a day) bound on amq.topic, and returns its name.
	subscribe(t *testing.T, routingKey string) string
	// publish publishes body on amq.topic under routingKey, with no
	// properties.
	publish(t *testing.T, routingKey string, body []byte)
	// get returns the next message of queue, waiting for it.
	get(t *testing.T, queue string) transport.Message
}

// TestWithTomodachi runs a busline endpoint with a tomodachi service, in
// both envelopes, on the memory broker and on RabbitMQ (the tomodachi side
// speaking AMQP directly, as tomodachi does): what the service publishes
// reaches typed handlers, and what the endpoint publishes reaches the
// service's queue in the service's envelope.
func TestWithTomodachi(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		br := memory.NewBroker()
		defer br.Close()
		tr := memory.New(memory.Options{Broker: br})
		defer tr.Close()
		withTomodachi(t, tr, memorySide{br})
	})
	t.Run("amqp", func(t *testing.T) {
		url := brokertest.URL(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tr, err := amqp.Dial(ctx, url, amqp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		withTomodachi(t, tr, &amqpSide{ch: ch})
	})
}

func withTomodachi(t *testing.T, tr transport.Transport, py tomodachiSide) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r [4]byte
	_, _ = rand.Read(r[:])
	prefix := "tomodachi-" + hex.EncodeToString(r[:]) + "." // tomodachi's routing_key_prefix, one per run
	jsonEnv := tomodachi.JSONEnvelope{Service: tomodachi.NewService("inventory")}
	protoEnv := tomodachi.ProtobufEnvelope{Service: jsonEnv.Service}
	opts := bus.Options{
		QueuePrefix: prefix,
		Exchanges: []bus.Exchange{
			{Name: tomodachi.DefaultExchange, TopicPrefix: prefix, Codec: jsonEnv, Subscriptions: []string{"order.created"}},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	b, err := bus.New(tr, "inventory", opts)
	if err != nil {
		t.Fatal(err)
	}
	if del, ok := tr.(transport.QueueDeleter); ok {
		defer func() {
			_ = del.DeleteQueue(context.Background(), b.Queue())
			_ = del.DeleteQueue(context.Background(), b.ErrorQueue())
		}()
	}
	created := make(chan OrderCreated, 1)
	if err := bus.Handle(b, func(_ context.Context, o OrderCreated) error { created <- o; return nil },
		bus.WithMessageType("order.created")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// The protobuf envelope on another endpoint, PerInstance
	// (competing=False).
	pb, err := bus.New(tr, "inventory-proto", bus.Options{QueuePrefix: prefix, PerInstance: true, Logger: opts.Logger,
		Exchanges: []bus.Exchange{{Name: tomodachi.DefaultExchange, TopicPrefix: prefix, Codec: protoEnv, Subscriptions: []string{"order.placed"}}}})
	if err != nil {
		t.Fatal(err)
	}
	placed := make(chan *orderspb.OrderPlaced, 1)
	if err := bus.Handle(pb, func(_ context.Context, o *orderspb.OrderPlaced) error { placed <- o; return nil },
		bus.WithMessageType("order.placed")); err != nil {
		t.Fatal(err)
	}
	if err := pb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer pb.Close()

	shop := tomodachi.Service{Name: "shop", UUID: "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"}
	var m transport.Message
	if err := (tomodachi.JSONEnvelope{Service: shop}).EncodeTopic(OrderCreated{OrderID: "o-1", SKU: "tea"}, "order.created", &m); err != nil {
		t.Fatal(err)
	}
	py.publish(t, prefix+"order.created", m.Body)
	select {
	case o := <-created:
		if o.OrderID != "o-1" || o.SKU != "tea" {
			t.Errorf("handled %+v", o)
		}
	case <-ctx.Done():
		t.Fatal("the JSON-enveloped event was not handled")
	}
	want := &orderspb.OrderPlaced{OrderId: "o-2", TotalCents: 4200}
	if err := (tomodachi.ProtobufEnvelope{Service: shop}).EncodeTopic(want, "order.placed", &m); err != nil {
		t.Fatal(err)
	}
	py.publish(t, prefix+"order.placed", m.Body)
	select {
	case o := <-placed:
		if !proto.Equal(o, want) {
			t.Errorf("handled %v, want %v", o, want)
		}
	case <-ctx.Done():
		t.Fatal("the protobuf-enveloped event was not handled")
	}

	// Back to the service, in its envelopes.
	q := py.subscribe(t, prefix+"stock.reserved")
	if err := b.Publish(ctx, "stock.reserved", StockReserved{OrderID: "o-1"}, bus.WithExchange(tomodachi.DefaultExchange), bus.WithRequireSubscriber(true)); err != nil {
		t.Fatal(err)
	}
	got := py.get(t, q)
	var e tomodachi.Envelope
	if err := (tomodachi.JSONEnvelope{}).Decode(&got, &e); err != nil {
		t.Fatal(err)
	}
	if e.Metadata.Topic != "stock.reserved" || e.Service != jsonEnv.Service || string(e.Data) != `{"order_id":"o-1"}` {
		t.Errorf("the service got %+v, data %s", e, e.Data)
	}
	if err := pb.Publish(ctx, "stock.reserved", &orderspb.StockReserved{OrderId: "o-2", Complete: true}, bus.WithExchange(tomodachi.DefaultExchange)); err != nil {
		t.Fatal(err)
	}
	got = py.get(t, q)
	var sr *orderspb.StockReserved
	if err := (tomodachi.ProtobufEnvelope{}).Decode(&got, &sr); err != nil || sr.GetOrderId() != "o-2" || !sr.GetComplete() {
		t.Errorf("the service got %v, %v", sr, err)
	}
}

type memorySide struct{ br *memory.Broker }

func (s memorySide) subscribe(t *testing.T, routingKey string) string {
	q := tomodachi.QueueName(routingKey, "handler", "", true, "")
	if err := s.br.DeclareQueue(transport.Queue{Name: q, Type: transport.Classic, Arguments: transport.Headers{"x-expires": int32(86400000)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.br.DeleteQueue(q) })
	if err := s.br.Bind(tomodachi.DefaultExchange, q, tomodachi.EncodeRoutingKey(routingKey)); err != nil {
		t.Fatal(err)
	}
	return q
}

func (s memorySide) publish(t *testing.T, routingKey string, body []byte) {
	if err := s.br.Publish(tomodachi.DefaultExchange, tomodachi.EncodeRoutingKey(routingKey), transport.Message{Body: body}, memory.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s memorySide) get(t *testing.T, queue string) transport.Message {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.br.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	ms := s.br.Messages(queue)
	if len(ms) == 0 {
		t.Fatalf("no message in %q", queue)
	}
	_, _ = s.br.PurgeQueue(queue)
	return ms[0]
}

// amqpSide speaks AMQP as tomodachi's AmqpTransport does (aioamqp there).
type amqpSide struct{ ch *amqp091.Channel }

func (s *amqpSide) subscribe(t *testing.T, routingKey string) string {
	q := tomodachi.QueueName(routingKey, "handler", "", true, "")
	if _, err := s.ch.QueueDeclare(q, true, false, false, false, amqp091.Table{"x-expires": int32(86400000)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.ch.QueueDelete(q, false, false, false) })
	if err := s.ch.QueueBind(q, tomodachi.EncodeRoutingKey(routingKey), tomodachi.DefaultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

func (s *amqpSide) publish(t *testing.T, routingKey string, body []byte) {
	err := s.ch.PublishWithContext(context.Background(), tomodachi.DefaultExchange, tomodachi.EncodeRoutingKey(routingKey), false, false,
		amqp091.Publishing{Body: body})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *amqpSide) get(t *testing.T, queue string) transport.Message {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d, ok, err := s.ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return transport.Message{Body: d.Body, ContentType: d.ContentType}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message in %q", queue)
	return transport.Message{}
}
