package outbox

import (
	"reflect"
	"strings"
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
	if !strings.Contains(text, `"i32":{"int32":-32}`) {
		t.Errorf("stored headers are not in transport.MarshalHeaders's form: %s", text)
	}
	for _, bad := range []string{`{`, `{"headers":[1]}`, `{"headers":["m",{"a":["i8",300]}]}`, `{"headers":["m",{"a":["?",1]}]}`, `{"headers":{"a":1}}`} {
		if _, err := decodeMessage(bad, nil); err == nil {
			t.Errorf("decoding %s: no error", bad)
		}
	}
}

// Rows stored before the outbox took transport.MarshalHeaders's form are
// read as they were written.
func TestLegacyStoredMessage(t *testing.T) {
	text := `{"id":"id","type":"T","timestamp":1764750000123456,"headers":["m",{"s":["s","text"],"n":["n"],"b":["b",true],"x":["x","AAH/"],` +
		`"i8":["i8",-8],"u32":["u32",32],"i64":["i64","-1152921504606846976"],"f32":["f32","1.5"],"f64":["f64","NaN"],"d":["d",2,12345],` +
		`"t":["t",1764750000],"tbl":["m",{"a":["a",[["s","q"],["i16",2]]]}]}]}`
	got, err := decodeMessage(text, []byte("body"))
	if err != nil {
		t.Fatal(err)
	}
	nan := got.Headers["f64"]
	if f, ok := nan.(float64); !ok || f == f {
		t.Errorf("f64: %#v, want NaN", nan)
	}
	delete(got.Headers, "f64")
	want := transport.Message{ID: "id", Type: "T", Timestamp: time.UnixMicro(1764750000123456).UTC(), Body: []byte("body"),
		Headers: transport.Headers{"s": "text", "n": nil, "b": true, "x": []byte{0, 1, 255}, "i8": int8(-8), "u32": uint32(32),
			"i64": int64(-1 << 60), "f32": float32(1.5), "d": transport.Decimal{Scale: 2, Value: 12345},
			"t": time.Unix(1764750000, 0).UTC(), "tbl": map[string]any{"a": []any{"q", int16(2)}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("legacy row:\n got %#v\nwant %#v", got, want)
	}
}
