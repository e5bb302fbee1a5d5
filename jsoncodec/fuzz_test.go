package jsoncodec_test

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/jsoncodec"
	"github.com/busline/busline/transport"
)

// FuzzEncode compares the codec's bodies with encoding/json's (bus.JSON)
// for an Order built from the fuzzer's strings and numbers: the same
// bytes, or both an error.
func FuzzEncode(f *testing.F) {
	f.Add("o-1", "plain", 1.5, int64(7), int64(0), []byte(`{"k":[1, 2]}`))
	f.Add("<script>&'\"", "Zürich → 東京 😀", 1e21, int64(math.MaxInt64), int64(1e18), []byte(` "x" `))
	f.Add("bad \xff\xfe", "\u2028\u2029 \x00\x1f", 1e-7, int64(math.MinInt64), int64(-1), []byte(`{`))
	f.Add("lone \xed\xa0\x80", "\ufffd", math.Inf(1), int64(0), int64(1<<40), []byte("{\"k\":\"\xff\"}"))
	f.Add("", "", -0.0, int64(-1), int64(-1e17), []byte(nil))
	f.Fuzz(func(t *testing.T, id, note string, amount float64, units, nanos int64, raw []byte) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(units%50400)))
		v := Order{ID: id, Note: note, Amount: amount, Units: units, At: at, Coupon: &note, Tags: []string{id, note},
			Attrs: map[string]string{id: note, note: id}, Extra: map[string]any{id: amount, "n": []any{note, nil, true}},
			Lines: []Line{{SKU: note, Qty: int(units % 3)}}, Any: map[string]any{note: id}}
		if len(raw) > 0 {
			v.Raw = raw
		}
		var got, want transport.Message
		gotErr := jsoncodec.JSON.Encode(v, &got)
		wantErr := bus.JSON.Encode(v, &want)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("Encode(%#v)\n= %q, %v\nencoding/json: %q, %v", v, got.Body, gotErr, want.Body, wantErr)
		}
	})
}

// FuzzDecode compares what the codec decodes from a body, into an Order
// and into an any, with what encoding/json decodes: the same values, or
// both an error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"o-1","amount":1.5,"units":3,"at":"2026-12-03T13:00:00.000000001+01:00","tags":["a"],"raw":{"k" : [1,2]}}`,
		`{"ID":"case","NOTE":"x","id":"dup"}`, `{"units":1.5}`, `{"units":9223372036854775808}`, `{"amount":1e400}`,
		`{"id":"\ud800"}`, "{\"id\":\"bad \xff\"}", `{"id":"\u003c\/"}`, `{"at":"2019-09-06T22:19:10,3Z"}`, `{"at":"nope"}`,
		`{"any":-0}`, `{"any":12345678901234567890}`, `{"extra":{"a":[{"b":null}]}}`, `{"lines":[{"sku":1}]}`,
		`{} x`, "{}\n", "\ufeff{}", `{"a":1,}`, `{`, ``, `null`, `[]`, `"s"`, `{"coupon":null}`, `{"-":"x","Private":"y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m := &transport.Message{Body: body}
		var got, want Order
		gotErr := jsoncodec.JSON.Decode(m, &got)
		wantErr := bus.JSON.Decode(m, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("Decode(%q) error %v, encoding/json %v", body, gotErr, wantErr)
		}
		if gotErr == nil {
			if !got.At.Equal(want.At) || zone(got.At) != zone(want.At) {
				t.Errorf("Decode(%q).At = %v, encoding/json %v", body, got.At, want.At)
			}
			got.At, want.At = time.Time{}, time.Time{}
			if !same(got, want) {
				t.Errorf("Decode(%q)\n= %#v\nencoding/json %#v", body, got, want)
			}
		}
		var gotAny, wantAny any
		gotErr = jsoncodec.JSON.Decode(m, &gotAny)
		wantErr = json.Unmarshal(body, &wantAny)
		if (gotErr == nil) != (wantErr == nil) || gotErr == nil && !same(gotAny, wantAny) {
			t.Errorf("Decode(%q) into an any = %#v, %v\nencoding/json %#v, %v", body, gotAny, gotErr, wantAny, wantErr)
		}
	})
}

func zone(t time.Time) int {
	_, off := t.Zone()
	return off
}

// same is reflect.DeepEqual, telling -0 from 0 apart.
func same(a, b any) bool {
	return reflect.DeepEqual(a, b) && signs(reflect.ValueOf(a)) == signs(reflect.ValueOf(b))
}

// signs lists the sign bits of the zero floats in v.
func signs(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Float64:
		if v.Float() == 0 && math.Signbit(v.Float()) {
			return "-"
		}
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			return signs(v.Elem())
		}
	case reflect.Slice:
		s := ""
		for i := range v.Len() {
			s += signs(v.Index(i)) + ","
		}
		return s
	case reflect.Map:
		// In key order: a map's own order differs between two maps of
		// the same entries.
		var entries []string
		it := v.MapRange()
		for it.Next() {
			if x := signs(it.Value()); x != "" {
				entries = append(entries, it.Key().String()+x)
			}
		}
		slices.Sort(entries)
		return strings.Join(entries, ",")
	case reflect.Struct:
		s := ""
		for i := range v.NumField() {
			s += signs(v.Field(i)) + ","
		}
		return s
	}
	return ""
}
