package watermillbus

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/transport"
)

// The metadata keys that carry what Watermill's message has no field for.
// Every key with the prefix "busline." is reserved: a busline header whose
// name starts with it travels in [MetadataHeaders] instead.
const (
	// MetadataPrefix starts every reserved metadata key.
	MetadataPrefix = "busline."
	// MetadataCorrelationID and the keys below carry the AMQP properties
	// of a busline message, each only when set.
	MetadataCorrelationID   = "busline.correlation_id"
	MetadataReplyTo         = "busline.reply_to"
	MetadataContentType     = "busline.content_type"
	MetadataContentEncoding = "busline.content_encoding"
	MetadataType            = "busline.type"
	// MetadataTimestamp is the timestamp property in Unix seconds.
	MetadataTimestamp = "busline.timestamp"
	// MetadataNoID marks a message that had no ID: Watermill needs a
	// UUID, so one was made up, and it is dropped again on the way back.
	MetadataNoID = "busline.no_id"
	// MetadataHeaders holds, as typed JSON, every header that is not a
	// string (integers, timestamps, tables, arrays, ...) or whose name is
	// reserved, so that it comes back with its exact type.
	MetadataHeaders = "busline.headers"
)

// toWatermill converts m to a Watermill message: the ID becomes the UUID,
// string headers become metadata of the same name, and everything else goes
// under the reserved keys. It fails, wrapping transport.ErrInvalidMessage,
// for a header of a type a transport cannot carry.
func toWatermill(m *transport.Message) (*message.Message, error) {
	uuid := m.ID
	md := make(message.Metadata, len(m.Headers)+1)
	if uuid == "" {
		uuid = watermill.NewUUID()
		md[MetadataNoID] = "1"
	}
	for _, p := range [...]struct{ key, value string }{
		{MetadataCorrelationID, m.CorrelationID},
		{MetadataReplyTo, m.ReplyTo},
		{MetadataContentType, m.ContentType},
		{MetadataContentEncoding, m.ContentEncoding},
		{MetadataType, m.Type},
	} {
		if p.value != "" {
			md[p.key] = p.value
		}
	}
	if !m.Timestamp.IsZero() {
		md[MetadataTimestamp] = strconv.FormatInt(m.Timestamp.Unix(), 10)
	}
	var typed map[string]any
	for k, v := range m.Headers {
		if s, ok := v.(string); ok && !strings.HasPrefix(k, MetadataPrefix) {
			md[k] = s
			continue
		}
		if typed == nil {
			typed = map[string]any{}
		}
		typed[k] = v
	}
	if typed != nil {
		h, err := transport.Headers(typed).Normalize()
		if err != nil {
			return nil, err
		}
		enc, err := encodeValue(map[string]any(h))
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: headers: %v", transport.ErrInvalidMessage, err)
		}
		md[MetadataHeaders] = string(b)
	}
	// A copy: a Watermill publisher may keep the payload (GoChannel
	// does), and the caller of Dispatch may reuse its body.
	wm := message.NewMessage(uuid, bytes.Clone(m.Body))
	wm.Metadata = md
	return wm, nil
}

// fromWatermill converts a Watermill message back: the inverse of
// toWatermill. A message from a Watermill publisher that knows nothing of
// busline has its UUID as ID and its metadata as string headers.
func fromWatermill(wm *message.Message) (transport.Message, error) {
	m := transport.Message{ID: wm.UUID, Body: []byte(wm.Payload)}
	for k, v := range wm.Metadata {
		if !strings.HasPrefix(k, MetadataPrefix) {
			if m.Headers == nil {
				m.Headers = make(transport.Headers, len(wm.Metadata))
			}
			m.Headers[k] = v
			continue
		}
		switch k {
		case MetadataCorrelationID:
			m.CorrelationID = v
		case MetadataReplyTo:
			m.ReplyTo = v
		case MetadataContentType:
			m.ContentType = v
		case MetadataContentEncoding:
			m.ContentEncoding = v
		case MetadataType:
			m.Type = v
		case MetadataTimestamp:
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return m, fmt.Errorf("%w: metadata %s: %q is not Unix seconds", transport.ErrInvalidMessage, k, v)
			}
			m.Timestamp = time.Unix(sec, 0).UTC()
		case MetadataNoID:
			m.ID = ""
		case MetadataHeaders:
			var enc any
			if err := json.Unmarshal([]byte(v), &enc); err != nil {
				return m, fmt.Errorf("%w: metadata %s: %v", transport.ErrInvalidMessage, k, err)
			}
			dec, err := decodeValue(enc)
			if err != nil {
				return m, fmt.Errorf("%w: metadata %s: %v", transport.ErrInvalidMessage, k, err)
			}
			h, ok := dec.(map[string]any)
			if !ok {
				return m, fmt.Errorf("%w: metadata %s is not a table", transport.ErrInvalidMessage, k)
			}
			if m.Headers == nil {
				m.Headers = make(transport.Headers, len(h))
			}
			maps.Copy(m.Headers, h)
		default:
			// A reserved key of a later version: kept as a header, not lost.
			if m.Headers == nil {
				m.Headers = transport.Headers{}
			}
			m.Headers[k] = v
		}
	}
	return m, nil
}

