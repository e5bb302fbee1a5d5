package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/busline/busline/bus"
)

// kindLog collects the kinds of a Bus's events.
type kindLog struct {
	mu sync.Mutex
	ks []bus.NoticeKind
}

func (l *kindLog) add(e bus.Notice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ks = append(l.ks, e.Kind)
}

func (l *kindLog) kinds() []bus.NoticeKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bus.NoticeKind(nil), l.ks...)
}

func (l *kindLog) count(k bus.NoticeKind) int {
	n := 0
	for _, x := range l.kinds() {
		if x == k {
			n++
		}
	}
	return n
}

func TestHealthMonitorSuspends(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var m bus.BasicHealthMonitor
		var log kindLog
		b := e.bus("orders", bus.Options{HealthMonitor: &m, OnNotice: log.add})
		var got recorder[PlaceOrder]
		release := make(chan struct{})
		must(t, bus.Handle(b, func(ctx context.Context, p PlaceOrder) error {
			if p.ID == "slow" {
				<-release
			}
			return got.handle(ctx, p)
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "slow"}))
		idle() // the slow handler runs
		unhealthy := make(chan struct{})
		go func() { m.SetUnhealthy(); close(unhealthy) }()
		idle()
		if n := log.count(bus.Suspended); n != 0 {
			t.Fatalf("Suspended before the handler under way finished")
		}
		close(release)
		<-unhealthy
		idle()
		if n := log.count(bus.Suspended); n != 1 {
			t.Fatalf("%d Suspended events once the handler finished, want 1 (events %v)", n, log.kinds())
		}
		if err := b.Health(ctx); !errors.Is(err, bus.ErrSuspended) {
			t.Fatalf("Health while suspended: %v, want ErrSuspended", err)
		}
		// Sends keep working; nothing is handled.
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "while unhealthy"}))
		idle()
		if g := got.all(); len(g) != 1 {
			t.Fatalf("handled %v while unhealthy", g)
		}
		// Pause and Resume while suspended: Resume waits for the host.
		must(t, b.Pause(ctx))
		must(t, b.Resume(ctx))
		idle()
		if g := got.all(); len(g) != 1 {
			t.Fatalf("handled %v after Resume while unhealthy", g)
		}
		m.SetHealthy()
		idle()
		if g := got.all(); len(g) != 2 || g[1].ID != "while unhealthy" {
			t.Fatalf("handled %v once healthy, want the message sent meanwhile", g)
		}
		if n := log.count(bus.Unsuspended); n != 1 {
			t.Errorf("%d Unsuspended events, want 1", n)
		}
		must(t, b.Health(ctx))
		// A paused Bus stays paused when the host recovers.
		m.SetUnhealthy()
		idle()
		must(t, b.Pause(ctx))
		m.SetHealthy()
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "paused"}))
		idle()
		if g := got.all(); len(g) != 2 {
			t.Fatalf("handled %v while paused", g)
		}
		must(t, b.Resume(ctx))
		idle()
		if g := got.all(); len(g) != 3 {
			t.Fatalf("handled %v after Resume, want the message sent while paused", g)
		}
		must(t, b.Health(ctx))
	})
}

func TestHealthMonitorUnhealthyAtStart(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var m bus.BasicHealthMonitor
		m.SetUnhealthy()
		var log kindLog
		b := e.bus("orders", bus.Options{HealthMonitor: &m, OnNotice: log.add})
		var got recorder[PlaceOrder]
		must(t, bus.Handle(b, got.handle))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{ID: "1"}))
		idle()
		if g := got.all(); len(g) != 0 {
			t.Fatalf("handled %v with the host unhealthy since Start", g)
		}
		m.SetHealthy()
		idle()
		if g := got.all(); len(g) != 1 {
			t.Fatalf("handled %v once healthy", g)
		}
		must(t, b.Shutdown(ctx))
		idle()
		want := []bus.NoticeKind{bus.Started, bus.Suspended, bus.Unsuspended, bus.Stopping, bus.Stopped}
		if k := log.kinds(); len(k) != len(want) {
			t.Errorf("events %v, want %v", k, want)
		} else {
			for i := range k {
				if k[i] != want[i] {
					t.Errorf("events %v, want %v", k, want)
					break
				}
			}
		}
	})
}
