package bench

import (
	"encoding/json"

	"github.com/bytedance/sonic"
	gojson "github.com/goccy/go-json"
	jsoniter "github.com/json-iterator/go"
	segjson "github.com/segmentio/encoding/json"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// candidate is a JSON library measured as the bus's codec: its Marshal and
// Unmarshal, in their encoding/json-compatible configuration.
type candidate struct {
	name      string
	marshal   func(any) ([]byte, error)
	unmarshal func([]byte, any) error
	// codec is the bus.Codec the bus benchmark uses; nil means
	// libCodec{candidate}.
	codec bus.Codec
}

// candidates are the libraries compared, encoding/json first. Under
// GOEXPERIMENT=jsonv2, encoding/json is the experimental implementation
// over encoding/json/v2, and the corpus test compares it with a reference
// written by a build without the experiment.
var candidates = []candidate{
	{name: "encoding/json", marshal: json.Marshal, unmarshal: json.Unmarshal, codec: bus.JSON},
	{name: "encoding/json-plain", marshal: json.Marshal, unmarshal: json.Unmarshal},
	{name: "goccy/go-json", marshal: gojson.Marshal, unmarshal: gojson.Unmarshal},
	{name: "segmentio/encoding", marshal: segjson.Marshal, unmarshal: segjson.Unmarshal},
	{name: "json-iterator", marshal: jsoniter.ConfigCompatibleWithStandardLibrary.Marshal, unmarshal: jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal},
	{name: "sonic", marshal: sonic.ConfigStd.Marshal, unmarshal: sonic.ConfigStd.Unmarshal},
}

func (c candidate) busCodec() bus.Codec {
	if c.codec != nil {
		return c.codec
	}
	return libCodec{c}
}

// libCodec is a bus.Codec over a candidate's Marshal and Unmarshal, written
// as jsoncodec would be: a fresh body per message (the bus pools bodies
// only for its own bus.JSON), content type application/json, utf-8.
type libCodec struct{ c candidate }

func (libCodec) ContentType() string { return "application/json" }

func (l libCodec) Encode(v any, m *transport.Message) error {
	b, err := l.c.marshal(v)
	if err != nil {
		return err
	}
	m.Body = b
	m.ContentType = "application/json"
	m.ContentEncoding = "utf-8"
	return nil
}

func (l libCodec) Decode(m *transport.Message, v any) error { return l.c.unmarshal(m.Body, v) }
