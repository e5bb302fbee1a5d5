package memory_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// topicCases are RabbitMQ's topic matching rules (docs/architecture.md and
// transport.ValidateTopicPattern), each checked in both directions where it
// says what does not match. Every case was run against RabbitMQ 3.10.8 with
// the same result.
var topicCases = []struct {
	pattern, key string
	match        bool
}{
	{"#", "", true},
	{"#", "a", true},
	{"#", "a.b.c", true},
	{"#", ".", true},
	{"*", "", false},
	{"*", "a", true},
	{"*", "a.b", false},
	{"*", ".", false},
	{"a.*", "a.", true},
	{"a.*", "a", false},
	{"a.*", "a.b", true},
	{"a.*", "a.b.c", false},
	{"a.#", "a", true},
	{"a.#", "a.", true},
	{"a.#", "a.b.c", true},
	{"a.#", "ab", false},
	{"a.#", "b.a", false},
	{"a.#.b", "a.b", true},
	{"a.#.b", "a.x.y.b", true},
	{"a.#.b", "a.b.c", false},
	{"a.#.b", "a.x.b.y.b", true},
	{"*.*", ".", true},
	{"*.*", "a.", true},
	{"*.*", "a", false},
	{"*.*", "a.b.c", false},
	{"", "", true},
	{"", "a", false},
	{"", ".", false},
	{"a", "", false},
	{"a", "a", true},
	{"a", "A", false},
	{"a", "a.", false},
	{"a.", "a.", true},
	{"a.", "a", false},
	{".", ".", true},
	{".", "", false},
	{"..", "..", true},
	{"*.", "a.", true},
	{"*.", ".", true},
	{"#.", ".", true},
	{"#.", "", false},
	{"#.", "a.b.", true},
	{".#", ".", true},
	{".#", "", false},
	{"#.#", "", true},
	{"#.#", "a.b", true},
	{"#.*", "", false},
	{"#.*", "a", true},
	{"#.*", "a.b.c", true},
	{"*.#", "", false},
	{"*.#", "a", true},
	{"#.a.#", "a", true},
	{"#.a.#", "x.a.y", true},
	{"#.a.#", "x.b.y", false},
	{"#.#.#.a", "a", true},
	{"a*", "a*", true},
	{"a*", "ab", false},
	{"a#", "a#", true},
	{"a#", "a.b", false},
	{"ä.*", "ä.ö", true},
	{"a.b", "a.b", true},
	{"a.b", "a.c", false},
	{"*.b.#", "a.b", true},
	{"*.b.#", "b", false},
	{"#.#", ".", true},
	{"#.*.#", ".", true},
	{"*.#.*", "a", false},
	{"*.#.*", "a.", true},
}

func TestTopicMatching(t *testing.T) {
	for _, tc := range topicCases {
		t.Run(fmt.Sprintf("%q~%q", tc.pattern, tc.key), func(t *testing.T) {
			b := memory.NewBroker()
			defer b.Close()
			if err := b.DeclareExchange("t", memory.ExchangeTopic); err != nil {
				t.Fatal(err)
			}
			if err := b.DeclareQueue(transport.Queue{Name: "q"}); err != nil {
				t.Fatal(err)
			}
			if err := b.Bind("t", "q", tc.pattern); err != nil {
				t.Fatal(err)
			}
			err := b.Publish("t", tc.key, transport.Message{}, memory.PublishOptions{Mandatory: true})
			if tc.match && err != nil {
				t.Fatalf("pattern %q does not match key %q: %v", tc.pattern, tc.key, err)
			}
			if !tc.match && !errors.Is(err, transport.ErrUnroutable) {
				t.Fatalf("pattern %q matches key %q (err %v)", tc.pattern, tc.key, err)
			}
		})
	}
}

