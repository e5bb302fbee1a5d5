package transport

import (
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Message is what a transport carries: a body, headers, and the AMQP 0-9-1
// basic properties busline uses. Transports deliver messages as persistent
// (AMQP delivery mode 2).
//
// The string properties are AMQP short strings: at most 255 bytes each.
// Timestamp travels with one-second precision, as AMQP carries it.
type Message struct {
	// ID is the AMQP message_id property.
	ID string
	// CorrelationID is the AMQP correlation_id property.
	CorrelationID string
	// ReplyTo is the AMQP reply_to property: the queue replies go to.
	ReplyTo string
	// ContentType is the AMQP content_type property, such as
	// "application/json".
	ContentType string
	// ContentEncoding is the AMQP content_encoding property, such as "utf-8".
	ContentEncoding string
	// Type is the AMQP type property: the message type.
	Type string
	// Timestamp is the AMQP timestamp property; zero means unset.
	Timestamp time.Time
	// Priority is the AMQP priority property (0 to 255, 0 by default). A
	// priority queue ([QueueOptions.MaxPriority]) delivers messages of a
	// higher priority first; other queues ignore it.
	Priority uint8
	// Headers are the AMQP headers table. See [Headers].
	Headers Headers
	// Body is the payload. A transport never modifies a body it was given,
	// and a handler may keep or modify the body it was delivered.
	Body []byte
}

// Clone returns a deep copy of m: its headers and body are copied, so that
// changing the copy never changes m.
func (m *Message) Clone() Message {
	c := *m
	c.Headers = m.Headers.Clone()
	if m.Body != nil {
		c.Body = append([]byte(nil), m.Body...)
	}
	return c
}

// Validate reports whether a transport can carry m: every property at most
// 255 bytes, every header key at most 255 bytes, every header value of a
// type listed in [Headers]. The error wraps [ErrInvalidMessage].
func (m *Message) Validate() error {
	for _, p := range [...]struct{ name, value string }{
		{"ID", m.ID},
		{"CorrelationID", m.CorrelationID},
		{"ReplyTo", m.ReplyTo},
		{"ContentType", m.ContentType},
		{"ContentEncoding", m.ContentEncoding},
		{"Type", m.Type},
	} {
		if len(p.value) > MaxNameLength {
			return fmt.Errorf("%w: property %s is %d bytes long, the limit is %d",
				ErrInvalidMessage, p.name, len(p.value), MaxNameLength)
		}
	}
	if err := m.Headers.Validate(); err != nil {
		return err
	}
	return nil
}

// Normalized returns a deep copy of m in the canonical form every transport
// delivers: headers normalized by [Headers.Normalize] and the timestamp
// truncated to the second, in UTC. It fails as [Message.Validate] does.
func (m *Message) Normalized() (Message, error) {
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	c := *m
	h, err := m.Headers.Normalize()
	if err != nil {
		return Message{}, err
	}
	c.Headers = h
	if !m.Timestamp.IsZero() {
		c.Timestamp = m.Timestamp.Truncate(time.Second).UTC()
	}
	if m.Body != nil {
		c.Body = append([]byte(nil), m.Body...)
	}
	return c, nil
}

// Decimal is the AMQP decimal header value: Value × 10^-Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// Headers is an AMQP headers table. Keys are at most 255 bytes. Values are
// of the types an AMQP 0-9-1 field table carries; after delivery they are in
// this canonical form:
//
//	nil, bool, string, []byte,
//	int8, uint8, int16, uint16, int32, uint32, int64, float32, float64,
//	Decimal, time.Time (UTC, whole seconds),
//	map[string]any (a nested table), []any (an array)
//
// where nested tables and arrays hold canonical values again. On the way in
// a transport also accepts int, uint and uint64 (stored as int32 when the
// value fits, otherwise as int64, as PikaBus's Python client does), Headers
// as a nested table, and []string, []map[string]any and []Headers as arrays.
// Any other type is refused with [ErrInvalidMessage].
type Headers map[string]any

// Clone returns a deep copy of h. Nested tables, arrays and byte slices are
// copied; values of other types are immutable and shared. A nil h gives nil.
func (h Headers) Clone() Headers {
	if h == nil {
		return nil
	}
	c := make(Headers, len(h))
	for k, v := range h {
		c[k] = cloneValue(v)
	}
	return c
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case []byte:
		return append([]byte(nil), v...)
	case map[string]any:
		return map[string]any(Headers(v).Clone())
	case Headers:
		return v.Clone()
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = cloneValue(e)
		}
		return c
	case []string:
		return append([]string(nil), v...)
	case []map[string]any:
		c := make([]map[string]any, len(v))
		for i, e := range v {
			c[i] = Headers(e).Clone()
		}
		return c
	case []Headers:
		c := make([]Headers, len(v))
		for i, e := range v {
			c[i] = e.Clone()
		}
		return c
	}
	return v
}

