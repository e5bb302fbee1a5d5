package tomodachi

import (
	"encoding/base64"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/protocodec"
	"github.com/busline/busline/transport"
)

// ProtobufEnvelope is a [bus.Codec] for tomodachi's ProtobufBase envelope:
// Encode wraps a protobuf message (a generated type) in an SNSSQSMessage
// and writes its base64 text, as Service's; Decode unwraps it into the
// handler's generated type (a *T or **T, see [protocodec.Unmarshal]) or an
// [Envelope]. The SNSSQSMessage is written and read field by field
// (tomodachi's proto/sns_sqs_message.proto), so no generated type of it is
// registered in the program's protobuf registry. It is comparable, like
// JSONEnvelope.
type ProtobufEnvelope struct {
	// Service names the sender in the envelopes it writes.
	Service Service
}

var (
	_ bus.Codec        = ProtobufEnvelope{}
	_ bus.TopicEncoder = ProtobufEnvelope{}
)

// ContentType implements [bus.Codec].
func (ProtobufEnvelope) ContentType() string { return ProtobufContentType }

// Encode implements [bus.Codec], with an empty topic.
func (c ProtobufEnvelope) Encode(v any, m *transport.Message) error {
	return c.EncodeTopic(v, "", m)
}

// The field numbers of sns_sqs_message.proto.
const (
	fieldService  = 1 // SNSSQSMessage.service
	fieldMetadata = 2 // SNSSQSMessage.metadata
	fieldData     = 3 // SNSSQSMessage.data

	fieldServiceName = 1
	fieldServiceUUID = 2

	fieldMessageUUID     = 1
	fieldProtocolVersion = 2
	fieldTimestamp       = 3
	fieldTopic           = 4
	fieldDataEncoding    = 5
)

// EncodeTopic implements [bus.TopicEncoder].
func (c ProtobufEnvelope) EncodeTopic(v any, topic string, m *transport.Message) error {
	pm, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("tomodachi: the protobuf envelope carries protobuf messages, not %T", v)
	}
	data, err := proto.Marshal(pm)
	if err != nil {
		return fmt.Errorf("tomodachi: %w", err)
	}
	encoding := "proto"
	if len(data) > compressAbove {
		if data, err = deflate(data); err != nil {
			return err
		}
		encoding = "gzip_proto"
	}
	// As Python's SerializeToString: fields in number order, proto3
	// defaults (empty strings, zero) left out.
	var svc, meta, env []byte
	svc = appendString(svc, fieldServiceName, c.Service.Name)
	svc = appendString(svc, fieldServiceUUID, c.Service.UUID)
	meta = appendString(meta, fieldMessageUUID, c.Service.messageUUID())
	meta = appendString(meta, fieldProtocolVersion, ProtobufProtocolVersion)
	if ts := now(); ts != 0 {
		meta = protowire.AppendTag(meta, fieldTimestamp, protowire.Fixed64Type)
		meta = protowire.AppendFixed64(meta, math.Float64bits(ts))
	}
	meta = appendString(meta, fieldTopic, topic)
	meta = appendString(meta, fieldDataEncoding, encoding)
	env = protowire.AppendTag(env, fieldService, protowire.BytesType)
	env = protowire.AppendBytes(env, svc)
	env = protowire.AppendTag(env, fieldMetadata, protowire.BytesType)
	env = protowire.AppendBytes(env, meta)
	if len(data) > 0 {
		env = protowire.AppendTag(env, fieldData, protowire.BytesType)
		env = protowire.AppendBytes(env, data)
	}
	m.Body = []byte(base64.StdEncoding.EncodeToString(env))
	m.ContentType, m.ContentEncoding = ProtobufContentType, ""
	return nil
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// Decode implements [bus.Codec].
func (ProtobufEnvelope) Decode(m *transport.Message, v any) error {
	raw, err := base64.StdEncoding.DecodeString(string(m.Body))
	if err != nil {
		return fmt.Errorf("tomodachi: not a protobuf envelope (base64): %w", err)
	}
	var e Envelope
	var svc, meta []byte
	if err := fields(raw, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch {
		case num == fieldService && typ == protowire.BytesType:
			svc = val
		case num == fieldMetadata && typ == protowire.BytesType:
			meta = val
		case num == fieldData && typ == protowire.BytesType:
			e.Data = val
		}
		return nil
	}); err != nil {
		return err
	}
	if err := fields(svc, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch {
		case num == fieldServiceName && typ == protowire.BytesType:
			e.Service.Name = string(val)
		case num == fieldServiceUUID && typ == protowire.BytesType:
			e.Service.UUID = string(val)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := fields(meta, func(num protowire.Number, typ protowire.Type, val []byte, n uint64) error {
		md := &e.Metadata
		switch {
		case num == fieldMessageUUID && typ == protowire.BytesType:
			md.MessageUUID = string(val)
		case num == fieldProtocolVersion && typ == protowire.BytesType:
			md.ProtocolVersion = string(val)
		case num == fieldTimestamp && typ == protowire.Fixed64Type:
			md.Timestamp = math.Float64frombits(n)
		case num == fieldTopic && typ == protowire.BytesType:
			md.Topic = string(val)
		case num == fieldDataEncoding && typ == protowire.BytesType:
			md.DataEncoding = string(val)
		}
		return nil
	}); err != nil {
		return err
	}
	switch e.Metadata.DataEncoding {
	case "proto":
	case "base64": // no longer written by tomodachi, still read
		e.Data, err = base64.StdEncoding.DecodeString(string(e.Data))
	case "gzip_proto":
		e.Data, err = inflate(e.Data)
	case "base64_gzip_proto": // no longer written, still read
		var z []byte
		if z, err = base64.StdEncoding.DecodeString(string(e.Data)); err == nil {
			e.Data, err = inflate(z)
		}
	default:
		return fmt.Errorf("tomodachi: protobuf envelope with data_encoding %q, which does not decode into a message", e.Metadata.DataEncoding)
	}
	if err != nil {
		return fmt.Errorf("tomodachi: %s data: %w", e.Metadata.DataEncoding, err)
	}
	if env, ok := v.(*Envelope); ok {
		*env = e
		return nil
	}
	if err := protocodec.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("tomodachi: envelope data: %w", err)
	}
	return nil
}

// fields calls f for each field of the protobuf encoding b: its number,
// wire type, and its value (bytes for length-delimited fields, the number
// for fixed and varint ones). The byte slices are copies.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, val []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return errEnvelope(protowire.ParseError(k))
		}
		b = b[k:]
		var val []byte
		var n uint64
		switch typ {
		case protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return errEnvelope(protowire.ParseError(k))
			}
			val, b = append([]byte(nil), v...), b[k:]
		case protowire.Fixed64Type:
			v, k := protowire.ConsumeFixed64(b)
			if k < 0 {
				return errEnvelope(protowire.ParseError(k))
			}
			n, b = v, b[k:]
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return errEnvelope(protowire.ParseError(k))
			}
			b = b[k:]
		}
		if err := f(num, typ, val, n); err != nil {
			return err
		}
	}
	return nil
}

func errEnvelope(err error) error {
	return fmt.Errorf("tomodachi: not a protobuf envelope: %w", err)
}
