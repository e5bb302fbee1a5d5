package transport_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// everyType holds a value of every type a transport accepts in headers,
// canonical or not, nested tables and arrays included.
func everyType() transport.Headers {
	ts := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	return transport.Headers{
		"s": "text", "b": true, "nil": nil, "bytes": []byte{0, 1, 255}, "latin1": "caf\xe9",
		"i8": int8(-8), "u8": uint8(8), "i16": int16(-16), "u16": uint16(16), "i32": int32(-32), "u32": uint32(32),
		"i64": int64(math.MinInt64), "f32": float32(1.5), "f64": 2.25, "nan": math.NaN(), "inf": float32(math.Inf(-1)),
		"int": 7, "uint": uint(1 << 40), "u64": uint64(math.MaxInt64), "dec": transport.Decimal{Scale: 2, Value: -12345},
		"time": ts, "local": ts.In(time.FixedZone("x", 3600)).Add(time.Millisecond), "far": time.Unix(math.MaxInt64/2, 0),
		"table":   map[string]any{"x": int32(1), "y": []any{"a", int64(1 << 40)}, "empty": map[string]any{}},
		"headers": transport.Headers{"h": "v"},
		"array":   []any{"a", int16(2), map[string]any{"z": false}, []any{}},
		"strings": []string{"a", "b"}, "tables": []map[string]any{{"k": 1}}, "headerses": []transport.Headers{{"k": uint8(1)}},
		"x-death": []any{map[string]any{"count": int64(2), "reason": "rejected", "time": ts, "routing-keys": []any{"orders"}}},
	}
}

// MarshalHeaders and UnmarshalHeaders give back what a transport would
// deliver, and say which header they cannot carry or read.
func TestHeadersJSON(t *testing.T) {
	h := everyType()
	b, err := transport.MarshalHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := transport.UnmarshalHeaders(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want, err := h.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if !sameValue(map[string]any(got), map[string]any(want)) {
		t.Errorf("round trip:\n got %#v\nwant %#v\nJSON %s", got, want, b)
	}
	for _, s := range []string{`"s":"text"`, `"i32":{"int32":-32}`, `"i64":{"int64":"-9223372036854775808"}`, `"nan":{"float64":"NaN"}`,
		`"dec":{"decimal":{"scale":2,"value":-12345}}`, `"time":{"time":"2026-12-03T12:00:00Z"}`, `"latin1":{"string_base64":"Y2Fm6Q=="}`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("%s does not hold %s", b, s)
		}
	}

	for _, empty := range []string{`null`, `{}`, ` {} `} {
		if h, err := transport.UnmarshalHeaders([]byte(empty)); h != nil || err != nil {
			t.Errorf("UnmarshalHeaders(%s) = %#v, %v; want nil, nil", empty, h, err)
		}
	}
	if _, err := transport.MarshalHeaders(transport.Headers{"t": map[string]any{"bad": struct{}{}}}); !errors.Is(err, transport.ErrInvalidMessage) || !strings.Contains(err.Error(), `"t.bad"`) {
		t.Errorf("a value AMQP cannot carry: %v", err)
	}
	for in, says := range map[string]string{
		`{`:                              "headers JSON",
		`{} {}`:                          "data after",
		`[1]`:                            "not an object",
		`{"a": 5}`:                       `"a": a number`,
		`{"a": {"int8": 300}}`:           `"a": int8`,
		`{"a": {"uint8": -1}}`:           `"a": uint8`,
		`{"a": {"int64": "1.5"}}`:        `"a": int64`,
		`{"a": {"nope": 1}}`:             "unknown type",
		`{"a": {"int8": 1, "int16": 2}}`: "one member",
		`{"a": {"table": {"b": [1]}}}`:   `"a.b": a array`,
		`{"a": {"array": ["x", {"int8": 1000}]}}`: `"a[1]": int8`,
		`{"a": {"decimal": {"scale": 300}}}`:      "scale",
		`{"a": {"decimal": {"x": 1}}}`:            `member "x"`,
		`{"a": {"time": "yesterday"}}`:            "time",
		`{"a": {"bytes": "!"}}`:                   "bytes",
	} {
		_, err := transport.UnmarshalHeaders([]byte(in))
		if !errors.Is(err, transport.ErrInvalidMessage) || !strings.Contains(err.Error(), says) {
			t.Errorf("UnmarshalHeaders(%s) = %v; want an ErrInvalidMessage that says %s", in, err, says)
		}
	}

	// Times with a zone and Unix seconds are read too.
	if h, err := transport.UnmarshalHeaders([]byte(`{"z": {"time": "2026-12-03T13:00:00.5+01:00"}, "u": {"time": 0}}`)); err != nil ||
		h["z"] != time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC) || h["u"] != time.Unix(0, 0).UTC() {
		t.Errorf("a time with a zone, Unix seconds: %v, %v", h, err)
	}
}

