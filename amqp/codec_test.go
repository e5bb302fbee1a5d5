package amqp

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

func TestCodecRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 11, 12, 0, time.UTC)
	in := transport.Headers{
		"s": "x", "b": true, "nil": nil, "int": 1 << 40, "small": 7, "u64": uint64(math.MaxInt64),
		"i8": int8(-1), "u8": uint8(1), "i16": int16(-2), "u16": uint16(2), "i32": int32(-3), "u32": uint32(3),
		"f32": float32(.5), "f64": .25, "dec": transport.Decimal{Scale: 1, Value: 5}, "t": ts, "bytes": []byte("b"),
		"table": map[string]any{"n": transport.Headers{"d": transport.Decimal{Value: 1}}},
		"arr":   []any{[]string{"a"}, map[string]any{"k": 1}},
	}
	before := in.Clone()
	table, err := encodeHeaders(in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, before) {
		t.Fatal("encodeHeaders changed its input")
	}
	if err := table.Validate(); err != nil {
		t.Fatalf("amqp091 refuses the table: %v", err)
	}
	if _, ok := table["int"].(int64); !ok {
		t.Fatalf("1<<40 encoded as %T", table["int"])
	}
	if _, ok := table["table"].(amqp091.Table)["n"].(amqp091.Table)["d"].(amqp091.Decimal); !ok {
		t.Fatalf("nested decimal encoded as %#v", table["table"])
	}
	got := decodeHeaders(table, nil)
	want, _ := in.Normalize()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
	}
}

func TestDecodeForeignTable(t *testing.T) {
	// What amqp091 reads from a dead-lettered message, plus types no
	// transport writes but a foreign producer may.
	local := time.FixedZone("x", 3600)
	tbl := amqp091.Table{
		"x-death": []any{amqp091.Table{"count": int64(1), "time": time.Date(2026, 1, 1, 1, 0, 0, 0, local),
			"routing-keys": []any{"a"}}},
		"x-first-death-queue": "q",
		"dec":                 amqp091.Decimal{Scale: 2, Value: 3},
		"seq":                 int64(4),
		"keep":                "yes",
	}
	drop := func(k string) bool { return deathHeader(k) || k == "seq" }
	got := decodeHeaders(tbl, drop)
	want := transport.Headers{"dec": transport.Decimal{Scale: 2, Value: 3}, "keep": "yes"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	h := decodeHeaders(amqp091.Table{"x-death": []any{amqp091.Table{"time": time.Date(2026, 1, 1, 1, 0, 0, 0, local)}}}, nil)
	entry := h["x-death"].([]any)[0].(map[string]any)
	if entry["time"] != time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("time %#v, want UTC", entry["time"])
	}
	if _, err := h.Normalize(); err != nil {
		t.Fatalf("decoded headers not canonical: %v", err)
	}
	if decodeHeaders(amqp091.Table{"x-death": []any{}}, deathHeader) != nil {
		t.Fatal("headers left empty should be nil")
	}
}

func TestDelayKeys(t *testing.T) {
	d := delays{levels: 4, prefix: "p", delivery: "p-delivery"}
	for _, c := range []struct {
		delay time.Duration
		key   string
		entry string
	}{
		{time.Second, "0.0.0.1.q.x", "p-00"},
		{1500 * time.Millisecond, "0.0.1.0.q.x", "p-01"}, // rounded up, never early
		{5 * time.Second, "0.1.0.1.q.x", "p-02"},
		{15 * time.Second, "1.1.1.1.q.x", "p-03"},
	} {
		s := seconds(c.delay)
		if got := d.key(s, "q.x"); got != c.key {
			t.Errorf("key(%v) = %q, want %q", c.delay, got, c.key)
		}
		if got := d.entry(s); got != c.entry {
			t.Errorf("entry(%v) = %q, want %q", c.delay, got, c.entry)
		}
		if got := d.destination(c.key); got != "q.x" {
			t.Errorf("destination(%q) = %q", c.key, got)
		}
	}
	if d.max() != 15*time.Second {
		t.Fatalf("max = %v", d.max())
	}
	if d.bindingKey("q.x") != "*.*.*.*.q.x" {
		t.Fatalf("bindingKey = %q", d.bindingKey("q.x"))
	}
}

