package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Shape is the kind of message busline users send: strings with non-ASCII,
// HTML and invalid UTF-8, numbers of every width, time.Time, pointers,
// omitempty, nested slices and maps, json.RawMessage, an interface, a
// recursive pointer, an embedded struct and a ",string" field.
type Shape struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	Note     string            // no tag: the field name is the key
	Count    int               `json:"count"`
	Big      int64             `json:"big"`
	Small    int8              `json:"small"`
	Unsigned uint64            `json:"unsigned"`
	Ratio    float64           `json:"ratio"`
	F32      float32           `json:"f32"`
	OK       bool              `json:"ok"`
	At       time.Time         `json:"at"`
	When     *time.Time        `json:"when,omitempty"`
	Ptr      *string           `json:"ptr"`
	PtrInt   *int              `json:"ptr_int,omitempty"`
	Tags     []string          `json:"tags"`
	Bytes    []byte            `json:"bytes,omitempty"`
	Lines    []Line            `json:"lines,omitempty"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Counts   map[string]int    `json:"counts"`
	Extra    map[string]any    `json:"extra,omitempty"`
	Raw      json.RawMessage   `json:"raw,omitempty"`
	Any      any               `json:"any"`
	Child    *Shape            `json:"child,omitempty"`
	Quoted   int               `json:"quoted,string"`
	Skip     string            `json:"-"`
	Line
}

// Line is a nested struct, embedded in Shape too.
type Line struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty,omitempty"`
	Price float64 `json:"price"`
}

var corpusStrings = []string{
	"", "plain", "héllo wörld", "日本語のテキスト", "emoji 😀👍🏽", "<script>alert('x') & \"y\"</script>",
	"line\u2028sep\u2029", "ctl \x00\x01\x1f\x7f", "tab\tnew\nline\r", `back\slash /slash`,
	"invalid \xff\xfe utf-8", "lone surrogate \xed\xa0\x80", "truncated \xe6\x97", "\uFFFD replacement",
	strings.Repeat("x", 300), "Zürich → 東京 ≠ <>&",
}

var corpusFloats = []float64{0, -0.0, 1, -1, 0.1, 1e21, 1e20, 1e-7, 1e-6, 123456789.123, math.MaxFloat64, math.SmallestNonzeroFloat64, 3.4e38, math.NaN(), math.Inf(1)}

var corpusInts = []int64{0, 1, -1, 127, -128, 1 << 53, math.MaxInt64, math.MinInt64, 42}

var corpusRaw = []string{``, `{"a":1}`, ` [1, 2 , "x"] `, `"str"`, `null`, `{`, `12e`, "{\"k\":\"\xff\"}", `true`}

// shape builds the i-th message of the corpus from r: NaN and infinite
// floats and an invalid RawMessage make some of them unencodable.
func shape(r *rand.Rand, depth int) Shape {
	str := func() string { return corpusStrings[r.IntN(len(corpusStrings))] }
	flt := func() float64 {
		if r.IntN(8) == 0 {
			return corpusFloats[r.IntN(len(corpusFloats))]
		}
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-15))
	}
	s := Shape{
		ID: str(), Name: str(), Note: str(),
		Count: int(corpusInts[r.IntN(len(corpusInts))]), Big: r.Int64() - r.Int64(), Small: int8(r.IntN(256) - 128),
		Unsigned: r.Uint64(), Ratio: flt(), F32: float32(r.NormFloat64() * 1e3), OK: r.IntN(2) == 0,
		At:     time.Date(1990+r.IntN(60), time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e9), []*time.Location{time.UTC, time.FixedZone("", 3600*r.IntN(12)), time.FixedZone("", -1800)}[r.IntN(3)]),
		Quoted: r.IntN(1000) - 500, Skip: "skipped",
		Line: Line{SKU: str(), Qty: r.IntN(3), Price: flt()},
	}
	if r.IntN(2) == 0 {
		t := s.At.Add(time.Duration(r.Int64()))
		s.When = &t
	}
	if r.IntN(2) == 0 {
		p := str()
		s.Ptr = &p
	}
	if r.IntN(3) == 0 {
		n := r.IntN(100)
		s.PtrInt = &n
	}
	for range r.IntN(4) {
		s.Tags = append(s.Tags, str())
	}
	if r.IntN(3) == 0 {
		s.Bytes = []byte(str())
	}
	for range r.IntN(3) {
		s.Lines = append(s.Lines, Line{SKU: str(), Qty: r.IntN(5), Price: flt()})
	}
	if r.IntN(2) == 0 {
		s.Attrs = map[string]string{}
		for range r.IntN(5) {
			s.Attrs[str()] = str()
		}
	}
	if r.IntN(2) == 0 {
		s.Counts = map[string]int{str(): r.IntN(10), str(): -r.IntN(10)}
	}
	if r.IntN(2) == 0 {
		s.Extra = map[string]any{"s": str(), "n": flt(), "list": []any{str(), 1.5, nil, true}, "m": map[string]any{str(): str()}}
	}
	s.Raw = json.RawMessage(corpusRaw[r.IntN(len(corpusRaw))])
	switch r.IntN(5) {
	case 0:
		s.Any = str()
	case 1:
		s.Any = flt()
	case 2:
		s.Any = []any{str(), map[string]any{"k": str()}}
	case 3:
		s.Any = Line{SKU: str()}
	}
	if depth < 2 && r.IntN(4) == 0 {
		c := shape(r, depth+1)
		s.Child = &c
	}
	return s
}