// sameValue is reflect.DeepEqual, except that NaN equals NaN.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		if bf, ok := b.(float64); ok && math.IsNaN(a) && math.IsNaN(bf) {
			return true
		}
	case float32:
		if bf, ok := b.(float32); ok && a != a && bf != bf {
			return true
		}
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) || (a == nil) != (bm == nil) {
			return false
		}
		for k, v := range a {
			w, ok := bm[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		ba, ok := b.([]any)
		if !ok || len(a) != len(ba) || (a == nil) != (ba == nil) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], ba[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// gen builds header values from fuzz bytes.
type gen struct{ data []byte }

func (g *gen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *gen) uint64() uint64 {
	var b [8]byte
	n := copy(b[:], g.data)
	g.data = g.data[n:]
	return binary.LittleEndian.Uint64(b[:])
}

func (g *gen) string() string {
	n := min(int(g.byte()), len(g.data))
	s := string(g.data[:n])
	g.data = g.data[n:]
	return s
}

// key is a valid header key: UTF-8 (the transport refuses other keys).
func (g *gen) key() string { return strings.ToValidUTF8(g.string(), "?") }

// value returns a value of any type the transport accepts on the way in.
func (g *gen) value(depth int) any {
	kinds := 26
	if depth > 3 {
		kinds = 20 // no more nesting
	}
	u := g.uint64()
	switch g.byte() % byte(kinds) {
	case 0:
		return nil
	case 1:
		return u&1 == 1
	case 2:
		return g.string() // any bytes: AMQP strings need not be UTF-8
	case 3:
		return []byte(g.string())
	case 4:
		return int8(u)
	case 5:
		return uint8(u)
	case 6:
		return int16(u)
	case 7:
		return uint16(u)
	case 8:
		return int32(u)
	case 9:
		return uint32(u)
	case 10:
		return int64(u)
	case 11:
		return math.Float32frombits(uint32(u))
	case 12:
		return math.Float64frombits(u)
	case 13:
		return transport.Decimal{Scale: uint8(u), Value: int32(u >> 8)}
	case 14:
		return time.Unix(int64(u), int64(u>>40)%1e9) // as amqp091 decodes any timestamp
	case 15:
		return int(u)
	case 16:
		return uint(u >> 1)
	case 17:
		return u >> 1
	case 18:
		return []string{g.string(), g.string()}
	case 19:
		return ""
	case 20, 21:
		return g.table(depth + 1)
	case 22:
		return transport.Headers(g.table(depth + 1))
	case 23:
		return []map[string]any{g.table(depth + 1)}
	case 24:
		return []transport.Headers{g.table(depth + 1)}
	default:
		a := make([]any, g.byte()%4)
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	}
}

func (g *gen) table(depth int) map[string]any {
	t := map[string]any{}
	for n := g.byte() % 5; n > 0; n-- {
		t[g.key()] = g.value(depth)
	}
	return t
}

// FuzzHeadersJSON: headers of every type the transport accepts, built from
// the fuzzer's bytes, come back from JSON as a transport delivers them.
func FuzzHeadersJSON(f *testing.F) {
	f.Add([]byte{})
	for k := range 26 {
		f.Add([]byte{3, 1, 'k', byte(k), 1, 2, 3, 4, 5, 6, 7, 8, 200, 3, 'a', 0xff, 'b'})
	}
	f.Add([]byte("\x04\x02k1\x14\x02\x02k2\x19\x03x\xfe\x00\x00\x00\x00\x00\x00\x00\x0e"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{data: data}
		h := transport.Headers(g.table(0))
		want, err := h.Normalize()
		if err != nil {
			t.Skip(err) // a key too long: refused before any JSON
		}
		b, err := transport.MarshalHeaders(h)
		if err != nil {
			t.Fatalf("MarshalHeaders(%#v): %v", h, err)
		}
		got, err := transport.UnmarshalHeaders(b)
		if err != nil {
			t.Fatalf("UnmarshalHeaders(%s): %v", b, err)
		}
		if !sameValue(map[string]any(got), map[string]any(want)) {
			t.Fatalf("round trip of %#v:\n got %#v\nwant %#v\nJSON %s", h, got, want, b)
		}
	})
}

// FuzzUnmarshalHeaders: any input is read or refused, never a panic, and
// what is read is written again and reads the same.
func FuzzUnmarshalHeaders(f *testing.F) {
	b, err := transport.MarshalHeaders(everyType())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add(`{"a": {"time": 1e3}}`)
	f.Add(`{"a": {"float32": "1e40"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		h, err := transport.UnmarshalHeaders([]byte(s))
		if err != nil {
			if !errors.Is(err, transport.ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		b, err := transport.MarshalHeaders(h)
		if err != nil {
			t.Fatalf("%s read as %#v, which does not marshal: %v", s, h, err)
		}
		again, err := transport.UnmarshalHeaders(b)
		if err != nil || !sameValue(map[string]any(again), map[string]any(h)) {
			t.Fatalf("%s read as %#v, written as %s, read again as %#v, %v", s, h, b, again, err)
		}
	})
}

func ExampleMarshalHeaders() {
	b, _ := transport.MarshalHeaders(transport.Headers{
		"PikaBus.MessageType":  "PlaceOrder",
		"PikaBus.ErrorRetries": int8(2),
		"x-death":              []any{map[string]any{"count": int64(1)}},
	})
	fmt.Println(string(b))
	// Output:
	// {"PikaBus.ErrorRetries":{"int8":2},"PikaBus.MessageType":"PlaceOrder","x-death":{"array":[{"table":{"count":{"int64":"1"}}}]}}
}
