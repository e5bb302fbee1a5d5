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
// [MessageTyper]), otherwise the last element of the package path, a dot and
// the type name, such as "orders.PlaceOrder" for
// example.com/shop/orders.PlaceOrder. Pointers are looked through: *T has
// T's name. Types declared in package main are "main.Name"; predeclared
// types have their bare name ("string"); an unnamed type (a map, a struct
// literal, a slice) has no name, which is an error.
//
// Two Go types whose packages end in the same element and whose names are
// equal derive the same name; [Handle] refuses to register both under it.
// Give one a MessageType method, or use [WithMessageType].
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
	pkg := t.PkgPath()
	if pkg == "" {
		return t.Name()
	}
	return pkg[strings.LastIndexByte(pkg, '/')+1:] + "." + t.Name()
}
