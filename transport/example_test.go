package transport_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/transport"
)

// Any string of at most 255 bytes of UTF-8 is a topic pattern; "*" matches
// one word, "#" zero or more.
func ExampleValidateTopicPattern() {
	for _, p := range []string{"orders.*.eu", "orders.#", ""} {
		fmt.Printf("%q: %v\n", p, transport.ValidateTopicPattern(p))
	}
	err := transport.ValidateTopicPattern("\xff")
	var nameErr *transport.NameError
	fmt.Println(errors.Is(err, transport.ErrInvalidName), errors.As(err, &nameErr), nameErr.Kind)
	// Output:
	// "orders.*.eu": <nil>
	// "orders.#": <nil>
	// "": <nil>
	// true true topic pattern
}

// Normalize gives header values the canonical types every transport
// delivers, so that a test on the memory broker sees what RabbitMQ delivers.
func ExampleHeaders_Normalize() {
	h, err := transport.Headers{
		"retries": 3,       // a Go int that fits 32 bits, as Python's client sends it
		"size":    1 << 40, // one that does not
		"sent":    time.Date(2026, 11, 22, 9, 30, 0, 500, time.UTC),
		"tags":    []string{"a", "b"},
	}.Normalize()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%T %T %T\n", h["retries"], h["size"], h["tags"])
	fmt.Println(h["sent"])
	_, err = transport.Headers{"ch": make(chan int)}.Normalize()
	fmt.Println(errors.Is(err, transport.ErrInvalidMessage))
	// Output:
	// int32 int64 []interface {}
	// 2026-11-22 09:30:00 +0000 UTC
	// true
}
