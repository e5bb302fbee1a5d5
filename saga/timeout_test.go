package saga_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/saga"
)

type (
	Arm  struct{ Key string }
	Fire struct {
		Key string
		Due time.Time
	}
)

// TestTimeoutsNeverEarly: timeouts of several delays, on the memory broker
// in real time and on RabbitMQ (its delay levels have a one-second
// resolution, and the bus's deferral stage lets a message through up to
// 100 ms early): each handler runs at or after its due time.
func TestTimeoutsNeverEarly(t *testing.T) {
	worlds(t, func(t *testing.T, w *world) {
		delays := []time.Duration{300 * time.Millisecond, 1100 * time.Millisecond, 1999 * time.Millisecond, 2500 * time.Millisecond}
		var mu sync.Mutex
		fired := map[string]time.Time{}
		due := map[string]time.Time{}
		sg := saga.New[struct{}]("Timer", saga.Options{})
		saga.StartedBy(sg, func(m Arm) string { return m.Key },
			func(ctx context.Context, s *saga.Instance[struct{}], m Arm) error {
				var d time.Duration
				fmt.Sscan(m.Key[1:], &d)
				f := Fire{Key: m.Key, Due: time.Now().Add(d)}
				mu.Lock()
				due[m.Key] = f.Due
				mu.Unlock()
				return s.RequestTimeout(d, f)
			})
		saga.Timeout(sg, func(ctx context.Context, s *saga.Instance[struct{}], m Fire) error {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := fired[m.Key]; !ok {
				fired[m.Key] = time.Now()
			}
			s.Complete()
			return nil
		})
		b := w.bus("timers", bus.Options{Concurrency: 4})
		must(t, sg.Register(b, w.store))
		must(t, b.Start(ctx))
		for _, d := range delays {
			must(t, b.Send(ctx, "timers", Arm{Key: fmt.Sprintf("k%d", d)}))
		}
		waitFor(t, "every timeout", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(fired) == len(delays)
		})
		mu.Lock()
		defer mu.Unlock()
		for k, at := range fired {
			if at.Before(due[k]) {
				t.Errorf("%s: handled %v before it was due", k, due[k].Sub(at))
			}
		}
	})
}
