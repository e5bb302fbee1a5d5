package tomodachi

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// The envelopes' protocol versions, as tomodachi writes them.
const (
	JSONProtocolVersion     = "tomodachi-json-base--1.0.0"
	ProtobufProtocolVersion = "tomodachi-protobuf-base--1.0.0"
)

// Content types of the envelopes. tomodachi writes none (its messages have
// no properties): a Bus gives a message that arrives on one of its
// [bus.Options.Exchanges] without one the exchange codec's. A message the
// codecs write carries them, and tomodachi ignores them.
const (
	JSONContentType     = "application/vnd.tomodachi.json-base+json"
	ProtobufContentType = "application/vnd.tomodachi.protobuf-base"
)

// compressAbove is the size beyond which both envelopes compress the data,
// as tomodachi does.
const compressAbove = 60000

// Envelope is a tomodachi message as its envelope carries it: give a handler
// an Envelope parameter to see who sent a message, when and under which
// topic, and decode Data itself.
type Envelope struct {
	Service  Service
	Metadata Metadata
	// Data is the message: JSON text from the JSON envelope, the protobuf
	// encoding from the protobuf one; decompressed.
	Data []byte
}

// Metadata is an envelope's metadata.
type Metadata struct {
	// MessageUUID is the sending instance's uuid, a dot and the message's
	// own uuid; tomodachi drops a message whose MessageUUID it handled in
	// the last minute.
	MessageUUID     string
	ProtocolVersion string
	// Timestamp is when the message was enveloped, in seconds since the
	// epoch (Python's time.time()).
	Timestamp float64
	// Topic is the routing key the message was published under, without
	// the routing key prefix.
	Topic string
	// DataEncoding says how Data travels: "raw" or "base64_gzip_json"
	// (JSON), "proto" or "gzip_proto" (protobuf; "base64" and
	// "base64_gzip_proto" are read too).
	DataEncoding string
}

// Time is Timestamp as a time.
func (m Metadata) Time() time.Time {
	sec := int64(m.Timestamp)
	return time.Unix(sec, int64((m.Timestamp-float64(sec))*1e9)).UTC()
}

// JSONEnvelope is a [bus.Codec] for tomodachi's JsonBase envelope: Encode
// wraps the message's JSON in the envelope, as Service's, and Decode
// unwraps it, into a value of the handler's type or an [Envelope]. For a
// Publish the envelope's topic is the Publish's (it is a [bus.TopicEncoder]).
// It is comparable: the same value may go to Options.Codecs and an
// Exchange.
type JSONEnvelope struct {
	// Service names the sender in the envelopes it writes.
	Service Service
}

var (
	_ bus.Codec        = JSONEnvelope{}
	_ bus.TopicEncoder = JSONEnvelope{}
)

// ContentType implements [bus.Codec].
func (JSONEnvelope) ContentType() string { return JSONContentType }

// Encode implements [bus.Codec], with an empty topic.
func (c JSONEnvelope) Encode(v any, m *transport.Message) error { return c.EncodeTopic(v, "", m) }

// jsonService and jsonMetadata are the envelope's objects, their fields in
// tomodachi's order.
type jsonService struct {
	Name *string `json:"name"`
	UUID *string `json:"uuid"`
}

type jsonMetadata struct {
	MessageUUID     string   `json:"message_uuid"`
	ProtocolVersion string   `json:"protocol_version"`
	Compatible      []string `json:"compatible_protocol_versions,omitempty"`
	Timestamp       float64  `json:"timestamp"`
	Topic           string   `json:"topic"`
	DataEncoding    string   `json:"data_encoding"`
}

type jsonEnvelope struct {
	Service  jsonService     `json:"service"`
	Metadata jsonMetadata    `json:"metadata"`
	Data     json.RawMessage `json:"data"`
}

// EncodeTopic implements [bus.TopicEncoder].
func (c JSONEnvelope) EncodeTopic(v any, topic string, m *transport.Message) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("tomodachi: %w", err)
	}
	encoding := "raw"
	if len(data) >= compressAbove {
		z, err := deflate(data)
		if err != nil {
			return err
		}
		data, _ = json.Marshal(base64.StdEncoding.EncodeToString(z))
		encoding = "base64_gzip_json"
	}
	env := jsonEnvelope{
		Service: jsonService{Name: orNull(c.Service.Name), UUID: orNull(c.Service.UUID)},
		Metadata: jsonMetadata{
			MessageUUID:     c.Service.messageUUID(),
			ProtocolVersion: JSONProtocolVersion,
			Compatible:      []string{"json_base-wip"},
			Timestamp:       now(),
			Topic:           topic,
			DataEncoding:    encoding,
		},
		Data: data,
	}
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("tomodachi: %w", err)
	}
	m.Body, m.ContentType, m.ContentEncoding = body, JSONContentType, "utf-8"
	return nil
}

// Decode implements [bus.Codec]: v is an *Envelope, or a pointer to what
// the envelope's data decodes into with encoding/json.
func (JSONEnvelope) Decode(m *transport.Message, v any) error {
	var env jsonEnvelope
	if err := json.Unmarshal(m.Body, &env); err != nil {
		return fmt.Errorf("tomodachi: not a JSON envelope: %w", err)
	}
	data := []byte(env.Data)
	switch env.Metadata.DataEncoding {
	case "raw":
	case "base64_gzip_json":
		var s string
		if err := json.Unmarshal(env.Data, &s); err != nil {
			return fmt.Errorf("tomodachi: base64_gzip_json data is not a string: %w", err)
		}
		z, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("tomodachi: base64_gzip_json data: %w", err)
		}
		if data, err = inflate(z); err != nil {
			return err
		}
	default:
		return fmt.Errorf("tomodachi: JSON envelope with unknown data_encoding %q", env.Metadata.DataEncoding)
	}
	if e, ok := v.(*Envelope); ok {
		*e = Envelope{
			Service: Service{Name: deref(env.Service.Name), UUID: deref(env.Service.UUID)},
			Metadata: Metadata{MessageUUID: env.Metadata.MessageUUID, ProtocolVersion: env.Metadata.ProtocolVersion,
				Timestamp: env.Metadata.Timestamp, Topic: env.Metadata.Topic, DataEncoding: env.Metadata.DataEncoding},
			Data: bytes.Clone(data),
		}
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("tomodachi: envelope data: %w", err)
	}
	return nil
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// now is time.time() of Python: seconds since the epoch, as a float.
func now() float64 {
	return float64(time.Now().UnixMicro()) / 1e6
}

// deflate compresses b as Python's zlib.compress does (a zlib stream).
func deflate(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxInflated bounds a decompressed message: a small zlib stream can expand
// a thousandfold.
const maxInflated = 64 << 20

func inflate(z []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("tomodachi: compressed data: %w", err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("tomodachi: compressed data: %w", err)
	}
	if len(b) > maxInflated {
		return nil, errors.New("tomodachi: compressed data inflates beyond 64 MiB")
	}
	return b, nil
}
