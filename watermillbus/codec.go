package watermillbus

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	// MetadataHeaders holds, as typed JSON (transport.MarshalHeaders),
	// every header that is not a string (integers, timestamps, tables,
	// arrays, ...) or whose name is reserved, so that it comes back with
	// its exact type.
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
		// A string that is not UTF-8 goes as typed JSON too: metadata
		// may be stored as text.
		if s, ok := v.(string); ok && utf8.ValidString(s) && !strings.HasPrefix(k, MetadataPrefix) {
			md[k] = s
			continue
		}
		if typed == nil {
			typed = map[string]any{}
		}
		typed[k] = v
	}
	if typed != nil {
		b, err := transport.MarshalHeaders(typed)
		if err != nil {
			return nil, err
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
			h, err := transport.UnmarshalHeaders([]byte(v))
			if err != nil {
				return m, fmt.Errorf("metadata %s: %w", k, err)
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
