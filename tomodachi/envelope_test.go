package tomodachi_test

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/busline/busline/protocodec/orderspb"
	"github.com/busline/busline/tomodachi"
	"github.com/busline/busline/transport"
)

// orderCreated is what the tests send in the JSON envelope.
type orderCreated struct {
	OrderID string `json:"order_id"`
	Items   []string
}

var svc = tomodachi.Service{Name: "shop", UUID: "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"}

// TestJSONEnvelopeReadsTomodachi decodes a message as tomodachi's JsonBase
// writes it (json.dumps, with its separators).
func TestJSONEnvelopeReadsTomodachi(t *testing.T) {
	body := `{"service": {"name": "shop", "uuid": "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"}, "metadata": {"message_uuid": "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e.0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d", "protocol_version": "tomodachi-json-base--1.0.0", "compatible_protocol_versions": ["json_base-wip"], "timestamp": 1764768000.25, "topic": "order.created", "data_encoding": "raw"}, "data": {"order_id": "o-1", "Items": ["tea"]}}`
	m := &transport.Message{Body: []byte(body)}
	var got orderCreated
	if err := (tomodachi.JSONEnvelope{}).Decode(m, &got); err != nil {
		t.Fatal(err)
	}
	if got.OrderID != "o-1" || len(got.Items) != 1 {
		t.Errorf("data = %+v", got)
	}
	var e tomodachi.Envelope
	if err := (tomodachi.JSONEnvelope{}).Decode(m, &e); err != nil {
		t.Fatal(err)
	}
	if e.Service != svc || e.Metadata.Topic != "order.created" || e.Metadata.ProtocolVersion != tomodachi.JSONProtocolVersion ||
		e.Metadata.Time() != time.Unix(1764768000, 250e6).UTC() || string(e.Data) != `{"order_id": "o-1", "Items": ["tea"]}` {
		t.Errorf("envelope = %+v, data %s", e, e.Data)
	}
}

