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

// encodeHeaders turns canonical headers into an amqp091 table.
func encodeHeaders(h transport.Headers) (amqp091.Table, error) {
	n, err := h.Normalize()
	if err != nil {
		return nil, err
	}
	if len(n) == 0 {
		return nil, nil
	}
	t := make(amqp091.Table, len(n))
	for k, v := range n {
		t[k] = encodeValue(v)
	}
	return t, nil
}

func encodeValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		t := make(amqp091.Table, len(v))
		for k, e := range v {
			t[k] = encodeValue(e)
		}
		return t
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = encodeValue(e)
		}
		return a
	case transport.Decimal:
		return amqp091.Decimal{Scale: v.Scale, Value: v.Value}
	}
	return v
}

// decodeHeaders turns a table read by amqp091 into canonical headers,
// leaving out the keys drop reports true for.
func decodeHeaders(t amqp091.Table, drop func(string) bool) transport.Headers {
	if len(t) == 0 {
		return nil
	}
	h := make(transport.Headers, len(t))
	for k, v := range t {
		if drop != nil && drop(k) {
			continue
		}
		h[k] = decodeValue(v)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

func decodeValue(v any) any {
	switch v := v.(type) {
	case amqp091.Table:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = decodeValue(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = decodeValue(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = decodeValue(e)
		}
		return a
	case amqp091.Decimal:
		return transport.Decimal{Scale: v.Scale, Value: v.Value}
	case time.Time:
		return v.UTC()
	case int:
		// amqp091 never reads an int, but a fake or a future version might.
		return int64(v)
	case nil, bool, string, []byte, int8, uint8, int16, uint16, int32, uint32, int64, float32, float64:
		return v
	}
	// Unreachable with amqp091's reader; keep the message readable anyway.
	return fmt.Sprint(v)
}

// publishing builds the amqp091 message for m. Messages are persistent.
func publishing(m *transport.Message) (amqp091.Publishing, error) {
	h, err := encodeHeaders(m.Headers)
	if err != nil {
		return amqp091.Publishing{}, err
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
		Body:            d.Body,
	}
	if !d.Timestamp.IsZero() {
		m.Timestamp = d.Timestamp.UTC()
	}
	return m
}
