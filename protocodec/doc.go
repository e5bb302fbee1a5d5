// Package protocodec is a [bus.Codec] for protocol buffers: an endpoint
// sends generated protobuf messages as their binary encoding, content type
// "application/x-protobuf", and typed handlers receive the generated type:
//
//	b, err := bus.New(t, "warehouse", bus.Options{Codecs: []bus.Codec{protocodec.Codec{}}})
//	...
//	bus.Handle(b, func(ctx context.Context, e *orderspb.OrderPlaced) error { ... })
//
// # JSON and protobuf side by side
//
// Codec is a [bus.SelectiveCodec]: in [bus.Options.Codecs] it encodes the
// messages that are protobuf messages, and [bus.Options.Codec] (JSON by
// default) encodes every other one. The receiving endpoint picks each
// message's decoder by its content type, so one endpoint sends and handles
// JSON and protobuf messages at once. Handlers are chosen by message type
// as always: a generated type's name, such as "OrderPlaced" (see
// [bus.TypeName]); give [bus.WithMessageType] the protobuf full name
// ([MessageType]) where services in other languages expect it.
//
// # Module
//
// The package is a module of its own (github.com/busline/busline/protocodec)
// so that google.golang.org/protobuf enters only the build of programs that
// use it.
package protocodec
