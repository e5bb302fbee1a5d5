package jsoncodec_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/jsoncodec"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// Order is a message of the shapes busline users send.
type Order struct {
	ID      string            `json:"id"`
	Note    string            `json:"note,omitempty"`
	Amount  float64           `json:"amount"`
	Units   int64             `json:"units"`
	At      time.Time         `json:"at"`
	Coupon  *string           `json:"coupon,omitempty"`
	Tags    []string          `json:"tags"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Extra   map[string]any    `json:"extra,omitempty"`
	Raw     json.RawMessage   `json:"raw,omitempty"`
	Lines   []Line            `json:"lines,omitempty"`
	Any     any               `json:"any"`
	Private string            `json:"-"`
}

// Line is nested in Order.
type Line struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty,omitempty"`
}

// TestWire sends from an endpoint with jsoncodec.JSON to one with the
// default bus.JSON and back: the messages decode to what was sent.
func TestWire(t *testing.T) {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	coupon := "<b>Zürich & 東京</b>"
	want := Order{ID: "o-1", Note: "bad \xff utf-8 ", Amount: 12.5, Units: math.MaxInt64, At: time.Date(2026, 12, 3, 13, 0, 0, 1, time.UTC),
		Coupon: &coupon, Tags: []string{"a", "é"}, Attrs: map[string]string{"b": "1", "a": "2"}, Raw: json.RawMessage(`{"k":[1,2]}`),
		Lines: []Line{{SKU: "s", Qty: 2}}}
	wantDecoded := want
	wantDecoded.Note = "bad \ufffd utf-8 "

	for _, c := range []struct {
		name     string
		from, to bus.Codec
	}{{"jsoncodec to bus.JSON", jsoncodec.JSON, bus.JSON}, {"bus.JSON to jsoncodec", bus.JSON, jsoncodec.JSON}} {
		t.Run(c.name, func(t *testing.T) {
			got := make(chan Order, 1)
			receiver, err := bus.New(tr, "receiver", bus.Options{Codec: c.to})
			if err != nil {
				t.Fatal(err)
			}
			if err := bus.Handle(receiver, func(ctx context.Context, o Order) error {
				got <- o
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := receiver.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer receiver.Close()
			sender, err := bus.New(tr, "sender", bus.Options{Codec: c.from})
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			if err := sender.Send(ctx, "receiver", want); err != nil {
				t.Fatal(err)
			}
			o := <-got
			if !o.At.Equal(wantDecoded.At) {
				t.Errorf("At = %v, want %v", o.At, wantDecoded.At)
			}
			o.At = wantDecoded.At
			if !reflect.DeepEqual(o, wantDecoded) {
				t.Errorf("received\n%+v\nwant\n%+v", o, wantDecoded)
			}
		})
	}
}

// TestEncodeSameAsJSON checks the properties and body Encode writes
// against bus.JSON's.
func TestEncodeSameAsJSON(t *testing.T) {
	var got, want transport.Message
	v := Order{ID: "<&>", Tags: []string{"\u2028"}, Extra: map[string]any{"z": 1.0, "a": []any{nil, "x"}}}
	if err := jsoncodec.JSON.Encode(v, &got); err != nil {
		t.Fatal(err)
	}
	if err := bus.JSON.Encode(v, &want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Body, want.Body) || got.ContentType != want.ContentType || got.ContentEncoding != want.ContentEncoding {
		t.Errorf("Encode wrote %q %q %q, bus.JSON %q %q %q", got.Body, got.ContentType, got.ContentEncoding, want.Body, want.ContentType, want.ContentEncoding)
	}
	if ct := jsoncodec.JSON.ContentType(); ct != bus.JSON.ContentType() {
		t.Errorf("ContentType() = %q, bus.JSON's is %q", ct, bus.JSON.ContentType())
	}
}

// TestErrors checks that what encoding/json refuses, the codec refuses.
func TestErrors(t *testing.T) {
	var m transport.Message
	for _, v := range []any{math.NaN(), math.Inf(-1), make(chan int), Order{Raw: json.RawMessage(`{`)}} {
		if err := jsoncodec.JSON.Encode(v, &m); err == nil {
			t.Errorf("Encode(%#v) succeeded with %q", v, m.Body)
		}
	}
	for _, body := range []string{``, `{`, `{"id":1}`, `{} x`, `[`, `{"units":1.5}`} {
		var o Order
		if err := jsoncodec.JSON.Decode(&transport.Message{Body: []byte(body)}, &o); err == nil {
			t.Errorf("Decode(%q) succeeded: %+v", body, o)
		}
	}
}

func ExampleJSON() {
	ctx := context.Background()
	t := memory.New(memory.Options{}) // RabbitMQ in production: amqp.Dial(...)
	defer t.Close()

	b, err := bus.New(t, "shipping", bus.Options{Codec: jsoncodec.JSON})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan struct{})
	if err := bus.Handle(b, func(ctx context.Context, o Order) error {
		fmt.Println("shipping", o.ID, o.Lines[0].SKU)
		close(done)
		return nil
	}); err != nil {
		fmt.Println(err)
		return
	}
	if err := b.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer b.Shutdown(ctx)

	if err := b.Send(ctx, "shipping", Order{ID: "o-1", Lines: []Line{{SKU: "tea"}}}); err != nil {
		fmt.Println(err)
	}
	<-done
	// Output:
	// shipping o-1 tea
}
