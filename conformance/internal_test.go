package conformance

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// TestMain fails the run if goroutines started by the tests outlive them:
// the package checks with the runtime, as it asks transports to.
func TestMain(m *testing.M) {
	before := goroutineIDs()
	code := m.Run()
	if code == 0 {
		var left []goroutine
		for range 500 {
			if left = goroutinesSince(before); len(left) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, g := range left {
			fmt.Fprintf(os.Stderr, "goroutine left running after the tests:\n%s\n\n", g.stack)
			code = 1
		}
	}
	os.Exit(code)
}

// The routing table and the reference matcher are written independently;
// they must agree, and with RabbitMQ 3.10.8 as measured (FACTS.md).
func TestTopicMatch(t *testing.T) {
	for _, c := range topicCases {
		if got := topicMatch(c.pattern, c.key); got != c.match {
			t.Errorf("%s: topicMatch(%q, %q) = %v, want %v", c.name, c.pattern, c.key, got, c.match)
		}
	}
	measured := []struct {
		pattern, key string
		match        bool
	}{
		{"#.#", "", true}, {"#.*", "", false}, {"#.*", "a", true}, {"a.#.#.b", "a.b", true},
		{"*.#.*", "a", false}, {"*.#.*", "a.b", true}, {"a*", "ab", false}, {"A", "a", false},
		{"#.a", ".a", true}, {"a.*.b", "a..b", true}, {"#", ".", true}, {"#.", "a", false},
		{"#.", "a.", true}, {"a.#", "a.", true}, {".", ".", true}, {"*", ".", false},
	}
	for _, c := range measured {
		if got := topicMatch(c.pattern, c.key); got != c.match {
			t.Errorf("topicMatch(%q, %q) = %v, RabbitMQ says %v", c.pattern, c.key, got, c.match)
		}
	}
	seen := map[string]bool{}
	for _, c := range topicCases {
		if seen[c.name] {
			t.Errorf("two routing cases are named %q", c.name)
		}
		seen[c.name] = true
	}
}

func TestDiffHeaders(t *testing.T) {
	if d := diffHeaders(canonicalHeaders(), canonicalHeaders()); d != "" {
		t.Errorf("identical headers differ:\n%s", d)
	}
	_, want := inputHeaders()
	normalized, err := func() (transport.Headers, error) { in, _ := inputHeaders(); return in.Normalize() }()
	if err != nil {
		t.Fatal(err)
	}
	if d := diffHeaders(want, normalized); d != "" {
		t.Errorf("inputHeaders' expectations disagree with Headers.Normalize:\n%s", d)
	}
	if n, err := canonicalHeaders().Normalize(); err != nil {
		t.Fatal(err)
	} else if d := diffHeaders(canonicalHeaders(), n); d != "" {
		t.Errorf("canonicalHeaders are not canonical:\n%s", d)
	}

	for _, c := range []struct {
		name      string
		want, got transport.Headers
		ok        bool
	}{
		{"broker header ignored", transport.Headers{"a": "b"}, transport.Headers{"a": "b", "x-delivery-count": int64(1)}, true},
		{"empty bytes as nil", transport.Headers{"b": []byte{}}, transport.Headers{"b": []byte(nil)}, true},
		{"empty array as nil", transport.Headers{"a": []any{}}, transport.Headers{"a": []any(nil)}, true},
		{"missing", transport.Headers{"a": "b"}, nil, false},
		{"extra", nil, transport.Headers{"a": "b"}, false},
		{"int width", transport.Headers{"n": int32(1)}, transport.Headers{"n": int64(1)}, false},
		{"signedness", transport.Headers{"n": uint8(1)}, transport.Headers{"n": int8(1)}, false},
		{"nested type", transport.Headers{"t": map[string]any{"n": int32(1)}}, transport.Headers{"t": transport.Headers{"n": int32(1)}}, false},
		{"nested value", transport.Headers{"t": map[string]any{"n": int32(1)}}, transport.Headers{"t": map[string]any{"n": int32(2)}}, false},
		{"nested extra", transport.Headers{"t": map[string]any{}}, transport.Headers{"t": map[string]any{"x-n": int32(2)}}, false},
		{"array order", transport.Headers{"a": []any{"x", "y"}}, transport.Headers{"a": []any{"y", "x"}}, false},
		{"bytes vs string", transport.Headers{"b": []byte("x")}, transport.Headers{"b": "x"}, false},
		{"time zone", transport.Headers{"t": headerTime}, transport.Headers{"t": headerTime.In(time.FixedZone("z", 3600))}, false},
		{"time value", transport.Headers{"t": headerTime}, transport.Headers{"t": headerTime.Add(time.Second)}, false},
		{"decimal", transport.Headers{"d": transport.Decimal{Scale: 1, Value: 1}}, transport.Headers{"d": transport.Decimal{Scale: 2, Value: 10}}, false},
		{"nil vs missing", transport.Headers{"n": nil}, transport.Headers{}, false},
	} {
		if d := diffHeaders(c.want, c.got); (d == "") != c.ok {
			t.Errorf("%s: diffHeaders = %q, want ok %v", c.name, d, c.ok)
		}
	}
}

func TestDispatchErrors(t *testing.T) {
	a := &transport.DispatchError{Index: 1, Err: transport.ErrUnroutable}
	b := &transport.DispatchError{Index: 3, Err: transport.ErrUnroutable}
	err := fmt.Errorf("memory: %w", errors.Join(a, errors.Join(b)))
	got := dispatchErrors(err)
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("dispatchErrors = %v, want [%v %v]", got, a, b)
	}
	if got := dispatchErrors(nil); got != nil {
		t.Errorf("dispatchErrors(nil) = %v", got)
	}
}

func TestGoroutinesSince(t *testing.T) {
	before := goroutineIDs()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	left := goroutinesSince(before)
	if len(left) != 1 || !strings.Contains(left[0].stack, "TestGoroutinesSince") {
		t.Errorf("goroutinesSince found %d goroutines, want the one started:\n%v", len(left), left)
	}
	close(stop)
	<-done
	for range 100 {
		if left = goroutinesSince(before); len(left) == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Errorf("goroutinesSince still finds %v after it ended", left)
}

func TestRandomGenerators(t *testing.T) {
	// keyFor's keys mostly match their pattern; the random test relies on
	// that to route a good share of its batch.
	rng := newRand(1)
	var matched, total int
	for _, p := range randomPatterns(rng, 200) {
		total++
		if topicMatch(p, keyFor(rng, p)) {
			matched++
		}
	}
	if matched < total*3/4 {
		t.Errorf("keyFor matched its pattern %d times in %d", matched, total)
	}
}
