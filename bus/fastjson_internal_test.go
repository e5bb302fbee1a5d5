package bus

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

type planFlat struct {
	ID   string
	Data string
}

type planName string

type planKinds struct {
	S       string `json:"s"`
	B       bool   `json:"b,omitempty"`
	I       int
	I8      int8
	I64     int64 `json:"i64"`
	U16     uint16
	U       uint64
	F       float64
	F32     float32
	N       planName
	hidden  string
	Ignored int `json:"-"`
	Up      string
	UP      string
}

type planEmbedded struct {
	planFlat
	X int
}

type planText struct{ X int }

func (p *planText) UnmarshalText([]byte) error { return nil }

// planTypes are the types the plan is checked on, each as a fresh value.
var planTypes = []func() any{
	func() any { return new(planFlat) },
	func() any { return new(planKinds) },
}

// TestJSONPlanTypes checks which types get a plan: the flat ones, not
// those encoding/json decodes by rules the plan does not follow.
func TestJSONPlanTypes(t *testing.T) {
	for _, v := range []any{planFlat{}, planKinds{}, struct {
		A string `json:"a,omitempty,omitzero"`
	}{}} {
		if newJSONPlan(reflect.TypeOf(v)) == nil {
			t.Errorf("%T has no plan", v)
		}
	}
	for _, v := range []any{
		planEmbedded{}, planText{}, 0, "", []planFlat{}, &planFlat{}, struct{}{},
		struct{ T time.Time }{}, struct{ N json.Number }{}, struct{ P *string }{}, struct{ S []string }{},
		struct{ M map[string]string }{}, struct{ A any }{}, struct{ R json.RawMessage }{},
		struct {
			A int `json:"a,string"`
		}{},
		struct {
			A string `json:"x-y"`
		}{},
		struct {
			A string
			B string `json:"A"`
		}{},
		struct{ T planText }{},
	} {
		if newJSONPlan(reflect.TypeOf(v)) != nil {
			t.Errorf("%T has a plan", v)
		}
	}
}

// checkPlan decodes body with the plan of each type and, where the plan
// takes it, checks that json.Unmarshal takes it too and gives the same
// value. It returns how many types took it.
func checkPlan(t *testing.T, body []byte) int {
	t.Helper()
	took := 0
	for _, newV := range planTypes {
		got, want := newV(), newV()
		pl := newJSONPlan(reflect.TypeOf(got).Elem())
		if !pl.decode(body, reflect.ValueOf(got).Elem()) {
			continue
		}
		took++
		if err := json.Unmarshal(body, want); err != nil {
			t.Fatalf("%q into %T: the plan took it, json.Unmarshal: %v", body, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q into %T: plan %+v, json.Unmarshal %+v", body, got, got, want)
		}
	}
	return took
}

var planSeeds = []string{
	`{"ID":"0123456789abcdef","Data":"xxxxxxxx"}`,
	` {"ID" : "a" , "Data":"b"} ` + "\n",
	`{}`, ` { } `, `{"ID":"é😀"}`, `{"ID":"\u00e9"}`, `{"ID":"a\"b"}`, `{"ID":"` + "\xff" + `"}`, `{"ID":"` + "\xed\xa0\x80" + `"}`,
	`{"ID":"a","ID":"b"}`, `{"id":"a"}`, `{"Other":1}`, `{"ID":null}`, `{"ID":1}`, `{"ID":"a",}`, `{"ID":"a"}x`, `{"ID":"a"}{}`,
	`{"ID":"a"`, `{"ID"`, `{"ID":`, `{`, ``, `null`, `[]`, `"x"`, "{\"ID\":\"a\tb\"}", `{"ID":"a"} `, "\t{\r\n}\n",
	`{"s":"x","b":true,"I":-12,"I8":127,"i64":-9223372036854775808,"U16":65535,"U":18446744073709551615,"F":1.5e-3,"F32":3.4e38,"N":"n","Up":"u","UP":"U"}`,
	`{"b":false,"I":0,"I8":-128,"U16":0,"F":-0,"F32":1e39}`, `{"I8":128}`, `{"U16":65536}`, `{"U":-1}`, `{"U":-0}`, `{"I":-0}`,
	`{"I":01}`, `{"I":1.0}`, `{"I":1e2}`, `{"I":-}`, `{"F":.5}`, `{"F":1.}`, `{"F":1e}`, `{"F":1e+}`, `{"F":-1.25E+2}`, `{"F":1e400}`,
	`{"b":tru}`, `{"b":truex}`, `{"b":true1}`, `{"b":"true"}`, `{"I":123456789012345678}`, `{"I":1234567890123456789}`,
	`{"Data":"` + strings.Repeat("d", 600) + `","ID":"i","Data":"` + strings.Repeat("e", 500) + `"}`, `{"hidden":"x"}`, `{"Ignored":1}`, `{"-":1}`, `{"S":"x"}`, `{"up":"x"}`, `{"Up":"x","UP":"y"}`, `{"U":12345678901234567890}`,
}

func TestJSONPlanIsUnmarshal(t *testing.T) {
	for _, s := range planSeeds {
		checkPlan(t, []byte(s))
	}
	for _, s := range []string{planSeeds[0], planSeeds[1], `{}`, `{"ID":"é😀"}`, `{"ID":"a","ID":"b"}`} {
		if checkPlan(t, []byte(s)) == 0 {
			t.Errorf("the plan declines %q", s)
		}
	}
	for _, s := range planSeeds {
		if strings.HasPrefix(s, `{"s":"x","b":true`) && checkPlan(t, []byte(s)) == 0 {
			t.Errorf("the plan declines %q", s)
		}
	}
	// Mutations of the seeds: bytes changed, removed, doubled.
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "{}[]\":,.-+eE0123456789 \t\n\\uabtrufslnIDSFU\xc3\xa9\xff"
	for range 200000 {
		b := []byte(planSeeds[rng.IntN(len(planSeeds))])
		for range 1 + rng.IntN(3) {
			if len(b) == 0 {
				break
			}
			i := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				b = append(b[:i+1], b[i:]...)
			}
		}
		checkPlan(t, b)
	}
}