// Validate reports whether every key and value of h can be carried, as
// described on [Headers]. The error wraps [ErrInvalidMessage] and names the
// offending key.
func (h Headers) Validate() error {
	_, err := h.normalize("", false)
	return err
}

// Normalize returns a deep copy of h with every value in its canonical form
// (see [Headers]), so that h reads the same after a trip through any
// transport. A nil or empty h gives nil. The error wraps [ErrInvalidMessage]
// and names the offending key.
func (h Headers) Normalize() (Headers, error) {
	return h.normalize("", true)
}

func (h Headers) normalize(path string, build bool) (Headers, error) {
	if len(h) == 0 {
		return nil, nil
	}
	var out Headers
	if build {
		out = make(Headers, len(h))
	}
	for k, v := range h {
		p := k
		if path != "" {
			p = path + "." + k
		}
		if len(k) > MaxNameLength {
			return nil, fmt.Errorf("%w: header key %q is %d bytes long, the limit is %d",
				ErrInvalidMessage, shorten(p), len(k), MaxNameLength)
		}
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: header key %q is not valid UTF-8", ErrInvalidMessage, shorten(p))
		}
		nv, err := normalizeValue(p, v, build)
		if err != nil {
			return nil, err
		}
		if build {
			out[k] = nv
		}
	}
	return out, nil
}

func normalizeValue(path string, v any, build bool) (any, error) {
	switch v := v.(type) {
	case nil, bool, string, int8, uint8, int16, uint16, int32, uint32, int64, float32, float64, Decimal:
		return v, nil
	case []byte:
		if !build {
			return nil, nil
		}
		return append([]byte(nil), v...), nil
	case int:
		return normalizeInt(int64(v)), nil
	case uint:
		if uint64(v) > math.MaxInt64 {
			return nil, fmt.Errorf("%w: header %q: %d does not fit in a signed 64-bit integer", ErrInvalidMessage, shorten(path), v)
		}
		return normalizeInt(int64(v)), nil
	case uint64:
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("%w: header %q: %d does not fit in a signed 64-bit integer", ErrInvalidMessage, shorten(path), v)
		}
		return normalizeInt(int64(v)), nil
	case time.Time:
		return v.Truncate(time.Second).UTC(), nil
	case map[string]any:
		t, err := Headers(v).normalize(path, build)
		if t == nil && build {
			t = Headers{}
		}
		return map[string]any(t), err
	case Headers:
		t, err := v.normalize(path, build)
		if t == nil && build {
			t = Headers{}
		}
		return map[string]any(t), err
	case []any:
		return normalizeArray(path, len(v), func(i int) any { return v[i] }, build)
	case []string:
		return normalizeArray(path, len(v), func(i int) any { return v[i] }, build)
	case []map[string]any:
		return normalizeArray(path, len(v), func(i int) any { return v[i] }, build)
	case []Headers:
		return normalizeArray(path, len(v), func(i int) any { return v[i] }, build)
	}
	return nil, fmt.Errorf("%w: header %q has a value of type %T, which AMQP cannot carry", ErrInvalidMessage, shorten(path), v)
}

func normalizeArray(path string, n int, at func(int) any, build bool) (any, error) {
	var out []any
	if build {
		out = make([]any, n)
	}
	for i := 0; i < n; i++ {
		e, err := normalizeValue(fmt.Sprintf("%s[%d]", path, i), at(i), build)
		if err != nil {
			return nil, err
		}
		if build {
			out[i] = e
		}
	}
	return out, nil
}

func normalizeInt(v int64) any {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		return int32(v)
	}
	return v
}
