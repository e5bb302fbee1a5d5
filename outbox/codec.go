package outbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/busline/busline/transport"
)

// stored is the form of a message's properties and headers in the outbox
// table's message column: JSON, the headers in transport.MarshalHeaders's
// form, which keeps every value's AMQP type, so that a message dispatched
// from the table is the message the handler sent, header types included.
// Rows stored by earlier versions of the package hold the headers as a
// tagged array, ["m", {...}]; the table's schema is the same, and
// decodeMessage reads both forms.
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
		h, err := transport.MarshalHeaders(m.Headers)
		if err != nil {
			return "", err
		}
		s.Headers = h
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
		h, err := decodeHeaders(s.Headers)
		if err != nil {
			return transport.Message{}, fmt.Errorf("decoding a stored message's headers: %w", err)
		}
		m.Headers = h
	}
	return m, nil
}

// decodeHeaders reads stored headers in either form: an object is
// transport.MarshalHeaders's, an array the tagged form of the rows stored
// before it.
func decodeHeaders(raw json.RawMessage) (transport.Headers, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
		return transport.UnmarshalHeaders(raw)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	v, err := decodeLegacyValue(tree)
	if err != nil {
		return nil, err
	}
	t, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a %T, not a table", v)
	}
	return transport.Headers(t), nil
}
