package protocodec_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/protocodec"
	"github.com/busline/busline/protocodec/orderspb"
	"github.com/busline/busline/transport"
)

func TestCodec(t *testing.T) {
	c := protocodec.Codec{}
	if !c.Encodes(&orderspb.OrderPlaced{}) || c.Encodes(OrderCancelled{}) || c.Encodes(nil) {
		t.Error("Encodes: want true for a generated message only")
	}
	var m transport.Message
	if err := c.Encode(OrderCancelled{}, &m); err == nil {
		t.Error("Encode of a Go struct = nil, want an error")
	}
	in := &orderspb.OrderPlaced{OrderId: "o-1", TotalCents: 42, Skus: []string{"a", "b"}}
	if err := c.Encode(in, &m); err != nil {
		t.Fatal(err)
	}
	if m.ContentType != protocodec.ContentType || m.ContentEncoding != "" {
		t.Errorf("content type %q, encoding %q; want %q and none", m.ContentType, m.ContentEncoding, protocodec.ContentType)
	}
	var direct orderspb.OrderPlaced
	if err := c.Decode(&m, &direct); err != nil || !proto.Equal(&direct, in) {
		t.Errorf("Decode into *OrderPlaced: %v, %v", &direct, err)
	}
	var ptr *orderspb.OrderPlaced // what Handle[*orderspb.OrderPlaced] decodes into
	if err := c.Decode(&m, &ptr); err != nil || !proto.Equal(ptr, in) {
		t.Errorf("Decode into **OrderPlaced: %v, %v", ptr, err)
	}
	for _, v := range []any{nil, OrderCancelled{}, &OrderCancelled{}, new(*OrderCancelled), (**orderspb.OrderPlaced)(nil)} {
		if err := c.Decode(&m, v); err == nil {
			t.Errorf("Decode into %T = nil, want an error", v)
		}
	}
	if err := c.Decode(&transport.Message{Body: []byte{0xff, 0xff}}, &ptr); err == nil {
		t.Error("Decode of a body that is not protobuf = nil, want an error")
	}
	if got := protocodec.MessageType(in); got != "busline.examples.orders.OrderPlaced" {
		t.Errorf("MessageType = %q", got)
	}
}

// TestSideBySide runs one endpoint that handles a protobuf event and a JSON
// event, over the memory broker and over RabbitMQ: each arrives with its
// content type in the property and the header, decoded by its own codec;
// a protobuf body that does not decode goes to the error queue without
// retries.
func TestSideBySide(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		tr := memory.New(memory.Options{})
		defer tr.Close()
		sideBySide(t, tr, "protocodec-memory")
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
		sideBySide(t, tr, "protocodec-amqp-"+bus.NewMessageID()[:8])
	})
}

func sideBySide(t *testing.T, tr transport.Transport, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := bus.Options{
		Codecs:        []bus.Codec{protocodec.Codec{}},
		QueuePrefix:   prefix + ".",
		TopicPrefix:   prefix + ".",
		Subscriptions: []string{"orders.#"},
		Logger:        slog.New(slog.DiscardHandler),
	}
	b, err := bus.New(tr, "warehouse", opts)
	if err != nil {
		t.Fatal(err)
	}
	if del, ok := tr.(transport.QueueDeleter); ok {
		defer func() {
			for _, q := range []string{b.Queue(), b.ErrorQueue()} {
				_ = del.DeleteQueue(context.Background(), q)
			}
		}()
	}
	placed := make(chan *orderspb.OrderPlaced, 1)
	cancelled := make(chan OrderCancelled, 1)
	if err := bus.Handle(b, func(_ context.Context, e *orderspb.OrderPlaced) error { placed <- e; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := bus.Handle(b, func(_ context.Context, e OrderCancelled) error { cancelled <- e; return nil }); err != nil {
		t.Fatal(err)
	}
	wire := make(chan transport.Message, 2)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	shop, err := bus.New(tr, "", bus.Options{Codecs: opts.Codecs, TopicPrefix: opts.TopicPrefix, QueuePrefix: opts.QueuePrefix, Logger: opts.Logger,
		DispatchMiddleware: []middleware.DispatchMiddleware{func(next middleware.Dispatcher) middleware.Dispatcher {
			return func(ctx context.Context, msgs ...transport.Outgoing) error {
				for _, o := range msgs {
					wire <- o.Message.Clone()
				}
				return next(ctx, msgs...)
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer shop.Close()
	want := &orderspb.OrderPlaced{OrderId: "o-1", TotalCents: 4200}
	if err := shop.Publish(ctx, "orders.placed", want); err != nil {
		t.Fatal(err)
	}
	if err := shop.Publish(ctx, "orders.cancelled", OrderCancelled{OrderID: "o-2"}); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{protocodec.ContentType, "application/json"} {
		m := <-wire
		if h, _ := middleware.HeaderString(m.Headers["PikaBus.ContentType"]); m.ContentType != ct || h != ct {
			t.Errorf("sent with content type %q (header %q), want %q", m.ContentType, h, ct)
		}
	}
	select {
	case got := <-placed:
		if !proto.Equal(got, want) {
			t.Errorf("handled %v, want %v", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the protobuf event was not handled")
	}
	select {
	case got := <-cancelled:
		if got.OrderID != "o-2" {
			t.Errorf("handled %+v", got)
		}
	case <-ctx.Done():
		t.Fatal("the JSON event was not handled")
	}

	// A body that is not protobuf: the error queue at once.
	typ, _ := bus.TypeName(want)
	bad := transport.Outgoing{Exchange: transport.Direct, RoutingKey: b.Queue(), Mandatory: true, Message: transport.Message{
		ID: "bad", ContentType: protocodec.ContentType, Body: []byte{0xff, 0xff},
		Headers: transport.Headers{"PikaBus.MessageType": typ},
	}}
	if err := tr.Dispatch(ctx, bad); err != nil {
		t.Fatal(err)
	}
	got := make(chan *transport.Delivery, 1)
	c, err := tr.Consume(ctx, b.ErrorQueue(), transport.ConsumeOptions{Prefetch: 1}, func(_ context.Context, d *transport.Delivery) {
		_ = d.Ack()
		got <- d
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case d := <-got:
		details, _ := middleware.HeaderString(d.Headers["PikaBus.ErrorDetails"])
		retries, _, _ := middleware.HeaderInt(d.Headers["PikaBus.ErrorRetries"])
		// ErrorRetries counts the one failed attempt: no retry was made.
		if d.ID != "bad" || retries != 1 || !strings.Contains(details, "protocodec") {
			t.Errorf("error queue got %q with ErrorRetries %d and details %q, want bad, one attempt, the codec's reason", d.ID, retries, details)
		}
	case <-ctx.Done():
		t.Fatal("the undecodable message did not reach the error queue")
	}
}
