package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

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
	// ContentType and ContentEncoding into the headers afterwards. It
	// must not keep m.Headers, which the bus reuses once the message is
	// dispatched.
	Encode(v any, m *transport.Message) error

	// Decode decodes m into v, a non-nil pointer. It must not keep m.Body
	// or modify m.
	Decode(m *transport.Message, v any) error
}

// SelectiveCodec is a [Codec] that encodes only some values, such as a
// protobuf codec, which encodes generated message types. Put it in
// [Options.Codecs]: an outgoing message it Encodes is encoded with it (the
// first such codec in Options.Codecs), any other with [Options.Codec]. So
// one endpoint sends and receives JSON and protobuf messages side by side,
// the receiving side choosing each message's decoder by its content type.
type SelectiveCodec interface {
	Codec
	// Encodes reports whether the codec encodes v. It is called for every
	// message sent, so it must be cheap (a type assertion), and must not
	// keep v.
	Encodes(v any) bool
}

// TopicEncoder is implemented by codecs whose encoding of an event depends
// on the topic it is published under, as tomodachi's envelopes carry it.
// For a Publish, the Bus calls EncodeTopic instead of Encode, with the topic
// given to Publish (without the prefix); for the other calls it calls
// Encode.
type TopicEncoder interface {
	// EncodeTopic is [Codec.Encode] for an event published under topic.
	EncodeTopic(v any, topic string, m *transport.Message) error
}

// selectiveCodecs returns the codecs of cs that are SelectiveCodecs.
func selectiveCodecs(cs []Codec) []SelectiveCodec {
	var out []SelectiveCodec
	for _, c := range cs {
		if sc, ok := c.(SelectiveCodec); ok {
			out = append(out, sc)
		}
	}
	return out
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

// encodeJSON encodes v into m as the JSON codec does, but into a pooled
// buffer instead of a new slice: m.Body is valid until buf is given to
// releaseBody, which the Bus does once Dispatch returned (Dispatch does not
// keep bodies).
func encodeJSON(v any, m *transport.Message) (buf *bytes.Buffer, err error) {
	buf = jsonBodies.Get().(*bytes.Buffer)
	// Encode writes what Marshal returns (same escaping, same errors), and
	// a newline.
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		releaseBody(buf)
		return nil, err
	}
	body := buf.Bytes()
	m.Body = body[: len(body)-1 : len(body)-1]
	m.ContentType = "application/json"
	m.ContentEncoding = "utf-8"
	return buf, nil
}

var jsonBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody keeps large buffers out of the pool.
const maxPooledBody = 64 << 10

// releaseBody gives a buffer from encodeJSON back to the pool; nil is
// ignored.
func releaseBody(buf *bytes.Buffer) {
	if buf == nil || buf.Cap() > maxPooledBody {
		return
	}
	buf.Reset()
	jsonBodies.Put(buf)
}

// Decode is json.Unmarshal, with the decoder's state recycled: Unmarshal
// allocates it afresh (four allocations) for every message.
func (jsonCodec) Decode(m *transport.Message, v any) error {
	d := jsonDecoders.Get().(*jsonDecoder)
	d.r.Reset(m.Body)
	start := d.dec.InputOffset()
	err := d.dec.Decode(v)
	used := int(d.dec.InputOffset() - start)
	d.r.Reset(nil)
	switch {
	case err == io.EOF:
		return errors.New("unexpected end of JSON input") // the decoder's error sticks: drop it
	case err != nil:
		return err // the decoder may hold unread input or a sticky error: drop it
	case used != len(m.Body):
		// Unmarshal refuses anything but white space after the value.
		if rest := bytes.TrimLeft(m.Body[used:], " \t\r\n"); len(rest) > 0 {
			return fmt.Errorf("invalid character %q after top-level value", rest[0])
		}
		return nil // the decoder holds the white space: drop it
	}
	jsonDecoders.Put(d)
	return nil
}

type jsonDecoder struct {
	r   bytes.Reader
	dec *json.Decoder
}

var jsonDecoders = sync.Pool{New: func() any {
	d := new(jsonDecoder)
	d.dec = json.NewDecoder(&d.r)
	return d
}}

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