func FuzzJSONPlan(f *testing.F) {
	for _, s := range planSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkPlan(t, body) })
}

// TestTypedHandlerPlan checks what a typed handler receives, through the
// plan or, for a body the plan declines after setting fields, afresh from
// encoding/json: nothing the plan set is left, and errors are the codec's.
func TestTypedHandlerPlan(t *testing.T) {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	b, err := New(tr, "plan", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var got []planKinds
	th := &typedHandler[planKinds]{plan: newJSONPlan(reflect.TypeFor[planKinds]()), fn: func(_ context.Context, v planKinds) error {
		got = append(got, v)
		return nil
	}}
	th.pool.New = func() any { return new(planKinds) }
	var v planKinds
	if th.plan.decode([]byte(`{"s":"set","I":1,"unknown":2}`), reflect.ValueOf(&v).Elem()) || v.I != 1 {
		t.Fatal("the plan took an unknown key, or declined before setting I")
	}
	for _, body := range []string{`{"s":"one","I":1}`, `{"s":"set","I":1,"unknown":2}`, `{"I":3,"s":"set","I8":1000}`, `{"s":"x","b":true,"U":7,"F":2.5}`, `{"s":"set","I":"two"}`, `{"s":"set"`} {
		got = nil
		var want planKinds
		wantErr := JSON.Decode(&transport.Message{Body: []byte(body)}, &want)
		err := th.handle(context.Background(), b, &transport.Message{Body: []byte(body), ContentType: "application/json"})
		switch {
		case wantErr != nil:
			if !errors.Is(err, ErrUndecodable) || !strings.Contains(err.Error(), wantErr.Error()) {
				t.Errorf("%s: error %v, want ErrUndecodable and %v", body, err, wantErr)
			}
		case err != nil || len(got) != 1 || got[0] != want:
			t.Errorf("%s: handler got %+v (error %v), want %+v", body, got, err, want)
		}
	}
}

// BenchmarkJSONPlan compares the plan with the codec on the body of
// BenchmarkBus.
func BenchmarkJSONPlan(b *testing.B) {
	body := []byte(`{"ID":"0123456789abcdef","Data":"` + strings.Repeat("x", 256-35) + `"}`)
	if len(body) != 256 {
		b.Fatal(len(body))
	}
	m := &transport.Message{Body: body}
	pl := newJSONPlan(reflect.TypeFor[planFlat]())
	b.Run("plan", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var v planFlat
			if !pl.decode(body, reflect.ValueOf(&v).Elem()) {
				b.Fatal("declined")
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var v planFlat
			if err := JSON.Decode(m, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type planEnc struct {
	S      string `json:"s"`
	E      string `json:"e,omitempty"`
	B      bool   `json:"b,omitempty"`
	T      bool
	I      int
	I8     int8 `json:",omitempty"`
	I64    int64
	U16    uint16
	U      uint64 `json:"u,omitempty"`
	N      planName
	hidden string
	Skip   string `json:"-"`
}

func TestJSONEncodePlanTypes(t *testing.T) {
	for _, v := range []any{planFlat{}, planEnc{}} {
		if newJSONEncodePlan(reflect.TypeOf(v)) == nil {
			t.Errorf("%T has no encode plan", v)
		}
	}
	for _, v := range []any{
		planKinds{}, marshalsItself{}, struct{ F float64 }{}, struct {
			A int `json:"a,omitzero"`
		}{}, struct{ T planText }{}, planEmbedded{},
	} {
		if newJSONEncodePlan(reflect.TypeOf(v)) != nil {
			t.Errorf("%T has an encode plan", v)
		}
	}
}

// TestJSONEncodePlanIsMarshal checks encodeJSON with a plan against
// json.Marshal on random values, strings that the plan declines included.
func TestJSONEncodePlanIsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const chars = "ab Z09_-\"\\<>&\x00\x1f\x7fé\u2028\xff{}:,"
	str := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = chars[rng.IntN(len(chars))]
			} else {
				b[i] = byte('a' + rng.IntN(26))
			}
		}
		return string(b)
	}
	num := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.Int64()
		}
		return rng.Int64N(1000)
	}
	planned := 0
	for i := range 20000 {
		e := planEnc{S: str(), E: str(), B: rng.IntN(2) == 0, T: rng.IntN(2) == 0, I: int(num()), I8: int8(num()),
			I64: num(), U16: uint16(num()), U: uint64(num()), N: planName(str()), hidden: str(), Skip: str()}
		values := []any{e, &e, planFlat{ID: str(), Data: str()}, (*planEnc)(nil)}
		for _, v := range values {
			want, wantErr := json.Marshal(v)
			info, err := typeInfoOf(reflect.TypeOf(v))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := info.json.appendJSON(nil, v); ok {
				planned++
			}
			var m transport.Message
			buf, err := encodeJSON(v, &m, info.json)
			if wantErr != nil || err != nil || string(m.Body) != string(want) || m.ContentType != "application/json" || m.ContentEncoding != "utf-8" {
				t.Fatalf("%d: %#v: encodeJSON %q (%v), json.Marshal %q (%v)", i, v, m.Body, err, want, wantErr)
			}
			if cap(m.Body) != len(m.Body) {
				t.Fatalf("%#v: the body's capacity reaches into the pooled buffer", v)
			}
			releaseBody(buf)
		}
	}
	if planned < 10000 {
		t.Errorf("the plan encoded %d values of 80000", planned)
	}
}

