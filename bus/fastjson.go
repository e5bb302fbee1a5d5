package bus

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// jsonPlan decodes the JSON bodies of one struct type without
// encoding/json, for the messages where that gives exactly what
// encoding/json gives: a flat object whose keys are the exact names of the
// struct's fields, with strings (without escapes), booleans and numbers for
// its string, bool, integer and floating-point fields. Anything else (an
// escape, an unknown or differently cased key, a null, a nested value, a
// number that does not fit, malformed JSON) makes decode decline, and the
// message is decoded by encoding/json as before, errors included.
//
// encoding/json reads a body twice (once to find where it ends and check
// its syntax, once to decode it) through a state machine called for every
// byte; the plan reads it once.
type jsonPlan struct {
	fields []jsonField
}

type jsonField struct {
	name      string
	index     int
	kind      reflect.Kind
	omitEmpty bool
	omitZero  bool
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonNumberType      = reflect.TypeFor[json.Number]()
)

// customDecoding reports whether encoding/json decodes t (or *t) with
// methods of its own.
func customDecoding(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(jsonUnmarshalerType) || t.Implements(textUnmarshalerType) ||
		p.Implements(jsonUnmarshalerType) || p.Implements(textUnmarshalerType)
}

// maxPlanFields keeps the linear search for a key short, and the spans
// of the string fields of a body on decode's stack.
const maxPlanFields = 16

// newJSONPlan returns the plan for t, or nil if t is not a struct that the
// plan can decode as encoding/json does: every field that encoding/json
// decodes is a non-embedded field of kind string, bool, integer or float,
// without custom decoding and without the ",string" option, and no two
// such fields share a JSON name.
func newJSONPlan(t reflect.Type) *jsonPlan {
	if t.Kind() != reflect.Struct || customDecoding(t) {
		return nil
	}
	pl := &jsonPlan{}
	seen := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil // embedded fields: encoding/json's promotion rules
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		var omitEmpty, omitZero bool
		for o := range strings.SplitSeq(opts, ",") {
			switch o {
			case "string":
				return nil
			case "omitempty":
				omitEmpty = true
			case "omitzero":
				omitZero = true
			}
		}
		if name == "" {
			name = f.Name
		} else if !plainName(name) {
			return nil // encoding/json's rules for unusual tag names
		}
		switch f.Type.Kind() {
		case reflect.String, reflect.Bool,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
		default:
			return nil
		}
		if f.Type == jsonNumberType || customDecoding(f.Type) {
			return nil
		}
		if seen[name] {
			return nil // encoding/json's rules for duplicate names
		}
		seen[name] = true
		pl.fields = append(pl.fields, jsonField{name: name, index: i, kind: f.Type.Kind(), omitEmpty: omitEmpty, omitZero: omitZero})
	}
	if len(pl.fields) == 0 || len(pl.fields) > maxPlanFields {
		return nil
	}
	return pl
}

// plainName reports whether a tag name is made of ASCII letters, digits
// and underscores only, which encoding/json takes as it is.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return s != ""
}

// maxSharedStrings bounds the string fields of one message that decode
// puts in one allocation: a string the handler keeps holds at most this
// much of its siblings' text in memory.
const maxSharedStrings = 512

// span is where the text of a string field is in the body; ok is false if
// the body did not set the field.
type span struct {
	i, j int
	ok   bool
}

// decode decodes data into v, a zero struct of the plan's type, and
// reports whether it did. When it declines, v may have been partly set.
//
// The string fields are set once the whole body has been read, all in one
// allocation when together they are at most maxSharedStrings bytes long
// (encoding/json allocates each).
func (pl *jsonPlan) decode(data []byte, v reflect.Value) bool {
	var spans [maxPlanFields]span
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if c := data[j]; c < ' ' || c == '\\' || c >= utf8.RuneSelf {
				return false
			}
			j++
		}
		if j >= len(data) {
			return false
		}
		k := pl.field(data[i+1 : j])
		if k < 0 {
			return false
		}
		i = skipSpace(data, j+1)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		f := &pl.fields[k]
		var ok bool
		if f.kind == reflect.String {
			// A repeated key's last value wins, as in encoding/json.
			spans[k].i = i + 1
			i, ok = stringEnd(data, i)
			spans[k].j, spans[k].ok = i-1, ok
		} else {
			i, ok = f.decode(data, i, v.Field(f.index))
		}
		if !ok {
			return false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			if skipSpace(data, i+1) != len(data) {
				return false
			}
			pl.setStrings(data, spans[:len(pl.fields)], v)
			return true
		default:
			return false
		}
	}
}

// setStrings sets the string fields the body set.
func (pl *jsonPlan) setStrings(data []byte, spans []span, v reflect.Value) {
	n := 0
	for _, s := range spans {
		if s.ok {
			n += s.j - s.i
		}
	}
	if n > maxSharedStrings {
		for k, s := range spans {
			if s.ok {
				v.Field(pl.fields[k].index).SetString(string(data[s.i:s.j]))
			}
		}
		return
	}
	var buf [maxSharedStrings]byte
	n = 0
	for _, s := range spans {
		if s.ok {
			n += copy(buf[n:], data[s.i:s.j])
		}
	}
	all := string(buf[:n])
	n = 0
	for k, s := range spans {
		if s.ok {
			v.Field(pl.fields[k].index).SetString(all[n : n+s.j-s.i])
			n += s.j - s.i
		}
	}
}

