package bus

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/busline/busline/transport"
)

// TestJSONDecodeIsUnmarshal checks the pooled decoder against
// json.Unmarshal, in sequence, so that a decoder left in a bad state by one
// body would spoil the next.
func TestJSONDecodeIsUnmarshal(t *testing.T) {
	bodies := []string{
		`{"A":1,"B":"x"}`, `{"A":2}  `, " \n{\"A\":3}\n", `{"A":4} {"A":5}`, `{"A":6} x`, `{"A":`, ``, `   `,
		`null`, `{"A":"wrong type"}`, `{"A":7,"Unknown":[1,2,{"x":null}]}`, `[1,2]`, `{"A":8}`, `{"A":9}garbage`,
		`{"B":"\u00e9\ud83d\ude00"}`, `{"A":1e3}`, `{"A":10}`,
	}
	type T struct {
		A int
		B string
	}
	for _, body := range bodies {
		for _, target := range []func() any{func() any { return new(T) }, func() any { return new(int) }, func() any { return new(any) }} {
			want, got := target(), target()
			wantErr := json.Unmarshal([]byte(body), want)
			gotErr := JSON.Decode(&transport.Message{Body: []byte(body)}, got)
			if (wantErr == nil) != (gotErr == nil) {
				t.Errorf("%q into %T: Decode error %v, Unmarshal error %v", body, got, gotErr, wantErr)
				continue
			}
			if wantErr == nil && !reflect.DeepEqual(want, got) {
				t.Errorf("%q into %T: Decode %v, Unmarshal %v", body, got, reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem())
			}
		}
	}
}

func TestJSONDecodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	type T struct{ A, B int }
	m := &transport.Message{Body: []byte(`{"A":1,"B":2}`)}
	var v T
	JSON.Decode(m, &v)
	if n := testing.AllocsPerRun(100, func() { JSON.Decode(m, &v) }); n > 0 {
		t.Errorf("%v allocations per decode into a reused value", n)
	}
}

type marshalsItself struct{}

func (marshalsItself) MarshalJSON() ([]byte, error) { return []byte(` {"self" : true} `), nil }

type failsToMarshal struct{}

func (failsToMarshal) MarshalJSON() ([]byte, error) { return nil, errors.New("no") }

// TestEncodeJSONIsMarshal checks the pooled encoder against json.Marshal,
// in sequence, so that a buffer left dirty by one value would spoil the
// next.
func TestEncodeJSONIsMarshal(t *testing.T) {
	values := []any{
		map[string]any{"html": "<a&b>", "u": "\u2028é"}, struct{ A, B int }{1, 2}, marshalsItself{},
		func() {}, failsToMarshal{}, []int{1, 2, 3}, "", nil, strings.Repeat("x", 100_000), 3.5,
		struct {
			A string `json:"a,omitempty"`
		}{},
	}
	for _, v := range values {
		want, wantErr := json.Marshal(v)
		var m transport.Message
		buf, err := encodeJSON(v, &m)
		if (err == nil) != (wantErr == nil) {
			t.Errorf("%T: encodeJSON error %v, Marshal error %v", v, err, wantErr)
			continue
		}
		if err == nil && (string(m.Body) != string(want) || m.ContentType != "application/json" || m.ContentEncoding != "utf-8") {
			t.Errorf("%T: encodeJSON %.50q (%s, %s), Marshal %.50q", v, m.Body, m.ContentType, m.ContentEncoding, want)
		}
		releaseBody(buf)
	}
}
