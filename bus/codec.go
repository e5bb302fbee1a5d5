package bus

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/busline/busline/transport"
)

// Codec turns messages into bodies and back. It works on the whole wire
// message, so that a codec can wrap the body in an envelope of its own or
// read and write headers, not only transform bytes.
//
// A Codec must be safe for concurrent use.
type Codec interface {
	// ContentType is the media type the codec writes and reads, such as
	// "application/json". The receiving side picks the codec whose
	// ContentType matches the message's (ignoring parameters such as
	// "; charset=utf-8" and case).
	ContentType() string

	// Encode encodes v into m: it sets m.Body, m.ContentType and, if the
	// codec has one, m.ContentEncoding. When Encode is called, m already
	// carries its properties and the bus's standard headers, which the
	// codec may read (for an envelope) and add to; the bus mirrors
	// ContentType and ContentEncoding into the headers afterwards.
	Encode(v any, m *transport.Message) error

	// Decode decodes m into v, a non-nil pointer. It must not keep m.Body
	// or modify m.
	Decode(m *transport.Message, v any) error
}

// JSON is the default codec: encoding/json, content type
// "application/json", content encoding "utf-8", as PikaBus writes.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return "application/json" }

func (jsonCodec) Encode(v any, m *transport.Message) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m.Body = b
	m.ContentType = "application/json"
	m.ContentEncoding = "utf-8"
	return nil
}

func (jsonCodec) Decode(m *transport.Message, v any) error {
	return json.Unmarshal(m.Body, v)
}

// codecs picks the codec that reads a content type.
type codecs struct {
	def  Codec
	list []Codec // def first
}

func newCodecs(def Codec, extra []Codec) (codecs, error) {
	c := codecs{def: def, list: []Codec{def}}
	seen := map[string]bool{mediaType(def.ContentType()): true}
	if mediaType(def.ContentType()) == "" {
		return c, fmt.Errorf("bus: Options.Codec has an empty content type")
	}
	for i, x := range extra {
		if x == nil {
			return c, fmt.Errorf("bus: Options.Codecs[%d] is nil", i)
		}
		mt := mediaType(x.ContentType())
		if mt == "" {
			return c, fmt.Errorf("bus: Options.Codecs[%d] has an empty content type", i)
		}
		if seen[mt] {
			return c, fmt.Errorf("bus: Options.Codecs[%d]: two codecs for content type %q", i, mt)
		}
		seen[mt] = true
		c.list = append(c.list, x)
	}
	return c, nil
}

// forContentType returns the codec for a message's content type; an empty
// content type means the default codec.
func (c *codecs) forContentType(ct string) (Codec, bool) {
	if ct == "" {
		return c.def, true
	}
	for _, x := range c.list {
		if sameMediaType(x.ContentType(), ct) {
			return x, true
		}
	}
	return nil, false
}

// mediaType is ct without parameters, trimmed and lower case.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// sameMediaType compares without allocating in the common case of equal
// strings.
func sameMediaType(a, b string) bool {
	if a == b {
		return true
	}
	return mediaType(a) == mediaType(b)
}
