package outbox

import (
	"reflect"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// A stored message comes back as the transport would deliver it: every
// header value of its AMQP type, nested tables and arrays included.
func TestStoredMessageRoundTrip(t *testing.T) {
	m := transport.Message{
		ID: "id", CorrelationID: "corr", ReplyTo: "orders", ContentType: "application/json", ContentEncoding: "utf-8",
		Type: "orders.PlaceOrder", Timestamp: time.UnixMicro(1764750000123456), Body: []byte(`{"ID":"o1"}`),
		Headers: transport.Headers{
			"s": "text", "b": true, "nil": nil, "bytes": []byte{0, 1, 255},
			"i8": int8(-8), "u8": uint8(8), "i16": int16(-16), "u16": uint16(16), "i32": int32(-32), "u32": uint32(32),
			"i64": int64(-1 << 60), "f32": float32(1.5), "f64": 2.25, "int": 7, "big": uint64(1 << 40),
			"dec": transport.Decimal{Scale: 2, Value: 12345}, "time": time.Unix(1764750000, 0).UTC(),
			"table": map[string]any{"x": int32(1), "y": []any{"a", int64(1 << 40)}},
			"array": []any{"a", int16(2), map[string]any{"z": false}},
		},
	}
	text, err := encodeMessage(&m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMessage(text, m.Body)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	want.Timestamp = m.Timestamp.UTC() // stored to the microsecond
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
	}
	if _, err := encodeMessage(&transport.Message{Headers: transport.Headers{"bad": struct{}{}}}); err == nil {
		t.Error("a header the wire cannot carry was stored")
	}
	for _, bad := range []string{`{`, `{"headers":[1]}`, `{"headers":["m",{"a":["i8",300]}]}`, `{"headers":["m",{"a":["?",1]}]}`} {
		if _, err := decodeMessage(bad, nil); err == nil {
			t.Errorf("decoding %s: no error", bad)
		}
	}
}