// TestJSONEnvelopeWrites checks what JSONEnvelope writes, object by object,
// against tomodachi's build_message, small and large (compressed).
func TestJSONEnvelopeWrites(t *testing.T) {
	small := orderCreated{OrderID: "o-1"}
	large := orderCreated{OrderID: "o-2", Items: make([]string, 10000)}
	for i := range large.Items {
		large.Items[i] = "item"
	}
	for _, c := range []struct {
		v        orderCreated
		encoding string
	}{{small, "raw"}, {large, "base64_gzip_json"}} {
		var m transport.Message
		before := float64(time.Now().UnixMicro()) / 1e6
		if err := (tomodachi.JSONEnvelope{Service: svc}).EncodeTopic(c.v, "order.created", &m); err != nil {
			t.Fatal(err)
		}
		after := float64(time.Now().UnixMicro()) / 1e6
		if m.ContentType != tomodachi.JSONContentType {
			t.Errorf("content type %q", m.ContentType)
		}
		var env struct {
			Service  map[string]string `json:"service"`
			Metadata struct {
				MessageUUID     string   `json:"message_uuid"`
				ProtocolVersion string   `json:"protocol_version"`
				Compatible      []string `json:"compatible_protocol_versions"`
				Timestamp       float64  `json:"timestamp"`
				Topic           string   `json:"topic"`
				DataEncoding    string   `json:"data_encoding"`
			} `json:"metadata"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(m.Body, &env); err != nil {
			t.Fatal(err)
		}
		md := env.Metadata
		if env.Service["name"] != "shop" || env.Service["uuid"] != svc.UUID ||
			len(md.MessageUUID) != 73 || !strings.HasPrefix(md.MessageUUID, svc.UUID+".") ||
			md.ProtocolVersion != "tomodachi-json-base--1.0.0" || len(md.Compatible) != 1 || md.Compatible[0] != "json_base-wip" ||
			md.Timestamp < before || md.Timestamp > after || md.Topic != "order.created" || md.DataEncoding != c.encoding {
			t.Errorf("%s: envelope %s", c.encoding, shorten(m.Body))
		}
		data := []byte(env.Data)
		if c.encoding == "base64_gzip_json" {
			var s string
			_ = json.Unmarshal(env.Data, &s)
			z, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			r, err := zlib.NewReader(bytes.NewReader(z))
			if err != nil {
				t.Fatal(err)
			}
			data, _ = io.ReadAll(r)
		}
		var back orderCreated
		if err := json.Unmarshal(data, &back); err != nil || back.OrderID != c.v.OrderID || len(back.Items) != len(c.v.Items) {
			t.Errorf("%s: data reads back as %+v, %v", c.encoding, back.OrderID, err)
		}
		var dec orderCreated
		if err := (tomodachi.JSONEnvelope{}).Decode(&m, &dec); err != nil || dec.OrderID != c.v.OrderID || len(dec.Items) != len(c.v.Items) {
			t.Errorf("%s: Decode = %+v, %v", c.encoding, dec.OrderID, err)
		}
	}
}

func TestJSONEnvelopeRefuses(t *testing.T) {
	for _, body := range []string{
		`not json`,
		`{"metadata": {"data_encoding": "zstd"}, "data": 1}`,
		`{"metadata": {"data_encoding": "base64_gzip_json"}, "data": "!!"}`,
		`{"metadata": {"data_encoding": "raw"}, "data": "a string"}`,
	} {
		var v orderCreated
		if err := (tomodachi.JSONEnvelope{}).Decode(&transport.Message{Body: []byte(body)}, &v); err == nil {
			t.Errorf("Decode(%s) = nil, want an error", body)
		}
	}
}

// snsSQSDescriptor is tomodachi's sns_sqs_message.proto as its generated
// Python module (sns_sqs_message_pb2.py) carries it: the schema
// ProtobufEnvelope writes and reads field by field, checked here with
// dynamic messages built from it.
const snsSQSDescriptor = "0a15736e735f7371735f6d6573736167652e70726f746f120570726f746f22250a0753657276696365120c0a046e616d65180120012809120c0a047575696418022001280922730a084d6574616461746112140a0c6d6573736167655f7575696418012001280912180a1070726f746f636f6c5f76657273696f6e18022001280912110a0974696d657374616d70180320012801120d0a05746f70696318042001280912150a0d646174615f656e636f64696e6718052001280922610a0d534e535351534d657373616765121f0a077365727669636518012001280b320e2e70726f746f2e5365727669636512210a086d6574616461746118022001280b320f2e70726f746f2e4d65746164617461120c0a046461746118032001280c620670726f746f33"

func snsSQSMessage(t *testing.T) *dynamicpb.Message {
	t.Helper()
	raw, _ := hex.DecodeString(snsSQSDescriptor)
	var fdp descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(raw, &fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessage(fd.Messages().ByName("SNSSQSMessage"))
}

// TestProtobufEnvelopeSchema writes with ProtobufEnvelope and reads with
// tomodachi's schema, and the other way round.
func TestProtobufEnvelopeSchema(t *testing.T) {
	order := &orderspb.OrderPlaced{OrderId: "o-1", TotalCents: 4200, Skus: []string{"tea"}}
	var m transport.Message
	if err := (tomodachi.ProtobufEnvelope{Service: svc}).EncodeTopic(order, "order.placed", &m); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(m.Body))
	if err != nil {
		t.Fatalf("the body is not base64: %v", err)
	}
	dm := snsSQSMessage(t)
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw, dm); err != nil {
		t.Fatal(err)
	}
	if len(dm.GetUnknown()) > 0 {
		t.Errorf("fields tomodachi's schema does not know: %x", dm.GetUnknown())
	}
	get := func(msg, field string) any {
		d := dm.Descriptor()
		sub := dm.Get(d.Fields().ByName("service")).Message()
		if msg == "metadata" {
			sub = dm.Get(d.Fields().ByName("metadata")).Message()
		}
		return sub.Get(sub.Descriptor().Fields().ByName(protoreflectName(field))).Interface()
	}
	if get("service", "name") != "shop" || get("service", "uuid") != svc.UUID ||
		get("metadata", "protocol_version") != "tomodachi-protobuf-base--1.0.0" || get("metadata", "topic") != "order.placed" ||
		get("metadata", "data_encoding") != "proto" || get("metadata", "timestamp").(float64) <= 0 ||
		!strings.HasPrefix(get("metadata", "message_uuid").(string), svc.UUID+".") {
		t.Errorf("envelope read with tomodachi's schema: %v", dm)
	}
	var data orderspb.OrderPlaced
	if err := proto.Unmarshal(dm.Get(dm.Descriptor().Fields().ByName("data")).Bytes(), &data); err != nil || !proto.Equal(&data, order) {
		t.Errorf("data = %v, %v", &data, err)
	}

	// Written with tomodachi's schema (compressed, as beyond 60,000
	// bytes), read by ProtobufEnvelope.
	w := snsSQSMessage(t)
	d := w.Descriptor()
	s := w.Mutable(d.Fields().ByName("service")).Message()
	s.Set(s.Descriptor().Fields().ByName("name"), protoreflectString("billing"))
	md := w.Mutable(d.Fields().ByName("metadata")).Message()
	md.Set(md.Descriptor().Fields().ByName("topic"), protoreflectString("order.placed"))
	md.Set(md.Descriptor().Fields().ByName("data_encoding"), protoreflectString("gzip_proto"))
	md.Set(md.Descriptor().Fields().ByName("timestamp"), protoreflectFloat(1764768000.5))
	plain, _ := proto.Marshal(order)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	w.Set(d.Fields().ByName("data"), protoreflectBytes(z.Bytes()))
	wire, err := proto.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	in := &transport.Message{Body: []byte(base64.StdEncoding.EncodeToString(wire))}
	var got *orderspb.OrderPlaced
	if err := (tomodachi.ProtobufEnvelope{}).Decode(in, &got); err != nil || !proto.Equal(got, order) {
		t.Errorf("Decode = %v, %v", got, err)
	}
	var e tomodachi.Envelope
	if err := (tomodachi.ProtobufEnvelope{}).Decode(in, &e); err != nil || e.Service.Name != "billing" || e.Metadata.Topic != "order.placed" ||
		e.Metadata.Timestamp != 1764768000.5 || !bytes.Equal(e.Data, plain) {
		t.Errorf("Decode into an Envelope = %+v, %v", e, err)
	}
}

func TestProtobufEnvelopeRefuses(t *testing.T) {
	var m transport.Message
	if err := (tomodachi.ProtobufEnvelope{}).Encode(orderCreated{}, &m); err == nil {
		t.Error("Encode of a Go struct = nil, want an error")
	}
	var got *orderspb.OrderPlaced
	for _, body := range []string{"!!not base64", base64.StdEncoding.EncodeToString([]byte{0xff}), base64.StdEncoding.EncodeToString(nil)} {
		if err := (tomodachi.ProtobufEnvelope{}).Decode(&transport.Message{Body: []byte(body)}, &got); err == nil {
			t.Errorf("Decode(%q) = nil, want an error", body)
		}
	}
}

func shorten(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
