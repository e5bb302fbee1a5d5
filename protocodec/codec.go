package protocodec

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/transport"
)

// ContentType is the media type Codec writes and reads.
const ContentType = "application/x-protobuf"

// Codec encodes and decodes protobuf messages (see the package
// documentation). The zero value is ready to use, and comparable: give the
// same Codec{} to Options.Codecs and to an Exchange.
type Codec struct{}

var (
	_ bus.Codec          = Codec{}
	_ bus.SelectiveCodec = Codec{}
)

// ContentType implements [bus.Codec].
func (Codec) ContentType() string { return ContentType }

// Encodes implements [bus.SelectiveCodec]: it encodes protobuf messages.
func (Codec) Encodes(v any) bool {
	_, ok := v.(proto.Message)
	return ok
}

// Encode implements [bus.Codec]: v must be a protobuf message (a pointer to
// a generated struct).
func (Codec) Encode(v any, m *transport.Message) error {
	pm, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("protocodec: %T is not a protobuf message", v)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return fmt.Errorf("protocodec: %w", err)
	}
	m.Body, m.ContentType, m.ContentEncoding = b, ContentType, ""
	return nil
}

// Decode implements [bus.Codec].
func (Codec) Decode(m *transport.Message, v any) error {
	return Unmarshal(m.Body, v)
}

// Unmarshal decodes b into v, which is either a protobuf message (a
// *orderspb.OrderPlaced) or a pointer to a variable of a protobuf message
// type (a **orderspb.OrderPlaced, which is what a handler of
// *orderspb.OrderPlaced decodes into): a nil message there is allocated.
func Unmarshal(b []byte, v any) error {
	if pm, ok := v.(proto.Message); ok {
		return wrap(proto.Unmarshal(b, pm))
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Pointer {
		return fmt.Errorf("protocodec: cannot decode into %T: want a protobuf message or a pointer to one", v)
	}
	elem := rv.Elem()
	if elem.IsNil() {
		elem.Set(reflect.New(elem.Type().Elem()))
	}
	pm, ok := elem.Interface().(proto.Message)
	if !ok {
		return fmt.Errorf("protocodec: cannot decode into %T: %v is not a protobuf message", v, elem.Type())
	}
	return wrap(proto.Unmarshal(b, pm))
}

func wrap(err error) error {
	if err != nil {
		return fmt.Errorf("protocodec: %w", err)
	}
	return nil
}

// MessageType is the protobuf full name of m's type, such as
// "busline.examples.orders.OrderPlaced": the message type to register and
// send a generated type under ([bus.WithMessageType]) where services in
// other languages name messages so.
func MessageType(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}