// corpusDecode are hand-written inputs for decoding: type errors, invalid
// JSON, invalid UTF-8, escapes, duplicate and case-folded keys, overflow,
// trailing data.
var corpusDecode = []string{
	`null`, `{}`, `[]`, `""`, `{"count":"1"}`, `{"count":1.5}`, `{"count":1e400}`, `{"big":9223372036854775808}`,
	`{"small":300}`, `{"unsigned":-1}`, `{"id":"\ud800"}`, `{"id":"\ud83d\ude00 ok"}`, "{\"id\":\"bad \xff\"}",
	`{"ID":"case-insensitive","NOTE":"x"}`, `{"id":"a","id":"b"}`, `{"at":"not a time"}`, `{"at":"2024-02-30T00:00:00Z"}`,
	`{"at":"2024-01-01T10:00:00+01:00"}`, `{"quoted":"12"}`, `{"quoted":12}`, `{"quoted":"x"}`, `{} x`, "{} \n\t", "\ufeff{}",
	`{"a":1,}`, `{"tags":[1]}`, `{"tags":null}`, `{"ptr":null,"ptr_int":null}`, `{"attrs":{"k":1}}`, `{"counts":{"k":"1"}}`,
	`{"bytes":"aGVsbG8="}`, `{"bytes":"not base64"}`, `{"raw":{"x" : [1,2]}}`, `{"any":-0}`, `{"any":1e400}`,
	`{"any":12345678901234567890}`, `{"any":{"a":[{"b":null}]}}`, `{"child":{"child":{"id":"deep"}}}`, `{"sku":"embedded"}`,
	`{"Skip":"no"}`, `{"unknown":{"x":[1,2,3]}}`, `{"id":"\u003cb\u003e"}`, `{"id":"\/"}`, `{"id":"\x"}`, `{"id":"ctl ` + "\x01" + `"}`,
	`{"count":01}`, `{"count":-}`, `{"count":+1}`, `{"ratio":.5}`, `{"ratio":1.}`, `{"ok":tru}`, `{"ok":"true"}`,
	strings.Repeat(`{"child":`, 100) + `{}` + strings.Repeat(`}`, 100), strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000),
	`{"id":"x"`, `{"id"`, `{`, ``, ` `, `nul`, `1`, `"str"`,
}

