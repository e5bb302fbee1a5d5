package outbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/busline/busline/transport"
)

// stored is the form of a message's properties and headers in the outbox
// table's message column: JSON, with every header value tagged with its
// AMQP type, so that a message dispatched from the table is the message
// the handler sent, header types included.
type stored struct {
	ID              string          `json:"id,omitempty"`
	CorrelationID   string          `json:"correlation_id,omitempty"`
	ReplyTo         string          `json:"reply_to,omitempty"`
	ContentType     string          `json:"content_type,omitempty"`
	ContentEncoding string          `json:"content_encoding,omitempty"`
	Type            string          `json:"type,omitempty"`
	Timestamp       int64           `json:"timestamp,omitempty"` // Unix microseconds; 0: unset
	Headers         json.RawMessage `json:"headers,omitempty"`
}

// encodeMessage returns m's properties and headers as stored, m's headers
// normalized first (see transport.Headers.Normalize).
func encodeMessage(m *transport.Message) (string, error) {
	s := stored{
		ID: m.ID, CorrelationID: m.CorrelationID, ReplyTo: m.ReplyTo,
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Type: m.Type,
	}
	if !m.Timestamp.IsZero() {
		s.Timestamp = m.Timestamp.UnixMicro()
	}
	if len(m.Headers) > 0 {
		h, err := m.Headers.Normalize()
		if err != nil {
			return "", err
		}
		v, err := encodeValue(map[string]any(h))
		if err != nil {
			return "", err
		}
		if s.Headers, err = json.Marshal(v); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(&s)
	return string(b), err
}

// decodeMessage is the inverse of encodeMessage; body is the body column.
func decodeMessage(text string, body []byte) (transport.Message, error) {
	var s stored
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		return transport.Message{}, fmt.Errorf("decoding a stored message: %w", err)
	}
	m := transport.Message{
		ID: s.ID, CorrelationID: s.CorrelationID, ReplyTo: s.ReplyTo,
		ContentType: s.ContentType, ContentEncoding: s.ContentEncoding, Type: s.Type,
		Body: body,
	}
	if s.Timestamp != 0 {
		m.Timestamp = time.UnixMicro(s.Timestamp).UTC()
	}
	if len(s.Headers) > 0 {
		var raw any
		if err := json.Unmarshal(s.Headers, &raw); err != nil {
			return transport.Message{}, fmt.Errorf("decoding a stored message's headers: %w", err)
		}
		v, err := decodeValue(raw)
		if err != nil {
			return transport.Message{}, fmt.Errorf("decoding a stored message's headers: %w", err)
		}
		t, ok := v.(map[string]any)
		if !ok {
			return transport.Message{}, fmt.Errorf("decoding a stored message's headers: a %T, not a table", v)
		}
		m.Headers = transport.Headers(t)
	}
	return m, nil
}

// encodeValue turns a normalized header value into [tag, value]: JSON
// alone would lose the integer widths, bytes and times.
func encodeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return []any{"n"}, nil
	case bool:
		return []any{"b", x}, nil
	case string:
		return []any{"s", x}, nil
	case []byte:
		return []any{"x", base64.StdEncoding.EncodeToString(x)}, nil
	case int8:
		return []any{"i8", x}, nil
	case uint8:
		return []any{"u8", x}, nil
	case int16:
		return []any{"i16", x}, nil
	case uint16:
		return []any{"u16", x}, nil
	case int32:
		return []any{"i32", x}, nil
	case uint32:
		return []any{"u32", x}, nil
	case int64:
		return []any{"i64", strconv.FormatInt(x, 10)}, nil
	case float32:
		return []any{"f32", strconv.FormatFloat(float64(x), 'g', -1, 32)}, nil
	case float64:
		return []any{"f64", strconv.FormatFloat(x, 'g', -1, 64)}, nil
	case transport.Decimal:
		return []any{"d", x.Scale, x.Value}, nil
	case time.Time:
		return []any{"t", x.Unix()}, nil
	case map[string]any:
		t := make(map[string]any, len(x))
		for k, e := range x {
			ev, err := encodeValue(e)
			if err != nil {
				return nil, err
			}
			t[k] = ev
		}
		return []any{"m", t}, nil
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			ev, err := encodeValue(e)
			if err != nil {
				return nil, err
			}
			a[i] = ev
		}
		return []any{"a", a}, nil
	}
	return nil, fmt.Errorf("%w: header value of type %T", transport.ErrInvalidMessage, v)
}

func decodeValue(raw any) (any, error) {
	a, ok := raw.([]any)
	if !ok || len(a) == 0 {
		return nil, fmt.Errorf("bad tagged value %v", raw)
	}
	tag, _ := a[0].(string)
	if tag == "n" {
		return nil, nil
	}
	if len(a) < 2 {
		return nil, fmt.Errorf("bad tagged value %v", raw)
	}
	v := a[1]
	num := func(lo, hi float64) (float64, error) {
		f, ok := v.(float64)
		if !ok || f < lo || f > hi || f != math.Trunc(f) {
			return 0, fmt.Errorf("bad %s value %v", tag, v)
		}
		return f, nil
	}
	str := func() (string, error) {
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("bad %s value %v", tag, v)
		}
		return s, nil
	}
	switch tag {
	case "b":
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("bad b value %v", v)
		}
		return b, nil
	case "s":
		return str()
	case "x":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	case "i8":
		f, err := num(math.MinInt8, math.MaxInt8)
		return int8(f), err
	case "u8":
		f, err := num(0, math.MaxUint8)
		return uint8(f), err
	case "i16":
		f, err := num(math.MinInt16, math.MaxInt16)
		return int16(f), err
	case "u16":
		f, err := num(0, math.MaxUint16)
		return uint16(f), err
	case "i32":
		f, err := num(math.MinInt32, math.MaxInt32)
		return int32(f), err
	case "u32":
		f, err := num(0, math.MaxUint32)
		return uint32(f), err
	case "i64":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
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
	case "d":
		if len(a) != 3 {
			return nil, fmt.Errorf("bad decimal %v", raw)
		}
		sc, ok1 := a[1].(float64)
		val, ok2 := a[2].(float64)
		if !ok1 || !ok2 || sc < 0 || sc > math.MaxUint8 || val < math.MinInt32 || val > math.MaxInt32 {
			return nil, fmt.Errorf("bad decimal %v", raw)
		}
		return transport.Decimal{Scale: uint8(sc), Value: int32(val)}, nil
	case "t":
		f, err := num(math.MinInt64, math.MaxInt64)
		return time.Unix(int64(f), 0).UTC(), err
	case "m":
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("bad table %v", v)
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			d, err := decodeValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	case "a":
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("bad array %v", v)
		}
		out := make([]any, len(l))
		for i, e := range l {
			d, err := decodeValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown value tag %q", tag)
}
