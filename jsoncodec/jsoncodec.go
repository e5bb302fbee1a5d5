package jsoncodec

import (
	gojson "github.com/goccy/go-json"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// JSON is the codec: go-json's Marshal and Unmarshal, content type
// "application/json", content encoding "utf-8", as [bus.JSON] writes.
var JSON bus.Codec = codec{}

type codec struct{}

func (codec) ContentType() string { return "application/json" }

// Encode sets a fresh body: the bus pools bodies only for bus.JSON, whose
// buffers it owns.
func (codec) Encode(v any, m *transport.Message) error {
	b, err := gojson.Marshal(v)
	if err != nil {
		return err
	}
	m.Body = b
	m.ContentType = "application/json"
	m.ContentEncoding = "utf-8"
	return nil
}

// Decode keeps no reference to m.Body, as the Codec contract asks: go-json
// parses a copy of it (the copy carries the terminator its parser needs).
func (codec) Decode(m *transport.Message, v any) error {
	return gojson.Unmarshal(m.Body, v)
}