// corpus returns the inputs to encode and the inputs to decode: n messages
// from a fixed seed, their encoding/json encodings, truncated and mutated
// copies, and the hand-written corpusDecode.
func corpus(n int) (shapes []Shape, inputs [][]byte) {
	r := rand.New(rand.NewPCG(12, 2026))
	for range n {
		shapes = append(shapes, shape(r, 0))
	}
	for _, s := range corpusDecode {
		inputs = append(inputs, []byte(s))
	}
	for _, s := range shapes {
		b, err := json.Marshal(s)
		if err != nil {
			s.Ratio, s.Price, s.Lines, s.Extra, s.Any, s.Child, s.Raw = 1, 1, nil, nil, nil, nil, nil
			if b, err = json.Marshal(s); err != nil {
				panic(err)
			}
		}
		inputs = append(inputs, b)
		cut := slices.Clone(b[:r.IntN(len(b))])
		inputs = append(inputs, cut)
		mut := slices.Clone(b)
		mut[r.IntN(len(mut))] = []byte(`"{}[],:\x0a-e.0`)[r.IntN(15)]
		inputs = append(inputs, mut)
	}
	return shapes, inputs
}

// outcome is one library's result on one input, in a form comparable
// across libraries and processes.
type outcome struct {
	Enc    string // the bytes, or "error"
	Shape  string // the decoded Shape, dumped, or "error"
	Any    string // the input decoded into an any, dumped, or "error"
	EncErr string // the error texts, which may differ without harm
	DecErr string
	// Input is the input decoded: a reference carries it, because the
	// inputs derived from encodings depend on the encoder that wrote them.
	Input []byte `json:",omitempty"`
}

func run(c candidate, s *Shape, input *[]byte) (o outcome) {
	if s != nil {
		o.Enc = safely(func() string {
			b, err := c.marshal(*s)
			if err != nil {
				o.EncErr = err.Error()
				return "error"
			}
			return string(b)
		})
	}
	if input != nil {
		in := *input
		o.Shape = safely(func() string {
			var v Shape
			if err := c.unmarshal(in, &v); err != nil {
				o.DecErr = err.Error()
				return "error"
			}
			return dump(reflect.ValueOf(v))
		})
		o.Any = safely(func() string {
			var v any
			if err := c.unmarshal(in, &v); err != nil {
				return "error"
			}
			return dump(reflect.ValueOf(&v).Elem())
		})
	}
	return o
}

func safely(f func() string) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("panic: %v", p)
		}
	}()
	return f()
}

// dump prints v deterministically: maps sorted, pointers followed, times
// as instants with their offset (time.Time's Location pointers differ
// between libraries that build equal zones).
func dump(v reflect.Value) string {
	var b strings.Builder
	dumpTo(&b, v)
	return b.String()
}

func dumpTo(b *strings.Builder, v reflect.Value) {
	if !v.IsValid() {
		b.WriteString("nil")
		return
	}
	if t, ok := v.Interface().(time.Time); ok {
		_, off := t.Zone()
		fmt.Fprintf(b, "time(%s %d)", t.UTC().Format(time.RFC3339Nano), off)
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString(v.Elem().Type().String() + ":")
		dumpTo(b, v.Elem())
	case reflect.Struct:
		b.WriteString("{")
		for i := range v.NumField() {
			b.WriteString(v.Type().Field(i).Name + "=")
			dumpTo(b, v.Field(i))
			b.WriteString(" ")
		}
		b.WriteString("}")
	case reflect.Slice:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			fmt.Fprintf(b, "%q", v.Bytes())
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			dumpTo(b, v.Index(i))
			b.WriteString(",")
		}
		b.WriteString("]")
	case reflect.Map:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		b.WriteString("map[")
		for _, k := range keys {
			fmt.Fprintf(b, "%q:", k.String())
			dumpTo(b, v.MapIndex(k))
			b.WriteString(",")
		}
		b.WriteString("]")
	case reflect.Float32, reflect.Float64:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()))
		if v.Float() == 0 && math.Signbit(v.Float()) {
			b.WriteString("(-0)")
		}
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	default:
		fmt.Fprintf(b, "%v", v.Interface())
	}
}

