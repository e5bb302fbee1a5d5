package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// MarshalHeaders returns h as JSON that keeps every value's AMQP type, the
// one form in which busline stores and exports headers (the outbox's
// table, the Watermill bridge's metadata, busctl's store and files): a
// JSON object with a member per header, whose value is
//
//   - a string or a boolean as itself, nil as null;
//   - any other value as an object with one member, named for its type:
//     {"int8": -8}, {"uint8": 8}, {"int16": …}, {"uint16": …},
//     {"int32": …}, {"uint32": …}, {"int64": "-9223372036854775808"} (a
//     string: JSON numbers lose 64-bit precision), {"float32": 1.5},
//     {"float64": 2.25} ("NaN", "+Inf" and "-Inf" as strings),
//     {"decimal": {"scale": 2, "value": 1999}}, {"time":
//     "2026-12-03T12:00:00Z"} (Unix seconds as a string outside years
//     0–9999), {"bytes": "base64…"}, {"string_base64": "base64…"} (a
//     string that is not valid UTF-8, which JSON cannot carry), {"table":
//     {…}} and {"array": […]}, whose members and elements are values
//     again.
//
// h is normalized first (see [Headers.Normalize]), so that the JSON reads
// back as any transport would deliver h; a value of a type AMQP cannot
// carry is an error that wraps [ErrInvalidMessage]. Members are in key
// order, so that equal headers give equal bytes. An empty h gives {}.
func MarshalHeaders(h Headers) ([]byte, error) {
	n, err := h.Normalize()
	if err != nil {
		return nil, err
	}
	return json.Marshal(tableTree(n))
}

// UnmarshalHeaders reads headers written by [MarshalHeaders], in their
// canonical form (see [Headers]). null and {} give nil. Numbers must name
// their type ({"int32": 5}, not 5), integers must fit it, and a time may
// also be written with a time zone or as Unix seconds; anything else is an
// error that wraps [ErrInvalidMessage] and names the header.
func UnmarshalHeaders(data []byte) (Headers, error) {
	tree, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	if tree == nil {
		return nil, nil
	}
	t, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: headers JSON is a %s, not an object", ErrInvalidMessage, jsonKind(tree))
	}
	h, err := decodeTable("", t)
	if len(h) == 0 {
		h = nil
	}
	return Headers(h), err
}

// tableTree and valueTree turn canonical values into what encoding/json
// writes in the form of MarshalHeaders; numbers are json.Number, so that
// each keeps the precision of its own type.
func tableTree(t map[string]any) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = valueTree(v)
	}
	return out
}

func valueTree(v any) any {
	tag := func(name string, x any) any { return map[string]any{name: x} }
	integer := func(name string, n int64) any { return tag(name, json.Number(strconv.FormatInt(n, 10))) }
	switch v := v.(type) {
	case nil, bool:
		return v
	case string:
		if !utf8.ValidString(v) {
			return tag("string_base64", base64.StdEncoding.EncodeToString([]byte(v)))
		}
		return v
	case int8:
		return integer("int8", int64(v))
	case uint8:
		return integer("uint8", int64(v))
	case int16:
		return integer("int16", int64(v))
	case uint16:
		return integer("uint16", int64(v))
	case int32:
		return integer("int32", int64(v))
	case uint32:
		return integer("uint32", int64(v))
	case int64:
		return tag("int64", strconv.FormatInt(v, 10))
	case float32:
		return tag("float32", floatTree(float64(v), 32))
	case float64:
		return tag("float64", floatTree(v, 64))
	case Decimal:
		return tag("decimal", map[string]any{
			"scale": json.Number(strconv.Itoa(int(v.Scale))),
			"value": json.Number(strconv.Itoa(int(v.Value))),
		})
	case time.Time:
		if y := v.Year(); y < 0 || y > 9999 {
			return tag("time", strconv.FormatInt(v.Unix(), 10))
		}
		return tag("time", v.Format(time.RFC3339))
	case []byte:
		return tag("bytes", base64.StdEncoding.EncodeToString(v))
	case map[string]any:
		return tag("table", tableTree(v))
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = valueTree(e)
		}
		return tag("array", a)
	}
	panic(fmt.Sprintf("transport: header value of type %T after normalization", v))
}

func floatTree(f float64, bits int) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, bits) // "NaN", "+Inf", "-Inf"
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
}