// TestDelayRoute: the keys a deferred message is published with (its
// delivery key, and a BCC of its entry level's queue and of a hop per
// level after it, in ascending order rotated by the message's rotation,
// level 0 last), the hops each exchange binds, and the per-message TTL
// that takes back the rounding. An odd delay is rounded up to even
// seconds, except the longest, which ends in level 0.
func TestDelayRoute(t *testing.T) {
	d := delays{levels: 4, prefix: "p", delivery: "p-delivery"}
	type hop struct {
		key, exchange string
		to            int
	}
	for _, c := range []struct {
		s, rot, even uint64
		entry        int
		bcc          []any
		hops         []hop
	}{
		{1, 0, 2, 1, []any{"p-01", "p-01>delivery"}, []hop{{"p-01>delivery", "p-00", -1}}},
		{2, 5, 2, 1, []any{"p-01", "p-01>delivery"}, []hop{{"p-01>delivery", "p-00", -1}}},
		{3, 1, 4, 2, []any{"p-02", "p-02>delivery"}, []hop{{"p-02>delivery", "p-01", -1}}},
		{13, 0, 14, 1, []any{"p-01", "p-01>02", "p-02>03", "p-03>delivery"},
			[]hop{{"p-01>02", "p-00", 2}, {"p-02>03", "p-01", 3}, {"p-03>delivery", "p-02", -1}}},
		{13, 1, 14, 2, []any{"p-02", "p-02>03", "p-03>01", "p-01>delivery"},
			[]hop{{"p-02>03", "p-01", 3}, {"p-03>01", "p-02", 1}, {"p-01>delivery", "p-00", -1}}},
		{14, 2, 14, 3, []any{"p-03", "p-03>01", "p-01>02", "p-02>delivery"},
			[]hop{{"p-03>01", "p-02", 1}, {"p-01>02", "p-00", 2}, {"p-02>delivery", "p-01", -1}}},
		{14, 3, 14, 1, []any{"p-01", "p-01>02", "p-02>03", "p-03>delivery"},
			[]hop{{"p-01>02", "p-00", 2}, {"p-02>03", "p-01", 3}, {"p-03>delivery", "p-02", -1}}},
		{12, 0, 12, 2, []any{"p-02", "p-02>03", "p-03>delivery"}, []hop{{"p-02>03", "p-01", 3}, {"p-03>delivery", "p-02", -1}}},
		{12, 1, 12, 3, []any{"p-03", "p-03>02", "p-02>delivery"}, []hop{{"p-03>02", "p-02", 2}, {"p-02>delivery", "p-01", -1}}},
		{15, 0, 15, 1, []any{"p-01", "p-01>02", "p-02>03", "p-03>00"},
			[]hop{{"p-01>02", "p-00", 2}, {"p-02>03", "p-01", 3}, {"p-03>00", "p-02", 0}}},
		{15, 2, 15, 3, []any{"p-03", "p-03>01", "p-01>02", "p-02>00"},
			[]hop{{"p-03>01", "p-02", 1}, {"p-01>02", "p-00", 2}, {"p-02>00", "p-01", 0}}},
	} {
		r, ok := d.route(c.s, c.rot, "q.x%y")
		if !ok || r.key != "p>q%2Ex%25y" || r.s != c.even || r.entry != c.entry || !reflect.DeepEqual(r.bcc, c.bcc) {
			t.Errorf("route(%d, %d) = %+v %v, want %q %d %d %q", c.s, c.rot, r, ok, "p>q%2Ex%25y", c.even, c.entry, c.bcc)
		}
		if got := d.destination(r.key); got != "q.x%y" {
			t.Errorf("destination(%q) = %q", r.key, got)
		}
		var hops []hop
		d.hops(r.s, c.rot, func(key, exchange string, to int) { hops = append(hops, hop{key, exchange, to}) })
		if !reflect.DeepEqual(hops, c.hops) {
			t.Errorf("hops(%d, %d) = %v, want %v", r.s, c.rot, hops, c.hops)
		}
	}
	var path []int
	d.path(15, 1, func(l int) { path = append(path, l) })
	if !reflect.DeepEqual(path, []int{2, 3, 1, 0}) {
		t.Errorf("path(15, 1) = %v, want [2 3 1 0]: rotated, level 0 last", path)
	}
	if _, ok := d.route(1, 0, strings.Repeat("q", 254)); ok {
		t.Error("route of a delivery key over 255 bytes: ok")
	}
	for _, c := range []struct {
		entry int
		s     uint64
		delay time.Duration
		want  string
	}{
		{3, 13, 13 * time.Second, ""},
		{3, 13, 12*time.Second + 700*time.Millisecond, "7700"}, // entering level 3: 300 ms back
		{1, 14, 12*time.Second + 700*time.Millisecond, "700"},  // rounded to 14 s, entering level 1: 1.3 s back
		{1, 2, 1500 * time.Millisecond, "1500"},
		{1, 2, 100*time.Millisecond + 500*time.Microsecond, "101"},
		{0, 1, 100*time.Millisecond + 500*time.Microsecond, "101"},
	} {
		if got := d.expiration(c.entry, c.s, c.delay); got != c.want {
			t.Errorf("expiration(%d, %d, %v) = %q, want %q", c.entry, c.s, c.delay, got, c.want)
		}
	}
}

