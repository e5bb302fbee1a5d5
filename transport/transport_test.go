package transport_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

func TestValidateNames(t *testing.T) {
	long := strings.Repeat("q", transport.MaxNameLength)
	tests := []struct {
		name    string
		check   func(string) error
		input   string
		wantErr bool
	}{
		{"queue ok", transport.ValidateQueueName, "orders", false},
		{"queue at limit", transport.ValidateQueueName, long, false},
		{"queue over limit", transport.ValidateQueueName, long + "q", true},
		{"queue empty", transport.ValidateQueueName, "", true},
		{"queue amq prefix", transport.ValidateQueueName, "amq.gen-1", true},
		{"queue bad utf8", transport.ValidateQueueName, "a\xffb", true},
		{"key empty", transport.ValidateRoutingKey, "", false},
		{"key at limit", transport.ValidateRoutingKey, long, false},
		{"key over limit", transport.ValidateRoutingKey, long + "k", true},
		{"pattern wildcards", transport.ValidateTopicPattern, "a.*.#", false},
		{"pattern over limit", transport.ValidateTopicPattern, long + "#", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(tt.input)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, transport.ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Fatalf("error message not shortened: %d bytes", len(err.Error()))
			}
		})
	}
}

func TestHeadersNormalize(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 11, 12, 999, time.FixedZone("x", 3600))
	in := transport.Headers{
		"str":    "s",
		"int":    42,
		"big":    int64(1) << 40,
		"bigint": 1 << 40,
		"uint":   uint(7),
		"u64":    uint64(9),
		"i8":     int8(-1),
		"u8":     uint8(1),
		"time":   ts,
		"dec":    transport.Decimal{Scale: 2, Value: 12345},
		"bytes":  []byte("b"),
		"nil":    nil,
		"table":  map[string]any{"n": 1, "h": transport.Headers{"x": "y"}},
		"arr":    []any{1, "two", []string{"a"}},
		"xdeath": []map[string]any{{"count": int64(1), "reason": "expired"}},
	}
	got, err := in.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := transport.Headers{
		"str":    "s",
		"int":    int32(42),
		"big":    int64(1) << 40,
		"bigint": int64(1) << 40,
		"uint":   int32(7),
		"u64":    int32(9),
		"i8":     int8(-1),
		"u8":     uint8(1),
		"time":   time.Date(2026, 11, 22, 9, 11, 12, 0, time.UTC),
		"dec":    transport.Decimal{Scale: 2, Value: 12345},
		"bytes":  []byte("b"),
		"nil":    nil,
		"table":  map[string]any{"n": int32(1), "h": map[string]any{"x": "y"}},
		"arr":    []any{int32(1), "two", []any{"a"}},
		"xdeath": []any{map[string]any{"count": int64(1), "reason": "expired"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Normalize:\n got %#v\nwant %#v", got, want)
	}
	// The copy is deep: changing it leaves the input alone.
	got["table"].(map[string]any)["n"] = "changed"
	got["bytes"].([]byte)[0] = 'X'
	if in["table"].(map[string]any)["n"] != 1 || in["bytes"].([]byte)[0] != 'b' {
		t.Fatal("Normalize shares state with its input")
	}
}

func TestHeadersRefused(t *testing.T) {
	for name, h := range map[string]transport.Headers{
		"struct":        {"s": struct{}{}},
		"nested struct": {"t": map[string]any{"x": []any{struct{}{}}}},
		"huge uint":     {"u": uint64(math.MaxUint64)},
		"long key":      {strings.Repeat("k", 256): 1},
		"int slice":     {"s": []int{1}},
	} {
		t.Run(name, func(t *testing.T) {
			err := h.Validate()
			if !errors.Is(err, transport.ErrInvalidMessage) {
				t.Fatalf("Validate = %v, want ErrInvalidMessage", err)
			}
			if _, err := h.Normalize(); !errors.Is(err, transport.ErrInvalidMessage) {
				t.Fatalf("Normalize = %v, want ErrInvalidMessage", err)
			}
		})
	}
}

func TestDeliverySettlesOnce(t *testing.T) {
	var acks, nacks int
	d := &transport.Delivery{Acknowledger: countingAcker{&acks, &nacks}}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := d.Nack(true); !errors.Is(err, transport.ErrSettled) {
		t.Fatalf("second settle = %v, want ErrSettled", err)
	}
	if acks != 1 || nacks != 0 || !d.Settled() {
		t.Fatalf("acks %d nacks %d settled %v", acks, nacks, d.Settled())
	}
}

type countingAcker struct{ acks, nacks *int }

func (c countingAcker) Ack(uint64) error        { *c.acks++; return nil }
func (c countingAcker) Nack(uint64, bool) error { *c.nacks++; return nil }

func TestOutgoingValidate(t *testing.T) {
	deferredTopic := transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a.b", NotBefore: time.Now().Add(time.Hour)}
	if err := deferredTopic.Validate(); !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("deferred topic = %v, want ErrNotSupported", err)
	}
	emptyQueue := transport.Outgoing{Exchange: transport.Direct}
	if err := emptyQueue.Validate(); !errors.Is(err, transport.ErrInvalidName) {
		t.Fatalf("empty destination = %v, want ErrInvalidName", err)
	}
	longProp := transport.Outgoing{RoutingKey: "q", Message: transport.Message{CorrelationID: strings.Repeat("c", 256)}}
	if err := longProp.Validate(); !errors.Is(err, transport.ErrInvalidMessage) {
		t.Fatalf("long property = %v, want ErrInvalidMessage", err)
	}
}