// parseTree decodes one JSON value, numbers as json.Number.
func parseTree(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var tree any
	if err := d.Decode(&tree); err != nil {
		return nil, fmt.Errorf("%w: headers JSON: %v", ErrInvalidMessage, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: headers JSON: data after the value", ErrInvalidMessage)
	}
	return tree, nil
}

func decodeTable(path string, t map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(t))
	for k, x := range t {
		p := k
		if path != "" {
			p = path + "." + k
		}
		if len(k) > MaxNameLength {
			return nil, fmt.Errorf("%w: header key %q is %d bytes long, the limit is %d", ErrInvalidMessage, shorten(p), len(k), MaxNameLength)
		}
		v, err := decodeValue(p, x)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func decodeValue(path string, x any) (any, error) {
	switch x := x.(type) {
	case nil, bool, string:
		return x, nil
	case map[string]any:
		if len(x) == 1 {
			for tag, v := range x {
				d, err := decodeTagged(path, tag, v)
				if nested, ok := err.(errNested); ok {
					return nil, nested.error
				}
				if err != nil {
					return nil, fmt.Errorf("%w: header %q: %s: %v", ErrInvalidMessage, shorten(path), tag, err)
				}
				return d, nil
			}
		}
	}
	return nil, fmt.Errorf(`%w: header %q: a %s; a value that is not a string, a boolean or null is an object with one member naming its type, as {"int32": 5}`,
		ErrInvalidMessage, shorten(path), jsonKind(x))
}

// errNested carries the error of a value inside a table or an array,
// which names its own header already.
type errNested struct{ error }

func decodeTagged(path, tag string, v any) (any, error) {
	switch tag {
	case "int8":
		n, err := parseInt(v, 8)
		return int8(n), err
	case "uint8":
		n, err := parseUint(v, 8)
		return uint8(n), err
	case "int16":
		n, err := parseInt(v, 16)
		return int16(n), err
	case "uint16":
		n, err := parseUint(v, 16)
		return uint16(n), err
	case "int32":
		n, err := parseInt(v, 32)
		return int32(n), err
	case "uint32":
		n, err := parseUint(v, 32)
		return uint32(n), err
	case "int64":
		return parseInt(v, 64)
	case "float32":
		f, err := parseFloat(v, 32)
		return float32(f), err
	case "float64":
		return parseFloat(v, 64)
	case "decimal":
		return parseDecimal(v)
	case "time":
		return parseTime(v)
	case "bytes":
		b, err := parseBase64(v)
		if len(b) == 0 {
			b = nil // as Normalize copies an empty slice
		}
		return b, err
	case "string_base64":
		b, err := parseBase64(v)
		return string(b), err
	case "table":
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a %s, not an object", jsonKind(v))
		}
		d, err := decodeTable(path, t)
		if err != nil {
			return nil, errNested{err}
		}
		return d, nil
	case "array":
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("a %s, not an array", jsonKind(v))
		}
		out := make([]any, len(a))
		for i, e := range a {
			d, err := decodeValue(fmt.Sprintf("%s[%d]", path, i), e)
			if err != nil {
				return nil, errNested{err}
			}
			out[i] = d
		}
		return out, nil
	}
	return nil, errors.New("unknown type (want int8, uint8, int16, uint16, int32, uint32, int64, float32, float64, decimal, time, bytes, string_base64, table or array)")
}

// numberText is the text of a JSON number, or of a string that holds one.
func numberText(v any) (string, error) {
	switch v := v.(type) {
	case json.Number:
		return string(v), nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("a %s, not a number", jsonKind(v))
}

func parseInt(v any, bits int) (int64, error) {
	s, err := numberText(v)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, bits)
}

func parseUint(v any, bits int) (uint64, error) {
	s, err := numberText(v)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 10, bits)
}

func parseFloat(v any, bits int) (float64, error) {
	s, err := numberText(v)
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(s, bits)
}

func parseDecimal(v any) (Decimal, error) {
	t, ok := v.(map[string]any)
	if !ok {
		return Decimal{}, fmt.Errorf(`a %s, not {"scale": …, "value": …}`, jsonKind(v))
	}
	var d Decimal
	for k, x := range t {
		switch k {
		case "scale":
			n, err := parseUint(x, 8)
			if err != nil {
				return Decimal{}, fmt.Errorf("scale: %w", err)
			}
			d.Scale = uint8(n)
		case "value":
			n, err := parseInt(x, 32)
			if err != nil {
				return Decimal{}, fmt.Errorf("value: %w", err)
			}
			d.Value = int32(n)
		default:
			return Decimal{}, fmt.Errorf(`member %q (want scale and value)`, k)
		}
	}
	return d, nil
}

// parseTime reads RFC 3339 or Unix seconds, and returns the canonical
// form: UTC, whole seconds.
func parseTime(v any) (time.Time, error) {
	s, err := numberText(v)
	if err != nil {
		return time.Time{}, err
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.Truncate(time.Second).UTC(), nil
}

func parseBase64(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("a %s, not a base64 string", jsonKind(v))
	}
	return base64.StdEncoding.DecodeString(s)
}

func jsonKind(x any) string {
	switch x := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		keys := slices.Sorted(maps.Keys(x))
		if len(keys) == 0 {
			return "empty object"
		}
		return fmt.Sprintf("object with members %q", keys)
	}
	return fmt.Sprintf("%T", x)
}