// TestPublishingHeaders: headers amqp091 writes as they are (the PikaBus
// ones) go without a copy; others are encoded into a copy, and the
// message's own headers are never modified.
func TestPublishingHeaders(t *testing.T) {
	plain := transport.Headers{"PikaBus.MessageId": "m-1", "n": int64(3), "ok": true, "raw": []byte("x"),
		"at": time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), "nil": nil}
	p, err := publishing(&transport.Message{Headers: plain})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(p.Headers).UnsafePointer() != reflect.ValueOf(plain).UnsafePointer() {
		t.Error("headers that need no conversion were copied")
	}
	if err := p.Headers.Validate(); err != nil {
		t.Errorf("amqp091 refuses them: %v", err)
	}
	if p, err := publishing(&transport.Message{}); err != nil || p.Headers != nil {
		t.Errorf("no headers: %v, %v", p.Headers, err)
	}
	mixed := transport.Headers{"PikaBus.MessageId": "m-1", "n": 3}
	before := mixed.Clone()
	p, err = publishing(&transport.Message{Headers: mixed})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Headers["n"].(int32); !ok || !reflect.DeepEqual(mixed, before) {
		t.Errorf("a Go int: encoded as %T, input now %v", p.Headers["n"], mixed)
	}
}

// TestDelayHopKeysMadeOnce: every hop key, lowest first or highest first,
// is made when the transport is dialed: Dispatch looks them up twice per
// deferred message (route, routes.ensureHops) and formats none.
func TestDelayHopKeysMadeOnce(t *testing.T) {
	d := newDelays(Options{DelayLevels: 28, DelayPrefix: "busline-delay"})
	for from := range 28 {
		for to := -1; to < 28; to++ {
			if to == from {
				continue
			}
			want := fmt.Sprintf("busline-delay-%02d>%02d", from, to)
			if to < 0 {
				want = fmt.Sprintf("busline-delay-%02d>delivery", from)
			}
			if got := d.hop(from, to); got != want {
				t.Fatalf("hop(%d, %d) = %q, want %q", from, to, got, want)
			}
			if n := testing.AllocsPerRun(10, func() { _ = d.hop(from, to) }); n != 0 {
				t.Fatalf("hop(%d, %d) allocates %v times", from, to, n)
			}
		}
	}
}
