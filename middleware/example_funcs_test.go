package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Immediate retries call the handler again at once, in process; with
// MaxRetries set to NoRetries there are no delayed retries, so the Sender needs no
// deferral.
func ExampleRetry() {
	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	retry, err := middleware.Retry(tr, middleware.RetryOptions{Immediate: 2, MaxRetries: middleware.NoRetries})
	if err != nil {
		panic(err)
	}
	attempts := 0
	done := make(chan struct{})
	stop := consume(tr, "orders", retry(func(ctx context.Context, m *middleware.Message) error {
		attempts++
		if attempts < 3 {
			fmt.Println("attempt", attempts, "fails")
			return errors.New("deadlock detected")
		}
		fmt.Println("attempt", attempts, "succeeds")
		close(done)
		return nil
	}))
	defer stop()
	_ = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "orders", Message: transport.Message{ID: "1"}})
	<-done
	// Output:
	// attempt 1 fails
	// attempt 2 fails
	// attempt 3 succeeds
}

// A permanent error skips the retries; the mark survives wrapping.
func ExamplePermanent() {
	err := fmt.Errorf("order 42: %w", middleware.Permanent(errors.New("no such customer")))
	fmt.Println(err)
	fmt.Println(errors.Is(err, middleware.ErrPermanent), middleware.IsPermanent(err))
	fmt.Println(middleware.IsPermanent(errors.New("timeout")))
	// Output:
	// order 42: no such customer
	// true true
	// false
}

// Backoff policies: PikaBus's default, linear, exponential with jitter.
func ExampleBackoff() {
	linear := middleware.LinearBackoff(500 * time.Millisecond)
	exponential := middleware.ExponentialBackoff(time.Second, time.Minute)
	for retry := 1; retry <= 5; retry++ {
		d := exponential(retry)
		full := min(time.Minute, time.Second<<(retry-1))
		fmt.Println(retry, middleware.DefaultBackoff(retry), linear(retry), d >= full/2 && d <= full)
	}
	// Output:
	// 1 2s 500ms true
	// 2 4s 1s true
	// 3 6s 1.5s true
	// 4 8s 2s true
	// 5 10s 2.5s true
}

// Times in headers: written as Python's isoformat() writes an aware UTC
// time (PikaBus 2), or in PikaBus 1.x's format for older peers; both, and
// other ISO 8601 forms, are read back.
func ExampleTimeFormat() {
	t := time.Date(2026, 11, 22, 9, 30, 0, 123456789, time.UTC)
	fmt.Println(middleware.FormatTime(t))
	fmt.Println(middleware.TimeRFC3339.Format(t))
	fmt.Println(middleware.TimePikaBus1.Format(t))
	for _, s := range []string{"2026-11-22T09:30:00.123456+00:00", "2026-11-22T10:30:00+01:00", "2026-11-22T09:30:00Z", "11/22/2026 09:30:00"} {
		back, err := middleware.ParseTime(s)
		fmt.Println(back, err)
	}
	// Output:
	// 2026-11-22T09:30:00.123456+00:00
	// 2026-11-22T09:30:00.123456+00:00
	// 11/22/2026 09:30:00
	// 2026-11-22 09:30:00.123456 +0000 UTC <nil>
	// 2026-11-22 09:30:00 +0000 UTC <nil>
	// 2026-11-22 09:30:00 +0000 UTC <nil>
	// 2026-11-22 09:30:00 +0000 UTC <nil>
}

// HeaderInt reads an integer header whatever type its producer gave it.
func ExampleHeaderInt() {
	for _, v := range []any{int32(3), int64(3), "3", 3.0, nil, "three"} {
		n, ok, err := middleware.HeaderInt(v)
		fmt.Println(n, ok, err != nil)
	}
	// Output:
	// 3 true false
	// 3 true false
	// 3 true false
	// 3 true false
	// 0 false false
	// 0 false true
}
