package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

func TestTimeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 30, 1, 123456789, time.FixedZone("CET", 3600))
	s := middleware.FormatTime(at)
	if s != "2026-11-22T08:30:01.123456+00:00" {
		t.Fatalf("FormatTime = %q", s)
	}
	got, err := middleware.ParseTime(s)
	if err != nil || !got.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("ParseTime(%q) = %v, %v", s, got, err)
	}
}

func TestTimeFormats(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 30, 1, 999999999, time.FixedZone("CET", 3600))
	if got := middleware.TimePikaBus1.Format(at); got != "11/22/2026 08:30:01" {
		t.Fatalf("TimePikaBus1.Format = %q", got)
	}
	if got := middleware.TimeRFC3339.Format(at); got != middleware.FormatTime(at) {
		t.Fatalf("TimeRFC3339.Format = %q", got)
	}
	for _, f := range []middleware.TimeFormat{middleware.TimeRFC3339, middleware.TimePikaBus1} {
		back, err := middleware.ParseTime(f.Format(at))
		if err != nil || back.After(at) || at.Sub(back) >= time.Second {
			t.Errorf("%v: ParseTime(Format(t)) = %v, %v", f, back, err)
		}
	}
}

func TestParseTimeForeignForms(t *testing.T) {
	want := time.Date(2026, 11, 22, 8, 30, 1, 0, time.UTC)
	for _, s := range []string{
		"11/22/2026 08:30:01",           // PikaBus 1.x
		"2026-11-22T08:30:01",           // Python isoformat, naive UTC
		"2026-11-22T08:30:01.000000",    // with microseconds
		"2026-11-22T09:30:01+01:00",     // with an offset
		"2026-11-22 08:30:01",           // str(datetime)
		"2026-11-22T08:30:01Z",          // RFC 3339
		" 2026-11-22T08:30:01.000Z ",    // padded
		"2026-11-22 08:30:01.000+00:00", // str(aware datetime)
	} {
		got, err := middleware.ParseTime(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := middleware.ParseTime("yesterday"); err == nil {
		t.Error("ParseTime(yesterday) succeeded")
	}
}

func TestHeaderInt(t *testing.T) {
	for _, v := range []any{int8(3), uint8(3), int16(3), uint16(3), int32(3), uint32(3), int64(3), 3, "3", []byte("3"), float64(3)} {
		n, ok, err := middleware.HeaderInt(v)
		if n != 3 || !ok || err != nil {
			t.Errorf("HeaderInt(%T %v) = %d, %v, %v", v, v, n, ok, err)
		}
	}
	if _, ok, err := middleware.HeaderInt(nil); ok || err != nil {
		t.Errorf("HeaderInt(nil) = %v, %v", ok, err)
	}
	for _, v := range []any{"three", 3.5, map[string]any{}, transport.Decimal{}} {
		if _, _, err := middleware.HeaderInt(v); err == nil {
			t.Errorf("HeaderInt(%T %v) succeeded", v, v)
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	err := middleware.Permanent(base)
	if !errors.Is(err, base) || !middleware.IsPermanent(err) || err.Error() != "bad input" {
		t.Fatalf("Permanent(%v) = %v", base, err)
	}
	if middleware.Permanent(nil) != nil || middleware.IsPermanent(base) {
		t.Fatal("Permanent(nil) or IsPermanent(plain) wrong")
	}
	if !middleware.IsPermanent(middleware.ErrUnhandled) || !middleware.IsPermanent(middleware.ErrUndecodable) {
		t.Fatal("ErrUnhandled and ErrUndecodable must be permanent")
	}
}

func TestChainOrder(t *testing.T) {
	var trail []string
	mark := func(name string) middleware.Middleware {
		return func(next middleware.Handler) middleware.Handler {
			return func(ctx context.Context, m *middleware.Message) error {
				trail = append(trail, name)
				return next(ctx, m)
			}
		}
	}
	h := middleware.Chain(mark("a"), mark("b"))(func(context.Context, *middleware.Message) error {
		trail = append(trail, "h")
		return nil
	})
	if err := h(context.Background(), &middleware.Message{}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(trail); got != "[a b h]" {
		t.Fatalf("order %s, want [a b h]", got)
	}
}

func TestTimeFormatAppendFormat(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 30, 1, 123456789, time.FixedZone("x", 3600))
	for _, f := range []middleware.TimeFormat{middleware.TimeRFC3339, middleware.TimePikaBus1} {
		if got, want := string(f.AppendFormat([]byte("prefix:"), now)), "prefix:"+f.Format(now); got != want {
			t.Errorf("%v: AppendFormat gives %q, want %q", f, got, want)
		}
	}
}

// TestTimeFormatIsTimeFormat checks the formats' own digit writing against
// the time package's layouts, over the whole range of years and in zones
// other than UTC.
func TestTimeFormatIsTimeFormat(t *testing.T) {
	layouts := map[middleware.TimeFormat]string{
		middleware.TimeRFC3339:  "2006-01-02T15:04:05.000000-07:00",
		middleware.TimePikaBus1: "01/02/2006 15:04:05",
	}
	zones := []*time.Location{time.UTC, time.FixedZone("east", 5*3600+1800), time.FixedZone("west", -11*3600), time.Local}
	rng := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{
		{}, time.Unix(0, 0), time.Now(),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 1000, time.UTC), time.Date(2026, 11, 22, 9, 30, 1, 999, time.UTC),
	}
	for range 20000 {
		times = append(times, time.Unix(rng.Int64N(600e9)-300e9, rng.Int64N(1e9)))
	}
	for _, at := range times {
		for _, z := range zones {
			at := at.In(z)
			for f, layout := range layouts {
				want := at.UTC().Format(layout)
				if got := f.Format(at); got != want {
					t.Fatalf("%v.Format(%v) = %q, want %q", f, at, got, want)
				}
				if got := string(f.AppendFormat([]byte("x"), at)); got != "x"+want {
					t.Fatalf("%v.AppendFormat(%v) = %q, want %q", f, at, got, "x"+want)
				}
				if f == middleware.TimeRFC3339 {
					if got := middleware.FormatTime(at); got != want {
						t.Fatalf("FormatTime(%v) = %q, want %q", at, got, want)
					}
				}
			}
		}
	}
}

func BenchmarkTimeFormat(b *testing.B) {
	at := time.Now()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for range b.N {
		buf = middleware.TimeRFC3339.AppendFormat(buf[:0], at)
	}
}
