package tomodachi_test

import "google.golang.org/protobuf/reflect/protoreflect"

func protoreflectName(s string) protoreflect.Name    { return protoreflect.Name(s) }
func protoreflectString(s string) protoreflect.Value { return protoreflect.ValueOfString(s) }
func protoreflectFloat(f float64) protoreflect.Value { return protoreflect.ValueOfFloat64(f) }
func protoreflectBytes(b []byte) protoreflect.Value  { return protoreflect.ValueOfBytes(b) }