// encodeValue turns a canonical header value (see transport.Headers) into
// JSON that says its type: a two-element array [tag, value], where every
// number is a string so that int64 and NaN survive.
func encodeValue(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return []any{"nil", nil}, nil
	case bool:
		return []any{"bool", v}, nil
	case string:
		return []any{"str", v}, nil
	case []byte:
		return []any{"bytes", base64.StdEncoding.EncodeToString(v)}, nil
	case int8:
		return []any{"i8", strconv.FormatInt(int64(v), 10)}, nil
	case uint8:
		return []any{"u8", strconv.FormatUint(uint64(v), 10)}, nil
	case int16:
		return []any{"i16", strconv.FormatInt(int64(v), 10)}, nil
	case uint16:
		return []any{"u16", strconv.FormatUint(uint64(v), 10)}, nil
	case int32:
		return []any{"i32", strconv.FormatInt(int64(v), 10)}, nil
	case uint32:
		return []any{"u32", strconv.FormatUint(uint64(v), 10)}, nil
	case int64:
		return []any{"i64", strconv.FormatInt(v, 10)}, nil
	case float32:
		return []any{"f32", strconv.FormatFloat(float64(v), 'g', -1, 32)}, nil
	case float64:
		return []any{"f64", strconv.FormatFloat(v, 'g', -1, 64)}, nil
	case transport.Decimal:
		return []any{"dec", []any{strconv.Itoa(int(v.Scale)), strconv.FormatInt(int64(v.Value), 10)}}, nil
	case time.Time:
		return []any{"time", strconv.FormatInt(v.Unix(), 10)}, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			e, err := encodeValue(x)
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return []any{"table", out}, nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			e, err := encodeValue(x)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return []any{"array", out}, nil
	}
	return nil, fmt.Errorf("%w: header value of type %T", transport.ErrInvalidMessage, v)
}

// decodeValue is the inverse of encodeValue.
func decodeValue(enc any) (any, error) {
	pair, ok := enc.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("typed value %v is not a [tag, value] pair", enc)
	}
	tag, _ := pair[0].(string)
	v := pair[1]
	str := func() (string, error) {
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s value %v is not a string", tag, v)
		}
		return s, nil
	}
	parseInt := func(bits int) (int64, error) {
		s, err := str()
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(s, 10, bits)
	}
	parseUint := func(bits int) (uint64, error) {
		s, err := str()
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(s, 10, bits)
	}
	switch tag {
	case "nil":
		return nil, nil
	case "bool":
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("bool value %v", v)
		}
		return b, nil
	case "str":
		return str()
	case "bytes":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	case "i8":
		n, err := parseInt(8)
		return int8(n), err
	case "u8":
		n, err := parseUint(8)
		return uint8(n), err
	case "i16":
		n, err := parseInt(16)
		return int16(n), err
	case "u16":
		n, err := parseUint(16)
		return uint16(n), err
	case "i32":
		n, err := parseInt(32)
		return int32(n), err
	case "u32":
		n, err := parseUint(32)
		return uint32(n), err
	case "i64":
		return parseInt(64)
	case "f32":
		s, err := str()
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case "f64":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return strconv.ParseFloat(s, 64)
	case "dec":
		parts, ok := v.([]any)
		if !ok || len(parts) != 2 {
			return nil, fmt.Errorf("decimal value %v", v)
		}
		scale, err1 := decodeValue([]any{"u8", parts[0]})
		value, err2 := decodeValue([]any{"i32", parts[1]})
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("decimal value %v", v)
		}
		return transport.Decimal{Scale: scale.(uint8), Value: value.(int32)}, nil
	case "time":
		sec, err := parseInt(64)
		return time.Unix(sec, 0).UTC(), err
	case "table":
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("table value %v", v)
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			d, err := decodeValue(x)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	case "array":
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("array value %v", v)
		}
		out := make([]any, len(a))
		for i, x := range a {
			d, err := decodeValue(x)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown type tag %q", tag)
}