func TestTopicOneCopyPerQueue(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	must(t, b.DeclareExchange("t", memory.ExchangeTopic))
	must(t, b.DeclareQueue(transport.Queue{Name: "q1"}))
	must(t, b.DeclareQueue(transport.Queue{Name: "q2"}))
	for _, p := range []string{"#", "a.*", "a.b", "*.b", "#.b", "a.#"} {
		must(t, b.Bind("t", "q1", p))
	}
	must(t, b.Bind("t", "q2", "a.b"))
	must(t, b.Bind("t", "q2", "x.#"))
	must(t, b.Publish("t", "a.b", transport.Message{ID: "m"}, memory.PublishOptions{Mandatory: true}))
	if d1, d2 := b.Depth("q1"), b.Depth("q2"); d1 != 1 || d2 != 1 {
		t.Fatalf("depths %d and %d, want one copy each", d1, d2)
	}
	// Unbinding one of several matching patterns keeps the others.
	must(t, b.Unbind("t", "q2", "a.b"))
	must(t, b.Unbind("t", "q1", "#"))
	must(t, b.Unbind("t", "q1", "no.such.binding"))
	must(t, b.Publish("t", "a.b", transport.Message{ID: "m2"}, memory.PublishOptions{}))
	if d1, d2 := b.Depth("q1"), b.Depth("q2"); d1 != 2 || d2 != 1 {
		t.Fatalf("depths %d and %d after unbinding", d1, d2)
	}
	if got := fmt.Sprint(b.Bindings("q1")); !strings.Contains(got, "{t a.#}") || strings.Contains(got, "{t #}") {
		t.Fatalf("bindings %s", got)
	}
}

func TestFanoutAndDirect(t *testing.T) {
	b := memory.NewBroker()
	defer b.Close()
	must(t, b.DeclareExchange("f", memory.ExchangeFanout))
	must(t, b.DeclareExchange("d", memory.ExchangeDirect))
	for _, q := range []string{"q1", "q2", "q3"} {
		must(t, b.DeclareQueue(transport.Queue{Name: q}))
	}
	must(t, b.Bind("f", "q1", ""))
	must(t, b.Bind("f", "q1", "other"))
	must(t, b.Bind("f", "q2", "x"))
	must(t, b.Bind("d", "q2", "k"))
	must(t, b.Bind("d", "q3", "k"))
	must(t, b.Bind("d", "q3", "j"))
	must(t, b.Publish("f", "anything", transport.Message{}, memory.PublishOptions{Mandatory: true}))
	must(t, b.Publish("d", "k", transport.Message{}, memory.PublishOptions{Mandatory: true}))
	must(t, b.Publish("d", "j", transport.Message{}, memory.PublishOptions{Mandatory: true}))
	mustIs(t, b.Publish("d", "K", transport.Message{}, memory.PublishOptions{Mandatory: true}), transport.ErrUnroutable)
	if got := []int{b.Depth("q1"), b.Depth("q2"), b.Depth("q3")}; fmt.Sprint(got) != "[1 2 2]" {
		t.Fatalf("depths %v", got)
	}
	// The default exchange routes by queue name and cannot be touched.
	must(t, b.Publish("", "q1", transport.Message{}, memory.PublishOptions{Mandatory: true}))
	mustIs(t, b.Publish("", "nope", transport.Message{}, memory.PublishOptions{Mandatory: true}), transport.ErrUnroutable)
	mustIs(t, b.DeclareExchange("", memory.ExchangeDirect), transport.ErrInvalidName)
	mustIs(t, b.Bind("", "q1", "q1"), transport.ErrInvalidName)
	mustIs(t, b.DeleteExchange(""), transport.ErrInvalidName)
	mustIs(t, b.Publish("missing", "q1", transport.Message{}, memory.PublishOptions{}), transport.ErrNotFound)
	mustIs(t, b.DeclareExchange("f", memory.ExchangeTopic), transport.ErrTopologyConflict)
	mustIs(t, b.DeclareExchange("amq.mine", memory.ExchangeTopic), transport.ErrInvalidName)
	must(t, b.DeclareExchange("amq.topic", memory.ExchangeTopic))
	mustIs(t, b.Bind("f", "missing", ""), transport.ErrNotFound)
	mustIs(t, b.Bind("missing", "q1", ""), transport.ErrNotFound)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