// BenchmarkJSONEncodePlan compares encodeJSON with and without the plan on
// the payload of BenchmarkBus.
func BenchmarkJSONEncodePlan(b *testing.B) {
	v := any(planFlat{ID: "0123456789abcdef", Data: strings.Repeat("x", 256-35)})
	info, err := typeInfoOf(reflect.TypeOf(v))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		plan *jsonEncodePlan
	}{{"plan", info.json}, {"encoder", nil}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var m transport.Message
				buf, err := encodeJSON(v, &m, c.plan)
				if err != nil || len(m.Body) != 256 {
					b.Fatal(err, len(m.Body))
				}
				releaseBody(buf)
			}
		})
	}
}

// TestJSONPlanSharedStrings checks that the string fields of one body share
// one allocation up to maxSharedStrings bytes, and are allocated one by one
// beyond, with the same values as encoding/json's either way.
func TestJSONPlanSharedStrings(t *testing.T) {
	pl := newJSONPlan(reflect.TypeFor[planFlat]())
	for _, n := range []int{0, 10, maxSharedStrings - 16, maxSharedStrings - 15, 2000} {
		body := []byte(`{"Data":"` + strings.Repeat("y", n) + `","ID":"0123456789abcdef"}`)
		var got, want planFlat
		if !pl.decode(body, reflect.ValueOf(&got).Elem()) {
			t.Fatalf("%d: declined", n)
		}
		if err := json.Unmarshal(body, &want); err != nil || got != want {
			t.Fatalf("%d: plan %+v, json.Unmarshal %+v (%v)", n, got, want, err)
		}
		// In the order of the fields: ID, then Data.
		adjacent := n > 0 && uintptr(unsafe.Pointer(unsafe.StringData(got.ID)))+16 == uintptr(unsafe.Pointer(unsafe.StringData(got.Data)))
		if wantShared := n > 0 && n+16 <= maxSharedStrings; adjacent != wantShared {
			t.Errorf("%d bytes of strings: shared %v, want %v", n, adjacent, wantShared)
		}
	}
	if raceEnabled {
		return
	}
	body := []byte(`{"ID":"0123456789abcdef","Data":"` + strings.Repeat("x", 221) + `"}`)
	var v planFlat
	rv := reflect.ValueOf(&v).Elem()
	if n := testing.AllocsPerRun(100, func() { pl.decode(body, rv) }); n != 1 {
		t.Errorf("decoding two strings: %v allocations, want 1", n)
	}
}
