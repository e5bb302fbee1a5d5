package bus

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// MessageTyper is implemented by message types that name themselves. The
// name goes into the MessageType header and picks the handler on the
// receiving side, so it must be the same in every service that shares the
// message; a PikaBus service expects the name its Python peers use.
//
// MessageType must return a constant: it is called once per Go type, on the
// zero value (through a pointer to it if the method has a pointer receiver),
// and the result is cached.
type MessageTyper interface {
	MessageType() string
}

// TypeName returns the message type busline uses for v's Go type: the result
// of its MessageType method if the type or a pointer to it has one (see
// [MessageTyper]), otherwise the type's own name, such as "PlaceOrder" for
// example.com/shop/orders.PlaceOrder. Pointers are looked through: *T has
// T's name. Predeclared types have their bare name ("string"); an unnamed
// type (a map, a struct literal, a slice) has no name, which is an error.
//
// The derived name leaves the package out so that it survives refactoring:
// a type moved to another package, or from package main into a library,
// keeps its name on the wire, and the services that share it need not share
// a Go package. (busline before this rule wrote "orders.PlaceOrder"; an
// incoming message of that form still finds the handler of a derived
// "PlaceOrder".) Two Go types of one name in two packages derive the same
// name: a Bus refuses the second, at [Handle] or at its first Send,
// Publish, Defer, Reply or Request, with an error naming both. Give one a
// MessageType method, or use [WithMessageType].
func TypeName(v any) (string, error) {
	if v == nil {
		return "", fmt.Errorf("bus: no message type for a nil value")
	}
	info, err := typeInfoOf(reflect.TypeOf(v))
	if err != nil {
		return "", err
	}
	return info.name, nil
}

// typeInfo is the cached message type of a Go type.
type typeInfo struct {
	name    string
	box     any  // name as an interface value, to put in headers without allocating
	derived bool // name derived from the Go type, not chosen by a MessageType method
	goType  reflect.Type
}

var typeCache sync.Map // reflect.Type → *typeInfo

var messageTyperType = reflect.TypeFor[MessageTyper]()

func typeInfoOf(t reflect.Type) (*typeInfo, error) {
	if v, ok := typeCache.Load(t); ok {
		return v.(*typeInfo), nil
	}
	base := t
	for base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	info := &typeInfo{goType: base}
	switch {
	case base.Implements(messageTyperType):
		info.name = reflect.New(base).Elem().Interface().(MessageTyper).MessageType()
	case reflect.PointerTo(base).Implements(messageTyperType):
		info.name = reflect.New(base).Interface().(MessageTyper).MessageType()
	case base.Name() == "":
		return nil, fmt.Errorf("bus: type %v has no name to use as its message type: give it a MessageType method or use WithMessageType", t)
	default:
		info.name = derivedName(base)
		info.derived = true
	}
	if info.name == "" {
		return nil, fmt.Errorf("bus: the MessageType method of %v returns an empty name", base)
	}
	info.box = info.name
	v, _ := typeCache.LoadOrStore(t, info)
	return v.(*typeInfo), nil
}

func derivedName(t reflect.Type) string {
	return t.Name()
}

// claim records that the Bus uses the derived name of info for info's Go
// type, and fails if another Go type of the same name claimed it first: two
// types named PlaceOrder in two packages would otherwise be one message type
// on the wire, and a receiver would decode one into the other.
func (b *Bus) claim(info *typeInfo) error {
	if !info.derived {
		return nil
	}
	v, ok := b.derived.Load(info.box)
	if !ok {
		v, _ = b.derived.LoadOrStore(info.box, info.goType)
	}
	if other := v.(reflect.Type); other != info.goType {
		return fmt.Errorf("%w: %v and %v both derive the message type %q: give one a MessageType method or use WithMessageType",
			ErrInvalidMessage, other, info.goType, info.name)
	}
	return nil
}

// legacyName returns the derived name a message type of the form busline
// wrote before names left the package out ("orders.PlaceOrder" for
// "PlaceOrder"), and whether name has that form.
func legacyName(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return "", false
	}
	return name[i+1:], true
}
