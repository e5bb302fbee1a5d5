package amqp

import (
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// The header codec. Outgoing headers are first put in transport's canonical
// form (transport.Headers.Normalize), which turns Go int, uint and uint64
// into int32 when the value fits and int64 otherwise, so that amqp091's
// encoding of a Go int as a 32-bit 'I' field can never truncate a value.
// Canonical values then map one to one onto AMQP field types:
//
//	bool 't', int8 'b', uint8 'B', int16 's', uint16 'u', int32 'I',
//	uint32 'i', int64 'l', float32 'f', float64 'd', Decimal 'D',
//	string 'S', []byte 'x', time.Time 'T', nil 'V',
//	map[string]any 'F' (a table), []any 'A' (an array)
//
// and back: every field type amqp091 can read decodes to a canonical value,
// so a header from a foreign producer never makes a message unreadable.

// encodeHeaders turns headers into an amqp091 table. Normalize makes a
// deep copy in canonical form, which is then converted in place: the
// caller's headers are never touched.
func encodeHeaders(h transport.Headers) (amqp091.Table, error) {
	n, err := h.Normalize()
	if err != nil || len(n) == 0 {
		return nil, err
	}
	for k, v := range n {
		if c, ok := encodeValue(v); ok {
			n[k] = c
		}
	}
	return amqp091.Table(n), nil
}

// direct reports whether amqp091 writes every value of h as the canonical
// form says: no Go int to narrow, no Decimal to convert, no nested table.
func direct(h transport.Headers) bool {
	for _, v := range h {
		switch v.(type) {
		case string, nil, bool, int8, uint8, int16, uint16, int32, uint32, int64, float32, float64, []byte, time.Time:
		default:
			return false
		}
	}
	return true
}

// encodeValue converts, in place where it can, a canonical value that
// amqp091 writes differently; ok reports a replacement.
func encodeValue(v any) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if c, ok := encodeValue(e); ok {
				v[k] = c
			}
		}
		return amqp091.Table(v), true
	case []any:
		for i, e := range v {
			if c, ok := encodeValue(e); ok {
				v[i] = c
			}
		}
	case transport.Decimal:
		return amqp091.Decimal{Scale: v.Scale, Value: v.Value}, true
	}
	return nil, false
}

// decodeHeaders turns a table read by amqp091, which the delivery owns,
// into canonical headers in place, leaving out the keys drop reports true
// for.
func decodeHeaders(t amqp091.Table, drop func(string) bool) transport.Headers {
	if len(t) == 0 {
		return nil
	}
	for k, v := range t {
		if drop != nil && drop(k) {
			delete(t, k)
			continue
		}
		if c, ok := decodeValue(v); ok {
			t[k] = c
		}
	}
	if len(t) == 0 {
		return nil
	}
	return transport.Headers(t)
}

// decodeValue converts, in place where it can, a value amqp091 read into
// its canonical form; ok reports a replacement.
func decodeValue(v any) (any, bool) {
	switch v := v.(type) {
	case amqp091.Table:
		for k, e := range v {
			if c, ok := decodeValue(e); ok {
				v[k] = c
			}
		}
		return map[string]any(v), true
	case map[string]any:
		for k, e := range v {
			if c, ok := decodeValue(e); ok {
				v[k] = c
			}
		}
	case []any:
		for i, e := range v {
			if c, ok := decodeValue(e); ok {
				v[i] = c
			}
		}
	case amqp091.Decimal:
		return transport.Decimal{Scale: v.Scale, Value: v.Value}, true
	case time.Time:
		return v.UTC(), true
	case int:
		// amqp091 never reads an int, but a fake or a future version might.
		return int64(v), true
	case nil, bool, string, []byte, int8, uint8, int16, uint16, int32, uint32, int64, float32, float64:
	default:
		// Unreachable with amqp091's reader; keep the message readable.
		return fmt.Sprint(v), true
	}
	return nil, false
}

// publishing builds the amqp091 message for m, which passed
// [transport.Message.Validate]. Messages are persistent.
//
// Headers whose every value amqp091 writes as it is (strings, fixed-size
// numbers, bools, byte slices, times, nil: the PikaBus headers) go as they
// are, without a copy: amqp091 only reads them, and only while Dispatch
// runs, which never returns while one of its messages is being written
// (see pubReq.abandon). Others are encoded into a copy.
func publishing(m *transport.Message) (amqp091.Publishing, error) {
	var h amqp091.Table
	if direct(m.Headers) {
		if len(m.Headers) > 0 {
			h = amqp091.Table(m.Headers)
		}
	} else {
		var err error
		if h, err = encodeHeaders(m.Headers); err != nil {
			return amqp091.Publishing{}, err
		}
	}
	p := amqp091.Publishing{
		Headers:         h,
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		DeliveryMode:    amqp091.Persistent,
		CorrelationId:   m.CorrelationID,
		ReplyTo:         m.ReplyTo,
		MessageId:       m.ID,
		Type:            m.Type,
		Priority:        m.Priority,
		Body:            m.Body,
	}
	if !m.Timestamp.IsZero() {
		p.Timestamp = m.Timestamp.Truncate(time.Second).UTC()
	}
	return p, nil
}

// message builds the transport message of a delivery.
func message(d *amqp091.Delivery, drop func(string) bool) transport.Message {
	m := transport.Message{
		ID:              d.MessageId,
		CorrelationID:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		Type:            d.Type,
		Headers:         decodeHeaders(d.Headers, drop),
		Priority:        d.Priority,
		Body:            d.Body,
	}
	if !d.Timestamp.IsZero() {
		m.Timestamp = d.Timestamp.UTC()
	}
	return m
}
