package outbox

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/busline/busline/transport"
)

// decodeLegacyValue reads a header value of the rows stored before the
// outbox took transport.MarshalHeaders's form: [tag, value] arrays, tags
// n, b, s, x (base64 bytes), i8, u8, i16, u16, i32, u32 (JSON numbers),
// i64, f32, f64 (strings), d (scale, value), t (Unix seconds), m (table)
// and a (array). Those rows are dispatched within seconds of an upgrade,
// by the relay at the latest; this reader can go once no database holds
// one (a release later).
func decodeLegacyValue(raw any) (any, error) {
	a, ok := raw.([]any)
	if !ok || len(a) == 0 {
		return nil, fmt.Errorf("bad tagged value %v", raw)
	}
	tag, _ := a[0].(string)
	if tag == "n" {
		return nil, nil
	}
	if len(a) < 2 {
		return nil, fmt.Errorf("bad tagged value %v", raw)
	}
	v := a[1]
	num := func(lo, hi float64) (float64, error) {
		f, ok := v.(float64)
		if !ok || f < lo || f > hi || f != math.Trunc(f) {
			return 0, fmt.Errorf("bad %s value %v", tag, v)
		}
		return f, nil
	}
	str := func() (string, error) {
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("bad %s value %v", tag, v)
		}
		return s, nil
	}
	switch tag {
	case "b":
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("bad b value %v", v)
		}
		return b, nil
	case "s":
		return str()
	case "x":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	case "i8":
		f, err := num(math.MinInt8, math.MaxInt8)
		return int8(f), err
	case "u8":
		f, err := num(0, math.MaxUint8)
		return uint8(f), err
	case "i16":
		f, err := num(math.MinInt16, math.MaxInt16)
		return int16(f), err
	case "u16":
		f, err := num(0, math.MaxUint16)
		return uint16(f), err
	case "i32":
		f, err := num(math.MinInt32, math.MaxInt32)
		return int32(f), err
	case "u32":
		f, err := num(0, math.MaxUint32)
		return uint32(f), err
	case "i64":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "f32":
		s, err := str()
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case "f64":
		s, err := str()
		if err != nil {
			return nil, err
		}
		return strconv.ParseFloat(s, 64)
	case "d":
		if len(a) != 3 {
			return nil, fmt.Errorf("bad decimal %v", raw)
		}
		sc, ok1 := a[1].(float64)
		val, ok2 := a[2].(float64)
		if !ok1 || !ok2 || sc < 0 || sc > math.MaxUint8 || val < math.MinInt32 || val > math.MaxInt32 {
			return nil, fmt.Errorf("bad decimal %v", raw)
		}
		return transport.Decimal{Scale: uint8(sc), Value: int32(val)}, nil
	case "t":
		f, err := num(math.MinInt64, math.MaxInt64)
		return time.Unix(int64(f), 0).UTC(), err
	case "m":
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("bad table %v", v)
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			d, err := decodeLegacyValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	case "a":
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("bad array %v", v)
		}
		out := make([]any, len(l))
		for i, e := range l {
			d, err := decodeLegacyValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown value tag %q", tag)
}
