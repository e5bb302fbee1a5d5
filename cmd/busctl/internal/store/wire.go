package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// WireMessage is a [transport.Message] as JSON, the form busctl stores,
// exports, imports and sends. Header values keep their AMQP types, in the
// form of transport.MarshalHeaders: a string or a boolean is itself, null
// is null, and every other value is an object with one key naming its type
// ({"int32": 5}, {"time": "2026-…Z"}, {"bytes": "base64…"}, {"decimal":
// {"scale": 2, "value": 1999}}, {"table": {…}}, {"array": […]}), so that a
// message read back is the message written. The body is text when it is valid UTF-8 (Body), base64
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
		b, err := transport.MarshalHeaders(m.Headers)
		if err != nil {
			return WireMessage{}, err
		}
		if err := json.Unmarshal(b, &w.Headers); err != nil {
			return WireMessage{}, err
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
		b, err := json.Marshal(w.Headers)
		if err != nil {
			return transport.Message{}, err
		}
		if m.Headers, err = transport.UnmarshalHeaders(b); err != nil {
			return transport.Message{}, err
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