// field returns the index in pl.fields of the field named key, or -1.
func (pl *jsonPlan) field(key []byte) int {
	for k := range pl.fields {
		if pl.fields[k].name == string(key) {
			return k
		}
	}
	return -1
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// decode decodes the value at data[i:] into v and returns the index after
// it.
func (f *jsonField) decode(data []byte, i int, v reflect.Value) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch f.kind {
	case reflect.Bool:
		switch {
		case hasPrefix(data[i:], "true"):
			v.SetBool(true)
			return i + 4, true
		case hasPrefix(data[i:], "false"):
			v.SetBool(false)
			return i + 5, true
		}
		return 0, false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		j := i
		if data[j] == '-' {
			j++
		}
		k, ok := digits(data, j)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(unsafe.String(&data[i], k-i), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return 0, false
		}
		v.SetInt(n)
		return k, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		k, ok := digits(data, i)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseUint(unsafe.String(&data[i], k-i), 10, 64)
		if err != nil || v.OverflowUint(n) {
			return 0, false
		}
		v.SetUint(n)
		return k, true
	case reflect.Float32, reflect.Float64:
		k, ok := number(data, i)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseFloat(unsafe.String(&data[i], k-i), v.Type().Bits())
		if err != nil || v.OverflowFloat(n) {
			return 0, false
		}
		v.SetFloat(n)
		return k, true
	}
	return 0, false
}

// stringEnd reads a JSON string without escapes at data[i:], of valid
// UTF-8, and returns the index after its closing quote.
func stringEnd(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	j, ascii := i+1, true
	for {
		for j < len(data) && plainByte[data[j]] {
			j++
		}
		if j >= len(data) || data[j] < ' ' || data[j] == '\\' {
			return 0, false
		}
		if data[j] == '"' {
			break
		}
		ascii = false
		j++
	}
	if !ascii && !utf8.Valid(data[i+1:j]) {
		return 0, false
	}
	return j + 1, true
}

// plainByte marks the ASCII bytes a JSON string holds as they are: all but
// control characters, the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

// digits reads a JSON integer without sign at data[i:], "0" or digits
// not starting with 0, not followed by a fraction or an exponent, and
// returns the index after it.
func digits(data []byte, i int) (int, bool) {
	j := i
	for j < len(data) && '0' <= data[j] && data[j] <= '9' {
		j++
	}
	switch {
	case j == i, data[i] == '0' && j > i+1:
		return 0, false
	case j < len(data) && (data[j] == '.' || data[j] == 'e' || data[j] == 'E'):
		return 0, false
	}
	return j, true
}

// number reads a JSON number at data[i:] and returns the index after it.
func number(data []byte, i int) (int, bool) {
	j := i
	if j < len(data) && data[j] == '-' {
		j++
	}
	start := j
	for j < len(data) && '0' <= data[j] && data[j] <= '9' {
		j++
	}
	if j == start || data[start] == '0' && j > start+1 {
		return 0, false
	}
	if j < len(data) && data[j] == '.' {
		j++
		start = j
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		if j == start {
			return 0, false
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		start = j
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		if j == start {
			return 0, false
		}
	}
	return j, true
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// customEncoding reports whether encoding/json encodes t (or *t) with
// methods of its own.
func customEncoding(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		p.Implements(jsonMarshalerType) || p.Implements(textMarshalerType)
}

// jsonEncodePlan encodes values of one struct type as json.Marshal does,
// for the values where that is simple: [newJSONPlan]'s struct types
// without floats (whose text encoding/json chooses by rules of its own),
// without ",omitzero" and without custom encoding, whose strings are
// printable ASCII that encoding/json writes as they are (no quote,
// backslash, or <, > and &, which it escapes for HTML). Any other string
// makes appendJSON decline, and the message is encoded by encoding/json.
type jsonEncodePlan struct {
	t      reflect.Type
	fields []jsonField
}

// newJSONEncodePlan returns the plan for t, or nil.
func newJSONEncodePlan(t reflect.Type) *jsonEncodePlan {
	pl := newJSONPlan(t)
	if pl == nil || customEncoding(t) {
		return nil
	}
	for _, f := range pl.fields {
		if f.kind == reflect.Float32 || f.kind == reflect.Float64 || f.omitZero || customEncoding(t.Field(f.index).Type) {
			return nil
		}
	}
	return &jsonEncodePlan{t: t, fields: pl.fields}
}

// appendJSON appends the JSON of v, a value of the plan's type or a
// non-nil pointer to one, to b, and reports whether it did.
func (pl *jsonEncodePlan) appendJSON(b []byte, v any) ([]byte, bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return b, false
		}
		rv = rv.Elem()
	}
	if rv.Type() != pl.t {
		return b, false
	}
	b = append(b, '{')
	first := true
	for k := range pl.fields {
		f := &pl.fields[k]
		fv := rv.Field(f.index)
		if f.omitEmpty && fv.IsZero() {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, '"', ':')
		switch f.kind {
		case reflect.String:
			str := fv.String()
			for i := 0; i < len(str); i++ {
				if !plainOutByte[str[i]] {
					return b, false
				}
			}
			b = append(b, '"')
			b = append(b, str...)
			b = append(b, '"')
		case reflect.Bool:
			b = strconv.AppendBool(b, fv.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			b = strconv.AppendInt(b, fv.Int(), 10)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			b = strconv.AppendUint(b, fv.Uint(), 10)
		default:
			return b, false
		}
	}
	return append(b, '}'), true
}

// plainOutByte marks the bytes encoding/json writes into a string as they
// are: printable ASCII but the quote, the backslash, and <, > and &.
var plainOutByte = func() (t [256]bool) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
