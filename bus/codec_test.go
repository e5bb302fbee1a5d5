package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// bytesCodec carries []byte bodies as they are.
type bytesCodec struct{}

func (bytesCodec) ContentType() string { return "application/octet-stream" }

func (bytesCodec) Encode(v any, m *transport.Message) error {
	b, ok := v.(Blob)
	if !ok {
		return fmt.Errorf("bytesCodec encodes Blob, not %T", v)
	}
	m.Body, m.ContentType = append([]byte(nil), b...), "application/octet-stream"
	return nil
}

func (bytesCodec) Decode(m *transport.Message, v any) error {
	p, ok := v.(*Blob)
	if !ok {
		return fmt.Errorf("bytesCodec decodes into *Blob, not %T", v)
	}
	*p = append((*p)[:0], m.Body...)
	return nil
}

type Blob []byte

// envelopeCodec wraps the JSON body in an envelope with metadata, as
// tomodachi's envelopes do.
type envelopeCodec struct{}

type envelope struct {
	Metadata struct {
		MessageID string `json:"message_uuid"`
		Type      string `json:"type"`
	} `json:"metadata"`
	Data json.RawMessage `json:"data"`
}

func (envelopeCodec) ContentType() string { return "application/vnd.envelope+json" }

func (envelopeCodec) Encode(v any, m *transport.Message) error {
	var e envelope
	var err error
	if e.Data, err = json.Marshal(v); err != nil {
		return err
	}
	e.Metadata.MessageID, e.Metadata.Type = m.ID, m.Type
	m.Body, err = json.Marshal(e)
	m.ContentType = "application/vnd.envelope+json"
	m.Headers["envelope-version"] = "1"
	return err
}

func (envelopeCodec) Decode(m *transport.Message, v any) error {
	var e envelope
	if err := json.Unmarshal(m.Body, &e); err != nil {
		return err
	}
	if e.Metadata.MessageID != m.ID {
		return errors.New("envelope of another message")
	}
	return json.Unmarshal(e.Data, v)
}

func TestCodecs(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		receiver := e.bus("receiver", bus.Options{Codecs: []bus.Codec{bytesCodec{}, envelopeCodec{}}})
		var blobs recorder[string]
		var orders recorder[PlaceOrder]
		must(t, bus.Handle(receiver, func(ctx context.Context, b Blob) error { return blobs.handle(ctx, string(b)) }))
		must(t, bus.Handle(receiver, orders.handle))
		e.start(receiver)

		blobSender := e.bus("", bus.Options{Codec: bytesCodec{}})
		envSender := e.bus("", bus.Options{Codec: envelopeCodec{}})
		jsonSender := e.bus("", bus.Options{})
		must(t, blobSender.Send(ctx, "receiver", Blob("raw bytes")))
		must(t, envSender.Send(ctx, "receiver", PlaceOrder{ID: "enveloped"}))
		must(t, jsonSender.Send(ctx, "receiver", PlaceOrder{ID: "json"}))
		if err := blobSender.Send(ctx, "receiver", PlaceOrder{}); !errors.Is(err, bus.ErrInvalidMessage) {
			t.Errorf("a codec's encoding error: %v", err)
		}
		idle()
		if got := blobs.all(); !slices.Equal(got, []string{"raw bytes"}) {
			t.Errorf("blobs %v", got)
		}
		if got := orders.all(); !slices.Equal(got, []PlaceOrder{{"enveloped"}, {"json"}}) {
			t.Errorf("orders %v", got)
		}
		in := orders.incoming()[0]
		if in.Message.ContentType != "application/vnd.envelope+json" || header(*in.Message, "ContentType") != "application/vnd.envelope+json" ||
			in.Message.ContentEncoding != "" || in.Message.Headers["envelope-version"] != "1" {
			t.Errorf("enveloped message %+v", in.Message)
		}
		if _, ok := in.Message.Headers["PikaBus.ContentEncoding"]; ok {
			t.Error("ContentEncoding header without a content encoding")
		}
		// Content types match without parameters, case-insensitively.
		must(t, e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "receiver", Mandatory: true, Message: transport.Message{
			ContentType: "Application/JSON; charset=utf-8", Type: "PlaceOrder", Body: []byte(`{"ID":"params"}`),
		}}))
		idle()
		if got := orders.all(); len(got) != 3 || got[2].ID != "params" {
			t.Errorf("orders %v", got)
		}
		if n := e.broker.Depth("error"); n != 0 {
			t.Errorf("%d messages in the error queue", n)
		}
	})
}

func TestJSONCodecDecodesIntoFreshValues(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		b := e.bus("q", bus.Options{})
		type Batch struct {
			Items []int
			Tags  map[string]string
		}
		var kept []Batch
		must(t, bus.Handle(b, func(ctx context.Context, m Batch) error { kept = append(kept, m); return nil }, bus.WithMessageType("Batch")))
		e.start(b)
		must(t, b.Send(ctx, "q", Batch{Items: []int{1, 2, 3}, Tags: map[string]string{"a": "1"}}, bus.WithMessageType("Batch")))
		must(t, b.Send(ctx, "q", Batch{Items: []int{9}}, bus.WithMessageType("Batch")))
		idle()
		// A handler may keep what it was given: the next message is not
		// decoded into it.
		if len(kept) != 2 || !slices.Equal(kept[0].Items, []int{1, 2, 3}) || kept[0].Tags["a"] != "1" ||
			!slices.Equal(kept[1].Items, []int{9}) || kept[1].Tags != nil {
			t.Errorf("kept %+v", kept)
		}
	})
}