// TestCodecCorpus compares each candidate with encoding/json on the corpus
// and prints, per candidate, how many encodings differ (bytes, or error
// against success), how many decodings differ (the value decoded into a
// Shape or an any, or error against success), how many error texts differ
// where both fail, and the first differences. It is a report, run on
// demand: BUSLINE_CODEC_REPORT=1 go test -run CodecCorpus -v ./bench.
//
// encoding/json's results come from this process, or, when
// BUSLINE_CODEC_REFERENCE names a file, from that file: written there by a
// build without GOEXPERIMENT=jsonv2, read by a build with it (whose
// encoding/json is the experimental one).
func TestCodecCorpus(t *testing.T) {
	if os.Getenv("BUSLINE_CODEC_REPORT") == "" {
		t.Skip("a report: BUSLINE_CODEC_REPORT=1 runs it")
	}
	n := 3000
	if s := os.Getenv("BUSLINE_CODEC_CORPUS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	shapes, inputs := corpus(n)
	total := max(len(shapes), len(inputs))
	ref := make([]outcome, total)
	for i := range total {
		ref[i] = run(candidates[0], at(shapes, i), at(inputs, i))
		if i < len(inputs) {
			ref[i].Input = inputs[i]
		}
	}
	if path := os.Getenv("BUSLINE_CODEC_REFERENCE"); path != "" {
		if jsonv2 {
			ref = readReference(t, path)
			for i := range inputs {
				inputs[i] = ref[i].Input
			}
		} else {
			writeReference(t, path, ref)
		}
	}
	cands := candidates[1:]
	if jsonv2 {
		cands = []candidate{{name: "encoding/json (GOEXPERIMENT=jsonv2)", marshal: json.Marshal, unmarshal: json.Unmarshal}}
	}
	t.Logf("%d messages encoded, %d inputs decoded (into a Shape and into an any)", len(shapes), len(inputs))
	for _, c := range cands {
		var enc, dec, texts, panics int
		var examples []string
		for i := range total {
			o := run(c, at(shapes, i), at(inputs, i))
			r := ref[i]
			if strings.HasPrefix(o.Enc+o.Shape+o.Any, "panic") || strings.Contains(o.Enc+o.Shape+o.Any, "panic:") {
				panics++
			}
			if o.Enc != r.Enc {
				enc++
				if len(examples) < 6 {
					g, w := around(o.Enc, r.Enc)
					examples = append(examples, fmt.Sprintf("encode %d:\n\t  got %s %s\n\twant %s %s", i, g, o.EncErr, w, r.EncErr))
				}
			}
			if o.Shape != r.Shape || o.Any != r.Any {
				dec++
				if len(examples) < 12 {
					gs, ws := around(o.Shape, r.Shape)
					ga, wa := around(o.Any, r.Any)
					examples = append(examples, fmt.Sprintf("decode %d %.120q:\n\t  got %s | %s %s\n\twant %s | %s %s", i, inputs[i], gs, ga, o.DecErr, ws, wa, r.DecErr))
				}
			}
			if o.DecErr != r.DecErr && o.DecErr != "" && r.DecErr != "" || o.EncErr != r.EncErr && o.EncErr != "" && r.EncErr != "" {
				texts++
			}
		}
		t.Logf("%-36s encodings differ %4d/%d, decodings differ %4d/%d, error texts differ %4d, panics %d", c.name, enc, len(shapes), dec, len(inputs), texts, panics)
		for _, e := range examples {
			t.Logf("  %s", e)
		}
	}
}

// around returns got and want from a little before their first
// difference, 100 bytes at most.
func around(got, want string) (string, string) {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	if i == len(got) && i == len(want) {
		return "(same)", "(same)"
	}
	i = max(0, i-30)
	return fmt.Sprintf("…%q", got[i:min(len(got), i+100)]), fmt.Sprintf("…%q", want[i:min(len(want), i+100)])
}

func at[T any](xs []T, i int) *T {
	if i < len(xs) {
		return &xs[i]
	}
	return nil
}

func writeReference(t *testing.T, path string, ref []outcome) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, o := range ref {
		// Quoted: JSON would replace the invalid UTF-8 of an encoding.
		o.Enc = strconv.Quote(o.Enc)
		if err := enc.Encode(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func readReference(t *testing.T, path string) (ref []outcome) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var o outcome
		if err := dec.Decode(&o); err != nil {
			t.Fatal(err)
		}
		var err error
		if o.Enc, err = strconv.Unquote(o.Enc); err != nil {
			t.Fatal(err)
		}
		ref = append(ref, o)
	}
	return ref
}
