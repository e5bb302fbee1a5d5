package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// WireMessage is a [transport.Message] as JSON, the form busctl stores,
// exports, imports and sends. Header values keep their AMQP types: a string
// or a boolean is itself, null is null, and every other value is an object
// with one key naming its type ({"int32": 5}, {"time": "2026-…Z"},
// {"bytes": "base64…"}, {"decimal": {"scale": 2, "value": 1999}},
// {"table": {…}}, {"array": […]}), so that a message read back is the
// message written. The body is text when it is valid UTF-8 (Body), base64
// otherwise (BodyBase64).
type WireMessage struct {
	ID              string                     `json:"id,omitempty"`
	CorrelationID   string                     `json:"correlation_id,omitempty"`
	ReplyTo         string                     `json:"reply_to,omitempty"`
	ContentType     string                     `json:"content_type,omitempty"`
	ContentEncoding string                     `json:"content_encoding,omitempty"`
	Type            string                     `json:"type,omitempty"`
	Timestamp       *time.Time                 `json:"timestamp,omitempty"`
	Headers         map[string]json.RawMessage `json:"headers,omitempty"`
	Body            *string                    `json:"body,omitempty"`
	BodyBase64      string                     `json:"body_base64,omitempty"`
}

// EncodeMessage returns m as a [WireMessage].
func EncodeMessage(m *transport.Message) (WireMessage, error) {
	w := WireMessage{
		ID: m.ID, CorrelationID: m.CorrelationID, ReplyTo: m.ReplyTo,
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Type: m.Type,
	}
	if !m.Timestamp.IsZero() {
		ts := m.Timestamp.UTC()
		w.Timestamp = &ts
	}
	if len(m.Headers) > 0 {
		w.Headers = make(map[string]json.RawMessage, len(m.Headers))
		for k, v := range m.Headers {
			raw, err := encodeValue(v)
			if err != nil {
				return WireMessage{}, fmt.Errorf("header %q: %w", k, err)
			}
			w.Headers[k] = raw
		}
	}
	switch {
	case m.Body == nil:
	case utf8.Valid(m.Body):
		s := string(m.Body)
		w.Body = &s
	default:
		w.BodyBase64 = base64.StdEncoding.EncodeToString(m.Body)
	}
	return w, nil
}

// Message returns the [transport.Message] w describes, validated as a
// transport would.
func (w *WireMessage) Message() (transport.Message, error) {
	m := transport.Message{
		ID: w.ID, CorrelationID: w.CorrelationID, ReplyTo: w.ReplyTo,
		ContentType: w.ContentType, ContentEncoding: w.ContentEncoding, Type: w.Type,
	}
	if w.Timestamp != nil {
		m.Timestamp = w.Timestamp.UTC()
	}
	if len(w.Headers) > 0 {
		m.Headers = make(transport.Headers, len(w.Headers))
		for k, raw := range w.Headers {
			v, err := decodeValue(raw)
			if err != nil {
				return transport.Message{}, fmt.Errorf("header %q: %w", k, err)
			}
			m.Headers[k] = v
		}
	}
	switch {
	case w.Body != nil && w.BodyBase64 != "":
		return transport.Message{}, errors.New("both body and body_base64 are set")
	case w.Body != nil:
		m.Body = []byte(*w.Body)
	case w.BodyBase64 != "":
		b, err := base64.StdEncoding.DecodeString(w.BodyBase64)
		if err != nil {
			return transport.Message{}, fmt.Errorf("body_base64: %w", err)
		}
		m.Body = b
	}
	if err := m.Validate(); err != nil {
		return transport.Message{}, err
	}
	return m, nil
}

func tagged(tag string, v any) (json.RawMessage, error) {
	b, err := json.Marshal(map[string]any{tag: v})
	return b, err
}

func encodeValue(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case string, bool:
		return json.Marshal(v)
	case int8:
		return tagged("int8", v)
	case uint8:
		return tagged("uint8", v)
	case int16:
		return tagged("int16", v)
	case uint16:
		return tagged("uint16", v)
	case int32:
		return tagged("int32", v)
	case uint32:
		return tagged("uint32", v)
	case int64:
		return tagged("int64", strconv.FormatInt(v, 10)) // a string: JSON numbers lose 64-bit precision
	case int:
		return tagged("int64", strconv.FormatInt(int64(v), 10))
	case float32:
		return tagged("float32", v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return tagged("float64", strconv.FormatFloat(v, 'g', -1, 64))
		}
		return tagged("float64", v)
	case transport.Decimal:
		return tagged("decimal", map[string]any{"scale": v.Scale, "value": v.Value})
	case time.Time:
		return tagged("time", v.UTC().Format(time.RFC3339))
	case []byte:
		return tagged("bytes", base64.StdEncoding.EncodeToString(v))
	case transport.Headers:
		return encodeTable(v)
	case map[string]any:
		return encodeTable(v)
	case []any:
		return encodeArray(len(v), func(i int) any { return v[i] })
	case []string:
		return encodeArray(len(v), func(i int) any { return v[i] })
	case []map[string]any:
		return encodeArray(len(v), func(i int) any { return v[i] })
	case []transport.Headers:
		return encodeArray(len(v), func(i int) any { return v[i] })
	}
	return nil, fmt.Errorf("a value of type %T cannot be carried", v)
}

