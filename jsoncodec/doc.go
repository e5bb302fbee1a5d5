// Package jsoncodec is an opt-in [bus.Codec] over github.com/goccy/go-json,
// byte-compatible on the wire with the default [bus.JSON] (encoding/json):
// same content type ("application/json"), same content encoding ("utf-8"),
// same bytes for the same value. Install it with one option:
//
//	b, err := bus.New(t, "shipping", bus.Options{Codec: jsoncodec.JSON})
//
// The endpoint then encodes what it sends and decodes what it receives
// with it; peers that use bus.JSON (or PikaBus) read and write the same
// messages.
//
// It is a module of its own so that go-json, which reaches into the Go
// runtime's type layout through unsafe, is in no build list of a program
// that does not ask for it: the root module keeps encoding/json.
//
// # Why, and what it costs
//
// On the bus's memory benchmark, encoding/json is about 45% of the CPU a
// message costs; go-json decodes the benchmark's message in about a fifth
// of encoding/json's CPU time. The README's benchmark section has the
// side-by-side measurement of the candidates (encoding/json, go-json,
// segmentio/encoding, json-iterator, sonic, encoding/json under
// GOEXPERIMENT=jsonv2) that chose it.
//
// go-json depends on the runtime's internal layout of types, maps and
// interfaces, as every fast reflection-based JSON library does: a new Go
// release can break it until go-json follows (it has before). Keep it
// opt-in, run your tests on each Go upgrade, and drop the option to fall
// back to encoding/json at no other cost.
//
// # Compatibility
//
// The fuzz tests of this package compare it with encoding/json: the bytes
// of Marshal, and the values Unmarshal decodes into structs and into any,
// on strings with non-ASCII, HTML and invalid UTF-8, numbers, nested maps
// and slices, time.Time, json.RawMessage, pointers, omitempty and invalid
// JSON. Where both fail, the error texts may differ; the bus wraps them in
// [bus.ErrUndecodable] either way.
//
// # Concurrency
//
// [JSON] is safe for concurrent use.
package jsoncodec
