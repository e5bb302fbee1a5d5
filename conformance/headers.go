package conformance

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/busline/busline/transport"
)

// headerTime is a timestamp in the canonical form: UTC, whole seconds.
var headerTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// canonicalHeaders has a value of every canonical type listed on
// transport.Headers, extremes included; it must arrive exactly as sent.
// No key starts with "x-": brokers add and strip such headers.
func canonicalHeaders() transport.Headers {
	return transport.Headers{
		"nil":          nil,
		"bool-true":    true,
		"bool-false":   false,
		"string":       "text ✓ with\x00nul",
		"string-empty": "",
		"string-long":  strings.Repeat("long ", 200),
		"bytes":        []byte{0, 1, 2, 0xfe, 0xff},
		"int8-min":     int8(math.MinInt8),
		"int8-max":     int8(math.MaxInt8),
		"uint8-max":    uint8(math.MaxUint8),
		"int16-min":    int16(math.MinInt16),
		"uint16-max":   uint16(math.MaxUint16),
		"int32-min":    int32(math.MinInt32),
		"int32-max":    int32(math.MaxInt32),
		"uint32-max":   uint32(math.MaxUint32),
		"int64-min":    int64(math.MinInt64),
		"int64-max":    int64(math.MaxInt64),
		"float32":      float32(-1.5),
		"float32-max":  float32(math.MaxFloat32),
		"float64":      math.Pi,
		"float64-tiny": math.SmallestNonzeroFloat64,
		"decimal":      transport.Decimal{Scale: 2, Value: -12345},
		"time":         headerTime,
		"time-epoch":   time.Unix(0, 0).UTC(),
		"table": map[string]any{
			"string": "nested",
			"int32":  int32(7),
			"inner":  map[string]any{"deep": true, "bytes": []byte("b")},
		},
		"table-empty": map[string]any{},
		"array": []any{
			"a", int8(-1), uint16(2), int64(1) << 40, 2.5, true, nil, []byte("x"),
			transport.Decimal{Scale: 1, Value: 5}, headerTime,
			[]any{"nested", int32(1)}, map[string]any{"k": "v"},
		},
		"array-empty": []any{},
		// Shaped like RabbitMQ's x-death: an array of tables.
		"death": []any{
			map[string]any{
				"count":        int64(3),
				"reason":       "expired",
				"queue":        "delay-level-00",
				"exchange":     "delay-exchange",
				"routing-keys": []any{"0.0.1.orders"},
				"time":         headerTime,
			},
			map[string]any{
				"count":  int64(1),
				"reason": "rejected",
				"queue":  "orders",
			},
		},
		"PikaBus.ErrorRetries":                       int32(2),
		strings.Repeat("k", transport.MaxNameLength): "key at the limit",
	}
}

// inputHeaders returns values of the types a transport accepts on the way
// in, with the canonical form each must arrive in.
func inputHeaders() (in, want transport.Headers) {
	zone := time.FixedZone("UTC+3", 3*3600)
	in = transport.Headers{
		"int":                42,
		"int-negative":       -42,
		"int-large":          1 << 40,
		"int-below-int32":    math.MinInt32 - 1,
		"uint":               uint(7),
		"uint-large":         uint(math.MaxInt64),
		"uint64":             uint64(9),
		"uint64-large":       uint64(1) << 33,
		"headers":            transport.Headers{"k": "v", "n": 1},
		"strings":            []string{"a", "b", ""},
		"strings-empty":      []string{},
		"tables":             []map[string]any{{"n": 1}, {}},
		"headers-array":      []transport.Headers{{"k": uint64(5)}},
		"time-zoned-nanos":   time.Date(2026, 3, 4, 8, 6, 7, 999_999_999, zone),
		"nested-conversions": map[string]any{"int": 3, "list": []string{"x"}, "h": transport.Headers{"u": uint(1)}},
	}
	want = transport.Headers{
		"int":                int32(42),
		"int-negative":       int32(-42),
		"int-large":          int64(1) << 40,
		"int-below-int32":    int64(math.MinInt32 - 1),
		"uint":               int32(7),
		"uint-large":         int64(math.MaxInt64),
		"uint64":             int32(9),
		"uint64-large":       int64(1) << 33,
		"headers":            map[string]any{"k": "v", "n": int32(1)},
		"strings":            []any{"a", "b", ""},
		"strings-empty":      []any{},
		"tables":             []any{map[string]any{"n": int32(1)}, map[string]any{}},
		"headers-array":      []any{map[string]any{"k": int32(5)}},
		"time-zoned-nanos":   headerTime,
		"nested-conversions": map[string]any{"int": int32(3), "list": []any{"x"}, "h": map[string]any{"u": int32(1)}},
	}
	return in, want
}

// diffHeaders describes how got differs from want, or returns "". Types
// must match exactly (the canonical Go types), except that an empty byte
// string or array may arrive as nil or empty. Headers whose key starts with
// "x-" in got but not in want are the broker's and are ignored.
func diffHeaders(want, got transport.Headers) string {
	var diffs []string
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("header %q is missing (want %s)", short(k), show(want[k])))
			continue
		}
		if d := diffValue(short(k), want[k], g); d != "" {
			diffs = append(diffs, d)
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "x-") {
			diffs = append(diffs, fmt.Sprintf("unexpected header %q = %s", short(k), show(got[k])))
		}
	}
	return strings.Join(diffs, "\n")
}

func diffValue(path string, want, got any) string {
	if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
		return fmt.Sprintf("header %s = %s, want %s", path, show(got), show(want))
	}
	mismatch := func() string { return fmt.Sprintf("header %s = %s, want %s", path, show(got), show(want)) }
	switch w := want.(type) {
	case []byte:
		if !bytes.Equal(w, got.([]byte)) {
			return mismatch()
		}
	case time.Time:
		g := got.(time.Time)
		if !g.Equal(w) || g.Location().String() != "UTC" {
			return mismatch()
		}
	case map[string]any:
		g := got.(map[string]any)
		var diffs []string
		for _, k := range sortedKeys(w) {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("header %s.%s is missing", path, k))
				continue
			}
			if d := diffValue(path+"."+k, w[k], gv); d != "" {
				diffs = append(diffs, d)
			}
		}
		for _, k := range sortedKeys(g) {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("unexpected header %s.%s = %s", path, k, show(g[k])))
			}
		}
		return strings.Join(diffs, "\n")
	case []any:
		g := got.([]any)
		if len(g) != len(w) {
			return mismatch()
		}
		var diffs []string
		for i := range w {
			if d := diffValue(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				diffs = append(diffs, d)
			}
		}
		return strings.Join(diffs, "\n")
	default:
		if want != got {
			return mismatch()
		}
	}
	return ""
}

func sortedKeys[M ~map[string]any](m M) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func show(v any) string {
	s := fmt.Sprintf("%T(%#v)", v, v)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s…(%d bytes)", s[:40], len(s))
	}
	return s
}