func encodeTable(t map[string]any) (json.RawMessage, error) {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(`{"table":{`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := encodeValue(t[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(vb)
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}

func encodeArray(n int, at func(int) any) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteString(`{"array":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		vb, err := encodeValue(at(i))
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		b.Write(vb)
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func decodeValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty value")
	}
	switch raw[0] {
	case 'n':
		return nil, nil
	case 't', 'f':
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '{':
	default:
		return nil, fmt.Errorf("%s: a number must name its type, as {\"int32\": 5}", raw)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if len(obj) != 1 {
		return nil, fmt.Errorf("%s: a typed value is an object with one key, its type", raw)
	}
	for tag, v := range obj {
		return decodeTagged(tag, v)
	}
	panic("unreachable")
}

func decodeTagged(tag string, v json.RawMessage) (any, error) {
	intIn := func(lo, hi int64) (int64, error) {
		var n int64
		if err := json.Unmarshal(v, &n); err != nil {
			return 0, fmt.Errorf("%s: %w", tag, err)
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("%s: %d out of range", tag, n)
		}
		return n, nil
	}
	switch tag {
	case "int8":
		n, err := intIn(math.MinInt8, math.MaxInt8)
		return int8(n), err
	case "uint8":
		n, err := intIn(0, math.MaxUint8)
		return uint8(n), err
	case "int16":
		n, err := intIn(math.MinInt16, math.MaxInt16)
		return int16(n), err
	case "uint16":
		n, err := intIn(0, math.MaxUint16)
		return uint16(n), err
	case "int32":
		n, err := intIn(math.MinInt32, math.MaxInt32)
		return int32(n), err
	case "uint32":
		n, err := intIn(0, math.MaxUint32)
		return uint32(n), err
	case "int64":
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("int64: %w", err)
		}
		return n, nil
	case "float32", "float64":
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return nil, fmt.Errorf("%s: %w", tag, err)
			}
			if f, err = strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", tag, err)
			}
		}
		if tag == "float32" {
			return float32(f), nil
		}
		return f, nil
	case "decimal":
		var d struct {
			Scale uint8 `json:"scale"`
			Value int32 `json:"value"`
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("decimal: %w", err)
		}
		return transport.Decimal{Scale: d.Scale, Value: d.Value}, nil
	case "time":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("time: %w", err)
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, fmt.Errorf("time: %w", err)
		}
		return t.UTC(), nil
	case "bytes":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("bytes: %w", err)
		}
		return base64.StdEncoding.DecodeString(s)
	case "table":
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		t := make(map[string]any, len(obj))
		for k, raw := range obj {
			x, err := decodeValue(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			t[k] = x
		}
		return t, nil
	case "array":
		var arr []json.RawMessage
		if err := json.Unmarshal(v, &arr); err != nil {
			return nil, fmt.Errorf("array: %w", err)
		}
		out := make([]any, len(arr))
		for i, raw := range arr {
			x, err := decodeValue(raw)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = x
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown value type %q (want int8, uint8, int16, uint16, int32, uint32, int64, float32, float64, decimal, time, bytes, table or array)", tag)
}

// PrettyBody renders a message's body by its content type: indented JSON
// for application/json and +json types, text as it is, anything else as a
// hex dump.
func PrettyBody(wm *WireMessage) string {
	var body []byte
	switch {
	case wm.Body != nil:
		body = []byte(*wm.Body)
	case wm.BodyBase64 != "":
		body, _ = base64.StdEncoding.DecodeString(wm.BodyBase64)
	default:
		return "(empty)"
	}
	ct := strings.ToLower(strings.TrimSpace(strings.Split(wm.ContentType, ";")[0]))
	if ct == "application/json" || strings.HasSuffix(ct, "+json") || (ct == "" && json.Valid(body)) {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			return buf.String()
		}
	}
	if wm.Body != nil {
		return *wm.Body
	}
	return hex.Dump(body)
}
