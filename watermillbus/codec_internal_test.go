package watermillbus

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// Every canonical header type survives the trip through Watermill's string
// metadata, and properties that were not set stay unset.
func TestCodecRoundTrip(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0).UTC()
	in := transport.Message{
		ID: "m1", CorrelationID: "c", ReplyTo: "r", ContentType: "application/json",
		ContentEncoding: "utf-8", Type: "T", Timestamp: ts,
		Headers: transport.Headers{
			"s": "str", "busline.reserved": "x", "nil": nil, "b": true, "bytes": []byte{0, 1},
			"i8": int8(-8), "u8": uint8(8), "i16": int16(-16), "u16": uint16(16), "i32": int32(-32),
			"u32": uint32(32), "i64": int64(math.MinInt64), "f32": float32(1.5), "f64": math.Inf(1),
			"dec": transport.Decimal{Scale: 2, Value: -12345}, "t": ts,
			"x-death": []any{map[string]any{"count": int64(2), "reason": "rejected", "time": ts}},
		},
		Body: []byte("body"),
	}
	wm, err := toWatermill(&in)
	if err != nil {
		t.Fatal(err)
	}
	if wm.UUID != "m1" || wm.Metadata.Get("s") != "str" {
		t.Errorf("UUID %q, metadata s %q: want the ID and string headers as they are", wm.UUID, wm.Metadata.Get("s"))
	}
	out, err := fromWatermill(wm)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip:\n got %#v\nwant %#v", out, in)
	}

	bare := transport.Message{Body: []byte("x")}
	wm, err = toWatermill(&bare)
	if err != nil {
		t.Fatal(err)
	}
	if wm.UUID == "" {
		t.Error("a message without an ID got no Watermill UUID")
	}
	if out, err := fromWatermill(wm); err != nil || !reflect.DeepEqual(out, bare) {
		t.Errorf("round trip of a bare message = %#v, %v; want %#v", out, err, bare)
	}
}
